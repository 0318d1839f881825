"""Data, at the bottom of the house: from files to ``{"image", "mask", ...}`` batches.

Holds the LightningDataModule (``datamodule``), the albumentations pipeline from YAML
(``transforms``), the U-Net weight map (``weightmap``), safe file I/O shared by every package
(``io``), the per-sample and per-dataset checks behind ``seglab check-data`` (``checks``), the
dataset readers (``datasets/``) and the CT pipeline (``ct/``). May import ``seglab.data.*`` and
third-party libraries only.
"""
