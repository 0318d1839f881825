"""What DeepLab v2, v3 and v3+ follow: references, counts and deviations (``seglab models
--fidelity``), registered with their builders in :mod:`seglab.models.deeplab`."""

from __future__ import annotations

from seglab.models.context_heads import ATROUS_DEVIATION
from seglab.models.registry import Deviation, Fidelity

_POOL_NORM = Deviation(
    "BatchNorm in the image-pooling branch (the paper, torchvision, smp); the first round had none",
    "pool_norm=bn|gn|None",
)
_AUX = Deviation("PSPNet-style auxiliary head on the stage before the last", "aux_head=True")
_V1_5 = "timm's ResNet-101 is v1.5 (stride in the 3x3 conv); "
FIDELITY_V2 = Fidelity(
    reference="Chen et al. 2017 (TPAMI); Caffe DeepLab-v2 ResNet-101 (ASPP-L)",
    settings={"num_classes": 21},
    params_source="no count published",
    deviations=(
        Deviation(
            "no multi-scale input fusion (MSC) and no dense CRF; multi-scale and flip "
            "averaging exist at evaluation only",
            "task tta={scales, flip}",
            "the CRF is post-processing outside the network",
        ),
        Deviation(
            _V1_5 + "the Caffe MSRA ResNet-101 strides its first 1x1 conv (same parameters)",
            "encoder_name",
        ),
        ATROUS_DEVIATION,
    ),
)
FIDELITY_V3 = Fidelity(
    reference="Chen et al. 2017 (arXiv:1706.05587); count: torchvision deeplabv3_resnet101",
    settings={"num_classes": 21, "output_stride": 8, "multi_grid": None},
    params=58_630_997,
    params_source="torchvision 0.29.1 deeplabv3_resnet101(weights=None, num_classes=21, "
    "aux_loss=False); its head adds classifier.1 (3x3 conv 256->256, 589,824) and "
    "classifier.2 (BN, 512): the 590,336 seglab does not have",
    deviations=(
        Deviation(
            "torchvision's head (the count reference) adds a 3x3 conv-BN-ReLU after the ASPP "
            "projection (classifier.1.weight, classifier.2.weight/bias: 590,336 parameters); "
            "the paper, and seglab, go from the 1x1 projection to the classifier",
            "-",
        ),
        Deviation(
            "output stride 8 (rates 12/24/36) with multi-grid (1, 2, 4) on ResNets: the paper's "
            "evaluation stride, and torchvision's, mmsegmentation's and smp's (torchvision without "
            "multi-grid); the paper trains at stride 16 (rates 6/12/18)",
            "output_stride=16",
            "measured: on ISBI 2012 at stride 16 the 16x up-sampled scores lose the thin "
            "membranes, seglab's and smp's alike (smp at stride 16 too); at 8 seglab is above "
            "smp (benchmarks/RESULTS.md, sections quality and quality-deeplabv3-os16)",
        ),
        Deviation(_V1_5 + "the paper's TF ResNet is v1 (same parameters)", "encoder_name"),
        _POOL_NORM,
        _AUX,
        ATROUS_DEVIATION,
    ),
)
FIDELITY_V3PLUS = Fidelity(
    reference="Chen et al. 2018 (ECCV); TF models/research/deeplab, xception_65",
    settings={"num_classes": 21},
    params_source="no count published",
    deviations=(
        Deviation(
            "timm's xception65 (aligned Xception of the paper) as the encoder; its stride-4 "
            "level feeds the decoder",
            "encoder_name",
        ),
        _POOL_NORM,
        _AUX,
        ATROUS_DEVIATION,
    ),
)
