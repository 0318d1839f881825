"""Model registry: ``@register("name")`` on a builder, ``create_model`` looks it up."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable

from torch import nn

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}

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


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Registers a model builder under ``name``."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS and _BUILDERS[name] is not fn:
            raise KeyError(f"Model {name!r} is registered twice.")
        _BUILDERS[name] = fn
        return fn

    return wrap


def _load_all() -> None:
    for mod in _ARCH_MODULES:
        try:
            importlib.import_module(f"seglab.models.{mod}")
        except ModuleNotFoundError as err:
            if err.name != f"seglab.models.{mod}":
                raise


def list_models() -> list[str]:
    """Names of all registered architectures, sorted."""
    _load_all()
    return sorted(_BUILDERS)


def create_model(
    name: str,
    num_classes: int,
    encoder_name: str | None = None,
    in_channels: int = 3,
    **kwargs,
) -> nn.Module:
    """Builds a segmentation model by name.

    Args:
        name: Architecture name, one of ``list_models()``.
        num_classes: Output channels of the logits.
        encoder_name: ``"unet"`` for the plain U-Net contracting path or a timm model name;
            None picks the architecture's default.
        in_channels: Input image channels (1 for CT or greyscale EM).
        **kwargs: Architecture-specific options (``output_stride``, ``base_channels``, ...).

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
    return _BUILDERS[name](num_classes=num_classes, in_channels=in_channels, **kwargs)
