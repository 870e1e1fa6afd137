"""One short GPU check of ``trainers/`` (no Ray, no Optuna: the lent GPU machines do not have them).

    python bench/gpu_check.py                 # on a CUDA machine
    python bench/gpu_check.py --device cpu    # the same path on the CPU, to check the script itself

On synthetic CIFAR-shaped data held on the device (random crop + flip done on tensors there), it trains a
teacher briefly, then distills students with an online teacher (KD + attention, KD + hint, every 2nd step)
and with cached teacher outputs, and checks that everything stays on the device, losses stay finite,
the exported student predicts like the trained one, and prints epoch times, the KD/student-alone ratios
(cached: target <= 1.1) and peak GPU memory. It measures, it does not assert speed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers import DistillConfig, Teacher, TensorSplits, distill, export_model, load_exported  # noqa: E402
from trainers.data import DatasetInfo  # noqa: E402
from trainers.models import build_teacher  # noqa: E402


def synthetic_cifar(samples: int, device: str) -> TensorSplits:
    """Random CIFAR-shaped images whose class shifts the mean of one channel: learnable, no download."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (samples,), generator=generator)
    images = torch.randn(samples, 3, 32, 32, generator=generator) + (labels.float() / 5).view(-1, 1, 1, 1)
    info = DatasetInfo("synthetic-cifar", (3, 32, 32), 10, crop_padding=4, horizontal_flip=True)
    cut = [int(samples * 0.8), int(samples * 0.9)]
    splits = TensorSplits(info, images[:cut[0]], labels[:cut[0]], images[cut[0]:cut[1]], labels[cut[0]:cut[1]],
                          images[cut[1]:], labels[cut[1]:], mean=(0.0,) * 3, std=(1.0,) * 3)
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
    args = parser.parse_args()
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible; pass --device cpu to check the script on the CPU")
        return 2
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
        loaded = load_exported(folder)
        with torch.no_grad():
            same = torch.allclose(model.to("cpu").eval()(data.test_x[:64].cpu()), loaded(data.test_x[:64].cpu()),
                                  atol=1e-5)
    ok &= same
    print(f"export from {device}, load on cpu, same predictions: {same}")
    if device == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    print("gpu_check:", "OK" if ok else "PROBLEMS (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
