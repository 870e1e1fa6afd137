"""One short GPU check of ``trainers/`` (no Ray, no Optuna: the lent GPU machines do not have them).

    python bench/gpu_check.py                 # on a CUDA machine
    python bench/gpu_check.py --device cpu    # the same path on the CPU, to check the script itself

On synthetic CIFAR-shaped data held on the device (random crop + flip done on tensors there), it trains a
teacher briefly, then distills students with an online teacher (KD + attention, KD + hint, every 2nd step)
and with cached teacher outputs, and checks that everything stays on the device, losses stay finite,
the exported student predicts like the trained one, and prints epoch times, the KD/student-alone ratios
(cached: target <= 1.1) and peak GPU memory. It measures, it does not assert speed.

Then (issue 10, target 6) one throughput table for a CIFAR-100-shaped resnet32x4 -> resnet8x4-class pair
(the registry's ``resnet`` family: depth 5 width 64 as the teacher, 3 stages of 5 basic blocks at 64/128/256
channels, stem 64 where resnet32x4 has 32; depth 1 width 64 as the student), batch 512, bf16 autocast,
channels_last, random crop (padding 4) + flip on the device: images/s of the student alone, KD with the
teacher online, KD with the per-view cache (logits of every one of the 162 views of every image, looked up
by (view, index); filled with the teacher's logits on the plain images, as the cache's bounds would refuse
building it for real at this size; the step's cost does not depend on the values), a hand-written loop of
the student alone for reference, and the total images/s of 1, 2 and 4 concurrent KD-cached trials, each its
own process on the one GPU (as Ray's fractional GPUs run them). Reference points (issue 10), on an H200 with
a hand-written loop: 106k img/s student alone, 46k KD online, 95k KD cached.

    python bench/gpu_check.py --skip-checks     # the throughput table only (about 100 s on an H200, start-up included)
    python bench/gpu_check.py --skip-checks --profile --compile   # plus torch.profiler of one epoch and a
                                                # torch.compile'd hand loop: where the time goes
    python bench/gpu_check.py --device cpu      # tiny sizes on the CPU, to check the script (about 1.5 min)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import multiprocessing
import queue as queue_module
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers import DistillConfig, Teacher, TensorSplits, distill, export_model, load_exported  # noqa: E402
from trainers.data import DatasetInfo, augment_batch, view_count  # noqa: E402
from trainers.models import build_student, build_teacher, count_parameters  # noqa: E402

CONCURRENCY = (1, 2, 4)
WORKER_TIMEOUT_S = 240.0


def synthetic_cifar(samples: int, device: str, classes: int = 10, val: int | None = None) -> TensorSplits:
    """Random CIFAR-shaped images whose class shifts the mean of one channel: learnable, no download.

    80/10/10 % train/val/test, or with ``val`` that many validation and test images and the rest to train."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, classes, (samples,), generator=generator)
    noise = torch.randn(samples, 3, 32, 32, generator=generator) + (labels.float() / (classes / 2)).view(-1, 1, 1, 1)
    # uint8 pixels like a real dataset's, kept on the device as uint8 and normalised per batch.
    images = (128 + 32 * noise).round().clamp(0, 255).to(torch.uint8)
    info = DatasetInfo(f"synthetic-cifar{classes}", (3, 32, 32), classes, crop_padding=4, horizontal_flip=True)
    cut = [int(samples * 0.8), int(samples * 0.9)] if val is None else [samples - 2 * val, samples - val]
    rows = torch.arange(samples)
    splits = TensorSplits.from_uint8(info, images, labels, rows[:cut[0]], rows[cut[0]:cut[1]], rows[cut[1]:])
    return splits.to(device)


