"""Experiment files that override a base: the ``base:`` key.

An experiment YAML may start with ``base: [base.yaml, data/isbi.yaml]`` (paths relative to the
file). ``expand_configs`` turns ``--config exp.yaml`` into ``--config base.yaml --config
data/isbi.yaml --config <exp.yaml without its base key>``, so LightningCLI merges them in order
and the experiment's own values win. Files are read with ``yaml.safe_load``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml

#: Temporary copies of experiments' own parts (``base:`` removed) -> the user's file.
ORIGINS: dict[str, str] = {}


class ConfigFileError(ValueError):
    """A config file that cannot be read: the message names the user's file and line."""


def user_file(path: str | Path) -> str:
    """The user's config file behind ``path`` (``path`` itself unless it is a temporary copy)."""
    return ORIGINS.get(str(path), str(path))


def read_yaml(path: str | Path) -> Any:
    """``yaml.safe_load`` of a file; a syntax error names the user's file, line and column.

    Raises:
        ConfigFileError: The YAML does not parse (``line L, column C: problem``).
    """
    text = Path(path).read_text()
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        lines = text.splitlines()
        line = lines[mark.line] if mark is not None and mark.line < len(lines) else ""
        tab = "\t" in line or "found character '\\t'" in str(err)
        tip = " (a tab character: YAML indents with spaces only)" if tab else ""
        raise ConfigFileError(
            f"Config file {user_file(path)}{where}: {problem}{tip}. Fix the YAML syntax there."
        ) from None


def _chain(path: Path, seen: tuple[Path, ...] = ()) -> list[Path]:
    """The config files ``path`` stands for, bases first (no base key left in any)."""
    path = path.resolve()
    if path in seen:
        raise ValueError(f"Circular base: {' -> '.join(str(p) for p in (*seen, path))}")
    if not path.is_file():
        raise FileNotFoundError(f"Config file {path} does not exist.")
    data = read_yaml(path) or {}
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
    ORIGINS[str(own)] = str(path)
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
