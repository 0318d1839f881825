"""CT data as people have it: one folder per case, nnU-Net raw, headers without a spacing."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from seglab.data.ct.volumes import find_cases, load_case
from seglab.runs.folder import spacing_note

SPACED = np.diag([0.8, 0.8, 2.5, 1.0])


def save(path: Path, affine: np.ndarray = SPACED, label: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.zeros((8, 8, 4), np.uint8 if label else np.float32)
    data[2:5, 2:5, 1:3] = 1 if label else 100.0
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def test_one_folder_per_case(tmp_path):
    for case in ("patient_2", "patient_10"):
        save(tmp_path / case / "image.nii.gz")
        save(tmp_path / case / "label.nii.gz", label=True)
    cases = find_cases(tmp_path)
    assert [c.case_id for c in cases] == ["patient_2", "patient_10"]
    assert cases[0].image_path.name == "image.nii.gz" and cases[0].label_path.name == "label.nii.gz"
    (tmp_path / "patient_10" / "label.nii.gz").unlink()
    with pytest.raises(ValueError, match=r"patient_10/image.nii.gz has no label"):
        find_cases(tmp_path)


def test_nnunet_raw_layout(tmp_path):
    for case in ("liver_001", "liver_002"):
        save(tmp_path / "imagesTr" / f"{case}_0000.nii.gz")
        save(tmp_path / "labelsTr" / f"{case}.nii.gz", label=True)
    cases = find_cases(tmp_path)
    assert [c.case_id for c in cases] == ["liver_001", "liver_002"]
    assert cases[1].image_path.name == "liver_002_0000.nii.gz"
    assert cases[1].label_path.name == "liver_002.nii.gz"
    vol = load_case(cases[0])
    assert vol.label.sum() == 3 * 3 * 2 and vol.spacing == (2.5, 0.8, 0.8) and vol.spacing_known
    save(tmp_path / "imagesTr" / "liver_001_0001.nii.gz")  # a second channel: not CT
    with pytest.raises(ValueError, match="channel 0001 of nnU-Net case 'liver_001'"):
        find_cases(tmp_path)


def test_msd_and_lits_names_still_pair(tmp_path):
    save(tmp_path / "imagesTr" / "liver_3.nii.gz")
    save(tmp_path / "labelsTr" / "liver_3.nii.gz", label=True)
    save(tmp_path / "batch1" / "volume-7.nii")
    save(tmp_path / "batch2" / "segmentation-7.nii", label=True)
    assert [c.case_id for c in find_cases(tmp_path)] == ["liver_3", "volume-7"]


def test_identity_affine_warns_and_the_summary_says_unknown(tmp_path):
    save(tmp_path / "a" / "image.nii.gz", affine=np.eye(4))
    save(tmp_path / "a" / "label.nii.gz", affine=np.eye(4), label=True)
    save(tmp_path / "b" / "image.nii.gz")
    save(tmp_path / "b" / "label.nii.gz", label=True)
    cases = find_cases(tmp_path)
    with pytest.warns(UserWarning, match=r"a/image.nii.gz: the affine is the identity"):
        vol = load_case(cases[0])
    assert not vol.spacing_known and vol.spacing == (1.0, 1.0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_case(cases[1]).spacing_known
    trainer = SimpleNamespace(
        datamodule=SimpleNamespace(datasets={"val": SimpleNamespace(cases=cases)})
    )
    assert spacing_note(trainer) == {"spacing": "unknown", "spacing_unknown_cases": ["a"]}
    trainer.datamodule.datasets["val"].cases = cases[1:]
    assert spacing_note(trainer) == {"spacing": "mm, from the NIfTI headers"}
    trainer.datamodule.datasets = {"val": SimpleNamespace()}  # not CT: nothing said
    assert spacing_note(trainer) == {}
