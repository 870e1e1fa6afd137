"""Benchmark: the training loop's optimizer step, SGD over all parameters at once (``foreach``, what
``trainers.distill`` uses) against SGD's loop over the parameters one by one (torch's default on the CPU).
A benchmark, not a test.

    .venv/bin/python bench/bench_optimizer.py [--rounds 6] [--epochs 15]

For each of digits' typical students (cnn, mobilenet, resnet at the sizes the default search ends on), one KD
training (alpha 0.9, T 4, teacher outputs cached, one CPU thread, every epoch of ``--epochs``) with each update,
alternating the two in every round so that the machine's noise hits both. Prints each student's best and
median wall time per training, the ratio foreach / loop of the medians (below 1: foreach is faster), and whether
the two trained bit for bit the same weights (the same arithmetic, so they must). Always exits 0.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers import DistillConfig, Teacher, TensorSplits, distill, load_dataset  # noqa: E402
from trainers.models import build_teacher  # noqa: E402

STUDENTS = (("cnn", 2, 5), ("mobilenet", 3, 3), ("resnet", 1, 8))
# trainers.distill re-exports a function named distill, so the module is looked up by its full name.
LOOP_MODULE = importlib.import_module("trainers.distill._loop")


@contextmanager
def per_parameter_sgd() -> Iterator[None]:
    """SGD as torch runs it on the CPU by default (a loop over the parameters) inside the training loop."""
    original = LOOP_MODULE.torch.optim.SGD
    LOOP_MODULE.torch.optim.SGD = functools.partial(_sgd_without_foreach, original)
    try:
        yield
    finally:
        LOOP_MODULE.torch.optim.SGD = original


def _sgd_without_foreach(sgd: type[torch.optim.SGD], *args: object, **kwargs: object) -> torch.optim.SGD:
    return sgd(*args, **{**kwargs, "foreach": False})


def timed_training(config: DistillConfig, data: TensorSplits, teacher: Teacher, loop: bool
                   ) -> tuple[float, dict[str, torch.Tensor]]:
    """Wall seconds of one training, and its trained weights."""
    started = time.perf_counter()
    if loop:
        with per_parameter_sgd():
            result = distill(config, data, teacher, validate_each_epoch=False)
    else:
        result = distill(config, data, teacher, validate_each_epoch=False)
    return time.perf_counter() - started, result.model.state_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("digits")
    teacher = Teacher.with_cached_outputs(build_teacher("cnn-large", 1, data.info.num_classes), "cnn-large",
                                          data.train_x)
    print(f"digits, {len(data.train_y)} training images, batch 64, {args.epochs} epochs, {args.rounds} rounds, "
          f"torch {torch.__version__}, one thread")
    for family, depth, width in STUDENTS:
        config = DistillConfig(family=family, depth=depth, width=width, alpha=0.9, temperature=4.0,
                               epochs=args.epochs, seed=0)
        times: dict[bool, list[float]] = {True: [], False: []}
        weights: dict[bool, dict[str, torch.Tensor]] = {}
        for round_index in range(args.rounds):
            for loop in (round_index % 2 == 0, round_index % 2 == 1):  # alternate which goes first
                seconds, weights[loop] = timed_training(config, data, teacher, loop)
                times[loop].append(seconds)
        same = all(torch.equal(weights[True][name], weights[False][name]) for name in weights[True])
        ratio = statistics.median(times[False]) / statistics.median(times[True])
        print(f"  {family} depth {depth} width {width}: loop best {min(times[True]):.2f} s median "
              f"{statistics.median(times[True]):.2f} s; foreach best {min(times[False]):.2f} s median "
              f"{statistics.median(times[False]):.2f} s; foreach / loop {ratio:.3f}; same weights: {same}")


if __name__ == "__main__":
    main()
