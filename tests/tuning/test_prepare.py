"""What ``tuning.prepare`` derives from the flags before Ray starts: data as asked, the bounded space."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from spaces import ChoiceParam
from trainers import TeacherResult, build_teacher, student_parameter_count
from trainers import teacher as teacher_module
from tuning import build_spec
from tuning.bounds import student_measures
from tuning.prepare import (
    augmentation_summary,
    bounded_space,
    check_teacher_name,
    load_data,
    shared_teacher,
    signals_stop_the_preparation,
    without_idle_interval,
)
from tuning.stop_signal import SearchInterrupted


@pytest.mark.parametrize(("augment", "expected"), [("auto", "crop"), ("none", "none"), ("crop", "crop"),
                                                   ("crop+flip", "crop+flip")])
def test_every_augment_value_reaches_the_data(augment: str, expected: str, tmp_path: Path) -> None:
    data = load_data(build_spec(augment=augment, results_dir=str(tmp_path)))
    assert data.info.augmentation == expected


def test_image_size_resizes_an_image_folder_and_keeps_its_channels(tmp_path: Path) -> None:
    for label in ("a", "b"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for index in range(10):
            Image.new("L", (28, 28), color=index * 20).save(tmp_path / "images" / label / f"{index}.png")
    spec = build_spec(dataset="imagefolder", data_dir=str(tmp_path / "images"), image_size=16,
                      results_dir=str(tmp_path))
    data = load_data(spec)
    assert data.info.input_shape == (1, 16, 16)
    assert augmentation_summary(data, spec.space)["dataset"] == "crop"  # grayscale: no flips


@pytest.mark.parametrize(("flag", "expected"), [("5%", 24_571), ("20000", 20_000), ("0.5%", 2_457)])
def test_max_params_as_a_count_or_a_share_of_the_teacher(flag: str, expected: int, tmp_path: Path) -> None:
    spec = build_spec(max_params=flag, results_dir=str(tmp_path))
    data = load_data(spec)
    teacher_params = check_teacher_name(spec, data)
    assert spec.teacher == "cnn-large" and teacher_params == 491_434  # digits' default teacher
    space, bound = bounded_space(spec, data, teacher_params)
    assert bound["max_params"] == expected and bound["pareto_measure"] == "params"
    for family, bounds in space.families.items():
        for depth in range(bounds.depth.low, bounds.depth.high + 1):
            widest = bounds.width_at(depth).high
            assert student_parameter_count(family, depth, widest, 1, 10) <= expected
            assert widest == bounds.width.high or student_parameter_count(family, depth, widest + 1, 1, 10) > expected


def test_flops_and_latency_bounds_keep_only_students_that_meet_them(tmp_path: Path) -> None:
    spec = build_spec(max_flops="400k", max_latency_ms=0.1, results_dir=str(tmp_path))
    assert spec.max_params == "none" and spec.size_measure == "latency_ms"
    data = load_data(spec)
    space, bound = bounded_space(spec, data, check_teacher_name(spec, data))
    assert (bound["max_params"], bound["max_flops"], bound["max_latency_ms"]) == (None, 400_000, 0.1)
    assert bound["latency"]["runtime"] == "onnxruntime" and bound["latency"]["students_timed"] > 0
    measures, latency = student_measures((1, 8, 8), 10, spec.latency_cache_dir)
    for family, bounds in space.families.items():
        for depth in range(bounds.depth.low, bounds.depth.high + 1):
            widest = bounds.width_at(depth).high
            assert measures.flops(family, depth, widest) <= 400_000
            assert measures.latency_ms(family, depth, widest) <= 0.1
    assert latency.measured == 0  # every widest student was timed by the bisection, and cached
    _, again = bounded_space(spec, data, check_teacher_name(spec, data))
    assert again["latency"]["students_timed"] == 0  # a rerun times nothing


def test_distill_interval_is_fixed_only_when_every_trial_reads_cached_outputs(tmp_path: Path) -> None:
    spec = build_spec(results_dir=str(tmp_path))
    digits = load_data(spec)  # students on plain images: outputs cached
    assert without_idle_interval(spec.space, digits).distill_interval == ChoiceParam((1,))
    searched = build_spec(results_dir=str(tmp_path), space_file=_space_file(tmp_path, "augment: [false, true]"))
    assert without_idle_interval(searched.space, digits).distill_interval == spec.space.distill_interval
    chosen = build_spec(results_dir=str(tmp_path), space_file=_space_file(tmp_path, "distill_interval: [1, 4]"))
    assert without_idle_interval(chosen.space, digits).distill_interval == ChoiceParam((1, 4))


def _space_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / f"space-{abs(hash(text))}.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("cache_gb", [None, 0.0])
def test_teacher_cache_gb_keeps_per_view_logits_on_disk_or_runs_the_teacher_online(
        cache_gb: float | None, tmp_path: Path) -> None:
    """Students that augment read the teacher's per-view logits from an fp16 file under --cache-dir, within
    --teacher-cache-gb (default: half the free disk); 0 runs the teacher online on augmented views, said once."""
    flags = {"teacher_cache_gb": cache_gb} if cache_gb is not None else {}
    spec = build_spec(results_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"), max_train_samples=100,
                      space_file=_space_file(tmp_path, "augment: true"), **flags)
    data = load_data(spec)
    model = build_teacher("cnn-large", 1, 10)
    result = TeacherResult(model=model, name="cnn-large", source="trained", path=None, val_accuracy=0.0, seconds=0.0)
    lines: list[str] = []
    teacher = shared_teacher(result, data, spec.space, spec, log=lines.append)
    if cache_gb is None:
        assert teacher.outputs is not None and teacher.outputs.per_view is not None
        path = Path(teacher.outputs.per_view.logits_path)
        assert path.parent == tmp_path / "cache" / "teacher-views" and path.is_file()
        assert teacher.outputs.per_view.logits.dtype == torch.float16
        assert [line for line in lines if "cached on disk" in line and "fp16" in line]
    else:
        assert teacher.outputs is None  # every trial augments: nothing cached, the teacher runs online
        assert [line for line in lines if "runs online" in line and "--teacher-cache-gb 0.00" in line]


# A local instance started as a run starts it: a task worker, idle while more actors than CPUs ran (a Tuner's
# trials), is still there for the next task. Ray's default stops it after a second, and a new one imports
# torch and kdsearch again.
KEEPS_WORKERS = """
import os, sys, time
import ray
from tuning import build_spec
from tuning.prepare import start_ray

