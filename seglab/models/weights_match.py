"""Matching a weights file onto an encoder, tensor by tensor, and judging the match.

Names match up to ``module.``/``model.``/``encoder.``/``backbone.`` prefixes and the ``.`` to
``_`` flattening of timm's feature wrappers; the stem convolution is adapted to the input
channels. :func:`check_report` makes an incomplete match an error (strict, the default) or lets
it pass (``weights_strict: false``, set with :func:`weights_strictness`); a match of nothing is
an error either way.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

_PREFIXES = ("module.", "model.", "encoder.", "backbone.")
_STRICT = contextvars.ContextVar("seglab_weights_strict", default=True)


@contextmanager
def weights_strictness(strict: bool) -> Iterator[None]:
    """Within the block, encoders load weights strictly (default) or partially."""
    token = _STRICT.set(bool(strict))
    try:
        yield
    finally:
        _STRICT.reset(token)


@dataclass
class LoadReport:
    """What loading a state dict into a module matched, and what it did not."""

    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in vars(self).items()}

    def as_dict(self, limit: int = 20) -> dict[str, Any]:
        """Counts plus the first ``limit`` names of each list."""
        return {"counts": self.counts()} | {k: v[:limit] for k, v in vars(self).items() if v}

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


def flat_key(key: str) -> str:
    """A state-dict name with ``.`` as ``_`` (timm's feature wrappers flatten module paths)."""
    return key.replace(".", "_")


def _candidates(key: str) -> Iterator[str]:
    yield key
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if key.startswith(p):
                key = key[len(p) :]
                changed = True
                yield key


def match_state(
    own: dict[str, torch.Tensor],
    state: dict[str, torch.Tensor],
    head: set[str] = frozenset(),
    stem: str | None = None,
    adapt: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """Matches ``state`` onto the module state ``own`` by name.

    Names match up to ``module.``/``model.``/``encoder.``/``backbone.`` prefixes and the ``.``
    to ``_`` flattening of timm's feature wrappers. The stem convolution ``stem`` is adapted to
    the module's input channels with ``adapt`` (timm's ``adapt_input_conv``).

    Args:
        own: The module's ``state_dict()``.
        state: The file's tensors.
        head: Names (normalised) of the full model's tensors that the encoder drops (classifier
            head); they are reported as ignored, not unexpected.
        stem: Name of the stem convolution weight in ``own``.
        adapt: ``(in_channels, weight) -> weight``.
    """
    by_norm = {flat_key(k): k for k in own}
    scoped = any(any(c.startswith("encoder.") for c in _candidates(k)) for k in state)
    out, rep = {}, LoadReport()
    for key, value in state.items():
        target = next(
            (by_norm[flat_key(c)] for c in _candidates(key) if flat_key(c) in by_norm), None
        )
        if target is None:
            outside = scoped and not any(c.startswith("encoder.") for c in _candidates(key))
            norm = [flat_key(c) for c in _candidates(key)]
            ignore = outside or any(n in head for n in norm) or key.endswith("num_batches_tracked")
            (rep.ignored if ignore else rep.unexpected).append(key)
            continue
        want = own[target].shape
        if value.shape != want and target == stem and adapt is not None and value.ndim == 4:
            if value.shape[0] == want[0] and value.shape[2:] == want[2:]:
                value = adapt(want[1], value)
                rep.adapted.append(target)
        if value.shape != want:
            rep.mismatched.append(f"{key} {tuple(value.shape)} vs {target} {tuple(want)}")
            continue
        out[target] = value
        rep.matched.append(target)
    rep.missing = [k for k in own if k not in out and not k.endswith("num_batches_tracked")]
    return out, rep


def check_report(rep: LoadReport, source: str, what: str, strict: bool | None = None) -> None:
    """Raises on an empty match always, and on an incomplete one when strict."""
    strict = _STRICT.get() if strict is None else strict
    if not rep.matched:
        raise ValueError(
            f"No tensor in weights {source} matches {what} ({len(rep.unexpected)} unexpected, "
            f"{len(rep.mismatched)} of another shape); is it a state dict of the same "
            "architecture?"
        )
    if strict and not rep.complete:
        parts = [
            f"{len(v)} {k} (first: {', '.join(v[:3])})"
            for k, v in (("missing", rep.missing), ("unexpected", rep.unexpected))
            if v
        ]
        if rep.mismatched:
            parts.append(f"{len(rep.mismatched)} of another shape: {'; '.join(rep.mismatched[:3])}")
        raise ValueError(
            f"Weights {source} do not fit {what}: {len(rep.matched)} tensors matched, "
            + ", ".join(parts)
            + ". Pass the weights of the same architecture, or load partially with "
            "weights_strict: false (the report is then saved in the run folder)."
        )
