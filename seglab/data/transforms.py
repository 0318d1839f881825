"""Albumentations pipelines declared in YAML.

A pipeline is a list of ``{name: <albumentations class>, **kwargs}`` entries; ``OneOf`` and
``SomeOf`` take a nested ``transforms`` list. Image, mask and weight map are transformed
together (the weight map as a mask target, so it is never blended across labels).

Masks are resized with ``cv2.INTER_NEAREST_EXACT`` where a transform accepts it (``Resize``,
``RandomScale``, ...) unless an entry sets ``mask_interpolation``:
albumentations' default, ``cv2.INTER_NEAREST``, samples ``floor(i * in / out)`` in ``Resize``
and its kin and so shifts the mask by up to half a pixel against the bilinearly resized image.
"""

from __future__ import annotations

import difflib
import inspect
import random
from typing import Any

import albumentations as A
import cv2
import numpy as np


def _build(spec: dict[str, Any]) -> A.BasicTransform:
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(
            f"Each transform needs a 'name' key, e.g. {{name: HorizontalFlip}}; got {spec!r}."
        )
    kwargs = dict(spec)
    name = kwargs.pop("name")
    cls = getattr(A, name, None)
    if cls is None or not isinstance(cls, type):
        names = [n for n in dir(A) if n[:1].isupper()]
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown albumentations transform {name!r}.{hint}")
    if "transforms" in kwargs:
        kwargs["transforms"] = [_build(t) for t in kwargs["transforms"]]
    params = inspect.signature(cls.__init__).parameters
    if "mask_interpolation" in params and "mask_interpolation" not in kwargs:
        try:
            return cls(**kwargs, mask_interpolation=cv2.INTER_NEAREST_EXACT)
        except (TypeError, ValueError):
            pass  # warps (Affine, elastic) take only the classic flags; their nearest is exact
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"Bad arguments for albumentations.{name}: {err}") from None


def build_transforms(specs: list[dict[str, Any]] | None) -> A.Compose | None:
    """Builds an ``A.Compose`` from a YAML list, or None for an empty list."""
    if not specs:
        return None
    return A.Compose([_build(s) for s in specs], additional_targets={"weight": "mask"})


def seed_transform(transform: Any, seed: int) -> None:
    """Seeds an albumentations pipeline with one random stream that all its transforms share.

    ``Compose.set_random_seed`` gives every transform a generator of its own with the *same*
    seed, so the transforms draw the same numbers: two flips of equal ``p`` always fire
    together, and a crop's position follows the flips. One shared pair of generators
    (``set_random_state``) keeps the draws independent and the pipeline a function of ``seed``.
    Pipelines without ``set_random_state`` fall back to ``set_random_seed``; others are left
    alone.
    """
    if hasattr(transform, "set_random_state"):
        transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
        transform.seed = seed
    elif hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)