start_ray(build_spec(results_dir=sys.argv[1]), log=print)
cpus = int(ray.cluster_resources()["CPU"])

@ray.remote(num_cpus=1)
def task():
    time.sleep(0.5)  # every task worker busy at once
    return os.getpid()

@ray.remote(num_cpus=1)
class Actor:
    def pid(self):
        return os.getpid()

before = set(ray.get([task.remote() for _ in range(cpus)]))
time.sleep(2)  # idle for longer than Ray's default allows beside more workers than CPUs
actors = [Actor.remote() for _ in range(cpus)]
ray.get([actor.pid.remote() for actor in actors])
time.sleep(3)
for actor in actors:
    ray.kill(actor)
after = set(ray.get([task.remote() for _ in range(cpus)]))
print("reused", len(before & after), "of", len(after))
ray.shutdown()
"""


def test_a_local_ray_keeps_its_idle_task_workers(tmp_path: Path) -> None:
    completed = subprocess.run([sys.executable, "-c", KEEPS_WORKERS, str(tmp_path)], capture_output=True,
                               text=True, timeout=120, cwd=Path(__file__).parents[2],
                               env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    assert completed.returncode == 0, completed.stderr[-2000:]
    reused = completed.stdout.strip().splitlines()[-1].split()
    assert reused[1] != "0" and reused[1] == reused[3], completed.stdout


def test_a_signal_while_the_teacher_views_are_cached_stops_after_a_view_and_the_rerun_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGUSR1 (SLURM's time-limit warning) during the per-view logits: exit 3's error after the view in progress,
    the views done kept; the next preparation computes only the rest, to the logits an unstopped one writes."""
    # As on a real data set: the views' feature maps are over their memory bound, so logits go view by view to disk.
    monkeypatch.setattr(teacher_module, "MAX_VIEW_BYTES", 1)
    spec = build_spec(results_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"), max_train_samples=100,
                      space_file=_space_file(tmp_path, "augment: true"))
    data = load_data(spec)
    model = build_teacher("cnn-large", 1, 10)
    result = TeacherResult(model=model, name="cnn-large", source="trained", path=None, val_accuracy=0.0, seconds=0.0)
    forwards: list[int] = []

    def count_and_signal(*_: object) -> None:
        forwards.append(1)
        if len(forwards) == 3:  # the plain images, view 0, view 1: the signal comes while view 1 is computed
            os.kill(os.getpid(), signal.SIGUSR1)

    stem = next(model.children())  # runs in every pass, logits alone or with feature maps
    hook = stem.register_forward_pre_hook(count_and_signal)
    lines: list[str] = []
    with pytest.raises(SearchInterrupted, match="stopped by SIGUSR1 while preparing the teacher"):
        with signals_stop_the_preparation(spec, lines.append):
            shared_teacher(result, data, spec.space, spec, log=lines.append)
    hook.remove()
    assert any(line.startswith("teacher logits: stopped after view 2/9") for line in lines), lines
    views_folder = tmp_path / "cache" / "teacher-views"
    assert not list(views_folder.glob("*.npy")) and len(list(views_folder.glob(".*.progress.json"))) == 1

    forwards.clear()
    hook = stem.register_forward_pre_hook(lambda *_: forwards.append(1))
    lines.clear()
    teacher = shared_teacher(result, data, spec.space, spec, log=lines.append)
    hook.remove()
    assert len(forwards) == 1 + 1 + 7  # the plain images, view 0 (it sizes the feature maps), views 2 to 8
    assert any(line.startswith("teacher logits: going on from view 2/9") for line in lines), lines
    assert teacher.outputs is not None and teacher.outputs.per_view is not None
    whole = build_spec(results_dir=str(tmp_path), cache_dir=str(tmp_path / "whole"), max_train_samples=100,
                       space_file=_space_file(tmp_path, "augment: true"))
    unstopped = shared_teacher(result, data, whole.space, whole, log=lambda _: None)
    assert torch.equal(teacher.outputs.per_view.logits, unstopped.outputs.per_view.logits)


