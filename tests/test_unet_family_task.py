"""UNetFamilyTask: side-loss sum / mean and the CGM term against hand-computed values; one
forward pass per validation batch, side-output metrics only with deep supervision."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from seglab.models.heads import SUPPRESSED_LOGIT
from seglab.tasks import UNetFamilyTask
from tests.models.test_unet_family import _one_thread  # noqa: F401 (autouse fixture)

PLAIN = {"base_channels": 4, "depth": 3}


def make_task(model: str, task: str = "binary", **kw) -> UNetFamilyTask:
    model_kwargs = dict(PLAIN) | kw.pop("model_kwargs", {})
    if model == "unet3plus":
        model_kwargs.setdefault("cat_channels", 4)
    torch.manual_seed(0)
    return UNetFamilyTask(
        model=model,
        num_classes=1 if task == "binary" else 3,
        task=task,
        encoder_name="unet",
        model_kwargs=model_kwargs,
        **kw,
    )


def two_images(size: int = 32) -> dict[str, torch.Tensor]:
    """Image 0 holds a 6x5 foreground block (30 pixels), image 1 is empty."""
    mask = torch.zeros(2, size, size, dtype=torch.long)
    mask[0, 4:10, 8:13] = 1
    return {"image": torch.randn(2, 3, size, size), "mask": mask}


@pytest.mark.parametrize("side_loss", ["sum", "mean"])
def test_paper_cgm_loss_equals_the_hand_computed_sum(side_loss):
    """CGM forced to "empty" in the paper's mode: every output is SUPPRESSED_LOGIT (-1e4), so
    each of the 5 outputs' BCE is 1e4 * 30 / (2 * 32 * 32) (only the 30 foreground pixels are
    wrong); the CGM's BCE at logit -5 for targets (1, 0) is (softplus(5) + softplus(-5)) / 2."""
    task = make_task(
        "unet3plus",
        loss={"ce": 1.0},
        cls_weight=0.3,
        side_loss=side_loss,
        model_kwargs={"depth": 5, "deep_supervision": True, "cgm": "paper"},
    )
    with torch.no_grad():
        task.model.cgm.conv.weight.zero_()
        task.model.cgm.conv.bias.fill_(-5.0)
    batch = two_images()
    task.train()
    out = task(batch["image"])
    assert len(out.side) == 4 and all((s == SUPPRESSED_LOGIT).all() for s in out.side)
    loss, parts = task.compute_loss(out, batch)
    per_output = 1e4 * 30 / (2 * 32 * 32)
    softplus = lambda z: torch.log1p(torch.exp(torch.tensor(z))).item()  # noqa: E731
    cls = (softplus(5.0) + softplus(-5.0)) / 2
    seg = 5 * per_output if side_loss == "sum" else per_output
    assert loss.item() == pytest.approx(seg + 0.3 * cls, rel=1e-5)
    assert parts["loss/cls"].item() == pytest.approx(cls, rel=1e-5)
    assert parts["loss/side3"].item() == pytest.approx(per_output, rel=1e-5)


def test_side_losses_sum_and_mean_by_hand():
    """Weights (0.5, 2): sum = L0 + 0.5 L1 + 2 L2; mean = sum / 3.5; each L_i a BCE by hand."""
    task = make_task(
        "unetplusplus",
        loss={"ce": 1.0},
        side_weights=[0.5, 2.0],
        model_kwargs={"depth": 4, "deep_supervision": True},
    )
    batch = two_images()
    task.train()
    out = task(batch["image"])
    y = batch["mask"][:, None].float()

    def bce(z: torch.Tensor) -> float:
        p = 1 / (1 + torch.exp(-z.double()))
        return (-(y * p.log() + (1 - y) * (1 - p).log())).mean().item()

    expected = bce(out.logits) + 0.5 * bce(out.side[0]) + 2.0 * bce(out.side[1])
    assert task.compute_loss(out, batch)[0].item() == pytest.approx(expected, rel=1e-5)
    task.hparams.side_loss = "mean"
    assert task.compute_loss(out, batch)[0].item() == pytest.approx(expected / 3.5, rel=1e-5)
    with pytest.raises(ValueError, match="side_loss"):
        make_task("unet", side_loss="average")


@pytest.mark.parametrize(
    ("model", "model_kwargs", "cgm_logit"),
    [
        ("unetplusplus", {"deep_supervision": True, "mode": "ensemble"}, None),
        ("unet3plus", {"deep_supervision": True, "cgm": "eval"}, -5.0),
        ("unet3plus", {"deep_supervision": True, "cgm": "paper"}, -5.0),
        ("unet3plus", {"deep_supervision": True, "cgm": "eval"}, 5.0),
    ],
)
def test_one_pass_gives_the_eval_output_and_the_side_outputs(model, model_kwargs, cgm_logit):
    task = make_task(model, "multiclass", model_kwargs=model_kwargs).eval()
    if cgm_logit is not None:
        with torch.no_grad():
            task.model.cgm.conv.weight.zero_()
            task.model.cgm.conv.bias.fill_(cgm_logit)
    x = two_images()["image"]
    with torch.no_grad():
        expected = task.model(x)
        task.model.training = True  # every head, layers in eval mode
        heads = task.model(x)
        task.model.training = False
        task._side_capture = []
        once = task.predict_logits(x)
    torch.testing.assert_close(once, expected)
    assert len(task._side_capture) == 1
    for got, want in zip(task._side_capture[0], heads.side, strict=True):
        torch.testing.assert_close(got, want)


def loader(n: int = 3) -> DataLoader:
    batches = [two_images() for _ in range(n)]
    return DataLoader(batches, batch_size=None)


@pytest.mark.parametrize(
    ("model", "model_kwargs", "sides"),
    [
        ("unet", {}, False),
        ("unetplusplus", {}, False),
        ("unetplusplus", {"deep_supervision": True}, True),
        ("unet3plus", {"deep_supervision": True, "cgm": "paper"}, True),
    ],
)
def test_validation_runs_each_forward_once(model, model_kwargs, sides):
    task = make_task(model, model_kwargs=model_kwargs)
    calls = []
    task.model.register_forward_hook(lambda *a: calls.append(1))
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    metrics = trainer.validate(task, dataloaders=loader(3), verbose=False)[0]
    assert len(calls) == 3
    assert ("val/side0/mIoU" in metrics) == sides and "val/mIoU" in metrics
