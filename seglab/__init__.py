"""seglab: classic semantic segmentation architectures on timm encoders, trained with Lightning."""

__version__ = "0.1.0"
