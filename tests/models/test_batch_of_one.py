"""Every registered model: trains on a batch of 2 and evaluates a batch of 1 at an odd size."""

from __future__ import annotations

import pytest
import torch

from seglab.models import create_model, list_models, main_logits

TINY = {
    "unet": dict(base_channels=4, depth=3),
    "resunet": dict(base_channels=4, depth=3),
    "mobileunet": dict(encoder_name="mobilenetv2_050"),
    "effunet": dict(encoder_name="efficientnet_b0"),
    "unetplusplus": dict(base_channels=4, depth=3, deep_supervision=True),
    "unet3plus": dict(base_channels=4, depth=3, cat_channels=4, deep_supervision=True, cgm=True),
    "fcn32s": dict(encoder_name="resnet18", fc_channels=16),
    "fcn16s": dict(encoder_name="resnet18", fc_channels=16),
    "fcn8s": dict(encoder_name="resnet18", fc_channels=16),
    "deeplabv2": dict(encoder_name="resnet18"),
    "deeplabv3": dict(encoder_name="resnet18", channels=16),
    "deeplabv3plus": dict(encoder_name="resnet18", channels=16, low_level_channels=8),
    "pspnet": dict(encoder_name="resnet18", channels=16),
    "denseaspp": dict(encoder_name="resnet18", reduce_channels=16, growth=8),
}


def test_table_covers_every_registered_model():
    assert set(TINY) == set(list_models())


@pytest.mark.parametrize("name", sorted(TINY))
def test_train_batch_two_eval_batch_one(name):
    torch.manual_seed(0)
    model = create_model(name, 3, **TINY[name]).train()
    out = model(torch.randn(2, 3, 64, 64))
    main_logits(out).sum().backward()
    model.eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 67, 93))
    assert isinstance(logits, torch.Tensor) and logits.shape == (1, 3, 67, 93)
