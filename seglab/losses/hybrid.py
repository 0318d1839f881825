"""The U-Net 3+ hybrid loss (Huang et al., 2020): focal + MS-SSIM + IoU.

Each term is a function of logits ``(B, C, H, W)`` and integer targets ``(B, H, W)`` (binary:
one logit channel, targets 0/1). There is no ``ignore_index``: the caller masks, either by
passing ``valid`` (a ``(B, H, W)`` bool map; invalid pixels then get exactly zero gradient) or
by removing pixels beforehand. Everything runs in float32 with autocast off.

MS-SSIM follows Wang, Simoncelli & Bovik (2003)::

    MS-SSIM = l_M ** b_M * prod_{j=1..M} cs_j ** b_j

with ``cs_j`` the mean contrast-structure term at scale ``j`` and ``l_M * cs_M`` the mean SSIM at
the coarsest scale, an 11x11 Gaussian window (sigma 1.5, applied separably) without padding,
2x2 average pooling between scales, ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2`` (``L = 1`` for
probabilities) and the weights ``(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)``. It matches
``torchmetrics.functional.image.multiscale_structural_similarity_index_measure`` wherever that
applies. To work on small images the number of scales adapts: only as many scales are used as
keep the coarsest image at least as large as the window, with the first ``M`` weights
renormalised to sum to 1; below 11 pixels the window itself shrinks to the largest odd size
that fits (its sigma scaled alike). Means of ``cs`` and SSIM are floored at a tiny positive
value before the fractional powers, which keeps gradients finite. Each class channel is its own
image; the loss averages over images and classes.
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MODES = ("binary", "multiclass")
_FLOOR = 1e-6


def probs_and_onehot(
    logits: torch.Tensor, target: torch.Tensor, mode: str = "binary"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities (sigmoid or softmax) and the matching float one-hot target, float32."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    logits = logits.float()
    if mode == "binary":
        return torch.sigmoid(logits), target.reshape(logits.shape).float()
    onehot = F.one_hot(target.long(), logits.shape[1]).permute(0, 3, 1, 2)
    return logits.softmax(dim=1), onehot.float()


def _masked(prob: torch.Tensor, tgt: torch.Tensor, valid: torch.Tensor | None):
    if valid is None:
        return prob, tgt
    v = valid.reshape(prob.shape[0], 1, *prob.shape[2:]).to(prob.dtype)
    return prob * v, tgt * v


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    mode: str = "binary",
    gamma: float = 2.0,
    alpha: float | None = None,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Focal loss (Lin et al., 2017) via ``smp.losses.FocalLoss``, mean over valid pixels.

    Args:
        logits: ``(B, C, H, W)``.
        target: ``(B, H, W)`` class indices (binary: 0/1).
        mode: ``binary`` or ``multiclass``.
        gamma: Focusing parameter.
        alpha: Optional positive-class balance.
        valid: Optional ``(B, H, W)`` bool map of the pixels to score.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    with torch.autocast(device_type=logits.device.type, enabled=False):
        logits = logits.float()
        target = target.reshape(logits.shape[0], *logits.shape[2:])
        if valid is not None:
            logits = logits.permute(1, 0, 2, 3)[:, valid][None, :, None]
            target = target[valid][None, None]
        if mode == "binary":
            target = target.float()
        return smp.losses.FocalLoss(mode, alpha=alpha, gamma=gamma)(logits, target)


def gaussian_window(size: int = 11, sigma: float = 1.5, device=None) -> torch.Tensor:
    """Normalised 2D Gaussian window ``(1, 1, size, size)``, float32."""
    g = _gaussian_1d(size, sigma, device)
    return (g[:, None] * g[None, :])[None, None]


def _gaussian_1d(size: int, sigma: float, device=None) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Valid (unpadded) Gaussian filtering, as two 1D passes: ``size`` taps, not ``size**2``."""
    c, k = x.shape[1], g.numel()
    x = F.conv2d(x, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def _ssim_and_cs(
    x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, c1: float, c2: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and mean contrast-structure per image and channel, ``(B, C)`` each.

    ``g`` is the 1D Gaussian; the 2D window is its outer product (separable filtering).
    """
    b = x.shape[0]
    stats = _blur(torch.cat([x, y, x * x, y * y, x * y]), g).split(b)
    mu_x, mu_y, xx, yy, xy = stats
    var_x = (xx - mu_x**2).clamp_min(0)
    var_y = (yy - mu_y**2).clamp_min(0)
    cov = xy - mu_x * mu_y
    cs = (2 * cov + c2) / (var_x + var_y + c2)
    lum = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return (lum * cs).mean(dim=(-2, -1)), cs.mean(dim=(-2, -1))


def ms_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    weights: tuple[float, ...] = MS_SSIM_WEIGHTS,
) -> torch.Tensor:
    """Multi-scale SSIM per image and channel, ``(B, C)``; see the module docstring.

    Args:
        x: ``(B, C, H, W)`` float images.
        y: Same shape.
        data_range: Value range ``L`` of the images.
        window_size: Gaussian window size at full resolution (shrunk on tiny images).
        sigma: Gaussian standard deviation.
        weights: Per-scale exponents, finest first.
    """
    x, y = x.float(), y.float()
    side = min(x.shape[-2:])
    k = window_size if side >= window_size else max(1, side - (1 - side % 2))
    sig = sigma * k / window_size
    scales = 1
    while scales < len(weights) and side // 2**scales >= k:
        scales += 1
    w = torch.tensor(weights[:scales], dtype=torch.float32, device=x.device)
    if scales < len(weights):
        w = w / w.sum()
    window = _gaussian_1d(k, sig, x.device)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for j in range(scales):
        if j:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        sim, cs = _ssim_and_cs(x, y, window, c1, c2)
        values.append(sim if j == scales - 1 else cs)
    stacked = torch.stack(values).clamp_min(_FLOOR)
    return torch.prod(stacked ** w.view(-1, 1, 1), dim=0)


def ms_ssim_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    mode: str = "binary",
    valid: torch.Tensor | None = None,
    window_size: int = 11,
    sigma: float = 1.5,
    weights: tuple[float, ...] = MS_SSIM_WEIGHTS,
) -> torch.Tensor:
    """``1 - MS-SSIM(probabilities, one-hot target)``, averaged over images and classes.

    0 for a prediction equal to the target, positive otherwise. Invalid pixels (``valid``
    False) are zeroed in both images, so they carry no gradient. ``window_size``, ``sigma`` and
    ``weights`` go to :func:`ms_ssim`.
    """
    with torch.autocast(device_type=logits.device.type, enabled=False):
        prob, tgt = _masked(*probs_and_onehot(logits, target, mode), valid)
        return 1 - ms_ssim(prob, tgt, 1.0, window_size, sigma, weights).mean()


def iou_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    mode: str = "binary",
    valid: torch.Tensor | None = None,
    smooth: float = 1.0,
) -> torch.Tensor:
    """Soft Jaccard loss ``1 - sum(p g) / sum(p + g - p g)`` per image and class, then mean.

    ``smooth`` is added to numerator and denominator so that an empty prediction of an empty
    class costs 0 rather than 0/0.
    """
    with torch.autocast(device_type=logits.device.type, enabled=False):
        prob, tgt = _masked(*probs_and_onehot(logits, target, mode), valid)
        inter = (prob * tgt).sum(dim=(-2, -1))
        union = (prob + tgt - prob * tgt).sum(dim=(-2, -1))
        return (1 - (inter + smooth) / (union + smooth)).mean()


class HybridLoss(nn.Module):
    """Weighted ``focal + ms_ssim + iou`` (U-Net 3+'s hybrid loss).

    Args:
        mode: ``binary`` (one logit channel) or ``multiclass``.
        focal: Weight of the focal term.
        ms_ssim: Weight of the MS-SSIM term.
        iou: Weight of the IoU term.
        gamma: Focal focusing parameter.
    """

    def __init__(
        self,
        mode: str = "binary",
        focal: float = 1.0,
        ms_ssim: float = 1.0,
        iou: float = 1.0,
        gamma: float = 2.0,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
        self.mode, self.gamma = mode, gamma
        self.weights = {"focal": focal, "ms_ssim": ms_ssim, "iou": iou}

    def terms(
        self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Unweighted values of the terms with a non-zero weight."""
        fns = {
            "focal": lambda: focal_loss(logits, target, self.mode, self.gamma, valid=valid),
            "ms_ssim": lambda: ms_ssim_loss(logits, target, self.mode, valid),
            "iou": lambda: iou_loss(logits, target, self.mode, valid),
        }
        return {name: fns[name]() for name, w in self.weights.items() if w}

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Weighted sum of the terms, a float32 scalar."""
        parts = self.terms(logits, target, valid)
        zero = logits.new_zeros((), dtype=torch.float32)
        return sum((self.weights[n] * v for n, v in parts.items()), zero)
