"""Input validation: every bad input of the reliability list is fed in and its message checked.

Each error must name the file (or key) and say how to fix it, and come before training starts:
from the reader, from ``seglab check-data`` (all problems of a data set at once), from the
``DataCompatibility`` guard (task against data at setup), or from the config-key check.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from seglab.cli import check_data as checks
from seglab.data.checks import Problem, check_dataset, check_sample
from seglab.data.datamodule import SegDataModule
from seglab.data.datasets.base import get_dataset_class
from seglab.runs.guards import DataCompatibility, check_batch_labels, check_data_compatibility
from seglab.tasks import SegmentationTask
from tests.conftest import write_folder_dataset

Folder = get_dataset_class("folder")
REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = {"base_channels": 4, "depth": 3}


def only(problems: list[Problem], kind: str) -> list[Problem]:
    return [p for p in problems if p.kind.startswith(kind)]


def run_check_data(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = checks.run(list(argv), out=out)
    return code, out.getvalue()


def folder_config(tmp_path: Path, root: Path, **model: object) -> Path:
    init = {"model": "unet", "num_classes": 3, "model_kwargs": TINY_MODEL} | model
    cfg = {
        "model": {"class_path": "seglab.tasks.SegmentationTask", "init_args": init},
        "data": {
            "dataset": "folder",
            "root": str(root),
            "num_workers": 0,
            "dataset_kwargs": {"val_fraction": 0.0},
        },
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


# ------------------------------------------------------------------- data root and pairs
def test_missing_data_root(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"Data root .*nope does not exist. Point data.root"
    ):
        Folder(tmp_path / "nope", "train")
    code, report = run_check_data("--config", str(folder_config(tmp_path, tmp_path / "nope")))
    assert code == 1 and report.count("nope does not exist. Point data.root") == 1


def test_empty_data_root_and_empty_images_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"No images/ folder under .*empty"):
        Folder(tmp_path / "empty", "train")
    (tmp_path / "empty" / "images").mkdir()
    (tmp_path / "empty" / "masks").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty/images holds no images"):
        Folder(tmp_path / "empty", "train")
    code, report = run_check_data("--config", str(folder_config(tmp_path, tmp_path / "empty")))
    assert code == 1 and "holds no images" in report


def test_image_without_mask_and_mask_without_image(tmp_path):
    root = write_folder_dataset(tmp_path / "d", n=3)
    (root / "images" / "img0.png").rename(root / "images" / "lonely.png")
    with pytest.raises(
        FileNotFoundError,
        match=r"images without mask \['lonely'\], masks without image \['img0'\]. Add or remove",
    ):
        Folder(root, "train")


# ---------------------------------------------------------------------- per-file problems
@pytest.fixture
def bad_folder(tmp_path) -> Path:
    """Eight pairs: six kinds of broken file, two good ones."""
    root = write_folder_dataset(tmp_path / "bad", n=8, classes=3)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "masks" / "img0.png")  # size
    Image.fromarray(np.full((40, 44), 7, np.uint8)).save(root / "masks" / "img1.png")  # values
    Image.fromarray(np.full((40, 44), 255, np.uint8)).save(root / "masks" / "img2.png")
    data = (root / "images" / "img3.png").read_bytes()
    (root / "images" / "img3.png").write_bytes(data[: len(data) // 2])  # truncated
    (root / "images" / "img4.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # corrupt
    Image.fromarray(np.zeros((20, 44, 3), np.uint8)).save(root / "images" / "img5.png")
    Image.fromarray(np.zeros((20, 44), np.uint8)).save(root / "masks" / "img5.png")  # too small
    return root


def test_check_dataset_reports_every_bad_file(bad_folder):
    ds = Folder(bad_folder, "train", val_fraction=0.0)
    problems = check_dataset(ds, num_classes=3, ignore_index=None, in_channels=3, min_size=32)
    by_file = {Path(p.file.split(" + ")[0]).name: p for p in problems}
    assert set(by_file) == {f"img{i}.png" for i in range(6)}
    assert re.search(
        r"img0.png is \(40, 44\) but mask .*img0.png is \(10, 10\).*same size",
        by_file["img0.png"].problem,
    )
    assert "mask values [7] are outside [0, 3)" in by_file["img1.png"].problem
    assert "num_classes to at least 8" in by_file["img1.png"].fix
    assert "mask values [255]" in by_file["img2.png"].problem
    assert "ignore_index: 255" in by_file["img2.png"].fix and "mask_map" in by_file["img2.png"].fix
    assert "img3.png" in by_file["img3.png"].problem and "truncated" in by_file["img3.png"].problem
    assert "img4.png" in by_file["img4.png"].problem and "corrupt" in by_file["img4.png"].problem
    assert "20x44 (HxW), smaller than 32" in by_file["img5.png"].problem
    assert "PadIfNeeded" in by_file["img5.png"].fix
    # the ignore index is honoured: 255 is no longer a problem
    again = check_dataset(ds, num_classes=3, ignore_index=255, in_channels=3, min_size=32)
    assert "img2.png" not in {Path(p.file.split(" + ")[0]).name for p in again}


def test_check_data_command_prints_a_full_report(tmp_path, bad_folder, capsys):
    cfg = folder_config(tmp_path, tmp_path / "elsewhere")
    with pytest.raises(SystemExit) as exit_info:
        from seglab.cli import main

        main(
            [
                "check-data",
                "--config",
                str(cfg),
                f"--data.root={bad_folder}",
                "--min-size=32",
                "--splits=train",
            ]
        )
    assert exit_info.value.code == 1
    report = capsys.readouterr().out
    assert "7 problem(s) found" in report  # the six files, and their mixed sizes (fit's scan)
    for i in range(6):
        assert f"img{i}.png" in report
    for kind in ("[mask values] 2 file(s)", "[too small] 1 file(s)", "[mixed sizes]", "fix:"):
        assert kind in report


def test_check_data_on_clean_data_exits_zero(tmp_path):
    root = write_folder_dataset(tmp_path / "good", n=4, size=(40, 44), classes=3)
    code, report = run_check_data("--config", str(folder_config(tmp_path, root)), "--splits=train")
    assert code == 0 and "No problems found." in report
    assert "split train: 4 item(s) checked, 0 problem(s)" in report


def test_palette_colour_not_in_the_class_list(tmp_path):
    root = write_folder_dataset(tmp_path / "p", n=2)
    mask = np.zeros((40, 44, 3), np.uint8)
    mask[:5] = [255, 0, 0]
    mask[30, 30] = [1, 2, 3]
    for p in (root / "masks").iterdir():
        Image.fromarray(mask).save(p)
    ds = Folder(root, "train", palette=[[0, 0, 0], [255, 0, 0]], val_fraction=0.0)
    problems = check_dataset(ds, num_classes=2, in_channels=3)
    assert len(problems) == 2
    assert all(
        re.search(
            r"Mask .*img\d.png has colours \[\(1, 2, 3\)\] that are not in "
            r"data.palette; add them",
            p.problem,
        )
        for p in problems
    )


def test_transforms_that_fail_on_a_file_are_reported(tmp_path):
    root = write_folder_dataset(tmp_path / "t", n=2, size=(40, 44))
    dm = SegDataModule(
        "folder",
        str(root),
        {"val_fraction": 0.0},
        num_workers=0,
        train_transforms=[{"name": "RandomCrop", "height": 64, "width": 64}],
    )
    problems = check_dataset(dm.make_dataset("train", train=True), 3, None, 3, min_size=16)
    assert len(problems) == 2 and all(p.kind == "transforms" for p in problems)
    assert "pad before cropping" in problems[0].fix


# ------------------------------------------------------------------ channels and bit depth
def _single_pair(tmp_path: Path, image: np.ndarray, name: str = "a") -> Path:
    root = tmp_path / "c"
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    Image.fromarray(image).save(root / "images" / f"{name}.png")
    Image.fromarray(np.zeros(image.shape[:2], np.uint8)).save(root / "masks" / f"{name}.png")
    return root


def test_sixteen_bit_greyscale_for_a_three_channel_model_is_converted_by_rule(tmp_path):
    img = np.array([[0, 1000], [40000, 65535]], np.uint16).repeat(16, 0).repeat(16, 1)
    root = _single_pair(tmp_path, img)
    x = Folder(root, "train", channels=3, val_fraction=0.0)[0]["image"]
    assert x.shape == (3, 32, 32)
    assert torch.equal(x[0], x[1]) and torch.equal(x[0], x[2])  # replicated, not mixed
    expected = torch.from_numpy(img.astype(np.float32) / 65535.0)
    assert torch.allclose(x[0], expected)  # full 16-bit range kept, not truncated to 8 bits


def test_greyscale_for_a_three_channel_model_is_converted_by_rule(tmp_path):
    img = np.arange(32 * 32, dtype=np.uint32).reshape(32, 32).astype(np.uint8)
    x = Folder(_single_pair(tmp_path, img), "train", channels=3, val_fraction=0.0)[0]["image"]
    assert x.shape == (3, 32, 32) and torch.equal(x[0], x[2])
    assert torch.allclose(x[1], torch.from_numpy(img / 255.0).float())


def test_rgb_for_a_four_channel_model_is_refused(tmp_path):
    root = _single_pair(tmp_path, np.zeros((32, 32, 3), np.uint8))
    ds = Folder(root, "train", channels=4, val_fraction=0.0)
    with pytest.raises(
        ValueError,
        match=r"a.png has 3 channels but the model expects 4; set "
        r"model.in_channels",
    ):
        ds.load(0)


def test_check_sample_reports_channels_against_the_model():
    sample = {"image": np.zeros((32, 32), np.uint8), "mask": np.zeros((32, 32), np.int64)}
    (problem,) = check_sample(sample, "x.png", 2, None, in_channels=3)
    assert problem.kind == "channels" and "1 channel(s) but the model expects in_channels=3" in (
        problem.problem
    )
    assert "data.dataset_kwargs.channels: 3" in problem.fix


def test_thirty_two_bit_images_are_not_silently_wrapped(tmp_path):
    root = tmp_path / "c"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(np.full((32, 32), 70000, np.int32)).save(root / "images" / "a.tif")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "masks" / "a.png")
    ds = Folder(root, "train", channels=1, val_fraction=0.0)
    message = (
        r"a.tif is a 32-bit integer image with values 70000..70000, outside 0..65535; "
        r"rescale it to 8 or 16 bits"
    )
    with pytest.raises(ValueError, match=message):
        ds.load(0)
    (problem,) = check_dataset(ds, num_classes=2, in_channels=1)  # check-data reports it too
    assert re.search(message, problem.problem + " " + problem.fix)
    # in range, a 32-bit image keeps its values (scaled like 16 bits), nothing wrapped
    Image.fromarray(np.full((32, 32), 40000, np.int32)).save(root / "images" / "a.tif")
    x = Folder(root, "train", channels=1, val_fraction=0.0)[0]["image"]
    assert torch.allclose(x, torch.full((1, 32, 32), 40000 / 65535))


# --------------------------------------------------------------- task against the data
@pytest.fixture(scope="module")
def synthetic_dm() -> SegDataModule:
    dm = SegDataModule("synthetic", dataset_kwargs={"size": 32, "num_samples": 4}, num_workers=0)
    dm.setup("fit")
    return dm


def task(**kw) -> SegmentationTask:
    args = {"model": "unet", "num_classes": 5, "model_kwargs": TINY_MODEL} | kw
    return SegmentationTask(**args)


def test_num_classes_of_model_and_data_disagree(synthetic_dm):
    check_data_compatibility(task(), synthetic_dm)  # 5 and 5: fine
    with pytest.raises(
        ValueError,
        match=r"The model predicts 3 class\(es\) .* but the data set has "
        r"num_classes=5. Fix: set model.init_args.num_classes: 5",
    ):
        check_data_compatibility(task(num_classes=3), synthetic_dm)
    # a model with more classes than the data trains (some classes unseen): a warning
    with pytest.warns(UserWarning, match=r"predicts 7 class\(es\) .* num_classes=5"):
        check_data_compatibility(task(num_classes=7), synthetic_dm)
    with pytest.raises(ValueError, match=r"predicts 7 class\(es\)"):
        check_data_compatibility(task(num_classes=7), synthetic_dm, strict_classes=True)
    with pytest.raises(ValueError, match=r"task='binary'.*num_classes=5.*use task: multiclass"):
        check_data_compatibility(task(num_classes=1, task="binary"), synthetic_dm)


def test_num_classes_disagreement_stops_fit_before_training(tmp_path, monkeypatch):
    from seglab.cli import run_cli

    monkeypatch.chdir(REPO)
    args = [
        "fit",
        "--config",
        "experiments/default.yaml",
        f"--run.root={tmp_path}",
        "--model.init_args.model_kwargs={base_channels: 4, depth: 3}",
        "--model.init_args.num_classes=3",
        "--model.init_args.class_names=null",  # the experiment names 5 classes
        "--data.dataset_kwargs={size: 32, num_samples: 8}",
        "--data.num_workers=0",
        "--trainer.max_epochs=1",
        "--trainer.callbacks+=seglab.runs.guards.DataCompatibility",
    ]
    with pytest.raises(ValueError, match=r"predicts 3 class\(es\).*num_classes=5"):
        run_cli(args)
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("metrics.csv"))


def test_ignore_index_of_data_missing_in_model(synthetic_dm, monkeypatch):
    ds = synthetic_dm.datasets["train"]
    monkeypatch.setattr(ds, "ignore_index", 255)
    with pytest.raises(ValueError, match=r"marks pixels to ignore with 255.*ignore_index: 255"):
        check_data_compatibility(task(), synthetic_dm)
    check_data_compatibility(task(ignore_index=255), synthetic_dm)


def test_image_channels_disagree_with_the_model(synthetic_dm):
    with pytest.raises(
        ValueError,
        match=r"first train image \(train_00000\) has 3 channel\(s\) but "
        r"the model expects model.init_args.in_channels=1",
    ):
        check_data_compatibility(task(in_channels=1), synthetic_dm)


def test_input_too_small_for_the_encoder_depth():
    dm = SegDataModule("synthetic", dataset_kwargs={"size": 8, "num_samples": 2}, num_workers=0)
    dm.setup("fit")
    deep = task(model_kwargs={"base_channels": 4, "depth": 5})  # total stride 16
    with pytest.raises(
        ValueError,
        match=r"is 8x8 \(HxW\), smaller than 16 pixels, the total "
        r"stride .* PadIfNeeded, min_height: 16",
    ):
        check_data_compatibility(deep, dm)
    guard = DataCompatibility()
    guard._min_size = 16
    batch = {"image": torch.zeros(2, 3, 8, 12), "meta": {"name": ["a", "b"]}}
    with pytest.raises(ValueError, match=r"batch input \(a, b\) is 8x12"):
        guard._check(deep, batch)


def test_batch_labels_out_of_range_name_the_files():
    mask = torch.zeros(3, 4, 4, dtype=torch.long)
    mask[1, 0, 0], mask[2, 1, 1], mask[2, 2, 2] = 9, 255, -1
    batch = {"mask": mask, "meta": {"name": ["ok.png", "nine.png", "neg.png"]}}
    with pytest.raises(ValueError, match=r"nine.png: values \[9\]; neg.png: values \[-1\]"):
        check_batch_labels(batch, num_classes=5, ignore_index=255)
    mask[1, 0, 0], mask[2, 2, 2] = 0, 0
    check_batch_labels(batch, num_classes=5, ignore_index=255)


# ------------------------------------------------------------------------- config keys
def test_misspelt_keys_in_a_config_file_get_the_closest_name(tmp_path):
    from seglab.cli.config_check import suggest_unknown_keys

    cfg = tmp_path / "typo.yaml"
    cfg.write_text(
        "trainer: {max_epoch: 1}\n"
        "model:\n  init_args: {lerning_rate: 0.1, model_kwargs: {base_channel: 4}}\n"
        "data: {batchsize: 4, dataset_kwargs: {num_sample: 3}}\n"
        "run: {rot: runs}\n"
    )
    messages = "\n".join(suggest_unknown_keys(cfg))
    for wrong, right in [
        ("trainer.max_epoch", "trainer.max_epochs"),
        ("model.init_args.lerning_rate", "model.init_args.lr"),
        ("model.init_args.model_kwargs.base_channel", "model.init_args.model_kwargs.base_channels"),
        ("data.batchsize", "data.batch_size"),
        ("data.dataset_kwargs.num_sample", "data.dataset_kwargs.num_samples"),
        ("run.rot", "run.root"),
    ]:
        pattern = rf"Unknown config key '{re.escape(wrong)}' \(in {re.escape(str(cfg))}[;)].*?"
        assert re.search(pattern + rf"Did you mean '{re.escape(right)}'", messages), wrong


def test_misspelt_keys_on_the_command_line_are_refused(monkeypatch):
    from seglab.cli.config_check import ConfigKeyError, check_cli_args

    good = [
        "fit",
        "--config",
        str(REPO / "experiments" / "default.yaml"),
        "--trainer.callbacks+=seglab.runs.guards.DataCompatibility",
        "--model.lr=0.1",
        "--ckpt_path",
        "last",
        "--data.dataset_kwargs={size: 32, num_samples: 8}",
    ]
    check_cli_args(good)
    # argparse would take --trainer.max_epoch as an abbreviation of max_epochs; we refuse it
    with pytest.raises(
        ConfigKeyError,
        match=r"'trainer.max_epoch' \(in the command line\). Did "
        r"you mean 'trainer.max_epochs'",
    ) as err:
        check_cli_args([*good, "--trainer.max_epoch=1", "--dat.root=/x"])
    assert "Unknown config key 'dat' (in the command line). Did you mean 'data'?" in str(err.value)


def test_every_shipped_experiment_config_has_only_known_keys():
    from seglab.cli.config_base import expand_configs
    from seglab.cli.config_check import cli_unknown_keys

    files = sorted(p for p in (REPO / "experiments").glob("*.yaml") if p.name != "base.yaml")
    assert files
    problems = []
    for f in files:
        problems += cli_unknown_keys(["fit", *expand_configs(["--config", str(f)])])
    assert not problems, "\n".join(problems)


def test_switching_the_reader_on_the_command_line_says_how_to_replace_the_files_options():
    from seglab.cli.config_check import cli_unknown_keys

    base = ["fit", "--config", str(REPO / "experiments" / "default.yaml")]
    switched = [*base, "--data.dataset=folder", "--data.root=/x"]
    (message,) = cli_unknown_keys(switched)
    assert "Unknown config key 'data.dataset_kwargs.size' (in " in message
    assert "default.yaml; reader 'folder')" in message
    tip = "pass it whole: --data.dataset_kwargs='{...}'"
    assert tip in message
    # Following the tip clears it; a key typed on the command line gets no tip.
    assert cli_unknown_keys([*switched, "--data.dataset_kwargs={num_classes: 5}"]) == []
    (typed,) = cli_unknown_keys([*switched, "--data.dataset_kwargs={size: 5}"])
    assert "(in the command line; reader 'folder')" in typed and tip not in typed


def test_switching_the_model_on_the_command_line_says_how_to_replace_its_options(tmp_path):
    from seglab.cli.config_check import cli_unknown_keys

    cfg = tmp_path / "u.yaml"
    cfg.write_text(
        "model:\n  class_path: seglab.tasks.SegmentationTask\n"
        "  init_args: {model: unetplusplus, num_classes: 2,\n"
        "              model_kwargs: {deep_supervision: true}}\n"
    )
    (message,) = cli_unknown_keys(["fit", "--config", str(cfg), "--model.model=pspnet"])
    assert f"'model.init_args.model_kwargs.deep_supervision' (in {cfg})" in message
    assert "--model.init_args.model_kwargs='{...}'" in message
