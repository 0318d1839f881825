"""Jaccard, Tversky, Lovasz and pixel-weighted CE against brute-force values in the test.

The references are written from the definitions (sums over pixels, sets for the Lovasz
extension), not from smp's code: SegLoss calls smp, so smp itself would not be an independent
value. Every case has ignored pixels, which the reference simply leaves out.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seglab.losses import SegLoss

IGNORE = 255


def sample(classes: int = 3, batch: int = 2, size: int = 5, seed: int = 0):
    """Logits, a target with a few ignored pixels and one class absent from image 1."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, size, size, generator=g) * 2
    target = torch.randint(0, classes, (batch, size, size), generator=g)
    target[1][target[1] == classes - 1] = 0  # the last class is absent from image 1
    target[0, 0, :3] = IGNORE
    target[1, 4, 1:] = IGNORE
    return logits, target


def valid_pixels(logits: torch.Tensor, target: torch.Tensor, i: int):
    """Image ``i``'s softmax probabilities ``(N, C)`` and labels ``(N,)``, ignored pixels out."""
    keep = target[i] != IGNORE
    probs = logits[i].softmax(0).permute(1, 2, 0)[keep].double().numpy()
    return probs, target[i][keep].numpy()


def region_reference(logits, target, score) -> float:
    """Per image: ``1 - score(tp, fp, fn)`` per class present, 0 for an absent class, mean over
    classes; then the mean over images."""
    per_image = []
    for i in range(logits.shape[0]):
        p, t = valid_pixels(logits, target, i)
        losses = []
        for c in range(p.shape[1]):
            g = (t == c).astype(np.float64)
            tp, fp, fn = (p[:, c] * g).sum(), (p[:, c] * (1 - g)).sum(), ((1 - p[:, c]) * g).sum()
            losses.append((1 - score(tp, fp, fn)) if g.sum() > 0 else 0.0)
        per_image.append(np.mean(losses))
    return float(np.mean(per_image))


def test_jaccard_value():
    logits, target = sample()
    loss, _ = SegLoss({"jaccard": 1.0}, "multiclass", 3, ignore_index=IGNORE)(logits, target)
    expected = region_reference(logits, target, lambda tp, fp, fn: tp / (tp + fp + fn))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_tversky_value_with_alpha_and_beta():
    logits, target = sample(seed=1)
    kwargs = {"tversky": {"alpha": 0.3, "beta": 0.7}}
    crit = SegLoss({"tversky": 1.0}, "multiclass", 3, ignore_index=IGNORE, term_kwargs=kwargs)
    loss, _ = crit(logits, target)
    expected = region_reference(logits, target, lambda tp, fp, fn: tp / (tp + 0.3 * fp + 0.7 * fn))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # alpha = beta = 0.5 is the Dice score: the two terms agree
    dice = SegLoss({"dice": 1.0}, "multiclass", 3, ignore_index=IGNORE)(logits, target)[0]
    half = SegLoss({"tversky": 1.0}, "multiclass", 3, ignore_index=IGNORE)(logits, target)[0]
    assert half.item() == pytest.approx(dice.item(), rel=1e-5)


def lovasz_extension(errors: np.ndarray, fg: np.ndarray) -> float:
    """The Lovasz extension of the Jaccard set loss at ``errors``, from its definition:
    ``sum_k (e_(k) - e_(k+1)) * D(S_k)`` with ``S_k`` the ``k`` largest errors and
    ``D(M) = |M| / |G u M|`` (``G`` the foreground pixels), computed with Python sets."""
    order = sorted(range(len(errors)), key=lambda j: -errors[j])
    ground = {j for j in range(len(fg)) if fg[j]}
    e = [errors[j] for j in order] + [0.0]
    total, chosen = 0.0, set()
    for k, j in enumerate(order):
        chosen.add(j)
        total += (e[k] - e[k + 1]) * len(chosen) / len(ground | chosen)
    return total


def test_lovasz_softmax_value():
    logits, target = sample(seed=2)
    loss, _ = SegLoss({"lovasz": 1.0}, "multiclass", 3, ignore_index=IGNORE)(logits, target)
    # seglab pools the valid pixels of the batch (per_image=False); classes absent are skipped
    keep = target != IGNORE
    p = logits.softmax(1).permute(0, 2, 3, 1)[keep].double().numpy()
    t = target[keep].numpy()
    per_class = [
        lovasz_extension(np.abs((t == c) - p[:, c]), t == c) for c in range(3) if (t == c).any()
    ]
    assert loss.item() == pytest.approx(float(np.mean(per_class)), rel=1e-5)


def test_wce_uses_the_pixel_weights():
    logits, target = sample(seed=3)
    weight = torch.rand(target.shape, generator=torch.Generator().manual_seed(4)) * 3
    crit = SegLoss({"wce": 1.0}, "multiclass", 3, ignore_index=IGNORE, class_weights=[1, 2, 0.5])
    loss, _ = crit(logits, target, weight)
    keep = target != IGNORE
    logp = logits.double().log_softmax(1).permute(0, 2, 3, 1)[keep]
    t = target[keep]
    ce = -logp[torch.arange(len(t)), t]
    cw = torch.tensor([1, 2, 0.5], dtype=torch.float64)[t]
    expected = (cw * weight[keep].double() * ce).sum() / cw.sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # weights of 1 everywhere give the class-weighted CE
    ones, _ = crit(logits, target, torch.ones_like(weight))
    ce_only, _ = SegLoss(
        {"ce": 1.0}, "multiclass", 3, ignore_index=IGNORE, class_weights=[1, 2, 0.5]
    )(logits, target)
    assert ones.item() == pytest.approx(ce_only.item(), rel=1e-6)


def test_wce_without_a_weight_map_is_refused_in_training():
    logits, target = sample()
    crit = SegLoss({"wce": 1.0}, "multiclass", 3, ignore_index=IGNORE)
    with pytest.raises(ValueError, match="needs a weight map: set data.weight_map"):
        crit(logits, target)
