"""The encoder of a U-Net family builder, and the rule that no option is silently ignored.

Every U-Net family builder (``resunet``, ``mobileunet``, ``effunet``, ``unetplusplus``,
``unet3plus``) takes either the plain contracting path (``encoder_name="unet"``) or a timm
backbone. Some options shape only one of them: ``base_channels`` and ``depth`` build the plain
path, a timm backbone has its own widths and depth. Such options default to None ("not set"),
and :func:`family_encoder` raises when one is set where it would have no effect.
``output_stride`` is checked against the stride of the encoder actually built, so a value the
encoder cannot honour is an error naming what it supports instead of a model at another stride.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from seglab.models.encoders import Encoder, create_encoder


def refuse_unset(builder: str, why: str, **options: object) -> None:
    """Raises if any of ``options`` is set (not None) although it has no effect.

    Args:
        builder: Architecture name, for the message.
        why: The condition under which the options do nothing (``"with a timm encoder"``).
        **options: ``name=value`` of the options to check.
    """
    given = {k: v for k, v in options.items() if v is not None}
    if given:
        listed = ", ".join(f"{k}={v!r}" for k, v in given.items())
        raise ValueError(
            f"{builder}: {listed} has no effect {why}; leave {'it' if len(given) == 1 else 'them'}"
            " unset."
        )


def family_encoder(
    builder: str,
    encoder_name: str,
    in_channels: int,
    weights: str | None,
    output_stride: int | None,
    base_channels: int | None,
    depth: int | None,
    default_base: int,
    default_depth: int = 5,
    block: Callable[[int, int], nn.Module] | None = None,
    norm: str | None = "bn",
) -> Encoder:
    """Builds the plain or the timm encoder of a U-Net family model, honouring every option.

    Args:
        builder: Architecture name, for error messages.
        encoder_name: ``"unet"`` or a timm name.
        in_channels: Input image channels.
        weights: Encoder weights (see ``create_encoder``).
        output_stride: Deepest stride wanted, or None for the encoder's own. The plain encoder
            reaches at most ``2 ** (depth - 1)``; timm encoders take 8, 16 or 32 where they
            can dilate. Whatever ``create_encoder`` builds, its real stride must match.
        base_channels: Plain encoder's first width (None: ``default_base``); refused for timm.
        depth: Plain encoder's levels (None: ``default_depth``); refused for timm.
        default_base: The architecture's paper width.
        default_depth: The architecture's paper depth.
        block: Level block of the plain encoder (None: double 3x3 conv with ``norm``).
        norm: Normalisation of the plain encoder's default block.

    Raises:
        ValueError: An option the chosen encoder would ignore, or a stride it cannot give.
    """
    stride_kw = {} if output_stride is None else {"output_stride": output_stride}
    if encoder_name == "unet":
        levels = default_depth if depth is None else depth
        kw: dict[str, object] = {"block": block} if block is not None else {"norm": norm}
        enc = create_encoder(
            "unet",
            in_channels,
            weights=weights,
            base_channels=default_base if base_channels is None else base_channels,
            depth=levels,
            **stride_kw,
            **kw,
        )
        supported = f"at most 2 ** (depth - 1) = {2 ** (levels - 1)} (change depth)"
    else:
        refuse_unset(
            builder,
            f"with the timm encoder {encoder_name!r} (they shape the plain 'unet' encoder)",
            base_channels=base_channels,
            depth=depth,
        )
        enc = create_encoder(encoder_name, in_channels, weights=weights, **stride_kw)
        supported = "8, 16 or 32 where timm can dilate it"
    if output_stride is not None and enc.output_stride != output_stride:
        raise ValueError(
            f"{builder}: output_stride={output_stride} is not honoured by encoder "
            f"{encoder_name!r}, which gives stride {enc.output_stride}; it supports {supported}."
        )
    return enc
