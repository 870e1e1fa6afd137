"""The loader of a user's teacher: formats told from bytes, the teacher's own view of the data, workers' copies."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests import teacher_files as files
from trainers import (
    DistillConfig,
    Teacher,
    TeacherCheckpointError,
    TeacherSource,
    TensorSplits,
    distill,
    evaluate,
    export_model,
    load_dataset,
    load_teacher,
)
from trainers.data import render_view, view_count
from trainers.export import PROGRAM_FILE


@pytest.fixture(scope="module")
def data() -> TensorSplits:
    return load_dataset("digits", max_train_samples=300)


IMAGENET = {"mean": files.IMAGENET_MEAN, "std": files.IMAGENET_STD}


def test_a_32px_imagenet_style_teacher_teaches_8px_digits_through_its_own_view(data: TensorSplits,
                                                                               tmp_path: Path) -> None:
    """Cached logits, per augmented view too, are the teacher's logits on its own preprocessing of those images."""
    model = files.trained_32px_teacher(data)
    own_accuracy = evaluate(model, files.teacher_view(data.test_x[:], data, 32), data.test_y)[0]
    assert own_accuracy > 0.8  # a real teacher, trained in another pipeline at 32 px
    path = files.save_torchscript(model, tmp_path / "teacher.ts")
    result = load_teacher(TeacherSource(checkpoint=str(path), input_size=32, **IMAGENET), data)
    assert evaluate(result.model, data.test_x[:], data.test_y)[0] == pytest.approx(own_accuracy, abs=1e-6)
    assert result.details["preprocessing"]["input_size"] == [32, 32]
    assert result.details["preprocessing"]["channels"] == 3

    teacher = Teacher.with_cached_outputs(result.model, result.name, data.train_x[:], views_of=data.info,
                                          background=data.background)
    with torch.no_grad():
        expected = model(files.teacher_view(data.train_x[:], data, 32))
        torch.testing.assert_close(teacher.outputs.logits, expected, atol=1e-4, rtol=1e-4)
        assert teacher.outputs.per_view is not None
        for view in (0, view_count(data.info) - 1):
            crop = render_view(data.train_x[:], data.info, view, data.background)
            torch.testing.assert_close(teacher.outputs.per_view.logits[view],
                                       model(files.teacher_view(crop, data, 32)), atol=1e-4, rtol=1e-4)


def test_the_format_is_read_from_the_bytes_not_the_name(data: TensorSplits, tmp_path: Path) -> None:
    model = files.RGBNet()
    scripted = files.save_torchscript(model, tmp_path / "weights.safetensors")
    exported = files.save_exported(model, tmp_path / "model.pt", torch.randn(2, 3, 8, 8))
    assert load_teacher(TeacherSource(checkpoint=str(scripted)), data).details["source_kind"] == "torchscript"
    assert load_teacher(TeacherSource(checkpoint=str(exported)), data).details["source_kind"] == "torch.export"


def test_an_exported_program_with_a_fixed_batch_runs_any_batch(data: TensorSplits, tmp_path: Path) -> None:
    model = files.RGBNet().eval()
    path = files.save_exported(model, tmp_path / "teacher.pt2", torch.randn(4, 3, 8, 8))
    teacher = load_teacher(TeacherSource(checkpoint=str(path)), data).model
    with torch.no_grad():
        torch.testing.assert_close(teacher(data.test_x[:7]), model(data.test_x[:7].expand(-1, 3, -1, -1)))


def test_an_exported_kdsearch_student_loads_as_a_teacher(data: TensorSplits, tmp_path: Path) -> None:
    """The teacher-assistant step (``tuning/rounds.py``) passes a run's ``best/model.pt2`` as
    ``--teacher-checkpoint``: it loads as a torch.export teacher on the data's own view (the student was
    trained on the same normalised images), any batch size, with the student's logits and accuracy, and a Ray
    worker's copy gives the same logits."""
    student = distill(DistillConfig(width=8, alpha=0.0, epochs=2), data).model.eval()
    folder = export_model(student, tmp_path / "best", data.info.input_shape, mean=data.mean, std=data.std,
                          pixel_max=data.pixel_max)
    result = load_teacher(TeacherSource(checkpoint=str(folder / PROGRAM_FILE)), data)
    assert result.details["source_kind"] == "torch.export"
    assert result.val_accuracy == pytest.approx(evaluate(student, data.val_x[:], data.val_y)[0], abs=1e-6)
    teacher = result.model
    worker_copy = pickle.loads(pickle.dumps(teacher))
    with torch.no_grad():
        for batch in (1, 7, len(data.test_x)):
            expected = student(data.test_x[:batch])
            torch.testing.assert_close(teacher(data.test_x[:batch]), expected, rtol=0, atol=1e-5)
            torch.testing.assert_close(worker_copy(data.test_x[:batch]), expected, rtol=0, atol=1e-5)


