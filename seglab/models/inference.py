"""Inference helpers: test-time augmentation (scales, flip) and sliding-window tiling.

Every function runs the model in eval mode without gradients (restoring its mode afterwards)
and returns logits ``(B, C, H, W)`` at the input size. Averages are of logits, not of
probabilities: the argmax of averaged logits is what DeepLab and PSPNet evaluations report, and
logits keep the functions composable (apply a softmax to the result for probabilities).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial

import torch
from torch import nn

from seglab.models.blocks import resize_to
from seglab.models.output import main_logits

Forward = Callable[[nn.Module, torch.Tensor], torch.Tensor]


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def plain_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` as logits at the input size."""
    with _eval(model):
        return resize_to(main_logits(model(x)), x)


def predict_tta(
    model: nn.Module,
    x: torch.Tensor,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    forward: Forward | None = None,
) -> torch.Tensor:
    """Multi-scale and horizontal-flip test-time augmentation, averaging logits.

    Args:
        model: Segmentation model.
        x: Images ``(B, in, H, W)``.
        scales: Input scale factors; each view is resized bilinearly, run, and its logits resized
            back to ``H x W``.
        flip: Also run every scale on the left-right mirrored input (and mirror its logits back).
        forward: How one view is run (:func:`plain_forward` by default, or a sliding window).

    Returns:
        Mean logits over the ``len(scales) * (1 + flip)`` views, ``(B, C, H, W)``.
    """
    forward = forward or plain_forward
    height, width = x.shape[-2:]
    total: torch.Tensor | None = None
    views = 0
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        xs = resize_to(x, size)
        for mirrored in (False, True) if flip else (False,):
            view = xs.flip(-1) if mirrored else xs
            out = forward(model, view)
            out = resize_to(out.flip(-1) if mirrored else out, (height, width))
            total = out if total is None else total + out
            views += 1
    if total is None:
        raise ValueError("predict_tta needs at least one scale.")
    return total / views


def _starts(length: int, window: int, step: int) -> list[int]:
    """Window origins covering ``[0, length)``; the last one is flush with the edge."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, step))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def sliding_window(
    model: nn.Module,
    x: torch.Tensor,
    window: Sequence[int] = (512, 512),
    overlap: float = 0.5,
    batch_size: int = 4,
) -> torch.Tensor:
    """Tiles an image with overlapping windows and averages their logits (uniform weights).

    Windows step by ``window * (1 - overlap)``; the last row and column of windows are moved to
    end flush with the image, so the edges are covered without padding. A dimension smaller
    than the window is taken whole.

    Args:
        model: Segmentation model.
        x: Images ``(B, in, H, W)``.
        window: Window ``(h, w)``.
        overlap: Fraction of a window shared with its neighbour, in ``[0, 1)``.
        batch_size: Windows run per forward pass.

    Returns:
        Logits ``(B, C, H, W)``.
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}.")
    height, width = x.shape[-2:]
    wh, ww = min(window[0], height), min(window[1], width)
    sh, sw = max(1, int(wh * (1 - overlap))), max(1, int(ww * (1 - overlap)))
    boxes = [(t, s) for t in _starts(height, wh, sh) for s in _starts(width, ww, sw)]
    total: torch.Tensor | None = None
    count = x.new_zeros(1, 1, height, width)
    for i in range(0, len(boxes), batch_size):
        chunk = boxes[i : i + batch_size]
        tiles = torch.cat([x[..., t : t + wh, s : s + ww] for t, s in chunk])
        logits = plain_forward(model, tiles).split(x.shape[0])
        if total is None:
            total = x.new_zeros(x.shape[0], logits[0].shape[1], height, width)
        for (t, s), tile_logits in zip(chunk, logits):
            total[..., t : t + wh, s : s + ww] += tile_logits
            count[..., t : t + wh, s : s + ww] += 1
    return total / count


TTA_KEYS = ("scales", "flip")
SLIDING_KEYS = ("window", "overlap", "batch_size")


def check_inference_options(tta: dict | None, sliding: dict | None) -> None:
    """Refuses unknown keys of the ``tta`` / ``sliding_window`` options (and bad values).

    Raises:
        ValueError: Naming the option, the unknown key and the valid ones.
    """
    for name, value, keys in (("tta", tta, TTA_KEYS), ("sliding_window", sliding, SLIDING_KEYS)):
        if value is None:
            continue
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be a mapping with keys {keys}, got {value!r}.")
        unknown = sorted(set(value) - set(keys))
        if unknown:
            raise ValueError(f"Unknown {name} key(s) {unknown}; valid keys: {', '.join(keys)}.")
    if sliding is not None and "window" not in sliding:
        raise ValueError("sliding_window needs a window, e.g. {window: [512, 512], overlap: 0.5}.")
    if sliding is not None and not 0 <= float(sliding.get("overlap", 0.5)) < 1:
        raise ValueError(f"sliding_window.overlap must be in [0, 1), got {sliding['overlap']}.")


def infer(
    model: nn.Module,
    x: torch.Tensor,
    tta: dict | None = None,
    sliding: dict | None = None,
) -> torch.Tensor:
    """Inference with optional TTA and sliding window (each TTA view is tiled).

    Args:
        model: Segmentation model.
        x: Images ``(B, in, H, W)``.
        tta: Keyword arguments of :func:`predict_tta` (``scales``, ``flip``), or None.
        sliding: Keyword arguments of :func:`sliding_window` (``window``, ``overlap``,
            ``batch_size``), or None for whole-image inference.

    Returns:
        Logits ``(B, C, H, W)``.
    """
    forward = partial(sliding_window, **sliding) if sliding else plain_forward
    return predict_tta(model, x, forward=forward, **(tta or {}))
