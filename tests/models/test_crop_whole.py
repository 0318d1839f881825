"""Trained on crops, every architecture scores a whole image as it scores the image's tiles.

Each architecture (tiny widths) trains for a few dozen steps on 64-pixel crops of a fixed
pattern (blobs whose class is the sign of a smooth field, visible in the image through noise),
then predicts a 256-pixel test image whole and in 64-pixel tiles. The two Dice scores must agree
within 2 points, and the tiled score must show that the model learned the pattern.

Written for the collapse of the first round's crop-trained DeepLab heads on whole images
(their atrous taps that a crop's small feature map never reaches kept random initial values,
which a whole image's larger map then reads; see ``seglab.models.blocks.centre_tap_init_``).
The Dice test alone is not a guard of it: with ``centre_tap_init_`` made a no-op, deeplabv3
and deeplabv3plus still pass it here (the pattern is solved locally, through the 1x1 branch and
the low-level features, and the collapse measured on ISBI needs longer training).
The FCNs had the same problem in fc6 (7x7 taps beyond a 64-pixel crop's 2x2 stride-32 map);
``test_crop_trained_fcn_scores_whole_image_as_tiles`` covers them.
``test_whole_image_brings_the_statistics_the_head_learned`` guards the mechanism itself: the
BatchNorm after an atrous depthwise conv sees on a whole image ~70x the variance it learned on
crops with random off-centre taps, and ~4x with ``atrous_init="centre"``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seglab.models import create_model, list_models, main_logits

CROP, TEST, STEPS, BATCH = 64, 256, 40, 8
RESNET = "test_resnet"  # timm's 0.4M-parameter ResNet: dilation, multi-grid, every stride
TINY = {
    "unet": dict(encoder_name=RESNET),  # the timm path, decoded to full resolution
    "resunet": dict(base_channels=4, depth=3),
    "mobileunet": dict(encoder_name="test_efficientnet"),
    "effunet": dict(encoder_name="test_efficientnet"),
    "unetplusplus": dict(base_channels=4, depth=3),
    "unet3plus": dict(base_channels=4, depth=3, cat_channels=4),
    "fcn32s": dict(encoder_name=RESNET, fc_channels=16),
    "fcn16s": dict(encoder_name=RESNET, fc_channels=16),
    "fcn8s": dict(encoder_name=RESNET, fc_channels=16),
    "deeplabv2": dict(encoder_name=RESNET),
    "deeplabv3": dict(encoder_name=RESNET, channels=16),
    "deeplabv3plus": dict(encoder_name=RESNET, channels=16, low_level_channels=8),
    "pspnet": dict(encoder_name=RESNET, channels=16),
    "denseaspp": dict(encoder_name=RESNET, reduce_channels=16, growth=8),
}


#: The FCNs have their own test below: in this budget they stay near the trivial score (Dice
#: 0.67 for "all foreground"), so the "learned the pattern" bound cannot hold for them.
FCNS = ["fcn16s", "fcn32s", "fcn8s"]
PARAMS = sorted(set(TINY) - set(FCNS))


def pattern(size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``(1, 3, size, size)`` image and its ``(size, size)`` mask: blobs about 20 px across."""
    gen = torch.Generator().manual_seed(seed)
    field = torch.randn(1, 1, size // 16, size // 16, generator=gen)
    field = F.interpolate(field, size=(size, size), mode="bicubic", align_corners=False)
    mask = (field[0, 0] > 0).long()
    noise = 0.5 * torch.randn(1, 3, size, size, generator=gen)
    return field.expand(1, 3, size, size) + noise, mask


def dice(pred: torch.Tensor, mask: torch.Tensor) -> float:
    inter = ((pred == 1) & (mask == 1)).sum().item()
    return 2 * inter / max(1, (pred == 1).sum().item() + (mask == 1).sum().item())


def predict_tiled(model: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    """Argmax of each non-overlapping ``CROP`` tile, predicted on its own."""
    out = torch.zeros(image.shape[-2:], dtype=torch.long)
    for a in range(0, image.shape[-2], CROP):
        for b in range(0, image.shape[-1], CROP):
            out[a : a + CROP, b : b + CROP] = model(image[..., a : a + CROP, b : b + CROP])[
                0
            ].argmax(0)
    return out


def test_table_covers_every_registered_model():
    assert set(TINY) == set(list_models())


@pytest.mark.parametrize("name", PARAMS)
def test_crop_trained_model_scores_whole_image_as_tiles(name):
    model = crop_train(name)
    test_image, test_mask = pattern(TEST, seed=3)
    with torch.no_grad():
        whole = dice(model(test_image)[0].argmax(0), test_mask)
        tiled = dice(predict_tiled(model, test_image), test_mask)
    assert tiled > 0.7, f"{name} did not learn the pattern (tiled Dice {tiled:.3f})"
    assert abs(whole - tiled) <= 0.02, f"{name}: whole-image Dice {whole:.3f}, tiled {tiled:.3f}"


def crop_train(name: str, steps: int = STEPS, **options) -> torch.nn.Module:
    """``name`` (tiny widths, ``options`` added) after ``steps`` Adam steps on 64-pixel crops."""
    torch.manual_seed(0)
    model = create_model(name, 2, **TINY[name], **options)
    image, mask = pattern(512, seed=1)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    gen = torch.Generator().manual_seed(2)
    model.train()
    for _ in range(steps):
        ys, xs = torch.randint(0, 512 - CROP + 1, (2, BATCH), generator=gen)
        xb = torch.cat([image[..., y : y + CROP, x : x + CROP] for y, x in zip(ys, xs)])
        yb = torch.stack([mask[y : y + CROP, x : x + CROP] for y, x in zip(ys, xs)])
        loss = F.cross_entropy(main_logits(model(xb)), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def head_variance_ratios(model: torch.nn.Module, image: torch.Tensor) -> dict[str, float]:
    """Per head BatchNorm: largest ratio of a channel's variance on ``image`` to its running
    variance (what the BatchNorm learned on the training crops)."""
    ratios: dict[str, float] = {}
    hooks = []
    for name, m in model.head.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d):

            def hook(mod, inputs, _out, name=name):
                var = inputs[0].var(dim=(0, 2, 3))
                ratios[name] = (var / (mod.running_var + mod.eps)).max().item()

            hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        model(image)
    for h in hooks:
        h.remove()
    return ratios


def test_whole_image_brings_the_statistics_the_head_learned():
    """DeepLab v3+'s ASPP: on a whole image (16x16 map at stride 16) the atrous depthwise convs
    read taps that the 64-pixel crops (4x4 maps) never reached; those taps must not carry
    untrained values into BatchNorms calibrated on the crops."""
    test_image, _ = pattern(TEST, seed=3)
    ratios = head_variance_ratios(crop_train("deeplabv3plus"), test_image)
    worst = max(ratios, key=ratios.get)
    assert ratios[worst] < 20, f"{worst}: whole-image variance {ratios[worst]:.1f}x the crops'"


def test_the_statistics_guard_catches_random_atrous_taps():
    """The guard above has teeth: with the papers' random initialisation of every tap (the
    first round's behaviour), the same training gives a ratio far above its bound."""
    test_image, _ = pattern(TEST, seed=3)
    ratios = head_variance_ratios(crop_train("deeplabv3plus", atrous_init="random"), test_image)
    assert max(ratios.values()) > 40, ratios


def whole_minus_tiled(model: torch.nn.Module) -> float:
    """Whole-image Dice minus tiled Dice on the test image, in points."""
    test_image, test_mask = pattern(TEST, seed=3)
    with torch.no_grad():
        whole = dice(model(test_image)[0].argmax(0), test_mask)
        tiled = dice(predict_tiled(model, test_image), test_mask)
    return 100 * (whole - tiled)


@pytest.mark.parametrize("name", FCNS)
def test_crop_trained_fcn_scores_whole_image_as_tiles(name):
    """fc6's 7x7 taps beyond a 64-pixel crop's 2x2 stride-32 map start at 0 (``fc_init``):
    whole image and tiles agree within 2 points. Measured once in this setting with
    ``fc_init="random"``: -4.2 (FCN-32s), -18.3 (FCN-16s) and -7.8 (FCN-8s) points."""
    gap = whole_minus_tiled(crop_train(name))
    assert abs(gap) <= 2, f"{name}: whole - tiled Dice {gap:+.1f} points"


def test_the_fcn_test_catches_random_fc6_taps():
    gap = whole_minus_tiled(crop_train("fcn16s", fc_init="random"))
    assert abs(gap) > 5, f"whole - tiled Dice {gap:+.1f} points"
