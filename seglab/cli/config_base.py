"""Experiment files that override a base: the ``base:`` key.

An experiment YAML may start with ``base: [base.yaml, data/isbi.yaml]`` (paths relative to the
file). ``expand_configs`` turns ``--config exp.yaml`` into ``--config base.yaml --config
data/isbi.yaml --config <exp.yaml without its base key>``, so LightningCLI merges them in order
and the experiment's own values win. Files are read with ``yaml.safe_load``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml


def _chain(path: Path, seen: tuple[Path, ...] = ()) -> list[Path]:
    """The config files ``path`` stands for, bases first (no base key left in any)."""
    path = path.resolve()
    if path in seen:
        raise ValueError(f"Circular base: {' -> '.join(str(p) for p in (*seen, path))}")
    if not path.is_file():
        raise FileNotFoundError(f"Config file {path} does not exist.")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or "base" not in data:
        return [path]
    bases = data.pop("base")
    bases = [bases] if isinstance(bases, str) else list(bases or [])
    out: list[Path] = []
    for base in bases:
        out += _chain(path.parent / base, (*seen, path))
    # The experiment's own part, under its own file name so the run is named after it.
    folder = Path(tempfile.mkdtemp(prefix="seglab-config-"))
    own = folder / path.name
    own.write_text(yaml.safe_dump(data, sort_keys=False))
    return [*out, own]


def expand_configs(argv: list[str]) -> list[str]:
    """Rewrites every ``--config FILE`` whose YAML has a ``base:`` key into its chain."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        value = None
        if arg == "--config" and i + 1 < len(argv):
            value, i = argv[i + 1], i + 2
        elif arg.startswith("--config="):
            value, i = arg.split("=", 1)[1], i + 1
        else:
            out.append(arg)
            i += 1
            continue
        path = Path(value)
        if path.suffix in (".yaml", ".yml") and path.is_file():
            for p in _chain(path):
                out += ["--config", str(p)]
        else:
            out += ["--config", value]
    return out