def timed(device: str, action) -> tuple[float, object]:
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = action()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--skip-checks", action="store_true", help="only the throughput table")
    parser.add_argument("--skip-throughput", action="store_true", help="only the checks")
    parser.add_argument("--tp-samples", type=int, default=None,
                        help="training images of the throughput runs (cuda: 25,600; cpu: 256)")
    parser.add_argument("--tp-epochs", type=int, default=None, help="epochs per throughput run, the first left "
                        "out (cuda: 5; cpu: 2)")
    parser.add_argument("--tp-width", type=int, default=None, help="width of the pair (cuda: 64; cpu: 8, tiny)")
    parser.add_argument("--tp-batch", type=int, default=None, help="batch size (cuda: 512; cpu: 64)")
    parser.add_argument("--compile", action="store_true", help="add the hand loop with torch.compile to the table")
    parser.add_argument("--profile", action="store_true", help="also profile one epoch of the student alone "
                        "and of KD with the per-view cache (torch.profiler): where the time goes")
    args = parser.parse_args()
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible; pass --device cpu to check the script on the CPU")
        return 2
    ok = True
    if args.profile:
        ok &= profile(args, device)
    if not args.skip_checks:
        ok &= checks(args, device)
    if not args.skip_throughput:
        ok &= throughput(args, device)
    print("gpu_check:", "OK" if ok else "PROBLEMS (see above)")
    return 0 if ok else 1


def checks(args: argparse.Namespace, device: str) -> bool:
    """The correctness checks: a brief teacher, online and cached distillation, export and reload."""
    data = synthetic_cifar(args.samples, device)
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}, "
          f"train {len(data.train_y)} images 3x32x32 on {data.train_x.device}")
    teacher_model = build_teacher("resnet-large", 3, 10).to(device)
    seconds, result = timed(device, lambda: distill(DistillConfig(alpha=0.0, epochs=args.epochs, batch_size=256),
                                                    data, student=teacher_model))
    print(f"teacher resnet-large: {args.epochs} epochs {seconds:.1f}s, "
          f"val accuracy {result.history[-1].val_accuracy:.3f}")
    online = Teacher(teacher_model, "resnet-large")
    plain_view = dataclasses.replace(data, info=dataclasses.replace(data.info, crop_padding=0, horizontal_flip=False))
    cached = Teacher.with_cached_outputs(teacher_model, "resnet-large", plain_view.train_x)
    base = DistillConfig(family="resnet", depth=1, width=16, epochs=args.epochs, batch_size=256, alpha=0.7,
                         temperature=4.0)
    runs = {
        "student alone (augmented)": (base.without_teacher(), data, None),
        "KD online, every step": (base, data, online),
        "KD online + attention, every 2nd step": (dataclasses.replace(base, feature_loss="attention", beta=10.0,
                                                                      distill_interval=2), data, online),
        "KD online + hint": (dataclasses.replace(base, feature_loss="hint", beta=1.0), data, online),
        "student alone (plain)": (base.without_teacher(), plain_view, None),
        "KD cached outputs": (base, plain_view, cached),
    }
    epoch_seconds, ok = {}, True
    for name, (config, split, teacher) in runs.items():
        seconds, result = timed(device, lambda c=config, s=split, t=teacher: distill(c, s, t))
        on_device = all(p.device.type == device for p in result.model.parameters())
        ok &= on_device
        epoch_seconds[name] = seconds / config.epochs
        print(f"{name:40s} {epoch_seconds[name] * 1000:8.1f} ms/epoch  val {result.history[-1].val_accuracy:.3f}  "
              f"on {device}: {on_device}")
    cached_ratio = epoch_seconds["KD cached outputs"] / epoch_seconds["student alone (plain)"]
    online_ratio = epoch_seconds["KD online, every step"] / epoch_seconds["student alone (augmented)"]
    print(f"KD cached / student alone: {cached_ratio:.3f} (target <= 1.1: {'pass' if cached_ratio <= 1.1 else 'FAIL'})")
    print(f"KD online every step / student alone: {online_ratio:.3f} (the teacher forward is the difference)")
    with tempfile.TemporaryDirectory() as folder:
        model = result.model
        export_model(model, folder, data.info.input_shape)
        loaded = load_exported(folder, preprocessing=False)  # it takes normalised images, as test_x is
        with torch.no_grad():
            same = torch.allclose(model.to("cpu").eval()(data.test_x[:64].cpu()), loaded(data.test_x[:64].cpu()),
                                  atol=1e-5)
    ok &= same
    print(f"export from {device}, load on cpu, same predictions: {same}")
    if device == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    return ok


