"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer and Darrell, 2015) on VGG-16.

VGG-16's classifier becomes convolutional: fc6 is a 7x7 conv to 4096 (padding 3), fc7 a 1x1
conv 4096 -> 4096, both with ReLU and dropout 0.5; ``score_fr`` gives class scores at stride 32.
FCN-16s adds scores of pool4 (stride 16) to the 2x up-sampled stride-32 scores, FCN-8s also
those of pool3. As in the paper, the 2x up-samplers are transposed convs initialised to bilinear
interpolation and learned, the final one is fixed bilinear interpolation
(``learn_upsampling="intermediate"``; ``"none"`` fixes all, as the released Caffe models do;
``"all"`` learns all, the first round). As in the reference all-at-once model
(``voc-fcn8s-atonce``), pool4 and pool3 are scaled by fixed 0.01 and 0.0001 before their score
layers (``skip_scales``), so that the zero-initialised skips start small when every stage
trains at once. timm's VGG features are taken before each max-pool (relu3_3 at 1/4, relu4_3 at
1/8), so with ``pool_skips`` pool3/pool4 are recomputed by a 2x2 max-pool of the level at half
the skip's stride; other encoders use their level at the skip's stride directly.

fc6 starts with only its centre tap (``fc_init="centre"``; ``"random"``: all taps): trained on
crops, its 7x7 taps beyond the crop's small stride-32 map would otherwise keep random values
that a whole image then reads (see ``seglab.models.blocks.centre_tap_init_``).

An input whose sides are not multiples of 32 is zero-padded at the bottom and right to the
next multiple and the scores are cropped back (``odd_size="pad"``; Caffe padded by 100 and
cropped), so that no image is stretched; ``odd_size="resize"`` resizes the scores instead
(the first round).

