"""Speed switches as Lightning callbacks: ``torch.compile`` of the model and a step timer.

Both are usable from YAML::

    trainer:
      callbacks:
        - class_path: seglab.runs.speed.CompileModel
          init_args: {mode: max-autotune}
        - class_path: seglab.runs.speed.StepTimer

Precision (``trainer.precision: 32-true | 16-mixed | bf16-mixed``), cuDNN autotuning
(``trainer.benchmark: true``), determinism (``trainer.deterministic``) and channels-last
(``model.init_args.channels_last: true``) are plain trainer/task arguments and need no code here.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info


class CompileModel(Callback):
    """Compiles ``pl_module.model`` with ``torch.compile`` before the run starts.

    The network is compiled in place (``nn.Module.compile``), so parameter names, checkpoints,
    ``load_from_checkpoint`` and export are unchanged; the loss, metrics and the rest of the
    LightningModule stay eager. The first steps are slow (graph capture and code generation,
    again for the first validation batch and for every new input shape unless ``dynamic``);
    :class:`StepTimer` reports that first step apart from the steady state.

    Args:
        mode: ``None`` (default), ``"reduce-overhead"`` (CUDA graphs) or ``"max-autotune"``.
        fullgraph: Fail instead of falling back to eager at graph breaks.
        dynamic: Compile for dynamic shapes (True), static (False) or decide (None).
        backend: ``torch.compile`` backend (``"inductor"``; ``"eager"``/``"aot_eager"`` to debug).
        attribute: Name of the LightningModule attribute to compile.
    """

    def __init__(
        self,
        mode: str | None = None,
        fullgraph: bool = False,
        dynamic: bool | None = None,
        backend: str = "inductor",
        attribute: str = "model",
    ) -> None:
        self.mode, self.fullgraph, self.dynamic = mode, fullgraph, dynamic
        self.backend, self.attribute = backend, attribute
        self.compiled = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.compiled:
            return
        module = getattr(pl_module, self.attribute, None)
        if not isinstance(module, torch.nn.Module):
            raise AttributeError(
                f"CompileModel: the LightningModule has no nn.Module attribute {self.attribute!r}."
            )
        module.compile(
            mode=self.mode, fullgraph=self.fullgraph, dynamic=self.dynamic, backend=self.backend
        )
        self.compiled = True
        rank_zero_info(
            f"CompileModel: torch.compile(pl_module.{self.attribute}, mode={self.mode!r}, "
            f"backend={self.backend!r}); the first steps include compilation."
        )


class StepTimer(Callback):
    """Times training steps (forward, backward, optimiser step) and the wait for data.

    The first step (which includes ``torch.compile``, cuDNN autotuning and allocator warm-up) is
    reported apart from the median of the following ones. At the end of every training epoch it
    logs, to every logger of the trainer: ``perf/first_step_s``, ``perf/step_s`` (median step
    after the first), ``perf/data_s`` (median wait for the next batch) and
    ``perf/images_per_s`` (batch size / median step). On CUDA the clock waits for the device.

    Args:
        skip: Steps after the first left out of the median (extra warm-up).
    """

    def __init__(self, skip: int = 0) -> None:
        self.skip = skip
        self.first_step_s: float | None = None
        self.step_times: list[float] = []
        self.data_times: list[float] = []
        self.batch_size: int | None = None
        self._start: float | None = None
        self._end: float | None = None

    @staticmethod
    def _now(pl_module: L.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end = None  # the first wait of an epoch includes starting the loader workers

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._start = self._now(pl_module)
        if self._end is not None:
            self.data_times.append(self._start - self._end)
        if isinstance(batch, dict) and isinstance(batch.get("image"), torch.Tensor):
            self.batch_size = int(batch["image"].shape[0])

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self._start is None:
            return
        self._end = self._now(pl_module)
        elapsed = self._end - self._start
        if self.first_step_s is None:
            self.first_step_s = elapsed
        else:
            self.step_times.append(elapsed)
        self._start = None

    def summary(self) -> dict[str, float]:
        """The current numbers as ``{"perf/...": seconds}`` (empty before the first step)."""
        out: dict[str, float] = {}
        if self.first_step_s is not None:
            out["perf/first_step_s"] = self.first_step_s
        steady = self.step_times[self.skip :]
        if steady:
            out["perf/step_s"] = statistics.median(steady)
            if self.batch_size:
                out["perf/images_per_s"] = self.batch_size / out["perf/step_s"]
        if self.data_times:
            out["perf/data_s"] = statistics.median(self.data_times)
        return out

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        values = self.summary()
        if not values:
            return
        for logger in trainer.loggers:  # rank-zero only inside every Lightning logger
            logger.log_metrics(values, step=trainer.global_step)
