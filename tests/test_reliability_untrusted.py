"""Untrusted files: pickled code in checkpoints is refused everywhere, YAML is loaded safely,
output names cannot leave their folder, and seglab's source holds no eval/exec/unsafe load."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from seglab.data.io import load_weights_file, safe_child
from seglab.runs.checkpoint import load_checkpoint_file
from seglab.tasks import SegmentationTask
from tests.conftest import tiny_args

REPO = Path(__file__).resolve().parents[1]
TINY_TASK = {"model": "unet", "num_classes": 5, "model_kwargs": {"base_channels": 4, "depth": 3}}


class Payload:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"import pathlib; pathlib.Path({self.marker!r}).touch()",))


@pytest.fixture
def evil(tmp_path) -> tuple[Path, Path]:
    """A Lightning-looking checkpoint of a real task with a code-running object inside."""
    marker = tmp_path / "PWNED"
    task = SegmentationTask(**TINY_TASK)
    ckpt = {
        "state_dict": task.state_dict(),
        "hyper_parameters": dict(task.hparams),
        "pytorch-lightning_version": "2.6.6",
        "epoch": 0,
        "global_step": 0,
        "loops": {},
        "callbacks": {},
        "optimizer_states": [],
        "lr_schedulers": [],
        "extra": Payload(marker),
    }
    path = tmp_path / "evil.ckpt"
    torch.save(ckpt, path)
    return path, marker


def test_the_payload_is_real(evil):
    path, marker = evil
    torch.load(path, weights_only=False)  # what an unsafe loader would do
    assert marker.exists()


def test_crafted_checkpoint_is_refused_by_every_loader(evil, tmp_path):
    path, marker = evil
    with pytest.raises(ValueError, match="Refusing to load checkpoint .*weights_only=True"):
        load_checkpoint_file(path)
    with pytest.raises(ValueError, match="Refusing to load .*re-save it as a state_dict"):
        load_weights_file(path)
    with pytest.raises(Exception, match="Weights only load failed"):
        SegmentationTask.load_from_checkpoint(path, weights_only=True)
    with pytest.raises(Exception, match="Weights only load failed"):
        SegmentationTask.load_from_checkpoint(path)  # the default is safe too
    assert not marker.exists()


def test_crafted_checkpoint_is_refused_by_ckpt_path(evil, tmp_path, monkeypatch):
    from seglab.cli import run_cli

    monkeypatch.delenv("SEGLAB_RUN_DIR", raising=False)
    path, marker = evil
    args = [
        "fit",
        "--config",
        str(REPO / "experiments" / "default.yaml"),
        f"--run.root={tmp_path / 'runs'}",
        *tiny_args(8),
        "--trainer.max_epochs=1",
        f"--ckpt_path={path}",
        "--weights_only=false",  # asking for an unsafe load changes nothing
    ]
    # LightningCLI itself reads the hyper-parameters of --ckpt_path with weights_only=True before
    # the trainer's AtomicCheckpointIO does: either refusal is fine, running the payload is not
    with pytest.raises(Exception, match="Refusing to load checkpoint|Weights only load failed"):
        run_cli(args)
    assert not marker.exists()


def test_safetensors_and_plain_state_dicts_load(tmp_path):
    from safetensors.torch import save_file

    sd = {"w": torch.arange(4.0)}
    save_file(sd, tmp_path / "w.safetensors")
    torch.save({"state_dict": sd}, tmp_path / "w.pt")
    assert torch.equal(load_weights_file(tmp_path / "w.safetensors")["w"], sd["w"])
    assert torch.equal(load_weights_file(tmp_path / "w.pt")["w"], sd["w"])


@pytest.mark.parametrize(
    "name", ["../../x.png", "/etc/passwd", "a/../../b.png", "sub/dir/d.png", "./x/../y.png"]
)
def test_safe_child_keeps_names_inside(tmp_path, name):
    out = safe_child(tmp_path, name)
    assert out.parent == tmp_path.resolve()
    assert ".." not in out.name and "/" not in out.name


@pytest.mark.parametrize("name", ["..", ".", "", "../.."])
def test_safe_child_refuses_unusable_names(tmp_path, name):
    with pytest.raises(ValueError):
        safe_child(tmp_path, name)


def test_safe_child_refuses_a_symlink_out_of_the_folder(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "x.png").symlink_to(outside / "x.png")
    with pytest.raises(ValueError, match="would leave the output folder"):
        safe_child(folder, "../../x.png")


def test_mask_writer_keeps_hostile_names_inside(tmp_path):
    from seglab.runs.folder import MaskWriter

    out = tmp_path / "masks"
    writer = MaskWriter(out)
    pred = torch.zeros(2, 4, 4, dtype=torch.long)
    batch = {"meta": {"name": ["../../escape", "/abs/evil"]}}
    writer.write_on_batch_end(None, None, {"pred": pred}, None, batch, 0, 0)
    assert sorted(p.name for p in out.iterdir()) == ["escape.png", "evil.png"]
    assert not (tmp_path / "escape.png").exists()


def test_yaml_with_python_tags_is_refused(tmp_path, monkeypatch):
    """Neither LightningCLI nor check-data constructs Python objects from YAML tags."""
    from seglab.cli import check_data as checks

    marker = tmp_path / "PWNED"
    cfg = tmp_path / "evil.yaml"
    cfg.write_text("data:\n  root: !!python/object/apply:os.system ['touch " + str(marker) + "']\n")
    code = checks.run(["--config", str(cfg)], out=open(os.devnull, "w"))  # noqa: SIM115
    assert code == 2 and not marker.exists()
    from seglab.cli import run_cli

    monkeypatch.delenv("SEGLAB_RUN_DIR", raising=False)
    with pytest.raises((SystemExit, Exception)):
        run_cli(["fit", "--config", str(cfg), f"--run.root={tmp_path / 'runs'}"])
    assert not marker.exists()


# ------------------------------------------------------------------------- source audit
def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name):
                yield node, f.id
            elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                yield node, f"{f.value.id}.{f.attr}"
            elif isinstance(f, ast.Attribute):
                yield node, f"?.{f.attr}"


def _kw(node: ast.Call, name: str):
    for k in node.keywords:
        if k.arg == name:
            return k.value
    return None


def test_source_has_no_eval_exec_or_unsafe_load():
    """No eval/exec, no unsafe YAML, no pickle, and every torch.load is weights_only=True."""
    bad = []
    for path in sorted((REPO / "seglab").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, name in _calls(tree):
            where = f"{path.relative_to(REPO)}:{node.lineno} {name}"
            if name in ("eval", "exec", "compile", "__import__"):
                bad.append(where)
            elif name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all"):
                loader = _kw(node, "Loader")
                if not (isinstance(loader, ast.Attribute) and "Safe" in loader.attr):
                    bad.append(where)
            elif name in ("pickle.load", "pickle.loads", "dill.load", "cloudpickle.load"):
                bad.append(where)
            elif name == "torch.load":
                wo = _kw(node, "weights_only")
                if not (isinstance(wo, ast.Constant) and wo.value is True):
                    bad.append(where + " (weights_only=True missing)")
            elif name in ("np.load", "numpy.load"):
                ap = _kw(node, "allow_pickle")
                if ap is not None and not (isinstance(ap, ast.Constant) and ap.value is False):
                    bad.append(where + " (allow_pickle)")
    assert not bad, "unsafe calls in seglab/:\n" + "\n".join(bad)


def test_numpy_arrays_are_not_unpickled(tmp_path):
    """Guard the reader side too: object arrays need allow_pickle, which numpy refuses."""
    arr = np.array([Payload(tmp_path / "m")], dtype=object)
    np.save(tmp_path / "a.npy", arr, allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle"):
        np.load(tmp_path / "a.npy")
