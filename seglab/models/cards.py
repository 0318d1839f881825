"""``seglab models``: every architecture with its default encoder, parameters and FLOPs.

::

    seglab models [--size 512] [--num-classes 21] [--in-channels 3] [--format markdown|csv|json]
                  [--out FILE]
    seglab models --fidelity [--format markdown|json] [--models NAME ...]

Each model is built with its defaults on the ``meta`` device (no memory, no weights: the
biggest take a fraction of a second) and one forward pass at ``1 x C x size x size`` runs under
``torch.utils.flop_counter.FlopCounterMode``. That counter covers convolutions (transposed
too), matrix products and attention, and counts a multiply-add as two FLOPs; normalisation,
activations, pooling and interpolation are not counted (a few per cent at most for these
networks). Where a model cannot run on ``meta``, it is built on the CPU instead.

The reference column holds parameter counts published for the same configuration, where
known; counts are for ``--num-classes`` classes, so the last layer can differ a little from a
paper's (U-Net: 2 classes, U-Net 3+: 1).
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

# Published parameter counts of each architecture's default configuration: value, as
# published, source.
REFERENCE_PARAMS: dict[str, tuple[float, str, str]] = {
    "fcn32s": (134e6, "134M", "Long et al. 2015, Table 1 (FCN-VGG16)"),
    "fcn8s": (
        134_362_751,
        "134.36M",
        "learned blobs of the Caffe voc-fcn8s-atonce model at 21 classes (134,362,751; its "
        "up-samplers are fixed: seglab's default learns the two 2x ones, +14,112)",
    ),
    "unet": (31.0e6, "31.0M", "Ronneberger et al. 2015 architecture, 64 base channels"),
    "resunet": (7.8e6, "7.8M", "Zhang et al. 2018"),
    "unetplusplus": (9.04e6, "9.04M", "Zhou et al. 2018"),
    "unet3plus": (26.97e6, "26.97M", "Huang et al. 2020"),
}
PAPERS: dict[str, str] = {
    "unet": "U-Net (Ronneberger 2015)",
    "resunet": "ResUNet (Zhang 2018)",
    "mobileunet": "Mobile U-Net (MobileNetV2 blocks)",
    "effunet": "EfficientNet U-Net (MBConv blocks)",
    "unetplusplus": "UNet++ (Zhou 2018)",
    "unet3plus": "UNet 3+ (Huang 2020)",
    "fcn32s": "FCN-32s (Long 2015)",
    "fcn16s": "FCN-16s (Long 2015)",
    "fcn8s": "FCN-8s (Long 2015)",
    "deeplabv2": "DeepLab v2 (Chen 2017)",
    "deeplabv3": "DeepLab v3 (Chen 2017)",
    "deeplabv3plus": "DeepLab v3+ (Chen 2018)",
    "pspnet": "PSPNet (Zhao 2017)",
    "denseaspp": "DenseASPP (Yang 2018)",
}


def default_encoder(name: str) -> str:
    """The ``encoder_name`` default of an architecture's builder (``"unet"``: plain encoder)."""
    from seglab.models.registry import _BUILDERS, _load_all

    _load_all()
    param = inspect.signature(_BUILDERS[name]).parameters.get("encoder_name")
    return str(param.default) if param is not None else "-"