def test_a_signal_while_the_data_is_decoded_stops_after_the_images_in_progress_and_the_rerun_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.trainers.test_data import write_image_folder
    from trainers.data import _decode

    root = tmp_path / "images"
    write_image_folder(root, per_class=20, shape=(8, 8, 3))
    spec = build_spec(dataset="imagefolder", data_dir=str(root), results_dir=str(tmp_path),
                      cache_dir=str(tmp_path / "cache"))
    monkeypatch.setattr(_decode, "DECODE_CHUNK", 8)
    read, reads, signalled = _decode._read_image, [], []

    def read_and_signal(path: str, *args: object) -> object:
        reads.append(path)
        if len(reads) == 10 and not signalled:  # in the second chunk of the first load
            signalled.append(path)
            os.kill(os.getpid(), signal.SIGTERM)
        return read(path, *args)

    monkeypatch.setattr(_decode, "_read_image", read_and_signal)
    lines: list[str] = []
    with pytest.raises(SearchInterrupted, match="stopped by SIGTERM while loading the data; rerun the same command"):
        load_data(spec, lines.append)
    assert len(reads) == 16 and "data: decoding stopped after 16/60 images, kept in " in lines[-1], lines
    reads.clear()
    lines.clear()
    data = load_data(spec, lines.append)
    assert len(reads) == 60 - 16 and any("going on from 16 images decoded by an earlier attempt" in line
                                         for line in lines)
    whole = load_data(build_spec(dataset="imagefolder", data_dir=str(root), results_dir=str(tmp_path),
                                 cache_dir=str(tmp_path / "whole")))
    assert torch.equal(data.train_x.store, whole.train_x.store)
