"""What keeping a teacher's training in progress costs, and that a stopped training goes on to the same teacher.

    .venv/bin/python bench/bench_teacher_progress.py                                   # digits, about 1 minute
    .venv/bin/python bench/bench_teacher_progress.py --dataset imagefolder --data-dir /tmp/digits-folder

(a) Per teacher (``--teachers``), side by side in one run: one training epoch, and one save of the training's
state as ``get_teacher`` writes it (``trainers.teacher_training.TrainingProgress.save``: weights, optimizer,
schedule, random generators, and the best epoch's weights), with the file's size. The save's share of the
training is ``save_s / SAVE_EVERY_S`` (a save at most every that many seconds, at an epoch's end), and
``save_s / epoch_s`` is what a stop request adds to the epoch it ends.
(b) The first teacher trained whole for ``--epochs``, and the same training stopped after ``--stop-after`` epochs
and gone on with by a second ``get_teacher``: both cached teachers' weight digests, which must be equal.

Prints a table and the verdict of (b); always exits 0.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers import (  # noqa: E402
    DistillConfig,
    TeacherRecipe,
    TeacherTrainingStopped,
    build_teacher,
    count_parameters,
    distill,
    get_teacher,
    load_dataset,
)
from trainers.files import safe_torch_load  # noqa: E402
from trainers.models import stem_stride_for  # noqa: E402
from trainers.teacher_training import SAVE_EVERY_S, TrainingProgress  # noqa: E402


def save_cost(name: str, data: Any, folder: Path) -> dict[str, float]:
    """One training epoch of teacher ``name`` and one save of its state: seconds and MiB."""
    torch.manual_seed(0)
    model = build_teacher(name, data.info.input_shape[0], data.info.num_classes, stem_stride_for(data.info.input_shape))
    states: list[dict[str, Any]] = []
    reports = distill(DistillConfig(alpha=0.0, epochs=1, augment=True), data, None, student=model,
                      on_epoch=lambda report, get_state: states.append(get_state())).history
    epoch_s = reports[0].epoch_seconds  # the epoch's steps and validation, without get_state's copy
    progress = TrainingProgress(folder / f"{name}.training.pt", name)
    best = {key: value.detach().clone() for key, value in model.state_dict().items()}
    saves = []
    for _ in range(3):
        started = time.perf_counter()
        progress.save(states[0], 0.5, best)
        saves.append(time.perf_counter() - started)
    return {"params": count_parameters(model), "epoch_s": epoch_s, "save_s": min(saves),
            "mib": progress.path.stat().st_size / 2**20}


def stopped_and_gone_on(name: str, data: Any, epochs: int, stop_after: int, folder: Path) -> dict[str, Any]:
    """Digests of teacher ``name`` trained whole and trained with a stop after ``stop_after`` epochs."""
    recipe = TeacherRecipe(epochs=epochs)
    started = time.perf_counter()
    whole = get_teacher(name, data, folder / "whole", recipe, log=lambda _: None)
    whole_s = time.perf_counter() - started
    asked = [0]

    def stop_requested() -> bool:
        asked[0] += 1
        return asked[0] == stop_after

    started = time.perf_counter()
    try:
        get_teacher(name, data, folder / "stopped", recipe, log=lambda _: None, stop_requested=stop_requested)
        stopped_at = None  # the training ended (a perfect validation epoch) before the stop
    except TeacherTrainingStopped as stopped:
        stopped_at = stopped.epoch
    gone_on = get_teacher(name, data, folder / "stopped", recipe, log=lambda _: None)
    both_s = time.perf_counter() - started
    digests = [safe_torch_load(result.path)["digest"] for result in (whole, gone_on)]
    return {"stopped_at": stopped_at, "whole_s": whole_s, "stopped_and_gone_on_s": both_s,
            "same": digests[0] == digests[1], "val": (whole.val_accuracy, gone_on.val_accuracy)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--max-train-samples", type=int, default=None)
    parser.add_argument("--teachers", default="cnn-large,resnet18", help="teachers of (a), separated by commas")
    parser.add_argument("--epochs", type=int, default=12, help="(b)'s training, of the first teacher")
    parser.add_argument("--stop-after", type=int, default=5, help="(b): the epoch after which the training stops")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = load_dataset(args.dataset, args.data_dir, max_train_samples=args.max_train_samples)
    names = args.teachers.split(",")
    print(f"{args.dataset}: {len(data.train_y):,} training images {tuple(data.info.input_shape)}, one thread; "
          f"a save at most every {SAVE_EVERY_S:g} s")
    print("teacher | params | epoch s | save s | MiB | save / epoch | save / SAVE_EVERY_S")
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            cost = save_cost(name, data, Path(folder))
            print(f"{name} | {cost['params']:,} | {cost['epoch_s']:.2f} | {cost['save_s']:.3f} | {cost['mib']:.1f} | "
                  f"{cost['save_s'] / cost['epoch_s']:.3f} | {cost['save_s'] / SAVE_EVERY_S:.4f}")
        result = stopped_and_gone_on(names[0], data, args.epochs, args.stop_after, Path(folder))
    print(f"(b) {names[0]}, {args.epochs} epochs: whole {result['whole_s']:.1f} s; stopped after epoch "
          f"{result['stopped_at']} and gone on with {result['stopped_and_gone_on_s']:.1f} s; val accuracy "
          f"{result['val'][0]:.4f} / {result['val'][1]:.4f}; same teacher (weight digests): "
          f"{'yes' if result['same'] else 'NO'}")


if __name__ == "__main__":
    main()
