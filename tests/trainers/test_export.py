"""Tests of exporting a student: the folder alone rebuilds a model that predicts exactly what the trained one does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from trainers import (
    DistillConfig,
    TensorSplits,
    build_student,
    build_teacher,
    distill,
    export_model,
    load_dataset,
    load_exported,
    load_torchscript,
)
from trainers.export import CONFIG_FILE, STATE_FILE, TORCHSCRIPT_FILE, read_export_config
from trainers.files import CorruptFileError
from trainers.models import stem_stride_for


@pytest.fixture(scope="module")
def data() -> TensorSplits:
    return load_dataset("digits", max_train_samples=300)


@pytest.fixture(scope="module", params=["cnn", "resnet", "mobilenet"])
def trained(request: pytest.FixtureRequest, data: TensorSplits) -> nn.Module:
    """A student of each family after two epochs (BN statistics and weights far from their initial values)."""
    config = DistillConfig(family=request.param, depth=1, width=8, alpha=0.0, epochs=2)
    return distill(config, data).model


def _logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(images)


def test_exported_model_predicts_exactly_what_the_trained_one_does(
    trained: nn.Module, data: TensorSplits, tmp_path: Path
) -> None:
    expected = _logits(trained, data.test_x[:])
    folder = export_model(trained, tmp_path / "best", data.info.input_shape, {"val_accuracy": 0.5})
    assert folder == tmp_path / "best"
    assert sorted(path.name for path in folder.iterdir()) == sorted([STATE_FILE, CONFIG_FILE, TORCHSCRIPT_FILE])

    rebuilt = load_exported(folder)
    assert not rebuilt.training
    assert torch.equal(_logits(rebuilt, data.test_x[:]), expected)
    scripted = load_torchscript(folder)
    with torch.no_grad():
        assert torch.equal(scripted(data.test_x[:]), expected)
    # TorchScript was traced at batch 1; it must still run (and agree) at other batch sizes.
    with torch.no_grad():
        assert torch.equal(scripted(data.test_x[:7]), _logits(trained, data.test_x[:7]))


def test_a_stride_2_stem_student_exports_and_rebuilds_with_its_stem(tmp_path: Path) -> None:
    """28 px inputs get a stride-2 stem: the export must rebuild it, or the reloaded model predicts otherwise."""
    torch.manual_seed(0)
    images = torch.randn(16, 1, 28, 28)
    student = build_student("resnet", 1, 8, 1, 10, stem_stride=stem_stride_for((1, 28, 28)))
    student.train()
    with torch.no_grad():
        student(images)  # BN running statistics away from their initial values
    expected = _logits(student, images)
    folder = export_model(student, tmp_path / "best", (1, 28, 28), {})
    assert read_export_config(folder)["arch"]["stem_stride"] == 2
    rebuilt = load_exported(folder)
    assert rebuilt.stem_conv().stride == (2, 2)
    assert torch.equal(_logits(rebuilt, images), expected)
    with torch.no_grad():
        assert torch.equal(load_torchscript(folder)(images), expected)


def test_export_leaves_the_callers_model_as_it_was(data: TensorSplits, tmp_path: Path) -> None:
    model = distill(DistillConfig(width=8, alpha=0.0, epochs=1), data).model.train()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    export_model(model, tmp_path, data.info.input_shape)
    assert model.training  # a caller that goes on training is not silently switched to eval mode
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert torch.equal(_logits(load_exported(tmp_path), data.test_x[:]), _logits(model, data.test_x[:]))


def test_config_json_holds_the_arch_and_metadata(trained: nn.Module, data: TensorSplits, tmp_path: Path) -> None:
    folder = export_model(trained, tmp_path, data.info.input_shape,
                          {"val_accuracy": 0.9, "kd": {"alpha": 0.5}, "tensor": torch.tensor(3), "path": tmp_path})
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert config == read_export_config(folder)
    assert config["arch"] == trained.arch and config["arch"]["kind"] == "student"
    assert config["input_shape"] == list(data.info.input_shape)
    assert config["metadata"] == {"val_accuracy": 0.9, "kd": {"alpha": 0.5}, "tensor": 3, "path": str(tmp_path)}


def test_model_pt_holds_tensors_only(trained: nn.Module, data: TensorSplits, tmp_path: Path) -> None:
    folder = export_model(trained, tmp_path, data.info.input_shape)
    state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)  # refuses pickled objects
    assert isinstance(state, dict) and state
    assert all(isinstance(value, torch.Tensor) for value in state.values())
    assert state.keys() == trained.state_dict().keys()
    assert all(torch.equal(state[name], tensor) for name, tensor in trained.state_dict().items())


def test_a_teacher_exports_too(data: TensorSplits, tmp_path: Path) -> None:
    torch.manual_seed(0)
    teacher = build_teacher("cnn-large", 1, 10).eval()
    folder = export_model(teacher, tmp_path, data.info.input_shape)
    assert torch.equal(_logits(load_exported(folder), data.test_x[:16]), _logits(teacher, data.test_x[:16]))


def test_re_export_replaces_the_files(data: TensorSplits, tmp_path: Path) -> None:
    first = distill(DistillConfig(width=8, alpha=0.0, epochs=1, seed=0), data).model
    second = distill(DistillConfig(width=8, alpha=0.0, epochs=1, seed=1), data).model
    export_model(first, tmp_path, data.info.input_shape)
    export_model(second, tmp_path, data.info.input_shape)
    assert torch.equal(_logits(load_exported(tmp_path), data.test_x[:]), _logits(second, data.test_x[:]))
    assert len(list(tmp_path.iterdir())) == 3  # no temp files


def test_a_corrupt_export_folder_is_reported(trained: nn.Module, data: TensorSplits, tmp_path: Path) -> None:
    export_model(trained, tmp_path, data.info.input_shape)
    (tmp_path / CONFIG_FILE).write_text("{not json")
    with pytest.raises(CorruptFileError, match=CONFIG_FILE):
        load_exported(tmp_path)
    export_model(trained, tmp_path, data.info.input_shape)
    state_path = tmp_path / STATE_FILE
    state_path.write_bytes(state_path.read_bytes()[:100])
    with pytest.raises(CorruptFileError, match=STATE_FILE):
        load_exported(tmp_path)
