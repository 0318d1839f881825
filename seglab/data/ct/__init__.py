"""The CT pipeline: NIfTI volumes to 2D/2.5D training slices and back.

Holds case discovery (``cases``), canonical orientation and windowing (``volumes``), the slice
dataset (``slices``), the memory-mapped preprocessing cache (``cache``), label resampling aligned
with the image (``resample``) and the liver phantom (``phantom``). May import ``seglab.data.io`` and
``seglab.data.datasets.base`` only.
"""
