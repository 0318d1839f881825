"""The synthetic CT phantom: determinism, anatomy, layout, idempotence, speed."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest

from seglab.data.ct.phantom import ensure_phantom, generate_phantom, make_case
from seglab.data.ct.volumes import find_cases, load_case


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> tuple[Path, float]:
    out = tmp_path_factory.mktemp("phantom") / "default"
    t0 = time.perf_counter()
    generate_phantom(out)  # the defaults: 12 cases of 48 x 128 x 128
    return out, time.perf_counter() - t0


def test_generation_time_and_layout(phantom):
    root, seconds = phantom
    assert seconds < 20.0  # about 2 s on a free core; generous for shared CI machines
    cases = find_cases(root)
    assert [c.case_id for c in cases] == [f"volume-{i}" for i in range(12)]
    vol = load_case(cases[0])
    assert vol.image.shape == vol.label.shape == (48, 128, 128)
    assert vol.spacing == pytest.approx((5.0, 2.8, 2.8))
    assert (root / ".complete").is_file()


def test_deterministic_from_seed(tmp_path):
    a1, l1 = make_case(np.random.default_rng([0, 3]), (16, 48, 48))
    a2, l2 = make_case(np.random.default_rng([0, 3]), (16, 48, 48))
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(l1, l2)
    kw = dict(n_cases=2, shape=(12, 40, 40), spacing=(3.0, 1.0, 1.0))
    x = [load_case(c) for c in find_cases(generate_phantom(tmp_path / "x", seed=5, **kw))]
    y = [load_case(c) for c in find_cases(generate_phantom(tmp_path / "y", seed=5, **kw))]
    z = [load_case(c) for c in find_cases(generate_phantom(tmp_path / "z", seed=6, **kw))]
    for a, b in zip(x, y):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.label, b.label)
    assert not np.array_equal(x[0].image, z[0].image)


def test_labels_and_hu_ranges(phantom):
    root, _ = phantom
    tumour_cases, burdens = 0, []
    for case in find_cases(root):
        vol = load_case(case)
        img, lab = vol.image, vol.label
        assert set(np.unique(lab)) <= {0, 1, 2}
        liver_z = np.flatnonzero((lab >= 1).reshape(lab.shape[0], -1).any(1))
        assert 0 < len(liver_z) < lab.shape[0]  # some slices have no liver
        assert np.array_equal(liver_z, np.arange(liver_z[0], liver_z[-1] + 1))  # contiguous
        liver_side = np.argwhere(lab >= 1)[:, 2].mean()
        assert liver_side > lab.shape[2] / 2  # patient's right = growing x (RAS)
        assert -1030 <= img[:, :3, :3].mean() <= -970  # air in the corners
        assert 45 <= img[lab == 1].mean() <= 75
        assert img.max() > 400  # bone
        if (lab == 2).any():
            tumour_cases += 1
            assert 10 <= img[lab == 2].mean() <= 40 < img[lab == 1].mean()
        noise = img[lab == 1].std()
        assert 5 < noise < 40
        burdens.append((lab == 2).sum() / (lab >= 1).sum())
        # a real abdomen: ~30 cm across at the header spacing, liver 10-25 cm wide
        width_mm = np.ptp(np.argwhere(img[lab.shape[0] // 2] > -500)[:, 1]) * vol.spacing[2]
        assert 220 < width_mm < 380
    assert tumour_cases >= 2
    assert 0.02 < np.mean(burdens) < 0.15  # tumour share of the liver: LiTS-like, not dominant


def test_idempotent_and_marker(tmp_path):
    kw = dict(n_cases=2, shape=(8, 32, 32))
    out = generate_phantom(tmp_path / "p", **kw)
    stamp = (out / "volume-0.nii.gz").stat().st_mtime_ns
    assert generate_phantom(out, **kw) == out
    assert (out / "volume-0.nii.gz").stat().st_mtime_ns == stamp  # skipped
    (out / ".complete").unlink()  # as after a crash half-way: regenerate
    generate_phantom(out, **kw)
    assert (out / ".complete").is_file()
    generate_phantom(out, n_cases=1, shape=(8, 32, 32))  # other parameters: rewritten, no leftovers
    assert [c.case_id for c in find_cases(out)] == ["volume-0"]


def test_ensure_phantom_uses_cache_env(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SEGLAB_CACHE", str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING, logger="seglab.data.ct.phantom"):
        out = ensure_phantom(n_cases=1, shape=(8, 32, 32))
    assert out.parent == tmp_path / "cache" / "phantom"
    assert "No data root given: generated a synthetic CT phantom (1 cases)" in caplog.text
    assert "--data.root=/path/to/LiTS" in caplog.text
    assert (
        ensure_phantom(cache_dir=tmp_path / "other", n_cases=1, shape=(8, 32, 32)).parent
        == tmp_path / "other"
    )
