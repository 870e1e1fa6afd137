"""Benchmark: training throughput (images/s) of kdsearch's tensor path against a plain DataLoader loop and
against the fastest settings torch offers for the same models on this CPU (a benchmark, not a test).

    .venv/bin/python bench/bench_throughput.py                # about 3-4 minutes on 2 cores
    .venv/bin/python bench/bench_throughput.py --compile      # adds torch.compile variants (minutes of compiling)

For each input shape (28x28 1 channel, 32x32 3 channels; random images, 10 classes, random crop with
padding H/8 and horizontal flip, batch 64, SGD with Nesterov momentum), three training steps:

- teacher step: the teacher (``resnet-large``) trained on augmented views, as ``train_teacher`` does;
- student step: a cnn depth 1 width 16 student alone (alpha 0) on augmented views;
- KD step: the same student with alpha 0.5, T 4. kdsearch reads the teacher's logits from its per-view cache
  (``Teacher.with_cached_outputs``, built from a tiny model in seconds: a cached step's cost does not depend
  on which model filled the cache); the plain loop runs the teacher online, as a hand-written augmented
  KD loop must (its random transforms do not say which view they made).

Sides compared:

- kdsearch: ``trainers.distill`` on a ``TensorSplits`` (augmentation vectorised on tensors, ``augment_views``);
  the validation pass at the end of each epoch runs on 8 images (negligible);
- (a) plain: the same models, optimizer and loss in a ``torch.utils.data.DataLoader`` loop (``num_workers=0``,
  shuffle) over a dataset that makes a PIL image per sample and applies torchvision's ``RandomCrop(padding)``,
  ``RandomHorizontalFlip``, ``ToTensor`` and ``Normalize`` per sample, as the torchvision tutorials do.
  Target: kdsearch at least 3x the plain loop's images/s. Below each teacher and student row, its ceiling:
  the plain step's time per image over kdsearch's less kdsearch's data path (measured alone, the data rows),
  i.e. the ratio kdsearch would reach if its data path cost nothing; a ceiling under 3x puts the target out
  of reach for any data path (what is left is the model's compute, which (b) compares with torch's best).
- (b) settings: a hand-written loop on the same tensor data path with (i) nothing changed (eager), (ii) model
  and inputs in ``channels_last``, (iii) two intra-op threads instead of one (compared per core: a search runs
  one 1-thread trial per core), (iv) with ``--compile``, ``torch.compile`` of the model. Target: kdsearch's
  images/s at least 0.9 of the best of these.

Interleaving as in ``bench_trainers.py``: all the runs of one shape start together, each in its own thread
(one intra-op thread each unless the variant says otherwise), and take turns epoch by epoch; each round
rotates which goes first. The first epoch of each run (model building, compiling) is left out. images/s is
the median over the other (round, epoch) pairs of images in the epoch / its wall time. Always exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_trainers import Job, Segment, run_in_lockstep  # noqa: E402

from trainers import DistillConfig, Teacher, TensorSplits, distill  # noqa: E402
from trainers.data import DatasetInfo, augment_batch, augment_views, view_count  # noqa: E402
from trainers.losses import kd_loss  # noqa: E402
from trainers.models import build_student, build_teacher, stem_stride_for  # noqa: E402

PLAIN_RATIO_TARGET = 3.0
BEST_RATIO_TARGET = 0.9
BATCH = 64
CLASSES = 10
SHAPES = {"28x28x1": (1, 28), "32x32x3": (3, 32)}


@dataclasses.dataclass
class Shape:
    """One input shape's data: raw uint8 images for the plain loop, normalised tensors for kdsearch."""

    name: str
    raw: np.ndarray  # (N, H, W) or (N, H, W, C), uint8
    labels: np.ndarray
    splits: TensorSplits
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def info(self) -> DatasetInfo:
        return self.splits.info

    def first(self, count: int) -> TensorSplits:
        """The first ``count`` training images (and a tiny validation set)."""
        s = self.splits
        return dataclasses.replace(s, train_rows=s.train_rows[:count])


