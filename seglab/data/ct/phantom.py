"""A synthetic abdominal CT phantom in the LiTS layout, for running without real data.

Each case is an axial stack ``(z, y, x)`` in Hounsfield units: air outside a body outline with
a subcutaneous fat ring, soft tissue with a smooth texture, a liver-like organ (~60 HU, a
randomly deformed and tapered ellipsoid on the patient's right, present only in a contiguous
range of slices), 0-4 hypodense tumours (20-30 HU) inside it, spleen (~50 HU, left), kidneys
(~30 HU), a fluid-filled stomach (~20 HU), the aorta (~150 HU), the spine and ribs (bone,
300-1000 HU), then mild smoothing and gaussian noise (10-20 HU). Liver and spleen intensities
overlap, as do tumours, kidneys and stomach, so position and shape matter: the task is
learnable, not trivial. Deterministic from ``seed``.

Scale: by default a 4x down-sampled abdominal scan, 48 slices of 5 mm and 128 x 128 pixels of
2.8 mm (a ~30 x 25 cm body, a liver ~15 cm across), so millimetre measures (HD95) and lesion
sizes are those of real CT: tumours are 1-6 cm across (``TUMOUR_RADIUS_MM``) and take ~7 % of
the liver on average (LiTS cases range from none to a few tens of per cent).

Files: ``volume-N.nii.gz`` (int16 HU) and ``segmentation-N.nii.gz`` (uint8: 0 background,
1 liver, 2 tumour), N = 0..n_cases-1, with a RAS affine carrying the spacing, so the canonical
loader returns exactly the generated ``(z, y, x)`` arrays. A ``.complete`` marker (holding the
parameters) is written last; every file is written atomically.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from seglab.data.io import atomic_write

log = logging.getLogger(__name__)

PHANTOM_VERSION = 2
MARKER = ".complete"
TUMOUR_RADIUS_MM = (5.0, 30.0)  # LiTS-like lesions, 1-6 cm across
_FILE_RE = re.compile(r"^(volume|segmentation)-(\d+)\.nii\.gz$")
_announced: set[str] = set()


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int, int], amp: float) -> np.ndarray:
    """Low-frequency random field of roughly ``amp`` standard deviation."""
    coarse = rng.normal(
        0.0, 1.0, (max(2, shape[0] // 6), max(2, shape[1] // 12), max(2, shape[2] // 12))
    )
    zoom = [s / c for s, c in zip(shape, coarse.shape)]
    field = ndimage.zoom(coarse.astype(np.float32), zoom, order=1)[
        : shape[0], : shape[1], : shape[2]
    ]
    return (amp * field / (field.std() + 1e-6)).astype(np.float32)


def make_case(
    rng: np.random.Generator,
    shape: tuple[int, int, int] = (48, 128, 128),
    spacing: tuple[float, float, float] = (5.0, 2.8, 2.8),
) -> tuple[np.ndarray, np.ndarray]:
    """One phantom case: ``(image int16 HU, label uint8)``, both ``(z, y, x)``."""
    d, h, w = shape
    sz, sy, sx = spacing
    z = np.arange(d, dtype=np.float32)[:, None, None]
    # body outline in voxels, centre slightly jittered; v grows anterior, u to patient's right
    cy, cx = h / 2 + rng.normal(0, h * 0.02), w / 2 + rng.normal(0, w * 0.02)
    ay0, ax0 = h * rng.uniform(0.33, 0.39), w * rng.uniform(0.40, 0.46)
    breathe = 1 + rng.uniform(0.02, 0.06) * np.sin(2 * np.pi * z / d + rng.uniform(0, 6.3))
    ay, ax = ay0 * breathe, ax0 * breathe  # (D, 1, 1)
    yy = np.arange(h, dtype=np.float32)[None, :, None]
    xx = np.arange(w, dtype=np.float32)[None, None, :]
    v = (yy - cy) / ay  # (D, H, 1)
    u = (xx - cx) / ax  # (D, 1, W)
    rho2 = u * u + v * v
    body = rho2 <= 1.0
    fat_t = rng.uniform(0.06, 0.12)
    inner = rho2 <= (1.0 - fat_t) ** 2

    img = np.full(shape, -1000.0, np.float32)
    img[body] = -100.0 + rng.normal(0, 5)
    tissue = 40.0 + _smooth_field(rng, shape, 8.0)
    img[inner] = tissue[inner]
    # mesenteric fat between the bowel loops: patches of a second smooth field
    fat = (_smooth_field(rng, shape, 1.0) > rng.uniform(0.6, 1.0)) & inner
    img[fat] = rng.uniform(-110, -80)

    def blob(cu, cv, su, sv, zc, hz, wobble=0.0, taper=0.0, shift=0.0):
        """Deformed ellipsoid in body coordinates; zc, hz in slices."""
        t = (z - zc) / hz
        scale = np.clip(1.0 + taper * t, 0.3, None)
        du = (u - (cu + shift * t)) / (su * scale)
        dv = (v - cv) / (sv * scale)
        r = np.sqrt(du * du + dv * dv + t * t)
        if wobble:
            theta = np.arctan2(dv, du)
            rr = 1.0
            for k in (2, 3, 4):
                rr = rr + rng.uniform(0, wobble) * np.cos(k * theta + rng.uniform(0, 6.3))
            rr = rr + rng.uniform(0, wobble) * np.sin(np.pi * t + rng.uniform(0, 6.3))
            return (r <= rr) & inner
        return (r <= 1.0) & inner

    # other organs (liver is painted over them later)
    kid_z, kid_h = d * rng.uniform(0.25, 0.4), d * rng.uniform(0.15, 0.22)
    for side in (-1, 1):
        kid = blob(
            side * rng.uniform(0.38, 0.5),
            rng.uniform(-0.55, -0.4),
            0.13,
            0.2,
            kid_z + rng.normal(0, 2),
            kid_h,
        )
        img[kid] = rng.uniform(25, 35)
        pelvis = kid & (np.abs(u - side * 0.44) < 0.05) & (v > -0.5)
        img[pelvis] = rng.uniform(0, 12)  # fluid in the renal pelvis
    spl = blob(
        rng.uniform(-0.62, -0.48),
        rng.uniform(-0.35, -0.15),
        rng.uniform(0.14, 0.2),
        rng.uniform(0.22, 0.3),
        d * rng.uniform(0.6, 0.72),
        d * rng.uniform(0.12, 0.18),
        wobble=0.08,
    )
    img[spl] = rng.uniform(45, 56) + (tissue[spl] - 40) * 0.5
    sto = blob(
        rng.uniform(-0.4, -0.2),
        rng.uniform(0.2, 0.45),
        rng.uniform(0.15, 0.22),
        rng.uniform(0.15, 0.22),
        d * rng.uniform(0.55, 0.7),
        d * rng.uniform(0.1, 0.16),
        wobble=0.1,
    )
    img[sto] = rng.uniform(15, 25)
    img[sto & (v > rng.uniform(0.4, 0.5))] = -1000.0  # air at the front of the stomach
    aorta = ((u + rng.uniform(0.05, 0.12)) ** 2 + (v + 0.42) ** 2 <= 0.07**2) & inner
    img[aorta] = rng.uniform(130, 170)

    # bone: vertebra (cortex and cancellous core), spinous process, ribs in some slices
    vb = u * u * (ax / ay) ** 2 + (v + 0.66) ** 2
    r_vb = rng.uniform(0.13, 0.16)
    vert = (vb <= r_vb**2) & body
    img[vert] = rng.uniform(700, 1000)
    img[vb <= (0.7 * r_vb) ** 2] = rng.uniform(250, 350)
    spinous = ((u * ax / ay) ** 2 / 0.05**2 + (v + 0.9) ** 2 / 0.08**2 <= 1.0) & body
    img[spinous] = rng.uniform(500, 800)
    bone = vert | spinous
    rib_r = 1.0 - fat_t - 0.04
    angles = np.deg2rad(np.linspace(-60, 100, 8))
    period_mm, width_mm = rng.uniform(18, 26), rng.uniform(7, 11)
    z_mm = np.arange(d) * sz
    for side in (-1, 1):
        for j, a in enumerate(angles):
            on = ((z_mm + j * 5.0 + rng.uniform(0, period_mm)) % period_mm) < width_mm
            ru, rv = side * rib_r * np.cos(a), rib_r * np.sin(a)
            rib = ((u - ru) ** 2 * (ax / ay) ** 2 + (v - rv) ** 2 <= 0.045**2) & on[:, None, None]
            img[rib] = rng.uniform(500, 900)
            bone |= rib

    # liver on the patient's right, present in a contiguous range of slices
    zc, hz = d * rng.uniform(0.48, 0.62), d * rng.uniform(0.24, 0.33)
    liver = blob(
        rng.uniform(0.38, 0.5),
        rng.uniform(-0.05, 0.15),
        rng.uniform(0.34, 0.44),
        rng.uniform(0.5, 0.62),
        zc,
        hz,
        wobble=0.09,
        taper=rng.uniform(0.15, 0.35),
        shift=rng.uniform(-0.1, 0.1),
    )
    liver &= ~bone
    liver = ndimage.binary_opening(liver, iterations=1)
    label = liver.astype(np.uint8)
    img[liver] = rng.uniform(55, 68) + (tissue[liver] - 40) * 0.5

    idx = np.argwhere(liver)
    zg = np.arange(d, dtype=np.float32)[:, None, None] * sz
    yg = np.arange(h, dtype=np.float32)[None, :, None] * sy
    xg = np.arange(w, dtype=np.float32)[None, None, :] * sx
    for _ in range(int(rng.integers(0, 5)) if len(idx) else 0):
        c = idx[rng.integers(len(idx))] * np.array(spacing)
        r = rng.uniform(*TUMOUR_RADIUS_MM) * rng.uniform(0.8, 1.25, 3)
        tum = ((zg - c[0]) / r[0]) ** 2 + ((yg - c[1]) / r[1]) ** 2 + ((xg - c[2]) / r[2]) ** 2 <= 1
        tum &= liver
        label[tum] = 2
        img[tum] = rng.uniform(20, 30)

    img = ndimage.gaussian_filter(img, sigma=(0.4, 0.7, 0.7))
    noise = ndimage.gaussian_filter(rng.normal(0, 1, shape).astype(np.float32), 0.5)
    img += noise * (rng.uniform(10, 20) / (noise.std() + 1e-6))
    return np.clip(np.rint(img), -1024, 3071).astype(np.int16), label


def _nifti_bytes(array_zyx: np.ndarray, spacing: tuple[float, float, float]) -> bytes:
    sz, sy, sx = spacing
    data = np.ascontiguousarray(array_zyx.transpose(2, 1, 0))  # (x, y, z), RAS
    affine = np.diag([sx, sy, sz, 1.0])
    affine[:3, 3] = -(np.array(data.shape) - 1) / 2 * np.array([sx, sy, sz])
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm")
    img.header.set_slope_inter(1.0, 0.0)
    return gzip.compress(img.to_bytes(), compresslevel=1, mtime=0)


def _params(n_cases, shape, spacing, seed) -> dict:
    return {
        "version": PHANTOM_VERSION,
        "n_cases": int(n_cases),
        "shape": [int(s) for s in shape],
        "spacing": [float(s) for s in spacing],
        "seed": int(seed),
    }


def generate_phantom(
    out_dir: str | os.PathLike,
    n_cases: int = 12,
    shape: tuple[int, int, int] = (48, 128, 128),
    spacing: tuple[float, float, float] = (5.0, 2.8, 2.8),
    seed: int = 0,
) -> Path:
    """Writes the phantom in the LiTS layout; does nothing when it is already complete.

    Args:
        out_dir: Destination folder (created).
        n_cases: Number of cases.
        shape: ``(z, y, x)`` voxels per case.
        spacing: ``(z, y, x)`` voxel size in mm.
        seed: Case ``i`` is drawn from ``np.random.default_rng([seed, i])``.

    Returns:
        ``out_dir``.
    """
    if n_cases < 1:
        raise ValueError(f"n_cases must be at least 1, got {n_cases}.")
    out = Path(out_dir).expanduser()
    params = _params(n_cases, shape, spacing, seed)
    marker = out / MARKER
    names = [(f"volume-{i}.nii.gz", f"segmentation-{i}.nii.gz") for i in range(n_cases)]
    if marker.is_file():
        try:
            done = json.loads(marker.read_text()) == params
        except (OSError, json.JSONDecodeError):
            done = False
        if done and all((out / a).is_file() and (out / b).is_file() for a, b in names):
            return out
    out.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    for i, (vol_name, seg_name) in enumerate(names):
        image, label = make_case(np.random.default_rng([seed, i]), tuple(shape), tuple(spacing))
        vb, sb = _nifti_bytes(image, spacing), _nifti_bytes(label, spacing)
        atomic_write(out / vol_name, lambda f, b=vb: f.write(b))
        atomic_write(out / seg_name, lambda f, b=sb: f.write(b))
    keep = {n for pair in names for n in pair}
    for p in out.iterdir():  # leftovers of an earlier, larger phantom in the same folder
        if _FILE_RE.match(p.name) and p.name not in keep:
            p.unlink()
    atomic_write(marker, lambda f: f.write(json.dumps(params)), mode="w")
    return out


def ensure_phantom(
    cache_dir: str | os.PathLike | None = None,
    n_cases: int = 12,
    shape: tuple[int, int, int] = (48, 128, 128),
    spacing: tuple[float, float, float] = (5.0, 2.8, 2.8),
    seed: int = 0,
) -> Path:
    """The phantom folder ``<cache_dir>/<params-hash>``, generated on first use.

    Args:
        cache_dir: Parent folder; default ``$SEGLAB_CACHE/phantom`` or ``~/.cache/seglab/phantom``.
        n_cases, shape, spacing, seed: As in :func:`generate_phantom`.
    """
    from seglab.data.ct.cache import default_cache_dir

    params = _params(n_cases, shape, spacing, seed)
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    base = Path(cache_dir).expanduser() if cache_dir else default_cache_dir("phantom")
    out = generate_phantom(base / key, n_cases, shape, spacing, seed)
    if str(out) not in _announced:
        _announced.add(str(out))
        log.warning(
            "No data root given: generated a synthetic CT phantom (%d cases) at %s; pass "
            "--data.root=/path/to/LiTS to train on real data.",
            n_cases,
            out,
        )
    return out
