"""Export: every architecture to ONNX (dynamic batch/height/width) and TorchScript, checked
against PyTorch with onnxruntime at two sizes; U-Net++ pruned; U-Net 3+ heads stripped; the
``seglab export`` command from a checkpoint of a tiny fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seglab.inference.export import (
    AdaptiveAvgPool2dExport,
    check_onnx,
    export_model,
    export_onnx,
    load_task,
    onnx_session,
)
from seglab.models import create_model, list_models

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

REPO = Path(__file__).resolve().parents[1]
PLAIN = {"encoder_name": "unet", "base_channels": 4, "depth": 3}
# Narrow members of every architecture (FCN-8s on its paper encoder, VGG-16, with narrow fc
# layers; the other context models on ResNet-18).
TINY: dict[str, dict] = {
    "unet": PLAIN,
    "resunet": PLAIN,
    "mobileunet": {"encoder_name": "mobilenetv2_050"},
    "effunet": PLAIN,
    "unetplusplus": PLAIN | {"deep_supervision": True},
    "unet3plus": PLAIN | {"cat_channels": 4, "deep_supervision": True, "cgm": True},
    "fcn32s": {"encoder_name": "resnet18", "fc_channels": 32},
    "fcn16s": {"encoder_name": "resnet18", "fc_channels": 32},
    "fcn8s": {"encoder_name": "vgg16", "fc_channels": 64},
    "deeplabv2": {"encoder_name": "resnet18"},
    "deeplabv3": {"encoder_name": "resnet18", "channels": 16, "aux_head": True},
    "deeplabv3plus": {"encoder_name": "resnet18", "channels": 16, "low_level_channels": 8},
    "pspnet": {"encoder_name": "resnet18", "channels": 16},
    "denseaspp": {"encoder_name": "resnet18", "reduce_channels": 16, "growth": 8},
}
SIZES = [(1, 3, 64, 64), (2, 3, 96, 80)]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(name: str, num_classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes, **TINY[name]).eval()


def inputs(shapes=SIZES) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    return [torch.randn(*s, generator=gen) for s in shapes]


def test_every_architecture_has_a_tiny_config():
    assert set(TINY) == set(list_models())


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.load is deprecated, still works
@pytest.mark.parametrize("name", sorted(TINY))
def test_onnx_and_torchscript_match_pytorch(name, tmp_path):
    model = tiny(name)
    report = export_model(model, tmp_path, height=64, width=64, name=name, log=lambda _: None)
    for fmt in ("onnx", "torchscript"):
        assert report["files"][fmt]["max_abs_diff"] <= 1e-4, fmt
    onnx_path = tmp_path / f"{name}.onnx"
    # Independently of export's own check: onnxruntime at 64x64 and a batch of two at 96x80.
    assert check_onnx(onnx_path, model, inputs()) <= 1e-4
    session = onnx_session(onnx_path)
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["logits"]  # one output: no side heads
    ts = torch.jit.load(str(tmp_path / f"{name}.pt"))
    x = inputs([(1, 3, 67, 93)])[0]
    with torch.no_grad():
        torch.testing.assert_close(ts(x), model(x), rtol=0, atol=1e-4)


def test_unetplusplus_exports_at_a_pruning_level(tmp_path):
    model = tiny("unetplusplus")
    full = export_onnx(model, tmp_path / "full.onnx", inputs()[0])
    model.prune_level = 1
    pruned = export_onnx(model, tmp_path / "l1.onnx", inputs()[0])
    assert check_onnx(pruned, model, inputs()) <= 1e-4  # equal to the pruned PyTorch model
    assert pruned.stat().st_size < full.stat().st_size
    x = inputs()[1]
    with torch.no_grad():
        level1 = model(x)
        model.prune_level = None
        whole = model(x)
    assert not torch.allclose(level1, whole)  # the pruned export is a different network


def test_unet3plus_with_heads_exports_its_gated_logits(tmp_path):
    model = tiny("unet3plus", num_classes=2)
    path = export_onnx(model, tmp_path / "u3p.onnx", inputs()[0])
    session = onnx_session(path)
    assert len(session.get_outputs()) == 1
    # Both branches of the CGM gate: force the classifier to call every image empty/full.
    for bias in (-1e4, 1e4):
        with torch.no_grad():
            model.cgm.conv.bias.fill_(bias)
        path = export_onnx(model, tmp_path / f"u3p{bias}.onnx", inputs()[0])
        assert check_onnx(path, model, inputs()) <= 1e-4


def test_dynamo_exporter_matches_too(tmp_path):
    model = tiny("unet")
    path = export_onnx(model, tmp_path / "unet.onnx", inputs()[0], dynamo=True)
    assert check_onnx(path, model, inputs()) <= 1e-4


@pytest.mark.parametrize("size", [(8, 8), (11, 7), (3, 13), (6, 6)])
def test_exportable_adaptive_pooling_equals_torch(size):
    x = torch.randn(2, 4, *size)
    for bins in (1, 2, 3, 6):
        torch.testing.assert_close(
            AdaptiveAvgPool2dExport(bins)(x), F.adaptive_avg_pool2d(x, bins), rtol=0, atol=1e-6
        )


def test_task_class_resolves_seglab_tasks_only():
    from seglab.inference.export import task_class
    from seglab.tasks import ContextTask, SegmentationTask, UNetFamilyTask

    assert task_class({"_class_path": "seglab.tasks.UNetFamilyTask"}) is UNetFamilyTask
    assert task_class({"_class_path": "seglab.tasks.context.ContextTask"}) is ContextTask
    assert task_class({}) is SegmentationTask
    with pytest.raises(ValueError, match="not a seglab task"):
        task_class({"_class_path": "os.system"})


def test_seglab_export_command_from_a_checkpoint(tmp_path, monkeypatch, capsys):
    from seglab.cli import main, run_cli
    from seglab.tasks import UNetFamilyTask

    monkeypatch.chdir(REPO)
    cli = run_cli(
        [
            "fit",
            "--config",
            "experiments/default.yaml",
            f"--run.root={tmp_path / 'runs'}",
            "--model.class_path=seglab.tasks.UNetFamilyTask",
            "--model.init_args.model=unetplusplus",
            "--model.init_args.model_kwargs={base_channels: 4, depth: 3, deep_supervision: true}",
            "--data.dataset_kwargs={size: 32, num_samples: 8}",
            "--data.batch_size=4",
            "--data.num_workers=0",
            "--trainer.max_epochs=1",
            "--trainer.accelerator=cpu",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
        ]
    )
    ckpt = cli.run_dir / "checkpoints" / "last.ckpt"
    task = load_task(ckpt)
    assert isinstance(task, UNetFamilyTask) and not task.training
    out = tmp_path / "exported"
    main(["export", "--ckpt", str(ckpt), "--out", str(out), "--prune-level", "1"])
    printed = capsys.readouterr().out
    assert "max |diff|" in printed and "argmax agreement" in printed and "torchscript" in printed
    report = json.loads((out / "export.json").read_text())
    assert report["prune_level"] == 1 and report["model"] == "unetplusplus"
    assert report["num_classes"] == 5 and report["task"] == "multiclass"
    for fmt in ("onnx", "torchscript"):
        assert report["files"][fmt]["max_abs_diff"] <= 1e-4
    model = load_task(ckpt).model
    model.prune_level = 1
    x = inputs([(1, 3, 48, 40)])[0]
    (logits,) = onnx_session(out / "unetplusplus.onnx").run(None, {"image": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(logits, model(x).numpy(), atol=1e-4)


def test_compare_reports_relative_error_and_argmax_agreement():
    from seglab.inference.export_checks import compare

    model = tiny("unet")
    x = inputs([(1, 3, 32, 32)])
    with torch.no_grad():
        ref = model(x[0]).numpy()
    shifted = compare(lambda t: model(t).detach().numpy() + 1e-3, model, x)  # argmax unchanged
    assert shifted["max_abs_diff"] == pytest.approx(1e-3, rel=1e-3)
    assert shifted["max_rel_diff"] == pytest.approx(1e-3 / np.abs(ref).max(), rel=1e-3)
    assert shifted["argmax_agreement"] == 1.0
    # Swapping two class channels changes the decision exactly where one of them wins.
    swapped = compare(lambda t: model(t).detach().numpy()[:, [1, 0, 2]], model, x)
    wins = np.isin(ref.argmax(1), [0, 1]).mean()
    assert swapped["argmax_agreement"] == pytest.approx(1 - wins)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_export_of_the_default_checkpoint_writes_everything_and_reports(tmp_path, monkeypatch):
    from seglab.cli import main, run_cli
    from seglab.inference.export import ExportCheckError
    from seglab.inference.export import main as export_main
    from tests.conftest import tiny_args

    monkeypatch.chdir(REPO)
    cli = run_cli(
        ["fit", "--config", "experiments/default.yaml", f"--run.root={tmp_path / 'runs'}",
         "--trainer.max_epochs=1", "--run.num_overlays=0", *tiny_args(8)]
    )  # fmt: skip
    ckpt = cli.run_dir / "checkpoints" / "last.ckpt"
    out = tmp_path / "exported"
    main(["export", "--ckpt", str(ckpt), "--out", str(out), "--height", "64", "--width", "64"])
    report = json.loads((out / "export.json").read_text())
    assert report["passed"] and "validation split of synthetic" in report["checked_on"]
    for fmt in ("onnx", "torchscript"):
        found = report["files"][fmt]
        assert found["max_rel_diff"] <= 1e-4 and found["argmax_agreement"] >= 0.999
        assert found["checked_on"] == "4 real image(s)"
    spec = report["input_spec"]
    assert spec["mean"] == [0.5, 0.5, 0.5] and spec["std"] == [0.25, 0.25, 0.25]
    assert spec["shape"] == ["batch", 3, "height", "width"] and spec["min_size"] == 4
    assert report["class_names"][1] == "disc" and report["opset"] == 17
    assert report["seglab_version"]
    session = onnx_session(out / "unet.onnx")
    assert session.get_outputs()[0].shape == ["batch", 5, "height", "width"]
    # A check that fails still leaves every file, and the report says which failed.
    strict = tmp_path / "strict"
    with pytest.raises(ExportCheckError, match="files are written"):
        export_main(["--ckpt", str(ckpt), "--out", str(strict), "--height", "64",
                     "--width", "64", "--min-agreement", "1.01"])  # fmt: skip
    assert {p.name for p in strict.iterdir()} == {"unet.onnx", "unet.pt", "export.json"}
    assert json.loads((strict / "export.json").read_text())["passed"] is False


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_script_method_scripts_or_says_why_and_names_the_traced_default(tmp_path):
    from seglab.inference.export import export_torchscript

    example = torch.randn(1, 3, 32, 32)
    plain = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU()).eval()
    path = export_torchscript(plain, tmp_path / "plain.pt", example, "script")
    loaded = torch.jit.load(str(path))
    assert isinstance(loaded, torch.jit.ScriptModule)
    assert torch.allclose(loaded(example), plain(example))
    model = create_model("unet", num_classes=2, encoder_name="unet", base_channels=4, depth=3)
    target = tmp_path / "unet.pt"
    with pytest.raises(ValueError, match=r"could not script .*--torchscript-method trace"):
        export_torchscript(model.eval(), target, example, "script")
    assert not target.exists()
