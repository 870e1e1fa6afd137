"""Every kind of user teacher runs a real 2-trial search on digits, and summary.json reports its true accuracy.

Each file is made here, as a user would make it; the teacher's test accuracy in summary.json must equal this
test's own evaluation of the same model, on its own preprocessing, on the same test split.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from tests import teacher_files as files
from tests.tuning.conftest import small_search
from trainers import DistillConfig, TensorSplits, distill, evaluate, export_model, load_dataset
from trainers.export import PROGRAM_FILE

pytestmark = pytest.mark.usefixtures("ray_cluster")
SAMPLES = 100
# Teachers this small need a bound in parameters (5 % of 1,434 fits no student).
SEARCH = {"budget": 2, "epochs": 1, "top_k": 0, "max_train_samples": SAMPLES, "max_params": "20000"}


@pytest.fixture(scope="module")
def data() -> TensorSplits:
    return load_dataset("digits", max_train_samples=SAMPLES)


Case = Callable[[Path, TensorSplits], tuple[dict[str, Any], nn.Module, Callable[[torch.Tensor], torch.Tensor]]]


def _same(images: torch.Tensor) -> torch.Tensor:
    return images


def torchvision_case(tmp: Path, data: TensorSplits) -> tuple[dict[str, Any], nn.Module, Callable]:
    model = files.torchvision_resnet18_one_channel()
    torch.save(model.state_dict(), tmp / "resnet18.pth")
    return ({"teacher": "torchvision:resnet18", "teacher_weights": str(tmp / "resnet18.pth"),
             "teacher_features": "layer3,layer4"}, model, _same)


def library_view_case(tmp: Path, data: TensorSplits) -> tuple[dict[str, Any], nn.Module, Callable]:
    """--teacher-preprocessing library: torchvision's declared ImageNet mean/std (its 224 px overridden by
    --teacher-input-size, which a 2-core suite can afford), 1-channel digits repeated to 3 channels."""
    model = files.torchvision_resnet18_one_channel()
    model.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
    torch.save(model.eval().state_dict(), tmp / "resnet18-rgb.pth")
    return ({"teacher": "torchvision:resnet18", "teacher_weights": str(tmp / "resnet18-rgb.pth"),
             "teacher_preprocessing": "library", "teacher_input_size": 16}, model.eval(),
            lambda images: files.teacher_view(images, data, 16))


def timm_case(tmp: Path, data: TensorSplits) -> tuple[dict[str, Any], nn.Module, Callable]:
    import timm

    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=10, in_chans=1).eval()
    save_file(model.state_dict(), str(tmp / "effnet.safetensors"))
    return {"teacher": "timm:test_efficientnet", "teacher_weights": str(tmp / "effnet.safetensors")}, model, _same


def package_factory_case(tmp: Path, data: TensorSplits) -> tuple[dict[str, Any], nn.Module, Callable]:
    sys.path.insert(0, str(files.write_package(tmp / "src")))  # a user's project folder, for this process only
    from teacherpkg.nets import build_model  # type: ignore[import-not-found]

    model = build_model(10, 1).eval()
    torch.save(model.state_dict(), tmp / "nets.pt")
    return ({"teacher": "teacherpkg.nets:build_model", "teacher_weights": str(tmp / "nets.pt"),
             "teacher_features": "body,deep"}, model, _same)


def file_factory_case(tmp: Path, data: TensorSplits) -> tuple[dict[str, Any], nn.Module, Callable]:
    path = files.write_module_file(tmp / "my_teacher.py")
    model = files.SmallNetLike(10, 1).eval()
    torch.save(model.state_dict(), tmp / "my_teacher.pt")
    return {"teacher": f"{path}:build_model", "teacher_weights": str(tmp / "my_teacher.pt")}, model, _same


def torchscript_case(tmp: Path, data: TensorSplits) -> tuple[dict[str, Any], nn.Module, Callable]:
    model = files.trained_32px_teacher(data, epochs=2)
    path = files.save_torchscript(model, tmp / "teacher.bin")  # the format is read from the bytes, not the name
    view = {"teacher_input_size": 32, "teacher_mean": ",".join(map(str, files.IMAGENET_MEAN)),
            "teacher_std": ",".join(map(str, files.IMAGENET_STD))}
    return {"teacher_checkpoint": str(path), **view}, model, lambda images: files.teacher_view(images, data, 32)


def exported_case(tmp: Path, data: TensorSplits) -> tuple[dict[str, Any], nn.Module, Callable]:
    model = files.RGBNet().eval()
    path = files.save_exported(model, tmp / "teacher.pt2", torch.randn(4, 3, 16, 16))  # a fixed batch of 4
    view = {"teacher_mean": ",".join(map(str, files.IMAGENET_MEAN)),
            "teacher_std": ",".join(map(str, files.IMAGENET_STD))}
    # No --teacher-input-size: the program's own fixed 16 x 16 input is the teacher's size.
    return {"teacher_checkpoint": str(path), **view}, model, lambda images: files.teacher_view(images, data, 16)


def kdsearch_export_case(tmp: Path, data: TensorSplits) -> tuple[dict[str, Any], nn.Module, Callable]:
    """The teacher-assistant step: an earlier run's exported student, ``<run>/best/model.pt2``, as the teacher
    (a torch.export program on the data's own view)."""
    student = distill(DistillConfig(width=8, alpha=0.0, epochs=2), data).model.eval()
    best = export_model(student, tmp / "assistant" / "best", data.info.input_shape, mean=data.mean, std=data.std,
                        pixel_max=data.pixel_max)
    return {"teacher_checkpoint": str(best / PROGRAM_FILE)}, student, _same


def pickled_case(tmp: Path, data: TensorSplits) -> tuple[dict[str, Any], nn.Module, Callable]:
    sys.path.insert(0, str(files.write_package(tmp / "src")))
    from teacherpkg.nets import SmallNet  # type: ignore[import-not-found]

    model = SmallNet(10, 1).eval()
    torch.save(model, tmp / "whole.pt")
    return {"teacher_checkpoint": str(tmp / "whole.pt"), "trust_checkpoint": True}, model, _same


CASES: dict[str, Case] = {"torchvision": torchvision_case, "torchvision library view": library_view_case,
                          "timm": timm_case, "package factory": package_factory_case,
                          "file factory": file_factory_case, "torchscript": torchscript_case,
                          "torch.export": exported_case, "kdsearch export": kdsearch_export_case,
                          "pickled module": pickled_case}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_teacher_source_runs_a_search(case: str, data: TensorSplits, tmp_path: Path) -> None:
    flags, model, view = CASES[case](tmp_path, data)
    outcome = small_search(tmp_path / "results", "teacher", **SEARCH, **flags)
    summary = json.loads((outcome.run_dir / "summary.json").read_text())
    assert sum(summary["trials"].values()) == 2 and summary["trials"]["failed"] == 0
    teacher = summary["teacher"]
    own_accuracy = evaluate(model, view(data.test_x[:]), data.test_y)[0]
    assert teacher["test_accuracy"] == pytest.approx(own_accuracy, abs=1e-6)
    assert teacher["params"] == sum(parameter.numel() for parameter in model.parameters())
    assert teacher["init_from_teacher"].startswith("not offered")
    records = json.loads((outcome.run_dir / "trials.json").read_text())
    feature_losses = {record["config"].get("feature_loss") for record in records}
    if flags.get("teacher_features"):
        assert teacher["feature_layers"] == flags["teacher_features"].split(",")
    else:
        assert feature_losses == {"none"} and teacher["feature_layers"] == []


def test_a_teacher_without_feature_maps_leaves_feature_losses_out_in_one_line(data: TensorSplits,
                                                                             tmp_path: Path) -> None:
    import dataclasses

    from spaces import ChoiceParam
    from trainers import TeacherSource, load_teacher
    from tuning.prepare import without_feature_losses
    from tuning.spec import UserError, preset_space

    path = files.save_torchscript(files.RGBNet(), tmp_path / "teacher.ts")
    teacher = load_teacher(TeacherSource(checkpoint=str(path)), data)
    lines: list[str] = []
    space = without_feature_losses(preset_space("default"), teacher, lines.append)
    assert space.feature_loss.choices == ("none",)
    assert lines == [f"search space: feature losses (attention, hint) left out: teacher {teacher.name} gives no "
                     "feature maps (kdsearch cannot tap its layers)"]
    asks = dataclasses.replace(preset_space("default"), feature_loss=ChoiceParam(("hint",)))
    with pytest.raises(UserError, match="--space asks for feature losses hint"):
        without_feature_losses(asks, teacher, lines.append)
