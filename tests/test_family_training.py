"""Each U-Net family member learns: a few steps on real EM data (ISBI 2012) lower the loss.

Skips where ``../shared/data/isbi2012_membrane`` is absent (the ``shared_data`` fixture): it is
a test on real data or none, never silently on synthetic shapes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seglab.tasks import UNetFamilyTask

FAMILY = {
    "unet": {"base_channels": 8, "depth": 4},
    "resunet": {"base_channels": 8, "depth": 4},
    "mobileunet": {"encoder_name": "mobilenetv2_050"},
    "effunet": {"encoder_name": "efficientnet_b0"},
    "unetplusplus": {"base_channels": 8, "depth": 4, "deep_supervision": True},
    "unet3plus": {
        "base_channels": 8,
        "depth": 4,
        "cat_channels": 8,
        "deep_supervision": True,
        "cgm": True,
    },
}


def isbi_batch(shared: Path, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Two crops of the real ISBI images (cells = 1, membranes = 0)."""
    root = shared / "isbi2012_membrane" / "train"
    if not root.is_dir():
        pytest.skip(f"{root} is not present on this machine")
    imgs, masks = [], []
    for i in (0, 1):
        img = np.asarray(Image.open(root / "images" / f"{i}.png"), np.float32)[:size, :size] / 255
        mask = np.asarray(Image.open(root / "masks" / f"{i}.png"))[:size, :size] > 127
        imgs.append((img - 0.5) / 0.2)
        masks.append(mask)
    return torch.tensor(np.stack(imgs))[:, None], torch.tensor(np.stack(masks)).long()


@pytest.mark.parametrize("name", list(FAMILY))
def test_family_member_learns_on_real_data(name, shared_data):
    torch.manual_seed(0)
    torch.set_num_threads(2)
    kw = dict(FAMILY[name])
    encoder = kw.pop("encoder_name", "unet")
    loss = (
        {"focal": 1.0, "ms_ssim": 1.0, "iou": 1.0}
        if name == "unet3plus"
        else {"ce": 1.0, "dice": 1.0}
    )
    task = UNetFamilyTask(
        model=name,
        num_classes=1,
        task="binary",
        encoder_name=encoder,
        in_channels=1,
        model_kwargs=kw,
        loss=loss,
    )
    x, y = isbi_batch(shared_data)
    opt = torch.optim.Adam(task.parameters(), lr=3e-3)
    task.train()
    losses = []
    for _ in range(12):
        opt.zero_grad()
        value, _ = task.compute_loss(task(x), {"mask": y})
        value.backward()
        opt.step()
        losses.append(value.item())
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.85 * np.mean(losses[:2]), losses