# ---------------------------------------------------------------------------------------------------------
# Throughput (issue 10, target 6)
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sizes:
    samples: int
    epochs: int
    width: int
    batch: int
    classes: int = 100
    val: int = 512


def sizes_for(args: argparse.Namespace, device: str) -> Sizes:
    cuda = device == "cuda"
    return Sizes(samples=args.tp_samples or (25_600 if cuda else 256), epochs=args.tp_epochs or (5 if cuda else 2),
                 width=args.tp_width or (64 if cuda else 8), batch=args.tp_batch or (512 if cuda else 64),
                 val=512 if cuda else 32)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bf16(device: str) -> contextlib.AbstractContextManager:
    return torch.autocast(device_type=device, dtype=torch.bfloat16)


def channels_last(model: torch.nn.Module) -> torch.nn.Module:
    return model.to(memory_format=torch.channels_last)


def throughput_data(sizes: Sizes, device: str) -> TensorSplits:
    return synthetic_cifar(sizes.samples + 2 * sizes.val, device, classes=sizes.classes, val=sizes.val)


def teacher_model(sizes: Sizes, device: str) -> torch.nn.Module:
    """resnet32x4-class: the registry's resnet family at depth 5 (5 basic blocks per stage), width 64.

    Untrained (random weights): throughput does not depend on what it learnt."""
    torch.manual_seed(0)
    return channels_last(build_student("resnet", 5, sizes.width, 3, sizes.classes).to(device)).eval()


def student_model(sizes: Sizes, device: str) -> torch.nn.Module:
    """resnet8x4-class: the resnet family at depth 1 (one basic block per stage), width 64."""
    torch.manual_seed(1)
    return channels_last(build_student("resnet", 1, sizes.width, 3, sizes.classes).to(device))


def kd_config(sizes: Sizes, epochs: int, alpha: float = 0.9) -> DistillConfig:
    return DistillConfig(family="resnet", depth=1, width=sizes.width, batch_size=sizes.batch, alpha=alpha,
                         temperature=4.0, augment=True, epochs=epochs)


def per_view_teacher(model: torch.nn.Module, data: TensorSplits) -> Teacher:
    """A teacher whose per-view cache holds, for each of the views, its logits on the plain images.

    Built by hand: at this size the cache's bounds (``trainers.teacher``) refuse to build it for real (162 views x
    25,600 images); a cached KD step indexes a (views, N, classes) tensor by (view, index) either way."""
    teacher = Teacher.with_cached_outputs(model, "resnet32x4-class", data.train_x)
    outputs = teacher.outputs
    assert outputs is not None
    views = view_count(data.info)
    outputs.per_view = dataclasses.replace(outputs, logits=outputs.logits.unsqueeze(0).repeat(views, 1, 1),
                                           per_view=None)
    return teacher


def run_distill(device: str, config: DistillConfig, data: TensorSplits, teacher: Teacher | None,
                student: torch.nn.Module) -> list[float]:
    """``distill`` under bf16 autocast; the wall time of each epoch (training steps + validation pass)."""
    stamps: list[float] = []

    def on_epoch(report: object, state: object) -> None:
        sync(device)
        stamps.append(time.perf_counter())

    sync(device)
    started = time.perf_counter()
    with bf16(device):
        distill(config, data, teacher, student=student, on_epoch=on_epoch)
    return [end - start for start, end in zip([started, *stamps[:-1]], stamps, strict=True)]


def run_hand_loop(device: str, sizes: Sizes, data: TensorSplits, compiled: bool = False) -> list[float]:
    """The student alone in a minimal hand-written loop (no per-step checks), for reference; ``compiled``:
    its forward through ``torch.compile`` (the first epoch, left out of the median, pays the compiling)."""
    model = student_model(sizes, device).train()
    forward = torch.compile(model) if compiled else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    generator = torch.Generator(device=device).manual_seed(1)
    background = data.background
    count = len(data.train_y)
    times: list[float] = []
    for _ in range(sizes.epochs):
        sync(device)
        started = time.perf_counter()
        order = torch.randperm(count, device=device, generator=generator)
        for start in range(0, count, sizes.batch):
            indices = order[start:start + sizes.batch]
            images = augment_batch(data.train_x[indices], data.info, generator, background)
            with bf16(device):
                loss = F.cross_entropy(forward(images), data.train_y[indices])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        sync(device)
        times.append(time.perf_counter() - started)
    return times


