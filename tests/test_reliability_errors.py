"""Errors that name what failed, each as one clear line (issue 20, group 6).

YAML syntax errors name the user's file and line (not ``<unicode string>`` or a temporary copy),
misspelt keys in an experiment with ``base:`` name the user's file, a truncated ``.nii.gz`` and
a float NIfTI label are named, and a full disk says which file and how much space it needed.
(Empty and truncated checkpoints: ``tests/test_reliability_ckpt.py``.)
"""

from __future__ import annotations

import errno
import gzip
import io
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import seglab.data.io as sio
from seglab.cli import check_data, run_cli
from seglab.cli.config_base import ConfigFileError
from seglab.cli.config_check import ConfigKeyError
from seglab.data.ct.volumes import Case, load_case
from seglab.runs.checkpoint import AtomicCheckpointIO

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "experiments" / "default.yaml"


def test_a_tab_in_a_yaml_file_names_the_file_and_line(tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(f"base: {DEFAULT}\ntrainer:\n\tmax_epochs: 1\n")
    with pytest.raises(ConfigFileError, match=rf"{cfg}, line 3, column 1: .*tab character"):
        run_cli(["fit", "--config", str(cfg)])
    out = io.StringIO()
    assert check_data.run(["--config", str(cfg)], out=out) == 2
    assert f"{cfg}, line 3" in out.getvalue() and "<unicode string>" not in out.getvalue()
    from seglab.cli import main

    with pytest.raises(SystemExit):
        main(["fit", "--config", str(cfg)])
    err = capsys.readouterr().err
    assert f"{cfg}, line 3" in err and "Traceback" not in err


def test_misspelt_keys_of_an_experiment_with_a_base_name_the_users_file(tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(f"base: {DEFAULT}\ntrainer:\n  max_epoch: 1\n")
    with pytest.raises(ConfigKeyError) as err:
        run_cli(["fit", "--config", str(cfg)])
    assert f"'trainer.max_epoch' (in {cfg})" in str(err.value)
    assert "seglab-config-" not in str(err.value)


def nifti(path: Path, data: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


def test_a_truncated_nifti_is_named(tmp_path):
    volume = np.random.default_rng(0).normal(0, 100, (40, 36, 9)).astype(np.float32)
    good = nifti(tmp_path / "image.nii.gz", volume)
    data = good.read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"Cannot read {cut}: EOFError.*truncated"):
        load_case(Case("c", cut, None))
    header_only = tmp_path / "tiny.nii.gz"
    header_only.write_bytes(gzip.compress(b"\0" * 10))
    with pytest.raises(ValueError, match=rf"Cannot read {header_only}"):
        load_case(Case("c", header_only, None))


def test_a_float_nifti_label_is_refused_not_rounded(tmp_path):
    image = nifti(tmp_path / "image.nii.gz", np.zeros((8, 8, 2), np.float32))
    soft = np.zeros((8, 8, 2), np.float32)
    soft[2:4, 2:4] = 0.6
    label = nifti(tmp_path / "label.nii.gz", soft)
    with pytest.raises(ValueError, match=rf"Label file {label} holds non-integer values \(0\.6"):
        load_case(Case("c", image, label))


class FullDisk(io.RawIOBase):
    """A file on a device with ``room`` bytes left: writes beyond fail with ENOSPC."""

    def __init__(self, fd: int, mode: str, room: int) -> None:
        self.fd, self.room, self.n = fd, room, 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self.n + len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.n += len(data)
        return len(data)

    def fileno(self) -> int:
        return self.fd


def test_a_full_disk_names_the_file_and_the_space_needed(tmp_path, monkeypatch):
    room = 4096
    real_fdopen = sio.os.fdopen
    monkeypatch.setattr(sio.os, "fdopen", lambda fd, mode: FullDisk(fd, mode, room))
    monkeypatch.setattr(sio.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1, 1, room))
    target = tmp_path / "checkpoints" / "last.ckpt"
    checkpoint = {"state_dict": {"w": torch.zeros(100_000)}}
    with pytest.raises(OSError, match=rf"No space left .* to write {target}: it needs 39\d\.\d KiB"
                       r", 4\.0 KiB free") as err:  # fmt: skip
        AtomicCheckpointIO().save_checkpoint(checkpoint, target)
    assert err.value.errno == errno.ENOSPC and "\n" not in str(err.value)
    assert not target.exists() and not list(target.parent.iterdir())  # no temporary file left
    monkeypatch.setattr(sio.os, "fdopen", real_fdopen)
    AtomicCheckpointIO().save_checkpoint(checkpoint, target)  # with room: written
    assert target.is_file()
