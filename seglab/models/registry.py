"""Model registry: ``@register("name")`` on a builder, ``create_model`` looks it up."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from seglab.models.pretrained import weights_strictness

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}

#: Version of the architectures' defaults. A checkpoint records the version it was built with
#: (``SegmentationTask(defaults_version=...)``); one written before the key existed is version 1.
DEFAULTS_VERSION = 4

#: ``{name: {version: options}}``: the options that rebuild an older version's default network
#: (registered with ``@register(name, legacy={1: {...}})`` beside the builder whose default
#: changed), so that old checkpoints keep loading into the network they were trained as.
_LEGACY: dict[str, dict[int, dict[str, object]]] = {}


@dataclass(frozen=True)
class Deviation:
    """One way seglab's default network differs from its reference, and the option about it.

    Args:
        what: What differs, in a sentence (``"side outputs averaged, the paper sums them"``).
        option: The ``model_kwargs`` option (or ``"-"``) that restores the reference or chooses
            between the two (``"side_loss=sum"``).
        why: Why seglab's default differs (empty where the default is the reference's).
    """

    what: str
    option: str
    why: str = ""


@dataclass(frozen=True)
class Fidelity:
    """What an architecture follows: the reference, its parameter count and the deviations.

    Args:
        reference: Paper and reference implementation followed (``"Long et al. 2015; Caffe
            fcn8s-atonce"``).
        settings: ``create_model`` arguments of the reference's setting (``{"num_classes": 21}``,
            the encoder, ...), at which ``params`` is counted.
        params: The reference's parameter count at ``settings`` (None where none is published).
        params_source: Where ``params`` comes from.
        deviations: Every known difference from the reference, each with its option.
        parts: ``{part: (parameter-name prefixes, reference count)}`` where the reference
            publishes a split (DenseASPP: ``{"trunk": (("encoder.",), 28_911_840), ...}``).
    """

    reference: str
    settings: dict[str, object] = field(default_factory=dict)
    params: int | None = None
    params_source: str = ""
    deviations: tuple[Deviation, ...] = ()
    parts: dict[str, tuple[tuple[str, ...], int]] = field(default_factory=dict)


#: ``{name: Fidelity}``, registered beside each builder (``@register(name, fidelity=...)``).
_FIDELITY: dict[str, Fidelity] = {}

# Modules that register architectures; imported lazily so `import seglab` stays light.
_ARCH_MODULES = (
    "unet",
    "resunet",
    "mobileunet",
    "effunet",
    "unetplusplus",
    "unet3plus",
    "fcn",
    "deeplab",
    "pspnet",
    "denseaspp",
)


def register(
    name: str,
    legacy: dict[int, dict[str, object]] | None = None,
    fidelity: Fidelity | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Registers a model builder under ``name``.

    Args:
        name: The architecture's public name.
        legacy: ``{version: options}`` that rebuild the default network of an older
            ``DEFAULTS_VERSION`` (for example ``{1: {"decoder_channels": [128, 64]}}``); a value
            may be a function of the other ``create_model`` options, returning the option's
            value (for an old default that depended on the encoder).
        fidelity: The reference the default network follows and its deviations
            (``seglab models --fidelity``).
    """

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS and _BUILDERS[name] is not fn:
            raise KeyError(f"Model {name!r} is registered twice.")
        _BUILDERS[name] = fn
        if legacy:
            _LEGACY[name] = {int(k): dict(v) for k, v in legacy.items()}
        if fidelity is not None:
            _FIDELITY[name] = fidelity
        return fn

    return wrap


def _load_all() -> None:
    for mod in _ARCH_MODULES:
        try:
            importlib.import_module(f"seglab.models.{mod}")
        except ModuleNotFoundError as err:
            if err.name != f"seglab.models.{mod}":
                raise


def fidelity(name: str) -> Fidelity | None:
    """The registered :class:`Fidelity` of an architecture (None where none is registered)."""
    _load_all()
    return _FIDELITY.get(name)


def list_models() -> list[str]:
    """Names of all registered architectures, sorted."""
    _load_all()
    return sorted(_BUILDERS)


def create_model(
    name: str,
    num_classes: int,
    encoder_name: str | None = None,
    in_channels: int = 3,
    defaults_version: int | None = None,
    **kwargs,
) -> nn.Module:
    """Builds a segmentation model by name.

    Args:
        name: Architecture name, one of ``list_models()``.
        num_classes: Output channels of the logits.
        encoder_name: ``"unet"`` for the plain U-Net contracting path or a timm model name;
            None picks the architecture's default.
        in_channels: Input image channels (1 for CT or greyscale EM).
        defaults_version: Build the defaults of this older version (``DEFAULTS_VERSION`` when
            None): options registered as ``legacy`` for every version from this one up to the
            current one fill in what ``kwargs`` leaves unset.
        **kwargs: Architecture-specific options (``output_stride``, ``base_channels``, ...);
            ``weights`` and ``weights_strict`` (default True: a weights file that does not fit
            the encoder exactly is an error) are ``seglab.models.pretrained``'s.

    Returns:
        An ``nn.Module`` with an ``.encoder`` honouring the encoder contract; in eval mode
        ``model(x)`` returns logits ``(B, num_classes, H, W)`` at the input size.
    """
    _load_all()
    if name not in _BUILDERS:
        close = difflib.get_close_matches(name, _BUILDERS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"Unknown model {name!r}.{hint} Valid names: {', '.join(sorted(_BUILDERS))}."
        )
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
    if encoder_name is not None:
        kwargs["encoder_name"] = encoder_name
    version = DEFAULTS_VERSION if defaults_version is None else int(defaults_version)
    legacy: dict[str, object] = {}
    for old in sorted(_LEGACY.get(name, {})):  # the oldest version asked for wins
        if old >= version:
            legacy = {**_LEGACY[name][old], **legacy}
    legacy = {k: v for k, v in legacy.items() if k not in kwargs}
    kwargs |= {k: v(kwargs) if callable(v) else v for k, v in legacy.items()}
    with weights_strictness(kwargs.pop("weights_strict", True)):
        return _BUILDERS[name](num_classes=num_classes, in_channels=in_channels, **kwargs)