def test_each_kind_is_rebuilt_the_same_in_another_process(data: TensorSplits, tmp_path: Path) -> None:
    """What a Ray worker receives: the pickled teacher rebuilt by its recipe, with the same logits."""
    sys.path.insert(0, str(files.write_package(tmp_path / "src")))
    resnet = files.torchvision_resnet18_one_channel()
    torch.save(resnet.state_dict(), tmp_path / "resnet.pt")
    sources = [TeacherSource(teacher="torchvision:resnet18", weights=str(tmp_path / "resnet.pt"),
                             features=("layer2", "layer3")),
               TeacherSource(teacher="teacherpkg.nets:build_model"),  # a factory without weights: its own init
               TeacherSource(teacher=f"{files.write_module_file(tmp_path / 'net.py')}:build_model"),
               TeacherSource(checkpoint=str(files.save_torchscript(files.RGBNet(), tmp_path / "t.ts")), input_size=16,
                             **IMAGENET)]
    for source in sources:
        teacher = load_teacher(source, data).model
        copy = pickle.loads(pickle.dumps(teacher))
        with torch.no_grad():
            torch.testing.assert_close(copy(data.test_x[:16]), teacher(data.test_x[:16]))
        assert copy.provides_features == bool(source.features)
        if source.features:
            assert [feature.dim() for feature in copy.forward_features(data.test_x[:2])[1]] == [4, 4]


def test_safetensors_weights_load_and_a_weights_file_is_not_a_checkpoint(data: TensorSplits, tmp_path: Path) -> None:
    resnet = files.torchvision_resnet18_one_channel()
    save_file(resnet.state_dict(), str(tmp_path / "resnet.safetensors"))
    loaded = load_teacher(TeacherSource(teacher="torchvision:resnet18", weights=str(tmp_path / "resnet.safetensors")),
                          data)
    assert loaded.val_accuracy == evaluate(resnet, data.val_x[:], data.val_y)[0]
    with pytest.raises(TeacherCheckpointError, match="holds weights only.*--teacher-weights"):
        load_teacher(TeacherSource(checkpoint=str(tmp_path / "resnet.safetensors")), data)


def test_library_preprocessing_reads_the_weights_entry_without_downloading(data: TensorSplits,
                                                                          tmp_path: Path) -> None:
    import timm

    from trainers.teacher_sources._library import library_preprocessing

    resnet = files.torchvision_resnet18_one_channel()
    assert library_preprocessing("torchvision", "resnet18", resnet) == (224, files.IMAGENET_MEAN, files.IMAGENET_STD)
    effnet = timm.create_model("test_efficientnet", num_classes=10)
    assert library_preprocessing("timm", "test_efficientnet", effnet) == (160, files.IMAGENET_MEAN, files.IMAGENET_STD)
    resnet.conv1 = torch.nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    torch.save(resnet.state_dict(), tmp_path / "rgb.pt")
    # The library's mean and std, with an explicit --teacher-input-size over its 224 px (which would be slow here).
    result = load_teacher(TeacherSource(teacher="torchvision:resnet18", weights=str(tmp_path / "rgb.pt"),
                                        preprocessing="library", input_size=16), data)
    view = result.details["preprocessing"]
    assert view["input_size"] == [16, 16] and view["channels"] == 3
    assert view["mean"] == pytest.approx(files.IMAGENET_MEAN) and view["std"] == pytest.approx(files.IMAGENET_STD)


@pytest.mark.parametrize("feature_loss", ["attention", "hint"])
def test_feature_losses_read_the_named_layers_of_a_foreign_teacher(feature_loss: str, data: TensorSplits,
                                                                   tmp_path: Path) -> None:
    """The named layers are the teacher's stages: cached once, paired with the student's last stages (the hint
    through its learned 1x1 adapter), and the student trains on them."""
    from trainers import DistillConfig, distill

    resnet = files.torchvision_resnet18_one_channel()
    torch.save(resnet.state_dict(), tmp_path / "resnet.pt")
    result = load_teacher(TeacherSource(teacher="torchvision:resnet18", weights=str(tmp_path / "resnet.pt"),
                                        features=("layer3", "layer4")), data)
    teacher = Teacher.with_cached_outputs(result.model, result.name, data.train_x[:])
    assert teacher.outputs.answers(feature_loss)
    config = DistillConfig(family="cnn", depth=1, width=4, alpha=0.5, feature_loss=feature_loss, beta=1.0, epochs=1)
    report = distill(config, data, teacher).history[-1]
    assert report.kd_steps > 0 and torch.isfinite(torch.tensor(report.train_loss))
