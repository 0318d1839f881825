"""Losses: ``SegLoss`` is a weighted sum of named terms; every term masks the ignore index first.

May import ``seglab.losses.*`` and third-party libraries only.
"""

from seglab.losses.core import LOSS_TERMS, SegLoss

__all__ = ["LOSS_TERMS", "SegLoss"]
