"""``--ckpt_path`` together with model options: which wins, and what is refused.

The model is always rebuilt from the checkpoint's hyper-parameters (its weights only fit that
network). An option given on the command line (``--model.init_args.X=...``) that differs from
the checkpoint is

* applied where it is safe: the loss and its settings, ``ignore_index``, class weights and
  names, the volumetric scoring switches; the optimiser, learning rate and schedule too, except
  on a ``fit`` that resumes the full training state (the resumed optimiser and scheduler would
  override them; ``--run.finetune=true`` starts a new fit from the weights instead);
* refused otherwise (``num_classes``, ``encoder_name``, ``model_kwargs``, ...), naming the option
  and the checkpoint's value.

A checkpoint of another architecture than the config's (``model.init_args.model`` given in a
config file or on the command line) is refused, naming both. Values that only a config file
sets differently follow the checkpoint, with one warning naming them; with ``--run.finetune``
the training options (loss, optimiser, lr, schedule, ...) of the config are used instead.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from seglab.cli.config_base import read_yaml, user_file
from seglab.cli.config_check import split_cli_args
from seglab.data.io import load_checkpoint_file
from seglab.runs.folder import latest_run_with_last
from seglab.runs.ownership import inherited_run_dir

#: Options that do not change the network: safe to change for any subcommand.
LOSS_OPTIONS = frozenset(
    {
        "loss",
        "loss_kwargs",
        "ignore_index",
        "class_weights",
        "batch_dice",
        "class_names",
        "volumetric",
        "lcc",
        "volume_classes",
        "channels_last",
        "tta",  # inference options of every task: validate/test/predict may set them
        "sliding_window",
    }
)
#: Options of the optimiser and schedule: safe except on a resume of the full training state.
OPTIMISER_OPTIONS = frozenset(
    {"optimizer", "lr", "weight_decay", "momentum", "scheduler", "warmup_epochs", "poly_power"}
)
TRAINING_OPTIONS = LOSS_OPTIONS | OPTIMISER_OPTIONS


class CheckpointOptionError(ValueError):
    """A command-line model option that cannot be combined with the given checkpoint."""


def explicit_model_options(argv: list[str]) -> tuple[dict[str, Any], dict[str, tuple[Any, str]]]:
    """The task options a command line sets explicitly.

    Returns:
        ``(command_line, files)``: ``{option: value}`` of the ``--model.init_args.X`` arguments,
        and ``{option: (value, config file)}`` of the options the config files set.
    """
    _, configs, dotted = split_cli_args(list(argv))
    cli: dict[str, Any] = {}
    for key, value in dotted:
        parts = key.split(".")
        if parts[0] != "model":
            continue
        parts = parts[1:]
        if parts and parts[0] == "init_args":
            parts = parts[1:]
        if not parts and isinstance(value, dict):
            cli |= {k: v for k, v in (value.get("init_args") or value).items() if k != "class_path"}
        elif parts and parts[0] not in ("class_path", "dict_kwargs"):
            cli[parts[0]] = value if len(parts) == 1 else {".".join(parts[1:]): value}
    files: dict[str, tuple[Any, str]] = {}
    for path in configs:
        try:
            data = read_yaml(path)
        except OSError:
            continue
        model = data.get("model") if isinstance(data, dict) else None
        if isinstance(model, dict):
            init = model.get("init_args") if isinstance(model.get("init_args"), dict) else model
            for k, v in init.items():
                if k not in ("class_path", "init_args", "dict_kwargs"):
                    files[k] = (v, user_file(path))
    return cli, files


def reconcile(
    subcommand: str,
    ckpt_path: str,
    hparams: dict[str, Any],
    config: dict[str, Any],
    argv: list[str],
    finetune: bool = False,
) -> dict[str, Any]:
    """The task options to build from: the checkpoint's, with the safe command-line changes.

    Args:
        subcommand: ``fit``, ``validate``, ``test`` or ``predict``.
        ckpt_path: The checkpoint (for messages).
        hparams: Its hyper-parameters (``_class_path`` kept, ``_instantiator`` dropped).
        config: The parsed ``model.init_args`` of the command (config files and arguments).
        argv: The command line (to tell explicit options from defaults).
        finetune: ``fit --run.finetune``: a new fit from the weights (new optimiser and loss).

    Raises:
        CheckpointOptionError: Another architecture, or an option that changes the network.
    """
    hparams = dict(hparams)
    hparams.setdefault("defaults_version", 1)  # written before the key existed: round-1 nets
    cli, files = explicit_model_options(argv)
    arch = hparams.get("model")
    given = cli.get("model", files.get("model", (None,))[0])
    if given is not None and arch is not None and given != arch:
        where = "the command line" if "model" in cli else files["model"][1]
        raise CheckpointOptionError(
            f"Checkpoint {ckpt_path} holds a {arch!r} model, but {where} asks for {given!r}. "
            f"Use a config of {arch!r} (or drop model.init_args.model) to load this checkpoint, "
            f"or train {given!r} without --ckpt_path."
        )
    resume = subcommand == "fit" and not finetune
    safe = LOSS_OPTIONS if resume else TRAINING_OPTIONS
    hparams = {"tta": None, "sliding_window": None} | dict(hparams)  # older checkpoints lack them
    out, followed = dict(hparams), []
    for key, value in config.items():
        if key not in hparams or value == hparams[key]:
            continue
        if key in cli and key in safe or finetune and key in TRAINING_OPTIONS:
            out[key] = value  # the user's (new) value
        elif key in cli:
            why = (
                "a resumed fit restores the optimiser and schedule from the checkpoint; start a "
                "new fit from its weights with --run.finetune=true to change it"
                if key in OPTIMISER_OPTIONS
                else "the checkpoint's weights only fit its own network"
            )
            raise CheckpointOptionError(
                f"--model.init_args.{key}={value!r} differs from checkpoint {ckpt_path}, which "
                f"has {key}={hparams[key]!r}: {why}. Drop the option (or use a checkpoint "
                "trained with it)."
            )
        elif key in files:
            followed.append(f"{key}={hparams[key]!r} (config: {value!r})")
    if followed:
        warnings.warn(
            f"--ckpt_path {ckpt_path}: the checkpoint's values are used for {', '.join(followed)}.",
            UserWarning,
            stacklevel=2,
        )
    return out


def parse_ckpt_path(cli: Any) -> None:
    """``SeglabCLI._parse_ckpt_path``: resolves ``fit --ckpt_path last``, reads the checkpoint
    once (one clear error for an empty or truncated file) and rebuilds the task options from it
    with :func:`reconcile`; sets ``cli.resumed``, ``cli.resume_step`` and, for
    ``--run.finetune``, ``cli.finetune_state`` (the checkpoint is then not resumed)."""
    sub = cli.config.get("subcommand")
    if not sub:
        return
    cfg = cli.config[sub]
    cli.name_experiment(cfg)
    ckpt_path = cfg.get("ckpt_path")
    if sub == "fit" and ckpt_path == "last":
        exported = inherited_run_dir()  # an exported SEGLAB_RUN_DIR is the run to continue
        if exported is not None and (exported / "checkpoints" / "last.ckpt").is_file():
            cli.resumed = exported
        else:
            cli.resumed = latest_run_with_last(cfg.run.root, cfg.run.experiment)
        if cli.resumed is None:
            raise FileNotFoundError(
                f"--ckpt_path last: no earlier run of {cfg.run.experiment!r} under "
                f"{cfg.run.root}/ holds checkpoints/last.ckpt; start without --ckpt_path."
            )
        ckpt_path = cfg.ckpt_path = str(cli.resumed / "checkpoints" / "last.ckpt")
    if not ckpt_path or str(ckpt_path) in ("last", "best", "hpc", "registry"):
        return
    ckpt = load_checkpoint_file(ckpt_path)
    finetune = sub == "fit" and bool(cfg.run.get("finetune"))
    if finetune:  # a new fit from the weights: nothing else of the checkpoint is restored
        cli.finetune_state, cfg.ckpt_path = ckpt.get("state_dict") or {}, None
        cli.finetune_path = str(ckpt_path)
    elif sub == "fit":
        cli.resume_step = int(ckpt.get("global_step", 0))
        folder = Path(ckpt_path).resolve().parent
        inherited = inherited_run_dir()
        if inherited is not None and folder.name == "checkpoints":
            if inherited.resolve() == folder.parent:
                cli.resumed = inherited
    hparams = dict(ckpt.get("hyper_parameters") or {})
    hparams.pop("_instantiator", None)
    if not hparams:
        return
    init = cfg.model.init_args if hasattr(cfg.model, "init_args") else cfg.model
    init = init.as_dict() if hasattr(init, "as_dict") else dict(init or {})
    hparams = reconcile(sub, str(ckpt_path), hparams, init, cli.argv, finetune)
    if "_class_path" in hparams:
        hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
    cli.config = cli.parser.parse_object({sub: {"model": hparams}}, cli.config)


def load_finetune_weights(task: Any, state: dict[str, Any], ckpt_path: str) -> None:
    """Loads a checkpoint's network weights into ``task.model``, refusing any missing or extra
    tensor (the loss and optimiser start afresh)."""
    weights = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    result = task.model.load_state_dict(weights, strict=False)
    bad = [*result.missing_keys, *result.unexpected_keys]
    if bad:
        raise CheckpointOptionError(
            f"--run.finetune: the weights of {ckpt_path} do not fit the model "
            f"({len(result.missing_keys)} missing, {len(result.unexpected_keys)} unexpected "
            f"tensors, first: {bad[:3]})."
        )
