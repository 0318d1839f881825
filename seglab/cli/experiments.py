"""``seglab experiments`` (the shipped experiments, one line each) and ``seglab --help``.

The purpose of an experiment is the first comment line of its YAML file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import seglab

COMMANDS = (
    ("fit", "train a model: seglab fit --config experiments/default.yaml [--key=value ...]"),
    ("validate", "score a checkpoint on the validation split (--config ... --ckpt_path CK)"),
    ("test", "score a checkpoint on the test split (--config ... --ckpt_path CK)"),
    ("predict", "masks + overlays for a folder of images: seglab predict --ckpt_path CK DIR"),
    ("models", "every architecture with its default encoder, parameters and FLOPs"),
    ("experiments", "the shipped experiments (experiments/*.yaml) with their purpose"),
    ("sweep", "a grid of config overrides x seeds, one seglab fit run each"),
    ("compare", "tables, significance tests and plots over finished runs"),
    ("export", "a checkpoint to ONNX and TorchScript, checked against PyTorch"),
    ("check-data", "every data check on a whole data set, without training"),
)


def experiments_dir() -> Path:
    """``./experiments`` when it exists, else the one beside the seglab package."""
    here = Path("experiments")
    if here.is_dir():
        return here
    return Path(seglab.__file__).resolve().parents[1] / "experiments"


def purpose(path: Path) -> str:
    """The first comment line of a YAML file, without the ``#``."""
    for line in path.read_text().splitlines():
        if line.strip().startswith("#"):
            return line.strip().lstrip("#").strip()
        if line.strip():
            break
    return "(no comment line)"


def list_experiments(folder: Path | None = None) -> list[tuple[str, str]]:
    """``(name, purpose)`` of every experiment file (``base.yaml`` is the shared base)."""
    folder = folder or experiments_dir()
    return [(p.stem, purpose(p)) for p in sorted(folder.glob("*.yaml")) if p.stem != "base"]


def print_help(stream=None) -> None:
    """The top-level help: every subcommand with one line."""
    out = stream or sys.stdout
    width = max(len(name) for name, _ in COMMANDS)
    print(f"usage: seglab <command> [options]   (seglab {seglab.__version__})\n", file=out)
    print("commands:", file=out)
    for name, text in COMMANDS:
        print(f"  {name:<{width}}  {text}", file=out)
    print(
        "\n`seglab <command> --help` shows a command's options; `--debug` keeps the traceback "
        "of an error.\nThe command lives in the virtual environment: .venv/bin/seglab, or "
        "`source .venv/bin/activate` first.",
        file=out,
    )


def main(argv: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """Entry point of ``seglab experiments``."""
    p = argparse.ArgumentParser(
        prog="seglab experiments", description="The shipped experiments and their purpose."
    )
    p.add_argument("--dir", default=None, help="Experiments folder (default: ./experiments).")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    folder = Path(args.dir) if args.dir else experiments_dir()
    if not folder.is_dir():
        raise FileNotFoundError(f"No experiments folder at {folder}; pass --dir.")
    found = list_experiments(folder)
    width = max((len(n) for n, _ in found), default=0)
    for name, text in found:
        print(f"{name:<{width}}  {text}")
    print(
        f"\nrun one with: seglab fit --config {folder}/<name>.yaml  (fragments: "
        + ", ".join(f"{d.name}/" for d in sorted(folder.iterdir()) if d.is_dir())
        + ")"
    )
    return found
