"""Old checkpoints keep loading: ``defaults_version=1`` rebuilds the first round's networks.

``tests/fixtures/first_round_signatures.json`` holds, for every architecture with its default
encoder and with ResNet-18, the tensor names and shapes (count and hash) of the network the
first round built by default, recorded from that code. A default that changes must register the
old value with ``@register(name, legacy={1: {...}})``, or this test fails.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from seglab.models import create_model

SIGNATURES = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "first_round_signatures.json").read_text()
)


def signature(model) -> dict[str, object]:
    items = sorted((k, tuple(v.shape)) for k, v in model.state_dict().items())
    return {"tensors": len(items), "sha1": hashlib.sha1(repr(items).encode()).hexdigest()[:16]}


@pytest.mark.parametrize("key", sorted(SIGNATURES))
def test_version_1_defaults_rebuild_the_first_round_network(key):
    name, encoder = key.split("|")
    model = create_model(name, 2, None if encoder == "default" else encoder, 3, defaults_version=1)
    assert signature(model) == SIGNATURES[key], f"{key}: register the old default as legacy"
