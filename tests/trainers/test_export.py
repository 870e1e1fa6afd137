"""Tests of exporting a student: the folder alone rebuilds a model that predicts exactly what the trained one does."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import onnx
import onnxruntime
import pytest
import torch
from torch import nn

import trainers.export
from trainers import (
    DistillConfig,
    TensorSplits,
    build_student,
    build_teacher,
    distill,
    export_model,
    load_dataset,
    load_exported,
    load_program,
)
from trainers.export import (
    CONFIG_FILE,
    ONNX_FILE,
    ONNX_OPSET,
    PROGRAM_FILE,
    STATE_FILE,
    ExportParityError,
    PreprocessedModel,
    read_export_config,
)
from trainers.files import CorruptFileError
from trainers.models import input_size_for, stem_stride_for, student_family_bounds


@pytest.fixture(scope="module")
def data() -> TensorSplits:
    return load_dataset("digits", max_train_samples=300)


@pytest.fixture(scope="module", params=["cnn", "resnet", "mobilenet"])
def trained(request: pytest.FixtureRequest, data: TensorSplits) -> nn.Module:
    """A student of each family after two epochs (BN statistics and weights far from their initial values)."""
    config = DistillConfig(family=request.param, depth=1, width=8, alpha=0.0, epochs=2)
    return distill(config, data).model


def _student(folder: Path) -> nn.Module:
    """The exported student itself (it takes normalised images, as the trainers feed it)."""
    return load_exported(folder, preprocessing=False)


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
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        [STATE_FILE, CONFIG_FILE, PROGRAM_FILE, ONNX_FILE])

    rebuilt = _student(folder)
    assert not rebuilt.training
    assert torch.equal(_logits(rebuilt, data.test_x[:]), expected)
    program = load_program(folder)
    with torch.no_grad():
        assert torch.equal(program(data.test_x[:]), expected)
        # The program was exported at batch 2 with a dynamic batch: it runs (and agrees with the student at
        # the same batch size: kernels may sum in another order at another one) at any batch size.
        for batch in (1, 7):
            assert torch.equal(program(data.test_x[:batch]), _logits(trained, data.test_x[:batch]))
    assert read_export_config(folder)["program"]["dynamic_batch"] is True


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
    rebuilt = _student(folder)
    assert rebuilt.stem_conv().stride == (2, 2)
    assert torch.equal(_logits(rebuilt, images), expected)
    with torch.no_grad():
        assert torch.equal(load_program(folder)(images), expected)


def test_export_leaves_the_callers_model_as_it_was(data: TensorSplits, tmp_path: Path) -> None:
    model = distill(DistillConfig(width=8, alpha=0.0, epochs=1), data).model.train()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    export_model(model, tmp_path, data.info.input_shape)
    assert model.training  # a caller that goes on training is not silently switched to eval mode
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert torch.equal(_logits(_student(tmp_path), data.test_x[:]), _logits(model, data.test_x[:]))


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
    assert torch.equal(_logits(_student(folder), data.test_x[:16]), _logits(teacher, data.test_x[:16]))


def test_re_export_replaces_the_files(data: TensorSplits, tmp_path: Path) -> None:
    first = distill(DistillConfig(width=8, alpha=0.0, epochs=1, seed=0), data).model
    second = distill(DistillConfig(width=8, alpha=0.0, epochs=1, seed=1), data).model
    export_model(first, tmp_path, data.info.input_shape)
    export_model(second, tmp_path, data.info.input_shape)
    assert torch.equal(_logits(_student(tmp_path), data.test_x[:]), _logits(second, data.test_x[:]))
    assert len(list(tmp_path.iterdir())) == 4  # no temp files


def test_a_corrupt_export_folder_is_reported(trained: nn.Module, data: TensorSplits, tmp_path: Path) -> None:
    export_model(trained, tmp_path, data.info.input_shape)
    (tmp_path / CONFIG_FILE).write_text("{not json")
    with pytest.raises(CorruptFileError, match=CONFIG_FILE):
        _student(tmp_path)
    export_model(trained, tmp_path, data.info.input_shape)
    state_path = tmp_path / STATE_FILE
    state_path.write_bytes(state_path.read_bytes()[:100])
    with pytest.raises(CorruptFileError, match=STATE_FILE):
        _student(tmp_path)


def _onnx_logits(folder: Path, images: torch.Tensor) -> torch.Tensor:
    """``model.onnx`` run by onnxruntime alone, as a user would (no kdsearch code)."""
    session = onnxruntime.InferenceSession(str(folder / ONNX_FILE), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: images.numpy()})[0])


def _export_with_data(model: nn.Module, data: TensorSplits, folder: Path, **extra: object) -> Path:
    return export_model(model, folder, data.info.input_shape, {}, mean=data.mean, std=data.std,
                        pixel_max=data.pixel_max, class_names=data.info.class_names or None, **extra)


def test_onnx_model_predicts_what_the_trained_one_does_at_any_batch_size(
    trained: nn.Module, data: TensorSplits, tmp_path: Path
) -> None:
    """``model.onnx`` in onnxruntime gives the student's logits within 1e-4 on 64 test images (normalised, as
    the trainers feed them), at batch sizes other than the traced one; config.json records the check."""
    images = data.test_x[:64]
    folder = _export_with_data(trained, data, tmp_path, check_images=images)
    loaded = onnx.load(str(folder / ONNX_FILE))
    onnx.checker.check_model(loaded)
    assert [entry.version for entry in loaded.opset_import if entry.domain in ("", "ai.onnx")] == [ONNX_OPSET]
    expected = _logits(trained, images)
    for batch in (64, 1, 7):
        got = _onnx_logits(folder, images[:batch])
        assert got.shape == expected[:batch].shape
        assert (got - expected[:batch]).abs().max().item() <= 1e-4
        assert torch.equal(got.argmax(1), expected[:batch].argmax(1))
    onnx_entry = read_export_config(folder)["onnx"]
    assert (onnx_entry["opset"], onnx_entry["images"], onnx_entry["top1_agreement"]) == (ONNX_OPSET, 64, 1.0)
    assert 0.0 <= onnx_entry["max_abs_logit_diff"] <= 1e-4 and "dynamo=False" in onnx_entry["exporter"]


def test_config_json_says_how_to_run_the_model_without_kdsearch(
    trained: nn.Module, data: TensorSplits, tmp_path: Path
) -> None:
    """Input shape and channels, pixel scale, mean/std, class names in label order, the family, the opset."""
    config = read_export_config(_export_with_data(trained, data, tmp_path))
    assert config["input_shape"] == [1, 8, 8] and config["channels"] == 1
    assert config["family"] == trained.arch["family"] and config["arch"] == trained.arch
    preprocessing = config["preprocessing"]
    assert (preprocessing["mean"], preprocessing["std"]) == (list(data.mean), list(data.std))
    assert preprocessing["pixel_max"] == data.pixel_max == 16.0  # digits' pixels are 0..16
    assert config["class_names"] == [str(label) for label in range(10)]  # digits has no names: the labels
    assert config["onnx"]["opset"] == ONNX_OPSET and config["onnx"]["dynamic_batch"] is True
    assert config["program"]["file"] == PROGRAM_FILE and config["program"]["dynamic_batch"] is True


def test_load_exported_takes_pixels_and_normalises_them_as_the_trainers_do(
    trained: nn.Module, data: TensorSplits, tmp_path: Path
) -> None:
    folder = _export_with_data(trained, data, tmp_path)
    model = load_exported(folder)
    assert isinstance(model, PreprocessedModel) and not model.training and model.arch == trained.arch
    pixels = data.images[data.test_rows].float() / data.pixel_max  # [0, 1], nothing from kdsearch's pipeline
    assert torch.equal(_logits(model, pixels), _logits(trained, data.test_x[:]))
    assert torch.equal(_logits(model.student, data.test_x[:]), _logits(trained, data.test_x[:]))
    assert torch.equal(_logits(load_exported(folder, preprocessing=False), data.test_x[:]),
                       _logits(trained, data.test_x[:]))


@pytest.mark.parametrize(("exporter", "what"), [("onnx_export", r"the ONNX export \(model\.onnx\)"),
                                              ("export_program", r"the torch\.export program \(model\.pt2\)")])
def test_an_exported_model_that_differs_fails_the_export_and_writes_nothing(
    exporter: str, what: str, trained: nn.Module, data: TensorSplits, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exporter (ONNX or torch.export) whose graph gives other logits (a student with one bias moved by
    0.01): the export raises ``ExportParityError`` naming the file and the difference; a new folder gets no
    file, and a folder with an earlier export keeps that export whole."""
    honest_export = getattr(trainers.export, exporter)

    def perturbed(model: nn.Module, input_shape: tuple[int, int, int]) -> Any:
        other = copy.deepcopy(model)
        with torch.no_grad():
            [bias for name, bias in other.named_parameters() if name.endswith("bias")][-1].add_(0.01)
        return honest_export(other, input_shape)

    earlier = _export_with_data(trained, data, tmp_path / "earlier")
    before = {path.name: path.read_bytes() for path in earlier.iterdir()}
    monkeypatch.setattr(trainers.export, exporter, perturbed)
    for folder in (tmp_path / "new", earlier):
        with pytest.raises(ExportParityError, match=what + r" of .* max abs logit difference 0\.01 over 64 images "
                                                    r"\(tolerance 0\.0001\)"):
            _export_with_data(trained, data, folder, check_images=data.test_x[:64])
    assert not (tmp_path / "new").exists() or not list((tmp_path / "new").iterdir())
    assert {path.name: path.read_bytes() for path in earlier.iterdir()} == before