def count_params(model: torch.nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def forward_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one eval-mode forward pass (multiply-add = 2), by ``FlopCounterMode``."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return int(counter.get_total_flops())


def model_card(
    name: str,
    size: int = 512,
    num_classes: int = 21,
    in_channels: int = 3,
    **model_kwargs: Any,
) -> dict[str, Any]:
    """One row: ``name``, ``encoder``, ``params``, ``gflops``, ``device``, ``reference_params``.

    Args:
        name: Architecture name.
        size: Square input side for the FLOP count.
        num_classes: Output classes.
        in_channels: Input channels.
        **model_kwargs: Non-default architecture options.
    """
    from seglab.models import create_model

    row: dict[str, Any] = {"name": name, "paper": PAPERS.get(name, name)}
    row["encoder"] = model_kwargs.get("encoder_name", default_encoder(name))
    from seglab.models.encoders import offline_weights

    row["offline_weights"] = offline_weights(row["encoder"])  # weights: imagenet with no network
    for device in ("meta", "cpu"):
        try:
            with torch.device(device):
                model = create_model(name, num_classes, in_channels=in_channels, **model_kwargs)
                x = torch.zeros(1, in_channels, size, size)
            model.eval()
            row |= {"params": count_params(model), "flops": forward_flops(model, x)}
            row["device"] = device
            break
        except (NotImplementedError, RuntimeError):
            if device == "cpu":
                raise
    row["gflops"] = row["flops"] / 1e9
    ref = REFERENCE_PARAMS.get(name)
    row["reference_params"] = ref[0] if ref else None
    row["reference_shown"] = ref[1] if ref else ""
    row["reference_source"] = ref[2] if ref else None
    return row


def model_cards(
    size: int = 512, num_classes: int = 21, in_channels: int = 3, names: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """A row per architecture (all registered ones by default), in registry order."""
    from seglab.models import list_models

    return [model_card(n, size, num_classes, in_channels) for n in (names or list_models())]


def _millions(n: float | None, digits: int = 2) -> str:
    return "" if n is None else f"{n / 1e6:.{digits}f}M"


def to_markdown(rows: list[dict[str, Any]], size: int, num_classes: int) -> str:
    """A GitHub markdown table with a one-line caption."""
    lines = [
        f"Default configuration of every architecture, {num_classes} classes, forward pass at "
        f"1x3x{size}x{size} (FLOPs: `torch.utils.flop_counter`, multiply-add = 2 FLOPs; "
        "GMACs = GFLOPs / 2). Reference: published parameter count where known.",
        "",
        "| Model | Architecture | Default encoder | Params | Reference params | GFLOPs |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        encoder = "plain U-Net encoder" if r["encoder"] == "unet" else r["encoder"]
        lines.append(
            f"| `{r['name']}` | {r['paper']} | {encoder} | {_millions(r['params'])} | "
            f"{r['reference_shown']} | {r['gflops']:.1f} |"
        )
    from seglab.models.encoders import offline_weights
    from seglab.models.pretrained import PACKAGED

    found = {r["encoder"]: r["offline_weights"] for r in rows if r["offline_weights"]}
    found |= {n: s for n in PACKAGED if (s := offline_weights(n))}
    listed = ", ".join(f"`{n}` ({s})" for n, s in sorted(found.items())) or "none"
    lines += ["", f"Encoders with ImageNet weights offline on this machine: {listed}."]
    sources = [f"`{r['name']}`: {r['reference_source']}" for r in rows if r["reference_source"]]
    if sources:
        lines += ["", "Reference sources: " + "; ".join(sources) + "."]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict[str, Any]]) -> str:
    import csv
    import io

    buf = io.StringIO()
    keys = ["name", "encoder", "params", "reference_params", "flops", "gflops", "device"]
    writer = csv.DictWriter(buf, keys, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def main(argv: Sequence[str] | None = None) -> str:
    """Entry point of ``seglab models``; prints (and with ``--out`` writes) the table."""
    p = argparse.ArgumentParser(
        prog="seglab models",
        description="Architectures with default encoders, parameters and forward FLOPs.",
    )
    p.add_argument("--size", type=int, default=512, help="Square input side (default 512).")
    p.add_argument("--num-classes", type=int, default=21, help="Output classes (default 21).")
    p.add_argument("--in-channels", type=int, default=3)
    p.add_argument("--format", choices=("markdown", "csv", "json"), default="markdown")
    p.add_argument("--models", nargs="*", default=(), help="Only these architectures.")
    p.add_argument("--out", default=None, help="Also write the table to this file.")
    p.add_argument(
        "--fidelity",
        action="store_true",
        help="Each architecture against its reference: counts at the reference's settings "
        "and every deviation with its option (markdown or json).",
    )
    p.add_argument(
        "--update-readme",
        metavar="README",
        default=None,
        help="With --fidelity: rewrite the table inside this file's fidelity block.",
    )
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.fidelity:
        from seglab.models.fidelity_table import fidelity_markdown, fidelity_rows

        rows = fidelity_rows(args.models)
        text = fidelity_markdown(rows) if args.format != "json" else json.dumps(rows, indent=2)
        if args.update_readme:
            from seglab.models.fidelity_table import update_readme

            update_readme(args.update_readme, text)
    else:
        rows = model_cards(args.size, args.num_classes, args.in_channels, args.models)
        if args.format == "markdown":
            text = to_markdown(rows, args.size, args.num_classes)
        elif args.format == "csv":
            text = to_csv(rows)
        else:
            text = json.dumps(rows, indent=2)
    text = text if text.endswith("\n") else text + "\n"
    print(text, end="")
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return text