def make_shape(name: str, channels: int, size: int, samples: int) -> Shape:
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (samples, size, size, channels), dtype=np.uint8)
    labels = rng.integers(0, CLASSES, samples)
    images = torch.from_numpy(raw).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(labels).long()
    info = DatasetInfo(name, (channels, size, size), CLASSES, crop_padding=size // 8, horizontal_flip=True)
    rows = torch.arange(samples)
    splits = TensorSplits.from_uint8(info, images, y, rows, rows[:8], rows[:8])
    return Shape(name, raw[..., 0] if channels == 1 else raw, labels, splits, splits.mean, splits.std)


class PerSampleDataset(torch.utils.data.Dataset):
    """Like torchvision's MNIST/CIFAR10: a PIL image per sample, then the per-sample transforms."""

    def __init__(self, shape: Shape, count: int) -> None:
        self.raw, self.labels = shape.raw[:count], shape.labels[:count]
        size = shape.info.input_shape[1]
        self.transform = transforms.Compose([
            transforms.RandomCrop(size, padding=shape.info.crop_padding),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(shape.mean, shape.std),
        ])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(self.raw[index], mode="L" if self.raw.ndim == 3 else "RGB")
        return self.transform(image), int(self.labels[index])


def sgd(model: nn.Module, steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """kdsearch's recipe: SGD, Nesterov momentum, weight decay, cosine schedule per step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
    return optimizer, schedule


def build(kind: str, shape: Shape) -> nn.Module:
    """The model as kdsearch builds it for this shape (a stride-2 stem from 28 px on), for every side."""
    channels, stem_stride = shape.info.input_shape[0], stem_stride_for(shape.info.input_shape)
    if kind == "teacher":
        return build_teacher("resnet-large", channels, CLASSES, stem_stride)
    return build_student("cnn", 1, 16, channels, CLASSES, stem_stride)


def kdsearch_job(kind: str, shape: Shape, count: int, epochs: int, per_view_teacher: Teacher | None) -> Job:
    """``distill`` as kdsearch runs it: teacher training, a student alone, or KD from per-view cached logits."""
    data = shape.first(count)

    def run(epoch_done: Callable[[], None]) -> None:
        if kind == "teacher":  # what train_teacher runs
            config = DistillConfig(alpha=0.0, augment=True, batch_size=BATCH, epochs=epochs)
            distill(config, data, None, student=build("teacher", shape), on_epoch=lambda r, s: epoch_done())
            return
        config = DistillConfig(family="cnn", depth=1, width=16, batch_size=BATCH, augment=True, epochs=epochs,
                               alpha=0.5 if kind == "kd" else 0.0, temperature=4.0)
        distill(config, data, per_view_teacher if kind == "kd" else None, on_epoch=lambda r, s: epoch_done())

    return run


def plain_job(kind: str, shape: Shape, count: int, epochs: int, teacher: nn.Module) -> Job:
    """The same step in a plain DataLoader loop with per-sample torchvision transforms."""

    def run(epoch_done: Callable[[], None]) -> None:
        loader = torch.utils.data.DataLoader(PerSampleDataset(shape, count), batch_size=BATCH, shuffle=True,
                                             num_workers=0)
        model = build("teacher" if kind == "teacher" else "student", shape).train()
        optimizer, schedule = sgd(model, epochs * len(loader))
        for _ in range(epochs):
            for images, labels in loader:
                logits = model(images)
                loss = F.cross_entropy(logits, labels)
                if kind == "kd":
                    with torch.no_grad():
                        teacher_logits = teacher(images)
                    loss = 0.5 * loss + 0.5 * kd_loss(logits, teacher_logits, 4.0)
                _sgd_step(loss, optimizer, schedule)
            epoch_done()

    return run


def data_job(side: str, shape: Shape, count: int, epochs: int) -> Job:
    """The data path alone: batches made and augmented, no model (what separates the two sides' steps)."""
    data = shape.first(count)

    def run(epoch_done: Callable[[], None]) -> None:
        if side == "plain":
            loader = torch.utils.data.DataLoader(PerSampleDataset(shape, count), batch_size=BATCH, shuffle=True,
                                                 num_workers=0)
            for _ in range(epochs):
                for _batch in loader:
                    pass
                epoch_done()
            return
        generator = torch.Generator().manual_seed(1)
        background = shape.splits.background
        for _ in range(epochs):
            order = torch.randperm(count, generator=generator)
            for start in range(0, count, BATCH):
                indices = order[start:start + BATCH]
                augment_views(data.train_x[indices], data.info, generator, background)
                data.train_y[indices]
            epoch_done()

    return run


@dataclasses.dataclass(frozen=True)
class Variant:
    label: str
    channels_last: bool = False
    threads: int = 1
    compiled: bool = False


def variant_job(kind: str, variant: Variant, shape: Shape, count: int, epochs: int,
                state: dict[str, object]) -> Job:
    """A hand-written loop over the same tensor data path (``augment_batch``) with one setting changed.

    The model (compiled once where asked) lives in ``state`` across rounds, so compiling is paid once.
    """
    data = shape.first(count)

    def run(epoch_done: Callable[[], None]) -> None:
        torch.set_num_threads(variant.threads)
        if "model" not in state:
            model = build(kind, shape).train()
            if variant.channels_last:
                model = model.to(memory_format=torch.channels_last)
            state["model"] = model
            state["forward"] = torch.compile(model) if variant.compiled else model
            state["optimizer"] = sgd(model, 10**6)
        forward, (optimizer, schedule) = state["forward"], state["optimizer"]
        generator = torch.Generator().manual_seed(1)
        background = shape.splits.background
        for _ in range(epochs):
            order = torch.randperm(count, generator=generator)
            for start in range(0, count, BATCH):
                indices = order[start:start + BATCH]
                images = augment_batch(data.train_x[indices], data.info, generator, background)
                if variant.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                loss = F.cross_entropy(forward(images), data.train_y[indices])
                _sgd_step(loss, optimizer, schedule)
            epoch_done()

    return run


def per_view_teacher(shape: Shape, count: int) -> Teacher:
    """A teacher with a real per-view cache (``Teacher.with_cached_outputs``) on the first ``count`` images.

    Its model is a tiny cnn so that building the cache takes seconds: a KD step that reads cached logits
    costs the same whatever model computed them (they have the shape (views, N, classes) either way).
    """
    torch.manual_seed(2)
    tiny = build_student("cnn", 1, 4, shape.info.input_shape[0], CLASSES)
    data = shape.first(count)
    teacher = Teacher.with_cached_outputs(tiny, "tiny-cnn", data.train_x, views_of=shape.info,
                                          background=shape.splits.background)
    per_view = teacher.outputs.per_view if teacher.outputs is not None else None
    if per_view is None or tuple(per_view.logits.shape) != (view_count(shape.info), count, CLASSES):
        raise RuntimeError(f"no per-view cache for {shape.name}: the cache bounds refuse {count} images")
    return teacher


def images_per_second(runs: list[list[Segment]], images: int) -> float:
    return statistics.median(images / wall for run in runs for wall, _ in run[1:])


def reachable_ratio(plain_step: float, our_step: float, our_data: float) -> float:
    """The ratio over the plain loop kdsearch's step would reach if its data path cost nothing (all in
    images/s): the plain step's time per image over kdsearch's, less kdsearch's data path, i.e. its model
    compute. Under the 3x target, no data path can meet it; only faster model compute could (target 2b)."""
    compute = 1 / our_step - 1 / our_data
    return math.inf if compute <= 0 else (1 / plain_step) / compute


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="per run and round; the first is left out")
    parser.add_argument("--student-images", type=int, default=384, help="training images per student epoch")
    parser.add_argument("--teacher-images", type=int, default=128, help="training images per teacher epoch")
    parser.add_argument("--compile", action="store_true", help="add torch.compile variants (slow to compile)")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    variants = [Variant("eager (hand loop)"), Variant("channels_last", channels_last=True),
                Variant("2 threads (per core)", threads=2)]
    if args.compile:
        variants.append(Variant("torch.compile", compiled=True))
    rows: list[tuple[str, ...]] = []
    for shape_name in args.shapes:
        channels, size = SHAPES[shape_name]
        shape = make_shape(shape_name, channels, size, max(args.student_images, args.teacher_images))
        online_teacher = build("teacher", shape).eval()
        per_view = per_view_teacher(shape, args.student_images)
        counts = {"teacher": args.teacher_images, "student": args.student_images, "kd": args.student_images}
        states: dict[tuple[str, str], dict[str, object]] = {}
        names: list[tuple[str, str]] = []
        jobs_for_round: list[Callable[[], Job]] = []
        counts["data"] = args.student_images
        for side in ("kdsearch", "plain"):
            names.append(("data", side))
            jobs_for_round.append(functools.partial(data_job, side, shape, args.student_images, args.epochs))
        for kind in ("teacher", "student", "kd"):
            count = counts[kind]
            names.append((kind, "kdsearch"))
            jobs_for_round.append(functools.partial(kdsearch_job, kind, shape, count, args.epochs, per_view))
            names.append((kind, "plain"))
            jobs_for_round.append(functools.partial(plain_job, kind, shape, count, args.epochs, online_teacher))
            if kind == "kd":
                continue
            for variant in variants:
                state = states.setdefault((kind, variant.label), {})
                names.append((kind, variant.label))
                jobs_for_round.append(functools.partial(variant_job, kind, variant, shape, count, args.epochs, state))
        segments: dict[tuple[str, str], list[list[Segment]]] = {name: [] for name in names}
        first_epochs: dict[tuple[str, str], float] = {}
        for round_index in range(args.rounds):
            results = run_in_lockstep([make() for make in jobs_for_round], round_index)
            for name, run in zip(names, results, strict=True):
                segments[name].append(run)
                if round_index == 0:
                    first_epochs[name] = run[0][0]
        speed = {name: images_per_second(runs, counts[name[0]]) for name, runs in segments.items()}
        data_ours, data_plain = speed[("data", "kdsearch")], speed[("data", "plain")]
        rows.append((shape_name, "data path only", f"kdsearch {data_ours:.0f} img/s",
                     f"plain DataLoader {data_plain:.0f}", f"{data_ours / data_plain:.1f}x", "", ""))
        for kind in ("teacher", "student", "kd"):
            ours, plain = speed[(kind, "kdsearch")], speed[(kind, "plain")]
            plain_label = "plain DataLoader" + (" (online teacher)" if kind == "kd" else "")
            rows.append((shape_name, f"{kind} step", f"kdsearch {ours:.0f} img/s", f"{plain_label} {plain:.0f}",
                         f"{ours / plain:.2f}x", f">= {PLAIN_RATIO_TARGET:g}x",
                         "PASS" if ours / plain >= PLAIN_RATIO_TARGET else "FAIL"))
            if kind == "kd":
                continue
            ceiling = reachable_ratio(plain, ours, data_ours)
            rows.append((shape_name, f"{kind} step", "", f"ceiling: plain step {1e3 / plain:.3f} ms/img / kdsearch's "
                         f"{1e3 / ours:.3f} less its data path {1e3 / data_ours:.3f}", f"{ceiling:.2f}x",
                         f">= {PLAIN_RATIO_TARGET:g}x", "reachable" if ceiling >= PLAIN_RATIO_TARGET
                         else "out of reach for any data path"))
            per_core = {v.label: speed[(kind, v.label)] / v.threads for v in variants}
            best_label = max(per_core, key=per_core.get)
            detail = ", ".join(f"{label} {value:.0f}" for label, value in per_core.items())
            rows.append((shape_name, f"{kind} step", f"kdsearch {ours:.0f} img/s", f"best: {best_label} "
                         f"{per_core[best_label]:.0f} [{detail}]", f"{ours / per_core[best_label]:.2f}",
                         f">= {BEST_RATIO_TARGET:g}", "PASS" if ours / per_core[best_label] >= BEST_RATIO_TARGET
                         else "FAIL"))
            if args.compile:
                compile_s = first_epochs[(kind, "torch.compile")] - counts[kind] / speed[(kind, "torch.compile")]
                rows.append((shape_name, f"{kind} step", "", f"torch.compile: first epoch {compile_s:.0f} s longer "
                             "(compiling)", "", "", ""))

    print()
    print(f"throughput benchmark: torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} cores, "
          f"batch {BATCH}, {args.rounds} rounds x {args.epochs} epochs (first left out), "
          f"{args.student_images} images per student epoch, {args.teacher_images} per teacher epoch, "
          f"{time.perf_counter() - started:.0f} s")
    print(f"load average (1 min): {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    header = ("shape", "step", "kdsearch", "compared with (img/s; per core for threads)", "ratio", "target", "")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(f"{cell:{width}s}" for cell, width in zip(row, widths, strict=True)).rstrip())


def _sgd_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, schedule: Any) -> None:
    """One optimiser step of a hand-written reference loop, as kdsearch's loop takes it."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    schedule.step()


if __name__ == "__main__":
    main()