def concurrent_worker(index: int, sizes: Sizes, device: str, barrier: object, results: object) -> None:
    """One KD-cached trial in its own process: warm-up epoch, wait for the others, then the timed epochs."""
    try:
        if device == "cpu":
            torch.set_num_threads(1)
        data = throughput_data(sizes, device)
        teacher = per_view_teacher(teacher_model(sizes, device), data)
        run_distill(device, kd_config(sizes, 1), data, teacher, student_model(sizes, device))  # warm-up
        barrier.wait(timeout=WORKER_TIMEOUT_S)
        started = time.time()
        run_distill(device, kd_config(sizes, sizes.epochs - 1), data, teacher, student_model(sizes, device))
        results.put((index, "ok", len(data.train_y) * (sizes.epochs - 1), started, time.time()))
    except BaseException:  # reported by the parent, which then fails the row
        with contextlib.suppress(Exception):
            barrier.abort()
        results.put((index, "error", traceback.format_exc().strip().splitlines()[-1], 0.0, 0.0))


def run_concurrent(trials: int, sizes: Sizes, device: str) -> tuple[float | None, str]:
    """Total images/s of ``trials`` processes sharing the device, from the first start to the last end."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(trials), context.Queue()
    processes = [context.Process(target=concurrent_worker, args=(index, sizes, device, barrier, results),
                                 daemon=True) for index in range(trials)]
    for process in processes:
        process.start()
    answers, deadline = [], time.monotonic() + WORKER_TIMEOUT_S + 60
    try:
        while len(answers) < trials and time.monotonic() < deadline:
            try:
                answers.append(results.get(timeout=1.0))
            except queue_module.Empty:
                if not any(process.is_alive() for process in processes) and results.empty():
                    break
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
    errors = [answer[2] for answer in answers if answer[1] == "error"]
    if errors or len(answers) < trials:
        why = errors[0] if errors else f"{trials - len(answers)} of {trials} processes ended without a result"
        return None, why
    images = sum(answer[2] for answer in answers)
    window = max(answer[4] for answer in answers) - min(answer[3] for answer in answers)
    return images / window, ""


def throughput(args: argparse.Namespace, device: str) -> bool:
    """The images/s table; False when a measurement failed (the others still run)."""
    sizes = sizes_for(args, device)
    if device == "cpu":
        torch.set_num_threads(1)
    rows, speeds, ok = measure_in_process(sizes, device, args.compile)
    if device == "cuda":
        torch.cuda.empty_cache()  # the processes below need the memory
    for trials in CONCURRENCY:
        total, why = run_concurrent(trials, sizes, device)
        if total is None:
            ok = False
            rows.append((f"{trials} concurrent KD-cached trials (processes), total", "FAILED", why[:100], ""))
        else:
            rows.append((f"{trials} concurrent KD-cached trials (processes), total", f"{total:,.0f}",
                         f"{total / trials:,.0f} img/s per trial", ""))
    header = ("measurement", "img/s", "ms/epoch", "H200 hand-loop reference")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("  ".join(f"{cell:{width}s}" for cell, width in zip(row, widths, strict=True)).rstrip())
    if "KD per-view cache (distill)" in speeds and "student alone (distill)" in speeds:
        ratio = speeds["student alone (distill)"] / speeds["KD per-view cache (distill)"]
        print(f"KD epoch (per-view cache) / student-alone epoch: {ratio:.3f} (target <= 1.1: "
              f"{'pass' if ratio <= 1.1 else 'FAIL'})")
    if device == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB (this process)")
    return ok


def measure_in_process(sizes: Sizes, device: str,
                       compiled: bool = False) -> tuple[list[tuple[str, ...]], dict[str, float], bool]:
    """Student alone, KD online, KD per-view cache and the hand loop, one after the other in this process."""
    data = throughput_data(sizes, device)
    count = len(data.train_y)
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    teacher = teacher_model(sizes, device)
    student_params = count_parameters(student_model(sizes, device))
    print()
    print(f"throughput on {device} ({name}): resnet depth 5 width {sizes.width} ({count_parameters(teacher):,} "
          f"parameters, resnet32x4-class) -> depth 1 width {sizes.width} ({student_params:,}, resnet8x4-class), "
          f"{sizes.classes} classes, {count} train images 3x32x32, batch {sizes.batch}, bf16 autocast, "
          f"channels_last, crop+flip ({view_count(data.info)} views), {sizes.epochs} epochs per run (first left out)")
    online = Teacher(teacher, "resnet32x4-class")
    cached = per_view_teacher(teacher, data)
    runs = {
        "student alone (distill)": lambda: run_distill(device, kd_config(sizes, sizes.epochs).without_teacher(),
                                                       data, None, student_model(sizes, device)),
        "KD online teacher (distill)": lambda: run_distill(device, kd_config(sizes, sizes.epochs), data, online,
                                                           student_model(sizes, device)),
        "KD per-view cache (distill)": lambda: run_distill(device, kd_config(sizes, sizes.epochs), data, cached,
                                                           student_model(sizes, device)),
        "student alone (hand loop, reference)": lambda: run_hand_loop(device, sizes, data),
    }
    if compiled:
        runs["student alone (hand loop, torch.compile)"] = lambda: run_hand_loop(device, sizes, data, compiled=True)
    reference = {"student alone (distill)": "106k", "KD online teacher (distill)": "46k",
                 "KD per-view cache (distill)": "95k", "student alone (hand loop, reference)": "106k",
                 "student alone (hand loop, torch.compile)": "106k"}
    rows, speeds, ok = [], {}, True
    for label, action in runs.items():
        try:
            times = action()
            epoch = statistics.median(times[1:] or times)
            speeds[label] = count / epoch
            rows.append((label, f"{count / epoch:,.0f}", f"{1000 * epoch:.1f}", reference[label]))
        except Exception as error:  # one failed row does not hide the others
            ok = False
            rows.append((label, "FAILED", f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
                         reference[label]))
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows, speeds, ok


def profile(args: argparse.Namespace, device: str) -> bool:
    """One epoch of the student alone and of KD with the per-view cache under torch.profiler: device time
    (sum of kernel times) against wall time, the augmentation's share, and the top operators."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    sizes = sizes_for(args, device)
    data = throughput_data(sizes, device)
    cached = per_view_teacher(teacher_model(sizes, device), data)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    for label, teacher, config in (("student alone", None, kd_config(sizes, 2).without_teacher()),
                                   ("KD per-view cache", cached, kd_config(sizes, 2))):
        try:
            run_distill(device, dataclasses.replace(config, epochs=1), data, teacher, student_model(sizes, device))
            sync(device)
            started = time.perf_counter()
            with torch_profile(activities=activities) as prof:
                run_distill(device, dataclasses.replace(config, epochs=1), data, teacher,
                            student_model(sizes, device))
            wall = time.perf_counter() - started
            events = prof.key_averages()
            attribute = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
            if device == "cuda":
                from torch.autograd import DeviceType

                kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
                busy = sum(e.self_device_time_total for e in kernels) / 1e6
                ops = [e for e in prof.events() if e.device_type == DeviceType.CPU]
                lookups = sum(e.self_device_time_total for e in ops
                              if e.name in ("aten::index", "aten::where", "aten::flip")) / 1e6
                print(f"\nprofile, {label}, one epoch: wall {wall:.3f} s (profiler on), GPU kernels {busy:.3f} s "
                      f"({100 * busy / wall:.0f} % busy); aten::index/where/flip kernels (crop, flip, cache "
                      f"lookups) {lookups:.3f} s")
            else:
                print(f"\nprofile, {label}, one epoch: wall {wall:.3f} s (profiler on)")
            print(events.table(sort_by=attribute, row_limit=12, max_name_column_width=40))
        except Exception as error:
            print(f"profile {label} failed: {type(error).__name__}: {error}")
            return False
    return True


if __name__ == "__main__":
    sys.exit(main())