At 21 classes FCN-8s has 134,376,863 parameters: VGG-16's convs with fc6 and fc7 134,260,544,
score_fr 86,037, the pool4/pool3 scores 10,773 + 5,397 and the two learned 2x up-samplers
14,112. With ``learn_upsampling="none"`` it has 134,362,751, the learned blobs of the Caffe
``voc-fcn8s-atonce`` model (its fixed deconvolutions and Scale blobs are constants here).
"""

from __future__ import annotations

from collections.abc import Sequence

from seglab.models.context_heads import context_encoder
from seglab.models.fcn_head import FCNHead, FCNModel
from seglab.models.registry import Deviation, Fidelity, register


def _build_fcn(
    skip_strides: tuple[int, ...],
    num_classes: int,
    in_channels: int,
    encoder_name: str,
    weights: str | None,
    output_stride: int,
    pool_skips: bool | None,
    fc_channels: int,
    fc_kernel: int,
    dropout: float,
    skip_scales: Sequence[float] | None,
    learn_upsampling: str,
    odd_size: str,
    fc_init: str,
) -> FCNModel:
    if output_stride != 32:
        raise ValueError(
            f"FCN fuses skips at strides 16 and 8 of a stride-32 net; output_stride must be 32, "
            f"got {output_stride}. Use DeepLab or PSPNet for dilated encoders."
        )
    encoder = context_encoder(encoder_name, in_channels, output_stride, weights)
    if pool_skips is None:
        pool_skips = encoder_name.startswith("vgg")
    head = FCNHead(
        encoder.channels,
        encoder.reductions,
        num_classes,
        skip_strides,
        pool_skips,
        fc_channels,
        fc_kernel,
        dropout,
        skip_scales,
        learn_upsampling,
    )
    return FCNModel(encoder, head, odd_size, fc_init)


#: The first round: every up-sampler learned, no skip scaling, odd sizes resized.
#: Up to version 2, fc6 started with every tap random.
LEGACY = {
    1: {"learn_upsampling": "all", "skip_scales": None, "odd_size": "resize"},
    2: {"fc_init": "random"},
}
LEGACY_32S = {1: {"learn_upsampling": "all", "odd_size": "resize"}, 2: {"fc_init": "random"}}
_VGG_CONVS = "VGG-16's 13 convs, fc6 (7x7) and fc7: 134,260,544"
_COMMON = (
    Deviation(
        "fc6 (7x7) starts with only its centre tap (the other 48 taps 0); the paper's fc6 came "
        "from VGG's ImageNet classifier",
        "fc_init=random",
        "trained on crops, fc6 reads a 2x2 stride-32 map (64-pixel crops): taps beyond it get no "
        "gradient and keep random values that a whole image's larger map then reads; whole-"
        "image and tiled scores disagreed (issue 15, tests/models/test_crop_whole.py)",
    ),
    Deviation(
        "fc6 is padded by 3 and odd inputs are zero-padded at the bottom/right to a multiple "
        "of 32, where Caffe pads the image by 100 and crops with offsets",
        "odd_size=pad|resize",
        "any input size without the 100-pixel margin's extra compute",
    ),
)
_SKIPS = (
    Deviation(
        "skips read a 2x2 max-pool of timm's pre-pool VGG levels (same values as pool3/pool4)",
        "pool_skips",
        "timm's VGG features precede each pool",
    ),
    Deviation(
        "the 2x up-samplers are learned and the final one fixed (the paper); the released "
        "Caffe models fix all; the first round learned all",
        "learn_upsampling=intermediate|none|all",
    ),
    Deviation(
        "fixed skip scaling 0.01 (pool4) / 0.0001 (pool3) of the all-at-once reference, "
        "used since seglab trains every variant at once",
        "skip_scales=None drops it",
    ),
)
_FINAL = (
    Deviation(
        "the final up-sampler is fixed bilinear (paper and Caffe); the first round learned it",
        "learn_upsampling=none|all",
    ),
)


def _fidelity(variant: str, params: int, scores: str) -> Fidelity:
    return Fidelity(
        reference=f"Long et al. 2015 (CVPR); Caffe voc-{variant}",
        settings={"num_classes": 21, "learn_upsampling": "none"},
        params=params,
        params_source=f"learned blobs of Caffe voc-{variant} at 21 classes: {_VGG_CONVS}, "
        f"{scores}; its bilinear deconvolutions (lr_mult 0) are fixed buffers here",
        deviations=_COMMON + (_FINAL if variant == "fcn32s" else _SKIPS),
    )


@register(
    "fcn32s",
    legacy=LEGACY_32S,
    fidelity=_fidelity("fcn32s", 134_346_581, "score_fr 86,037"),
)
def build_fcn32s(
    num_classes: int,
    in_channels: int = 3,
    encoder_name: str = "vgg16",
    weights: str | None = None,
    output_stride: int = 32,
    fc_channels: int = 4096,
    fc_kernel: int = 7,
    dropout: float = 0.5,
    learn_upsampling: str = "none",
    odd_size: str = "pad",
    fc_init: str = "centre",
) -> FCNModel:
    """FCN-32s: stride-32 scores up-sampled 32x, fixed bilinear (``learn_upsampling="all"``
    learns it). FCN-32s has no skips, so no ``pool_skips`` or ``skip_scales``."""
    if learn_upsampling not in ("none", "all"):
        raise ValueError(
            f"FCN-32s has only the final up-sampler: learn_upsampling must be 'none' (fixed, "
            f"the paper) or 'all' (learned), got {learn_upsampling!r}."
        )
    args = (num_classes, in_channels, encoder_name, weights, output_stride, False)
    opts = (fc_channels, fc_kernel, dropout, None, learn_upsampling, odd_size, fc_init)
    return _build_fcn((), *args, *opts)


@register(
    "fcn16s",
    legacy=LEGACY,
    fidelity=_fidelity("fcn16s", 134_357_354, "score_fr 86,037, score_pool4 10,773"),
)
def build_fcn16s(
    num_classes: int,
    in_channels: int = 3,
    encoder_name: str = "vgg16",
    weights: str | None = None,
    output_stride: int = 32,
    pool_skips: bool | None = None,
    fc_channels: int = 4096,
    fc_kernel: int = 7,
    dropout: float = 0.5,
    skip_scales: Sequence[float] | None = (0.01,),
    learn_upsampling: str = "intermediate",
    odd_size: str = "pad",
    fc_init: str = "centre",
) -> FCNModel:
    """FCN-16s: pool4 scores (scaled by ``skip_scales[0]``) fused, then 16x up-sampling."""
    args = (num_classes, in_channels, encoder_name, weights, output_stride, pool_skips)
    opts = (fc_channels, fc_kernel, dropout, skip_scales, learn_upsampling, odd_size, fc_init)
    return _build_fcn((16,), *args, *opts)


@register(
    "fcn8s",
    legacy=LEGACY,
    fidelity=_fidelity(
        "fcn8s-atonce",
        134_362_751,
        "score_fr 86,037, score_pool4 10,773, score_pool3 5,397",
    ),
)
def build_fcn8s(
    num_classes: int,
    in_channels: int = 3,
    encoder_name: str = "vgg16",
    weights: str | None = None,
    output_stride: int = 32,
    pool_skips: bool | None = None,
    fc_channels: int = 4096,
    fc_kernel: int = 7,
    dropout: float = 0.5,
    skip_scales: Sequence[float] | None = (0.01, 0.0001),
    learn_upsampling: str = "intermediate",
    odd_size: str = "pad",
    fc_init: str = "centre",
) -> FCNModel:
    """FCN-8s: pool4 and pool3 scores (scaled by ``skip_scales``) fused, then 8x up-sampling."""
    args = (num_classes, in_channels, encoder_name, weights, output_stride, pool_skips)
    opts = (fc_channels, fc_kernel, dropout, skip_scales, learn_upsampling, odd_size, fc_init)
    return _build_fcn((16, 8), *args, *opts)