@pytest.mark.parametrize("family", list(student_family_bounds(all_families=True)))
def test_every_registered_family_exports_a_program_with_a_dynamic_batch(family: str, tmp_path: Path) -> None:
    """Every family, torchvision's too, at the wide corner of its default ranges (depth low, width high: all
    its layer kinds, small enough for a 2-core suite), 3 channels at 32 px (torchvision's models keep three
    downsamplings there): ``model.pt2`` takes any batch size and gives the student's logits."""
    (depth, _), (_, width) = student_family_bounds(all_families=True)[family]
    shape = (3, 32, 32)
    torch.manual_seed(0)
    student = build_student(family, depth, width, 3, 10, stem_stride_for(shape), input_size=input_size_for(shape))
    folder = export_model(student, tmp_path, shape)
    assert read_export_config(folder)["program"]["dynamic_batch"] is True
    program = load_program(folder)
    for batch in (1, 5):
        images = torch.randn(batch, *shape)
        with torch.no_grad():
            torch.testing.assert_close(program(images), _logits(student, images), rtol=0, atol=1e-5)


def test_exporting_and_loading_give_no_future_or_deprecation_warning(trained: nn.Module, data: TensorSplits,
                                                                      tmp_path: Path) -> None:
    """torch 2.14 deprecates torch.jit's trace, save and load (a FutureWarning each): the export uses none of
    them, and the ONNX exporter's own DeprecationWarnings are kept from users (see ``onnx_export``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        folder = export_model(trained, tmp_path, data.info.input_shape)
        with torch.no_grad():
            load_program(folder)(data.test_x[:4])
            load_exported(folder)(torch.rand(4, *data.info.input_shape))


class FixedBatchStudent(nn.Module):
    """A student whose code branches on its batch size, so torch.export cannot keep the batch dynamic."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student
        self.arch: dict[str, Any] = student.arch

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[0] == 2:
            return self.student(images)
        return self.student(images) * 1.0


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # the ONNX tracer sees the branch on the batch
def test_a_model_that_fixes_its_batch_exports_a_program_at_batch_1(data: TensorSplits, tmp_path: Path) -> None:
    torch.manual_seed(0)
    student = FixedBatchStudent(build_student("cnn", 1, 8, 1, 10).eval())
    images = data.test_x[:9]
    folder = export_model(student, tmp_path, data.info.input_shape, check_images=images)
    entry = read_export_config(folder)["program"]
    assert (entry["dynamic_batch"], entry["batch"], entry["images"]) == (False, 1, 9)
    assert "specialized it to be a constant" in entry["why_static"] and entry["max_abs_logit_diff"] <= 1e-4
    with torch.no_grad():
        assert torch.equal(load_program(folder)(images[:1]), student(images[:1]))


def test_load_program_names_what_to_use_when_a_folder_has_no_program(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"model\.pt2 does not exist.*load_exported"):
        load_program(tmp_path)
