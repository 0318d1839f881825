"""``--ckpt_path`` with other options, and checkpoints that cannot be read (issue 20, 2 and 6).

The model is rebuilt from the checkpoint; a command-line option that differs is applied where it
is safe (loss, ignore_index; lr and schedule on a new fit from the weights, ``--run.finetune``)
or refused naming the option and the checkpoint's value; a checkpoint of another architecture
than the config's is refused naming both; an empty or truncated checkpoint is one clear error
naming the file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seglab.cli import run_cli
from seglab.cli.ckpt_options import CheckpointOptionError
from seglab.data.io import load_checkpoint_file
from seglab.runs.checkpoint import load_task
from tests.conftest import tiny_args

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "experiments" / "default.yaml")
TINY = [*tiny_args(8), "--trainer.num_sanity_val_steps=0", "--run.num_overlays=0"]


def cli(sub: str, root: Path, *extra: str):
    return run_cli([sub, "--config", CONFIG, f"--run.root={root}", *TINY, *extra])


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A one-epoch checkpoint of the tiny default model (loss ce + dice, lr 0.003)."""
    root = tmp_path_factory.mktemp("ckpt")
    run = cli("fit", root / "runs", "--trainer.max_epochs=1").run_dir
    return run / "checkpoints" / "last.ckpt"


def test_a_new_loss_on_the_command_line_is_applied(ckpt, tmp_path):
    assert load_checkpoint_file(ckpt)["hyper_parameters"]["loss"] == {"ce": 1.0, "dice": 1.0}
    done = cli("fit", tmp_path, f"--ckpt_path={ckpt}", "--model.init_args.loss={ce: 1.0}",
               "--trainer.max_epochs=2")  # fmt: skip
    assert done.model.hparams.loss == {"ce": 1.0}
    assert done.trainer.current_epoch == 2  # resumed: one more epoch
    header = (done.run_dir / "metrics.csv").read_text().splitlines()[0]
    assert "train/loss/ce" in header and "train/loss/dice" not in header


def test_an_option_that_changes_the_network_is_refused_naming_both_values(ckpt, tmp_path):
    with pytest.raises(CheckpointOptionError, match=r"num_classes=3 differs .* has num_classes=5"):
        cli("fit", tmp_path, f"--ckpt_path={ckpt}", "--model.init_args.num_classes=3",
            "--model.init_args.class_names=null")  # fmt: skip
    with pytest.raises(CheckpointOptionError, match=r"model_kwargs=.*has model_kwargs="):
        cli("validate", tmp_path, f"--ckpt_path={ckpt}",
            "--model.init_args.model_kwargs={base_channels: 8, depth: 3}")  # fmt: skip


def test_resume_refuses_a_new_lr_and_finetune_applies_it_to_the_loaded_weights(ckpt, tmp_path):
    refused = r"lr=0\.0 differs .* lr=0\.003.*--run\.finetune"
    with pytest.raises(CheckpointOptionError, match=refused):
        cli("fit", tmp_path, f"--ckpt_path={ckpt}", "--model.init_args.lr=0.0")
    # lr 0 leaves the parameters where the checkpoint put them: proof they were loaded
    tuned = cli("fit", tmp_path, f"--ckpt_path={ckpt}", "--run.finetune=true",
                "--model.init_args.lr=0.0", "--model.init_args.loss={ce: 1.0}",
                "--trainer.max_epochs=1")  # fmt: skip
    assert tuned.model.hparams.lr == 0.0 and tuned.model.hparams.loss == {"ce": 1.0}
    assert tuned.trainer.global_step == 2  # a new fit: epoch 0 from the start, not resumed
    assert tuned.run_dir != ckpt.parent.parent
    state = load_checkpoint_file(ckpt)["state_dict"]
    for name, p in tuned.model.named_parameters():
        assert torch.equal(p.detach().cpu(), state[name]), name


def test_validate_takes_ignore_index_from_the_command_line(ckpt, tmp_path):
    done = cli("validate", tmp_path, f"--ckpt_path={ckpt}", "--model.init_args.ignore_index=255")
    assert done.model.hparams.ignore_index == 255
    assert done.model.hparams.model_kwargs == {"base_channels": 4, "depth": 3}  # the ckpt's


def test_a_checkpoint_of_another_architecture_is_refused_naming_both(ckpt, tmp_path):
    data = load_checkpoint_file(ckpt)
    data["hyper_parameters"]["model"] = "deeplabv3"
    other = tmp_path / "deeplab.ckpt"
    torch.save(data, other)
    both = r"holds a 'deeplabv3' model, but .*experiments/default.yaml asks for 'unet'"
    with pytest.raises(CheckpointOptionError, match=both):
        cli("validate", tmp_path, f"--ckpt_path={other}")


@pytest.mark.parametrize("cut", ["empty", "truncated"])
def test_empty_and_truncated_checkpoints_are_named(ckpt, tmp_path, cut, capsys):
    bad = tmp_path / f"{cut}.ckpt"
    bad.write_bytes(b"" if cut == "empty" else ckpt.read_bytes()[:20000])
    pattern = rf"Cannot load checkpoint {bad}: (the file is empty|it is truncated)"
    with pytest.raises(ValueError, match=pattern):
        load_checkpoint_file(bad)
    with pytest.raises(ValueError, match=pattern):
        load_task(bad)  # what export uses
    with pytest.raises(ValueError, match=pattern):
        cli("validate", tmp_path, f"--ckpt_path={bad}")
    from seglab.cli import main

    with pytest.raises(SystemExit):
        main(["export", "--ckpt", str(bad), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert str(bad) in err and "Traceback" not in err and "IndexError" not in err
