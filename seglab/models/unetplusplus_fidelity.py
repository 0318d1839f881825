"""What U-Net++ follows: reference, count and deviations (``seglab models --fidelity``),
registered with its builder in :mod:`seglab.models.unetplusplus`."""

from __future__ import annotations

from seglab.models.registry import Deviation, Fidelity

UNETPLUSPLUS_FIDELITY = Fidelity(
    reference=(
        "Zhou, Rahman Siddiquee, Tajbakhsh & Liang 2018, UNet++ (DLMIA), Table 1; "
        "Keras code MrGiovanni/UNetPlusPlus"
    ),
    settings={"encoder_name": "unet", "in_channels": 3, "num_classes": 1, "norm": None},
    params=9_040_000,
    params_source="Table 1 (9.04M, with and without deep supervision); seglab: 9,042,177",
    deviations=(
        Deviation(
            "BatchNorm after every conv (9,045,825 parameters); the reference's units have none",
            "norm=None",
            "trains reliably at the learning rates of the other architectures",
        ),
        Deviation(
            "no dropout inside the units (the reference's standard_unit drops 0.5 after each conv)",
            "-",
            "BatchNorm regularises; dropout after every conv slows convergence",
        ),
        Deviation(
            "deep supervision off by default (the paper trains with it for pruning and "
            "ensembling; the network and its 9.04M are the same)",
            "deep_supervision=true",
            "the plain model is the cheaper default; pruning and ensembling need the flag",
        ),
    ),
)
