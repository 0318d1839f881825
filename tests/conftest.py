"""Shared fixtures: offline environment, the real-data folder, a tiny image folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_SILENT", "true")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def tiny_args(num_samples: int = 16) -> list[str]:
    """CLI overrides for a tiny, quiet fit of ``experiments/default.yaml`` on the CPU."""
    return [
        "--model.init_args.model_kwargs={base_channels: 4, depth: 3}",
        f"--data.dataset_kwargs={{size: 32, num_samples: {num_samples}}}",
        "--data.batch_size=4",
        "--data.num_workers=0",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.log_every_n_steps=1",
    ]


@pytest.fixture(autouse=True, scope="module")
def _fresh_run_env_per_module():
    """Module-scoped fixtures that run the CLI in-process set ``SEGLAB_RUN_DIR`` (for DDP
    children); it must not reach the next module's fixtures."""
    os.environ.pop("SEGLAB_RUN_DIR", None)
    yield
    os.environ.pop("SEGLAB_RUN_DIR", None)


@pytest.fixture(autouse=True)
def _fresh_run_env(monkeypatch):
    """Each test gets its own run folder (the CLI shares it with DDP children by env)."""
    monkeypatch.delenv("SEGLAB_RUN_DIR", raising=False)


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; skips the test where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present on this machine")
    return SHARED_DATA


def write_folder_dataset(
    root: Path, n: int = 6, size: tuple[int, int] = (40, 44), classes: int = 3
) -> Path:
    """Writes ``images/`` + ``masks/`` PNG pairs with class-index masks."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        mask = np.zeros(size, np.uint8)
        mask[5:20, 5:25] = 1 + i % (classes - 1)
        img = (rng.uniform(0, 255, (*size, 3))).astype(np.uint8)
        img[mask > 0] = 200
        Image.fromarray(img).save(root / "images" / f"img{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"img{i}.png")
    return root


@pytest.fixture
def folder_data(tmp_path: Path) -> Path:
    return write_folder_dataset(tmp_path / "data")
