"""Data: dataset readers, the albumentations pipeline and the LightningDataModule."""
