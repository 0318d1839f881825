"""Unknown or misspelt config keys, reported with the closest valid name.

LightningCLI (jsonargparse) refuses an unknown key with a long union-type error, reports only the
first one, and silently accepts an unambiguous *prefix* of a command-line option
(``--trainer.max_epoch=1`` sets ``max_epochs``). :func:`check_cli_args` runs before the parser: it
reads the ``--config`` files (``yaml.safe_load``) and the dotted ``--key=value`` arguments, checks
every key against the signatures it will be passed to (Trainer, the task class, SegDataModule,
the dataset reader, the model builder, the ``run.*`` options of the CLI), and raises one
:class:`ConfigKeyError` that lists every unknown key with its source and the closest valid name
(``difflib``, plus a few common synonyms such as ``learning_rate`` -> ``lr``).

Only names are read from the config; nothing in it is evaluated or imported, except a
``model.class_path`` inside the ``seglab`` package (the task whose signature is checked).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from seglab.cli.config_base import read_yaml, user_file
from seglab.cli.config_keys import (
    SUBCOMMANDS,
    builder_keys,
    closest,
    datamodule_keys,
    reader_keys,
    run_keys,
    task_class,
    task_keys,
    top_level_keys,
    trainer_keys,
)


class ConfigKeyError(ValueError):
    """One or more unknown config keys; the message lists each with a suggestion."""


# ------------------------------------------------------------------------------ checks
def _message(path: str, key: str, valid: set[str], source: str) -> str:
    full = f"{path}.{key}" if path else key
    hint = closest(key, valid)
    if hint:
        names = " or ".join(repr(f"{path}.{h}" if path else h) for h in hint[:2])
        tip = f"Did you mean {names}?"
    else:
        shown = ", ".join(sorted(valid)[:40])
        tip = f"Valid keys there: {shown}{', ...' if len(valid) > 40 else ''}."
    return f"Unknown config key {full!r} (in {source}). {tip}"


def _check_keys(node: Any, path: str, valid: set[str] | None, source: str, out: list[str]) -> None:
    if valid is None or not isinstance(node, dict):
        return
    for key in node:
        if key not in valid:
            out.append(_message(path, str(key), valid, source))


WRAPPER = ("class_path", "init_args", "dict_kwargs")
# Free-form mappings: a new value replaces the old one as a whole (as jsonargparse does for dict
# arguments), a dotted key (--data.dataset_kwargs.size=48) sets one entry.
FREE = (("data", "dataset_kwargs"), ("model", "init_args", "model_kwargs"))


def _normal(parts: tuple[str, ...]) -> tuple[str, ...]:
    """``model.x`` -> ``model.init_args.x`` (LightningCLI's shorthand)."""
    if len(parts) >= 2 and parts[0] == "model" and parts[1] not in WRAPPER:
        return ("model", "init_args", *parts[1:])
    return parts


def _structure_keys(
    cfg: dict[str, Any], source: str, subcommand: str, task: type | None, out: list[str]
) -> None:
    """Checks the keys of one source down to the task, datamodule, trainer and run options."""
    _check_keys(cfg, "", top_level_keys(subcommand), source, out)
    _check_keys(cfg.get("trainer"), "trainer", trainer_keys(), source, out)
    _check_keys(cfg.get("run"), "run", run_keys(), source, out)
    data = cfg.get("data")
    _check_keys(data, "data", datamodule_keys(), source, out)
    model = cfg.get("model")
    if isinstance(model, dict):
        params = task_keys(task) if task is not None else None
        _check_keys(model, "model", None if params is None else set(WRAPPER) | params, source, out)
        _check_keys(model.get("init_args"), "model.init_args", params, source, out)


def _replace_tip(path: str, src: str) -> str:
    """How to drop a file's free-form mapping from the command line (a whole value replaces it)."""
    if src in ("the command line", "the config"):
        return ""
    return f" To replace the file's {path} on the command line, pass it whole: --{path}='{{...}}'."


def _free_keys(
    effective: dict[str, Any], origin: dict[tuple[str, ...], dict[str, str]], out: list[str]
) -> None:
    """Checks the effective ``data.dataset_kwargs`` and ``model_kwargs`` against the reader and
    the architecture that will receive them."""
    data = effective.get("data") or {}
    kw = data.get("dataset_kwargs") if isinstance(data, dict) else None
    where = origin.get(FREE[0], {})
    if isinstance(kw, dict):
        for fixed, use in (("root", "data.root"), ("split", "data.train_split / val_split")):
            if fixed in kw:
                src = where.get(fixed, "the config")
                out.append(
                    f"Config key 'data.dataset_kwargs.{fixed}' (in {src}) is set by "
                    f"SegDataModule; use {use} instead."
                )
        dataset = data.get("dataset", "synthetic")
        keys = reader_keys(dataset) if isinstance(dataset, str) else None
        if keys is not None:
            for key in kw:
                if key not in keys and key not in ("root", "split"):
                    src = where.get(key, "the config")
                    msg = _message("data.dataset_kwargs", str(key), keys - {"root", "split"}, src)
                    msg = msg.replace(").", f"; reader {dataset!r}).", 1)
                    out.append(msg + _replace_tip("data.dataset_kwargs", src))
    init = ((effective.get("model") or {}).get("init_args")) or {}
    mkw = init.get("model_kwargs") if isinstance(init, dict) else None
    if isinstance(mkw, dict):
        keys = builder_keys(str(init.get("model", "unet")))
        where = origin.get(FREE[1], {})
        if keys is not None:
            for key in mkw:
                if key not in keys:
                    src = where.get(key, "the config")
                    msg = _message("model.init_args.model_kwargs", str(key), keys, src)
                    out.append(msg + _replace_tip("model.init_args.model_kwargs", src))


class _Effective:
    """The merged config as LightningCLI will see it, with the source of each free-form key."""

    def __init__(self) -> None:
        self.cfg: dict[str, Any] = {}
        self.origin: dict[tuple[str, ...], dict[str, str]] = {}

    def set(self, parts: tuple[str, ...], value: Any, source: str) -> None:
        parts = _normal(parts)
        for free in FREE:
            if parts[: len(free)] == free and len(parts) > len(free):  # one entry of it
                node = self._node(free)
                *mid, last = parts[len(free) :]
                for p in mid:
                    if not isinstance(node.get(p), dict):
                        node[p] = {}
                    node = node[p]
                node[last] = value
                self.origin.setdefault(free, {})[parts[len(free)]] = source
                return
            if parts == free:  # the whole mapping: replaces
                self._node(free[:-1])[free[-1]] = dict(value) if isinstance(value, dict) else value
                keys = value if isinstance(value, dict) else {}
                self.origin[free] = {k: source for k in keys}
                return
        if isinstance(value, dict):
            for k, v in value.items():
                self.set((*parts, str(k)), v, source)
            if not value:
                self._node(parts[:-1]).setdefault(parts[-1], {})
            return
        self._node(parts[:-1])[parts[-1]] = value

    def _node(self, parts: tuple[str, ...]) -> dict[str, Any]:
        node = self.cfg
        for p in parts:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        return node


def unknown_config_keys(
    cfg: dict[str, Any],
    sources: str = "the config",
    subcommand: str = "fit",
) -> list[str]:
    """One message per unknown key in a config mapping (a whole config, e.g. one YAML file)."""
    if not isinstance(cfg, dict):
        return []
    eff = _Effective()
    if cfg:
        eff.set((), cfg, sources)
    out: list[str] = []
    _structure_keys(cfg, sources, subcommand, task_class(cfg.get("model") or {}), out)
    _free_keys(eff.cfg, eff.origin, out)
    return out


def _nest(dotted: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in dotted:
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[parts[-1]] = value
    return out


def split_cli_args(args: list[str]) -> tuple[str, list[str], list[tuple[str, Any]]]:
    """``[subcommand, --config f, --a.b=v, ...]`` -> subcommand, config files, dotted values.

    Values are parsed with ``yaml.safe_load`` (so ``{size: 32}`` is a mapping), in order.
    """
    subcommand = args[0] if args and args[0] in SUBCOMMANDS else "fit"
    rest = args[1:] if args and args[0] in SUBCOMMANDS else list(args)
    configs: list[str] = []
    dotted: list[tuple[str, Any]] = []
    i = 0
    while i < len(rest):
        arg = rest[i]
        i += 1
        if arg in ("-c", "--config") or arg.startswith("--config="):
            value = arg.partition("=")[2] if "=" in arg else (rest[i] if i < len(rest) else "")
            i += 0 if "=" in arg else 1
            configs.append(value)
            continue
        if not arg.startswith("--"):
            continue
        key, eq, value = arg[2:].partition("=")
        if not eq and i < len(rest) and not rest[i].startswith("-"):
            value = rest[i]
            i += 1
        key = key.rstrip("+")
        try:
            parsed = yaml.safe_load(value) if value else None
        except yaml.YAMLError:
            parsed = value
        dotted.append((key, parsed))
    return subcommand, configs, dotted


def _load_yaml(path: str) -> dict[str, Any] | None:
    p = Path(path)
    if not p.is_file():
        return None
    data = read_yaml(p)
    return data if isinstance(data, dict) else None


def cli_unknown_keys(args: list[str]) -> list[str]:
    """Messages for every unknown key in the config files and dotted arguments of a command.

    Structural keys (top level, trainer, task, datamodule, run) are checked in each source;
    the free-form ``data.dataset_kwargs`` and ``model_kwargs`` are checked once, as they will
    reach the reader and the architecture after all overrides.
    """
    subcommand, configs, dotted = split_cli_args(args)
    files = [(user_file(c), _load_yaml(c)) for c in configs]
    eff = _Effective()
    for name, data in files:
        if data:
            eff.set((), data, name)
    for key, value in dotted:
        eff.set(tuple(key.split(".")), value, "the command line")
    task = task_class(eff.cfg.get("model") or {})
    out: list[str] = []
    for name, data in files:
        if data:
            _structure_keys(data, name, subcommand, task, out)
    if dotted:
        _structure_keys(_nest(dotted), "the command line", subcommand, task, out)
    _free_keys(eff.cfg, eff.origin, out)
    return out


def suggest_unknown_keys(config: dict[str, Any] | str | Path, subcommand: str = "fit") -> list[str]:
    """Messages for the unknown keys of a config mapping or YAML file (empty when all is well)."""
    if isinstance(config, (str, Path)):
        data = read_yaml(config) or {}
        return unknown_config_keys(data, user_file(config), subcommand)
    return unknown_config_keys(config, "the config", subcommand)


def check_cli_args(args: list[str]) -> None:
    """Raises :class:`ConfigKeyError` listing every unknown key of a ``seglab`` command line."""
    if any(a in ("-h", "--help") or a.endswith(".help") for a in args):
        return
    messages = cli_unknown_keys(list(args))
    if messages:
        raise ConfigKeyError("\n".join(messages))
