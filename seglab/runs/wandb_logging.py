"""Weights & Biases logging of a seglab run (``--run.wandb=true``), offline unless set up.

``make_wandb_logger(cfg, run_dir)`` returns the :class:`WandbLogger` and the callbacks that go
with it. The CSV logger always runs beside it, so nothing in seglab needs W&B.

What a run sends:

* the resolved LightningCLI config, flattened to the CLI's dotted keys
  (``model.init_args.lr``), so sweep parameters and config keys are the same names;
* a group per experiment (``--run.experiment``) and tags ``arch:``, ``encoder:``, ``data:``,
  ``os:`` (output stride), ``loss:``, ``seed:``, so seeds of one config line up in the UI;
* every metric Lightning logs (``val/*`` against ``epoch``, the rest against the global step);
* at each validation epoch (:class:`WandbMedia`): a per-class IoU/Dice table, the confusion
  matrix (a W&B confusion-matrix chart from the pixel counts plus a row-normalised heat map
  image) and a few validation images with ground-truth and predicted masks (class labels named);
* optionally the checkpoints as ``model`` artifacts (``--run.wandb_log_model=true|all``).

Mode: ``WANDB_MODE`` decides (``offline`` when unset; the ``seglab`` command sets it so too),
except under a W&B sweep agent (``WANDB_SWEEP_ID`` set), where runs are online.
Offline runs land in ``<run_dir>/wandb/offline-run-*`` and can be uploaded later with
``wandb sync <run_dir>/wandb/offline-run-*``. To log online: ``wandb login`` (or
``WANDB_API_KEY``), then ``WANDB_MODE=online seglab fit ... --run.wandb=true``;
``WANDB_ENTITY`` / ``--run.wandb_project`` choose where.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from typing_extensions import override

from seglab.runs.wandb_media import ID_FILE, WandbMedia


# ---------------------------------------------------------------------------- config & tags
def _plain(cfg: Any) -> Any:
    """A jsonargparse Namespace (or anything) as plain JSON-able dicts and lists."""
    if hasattr(cfg, "as_dict"):
        cfg = cfg.as_dict()
    return json.loads(json.dumps(cfg, default=str))


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out |= flatten(v, key + ".")
        else:
            out[key] = v
    return out


def resolved_config(cfg: Any, run_dir: str | Path | None = None) -> dict[str, Any]:
    """The run's resolved config as flat dotted keys, the form W&B sweeps set back."""
    tree = _plain(cfg)
    tree.pop("config", None)  # the config file paths; their content is already resolved
    flat = flatten(tree)
    if run_dir is not None:
        flat["run.dir"] = str(run_dir)
    return flat


def _model_args(tree: Mapping[str, Any]) -> Mapping[str, Any]:
    model = tree.get("model") or {}
    return model.get("init_args", model) if isinstance(model, Mapping) else {}


def run_tags(cfg: Any) -> list[str]:
    """Tags ``arch:``, ``encoder:``, ``data:``, ``os:``, ``loss:``, ``seed:`` of a config."""
    tree = _plain(cfg)
    m = _model_args(tree)
    kwargs = m.get("model_kwargs") or {}
    data = tree.get("data") or {}
    data = data.get("init_args", data) if isinstance(data, Mapping) else {}
    loss = m.get("loss") or {"ce": 1.0}
    tags = {
        "arch": m.get("model"),
        "encoder": m.get("encoder_name") or kwargs.get("encoder_name") or "default",
        "data": data.get("dataset"),
        "os": kwargs.get("output_stride"),
        "loss": "+".join(
            k if float(w) == 1.0 else f"{w:g}{k}" for k, w in loss.items() if float(w) != 0
        ),
        "seed": tree.get("seed_everything"),
    }
    return [f"{k}:{v}"[:64] for k, v in tags.items() if v is not None and v != ""]


# -------------------------------------------------------------------------------- logger
class SeglabWandbLogger(WandbLogger):
    """:class:`WandbLogger` that finishes its W&B run when the trainer stage ends.

    Lightning's logger leaves the run open, so a second fit in the same process (a sweep run
    in-process, a test) would log into the first one. Here ``finalize`` (called by Lightning
    after the teardown hooks, checkpoint artifacts already uploaded) finishes the run and keeps
    its id: a later ``trainer.test`` in the same process resumes the same W&B run.
    """

    @override
    def finalize(self, status: str) -> None:
        super().finalize(status)
        run = self._experiment
        if run is None or not hasattr(run, "finish"):
            return
        self._wandb_init["id"] = self._id = run.id
        run.finish(exit_code=0 if status in ("success", "finished") else 1)
        self._experiment = None


# -------------------------------------------------------------------------------- factory
def make_wandb_logger(cfg: Any, run_dir: str | Path) -> tuple[WandbLogger, list[Callback]]:
    """The W&B logger of a run and its callbacks (:class:`WandbMedia`).

    Args:
        cfg: The subcommand's resolved config (``cli.config[subcommand]``); reads
            ``run.experiment``, ``run.wandb_project``, ``run.num_overlays`` and, where the CLI
            has them, ``run.wandb_log_model`` (False, True or ``"all"``) and
            ``run.wandb_entity``.
        run_dir: The run folder; W&B writes ``<run_dir>/wandb/``.

    Returns:
        ``(logger, callbacks)``: add the logger beside the CSV logger, the callbacks to the
        trainer's.
    """
    run_dir = Path(run_dir)
    tree = _plain(cfg)
    run = tree.get("run") or {}
    experiment = run.get("experiment") or run_dir.parent.name
    mode = os.environ.get("WANDB_MODE") or "offline"
    if os.environ.get("WANDB_SWEEP_ID") and mode != "disabled":
        mode = "online"  # a W&B sweep agent's run reports to its server
    log_model = run.get("wandb_log_model", False)
    if isinstance(log_model, str) and log_model.lower() in ("true", "false"):
        log_model = log_model.lower() == "true"
    # A resumed run (same folder, --ckpt_path last) continues its W&B run.
    id_file = run_dir / ID_FILE
    run_id = id_file.read_text().strip() if id_file.is_file() else None
    kwargs: dict[str, Any] = {}
    entity = run.get("wandb_entity") or os.environ.get("WANDB_ENTITY")
    if entity:
        kwargs["entity"] = entity
    logger = SeglabWandbLogger(
        name=f"{experiment}/{run_dir.name}",
        save_dir=str(run_dir),
        id=run_id,
        project=run.get("wandb_project") or "seglab",
        log_model=log_model,
        group=experiment,
        tags=run_tags(cfg),
        config=resolved_config(cfg, run_dir),
        mode=mode,
        **kwargs,
    )
    media = WandbMedia(num_images=int(run.get("num_overlays", 4) or 0))
    return logger, [media]
