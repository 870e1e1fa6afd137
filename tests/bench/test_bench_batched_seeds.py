"""``bench/bench_batched_seeds.py``: K seeds trained as one vmapped model are the K separate trainings."""

from __future__ import annotations

import pytest
import torch

from tests.bench.scripts import load_bench_script
from trainers import load_dataset
from trainers.models import build_student_for

bench = load_bench_script("bench_batched_seeds")


def _students(seeds: list[int], family: str) -> list[torch.nn.Module]:
    return bench.seed_models(lambda: build_student_for(family, 2, 4, (1, 8, 8), 10).double(), seeds)


def test_each_seed_has_its_own_batches_every_epoch() -> None:
    batches = bench.seed_batches(samples=50, batch_size=16, seeds=[0, 1, 2], epochs=2)
    assert len(batches) == 2 and all(len(epoch) == 3 for epoch in batches)  # 50 // 16 steps, the rest dropped
    assert batches[0][0].shape == (3, 16)
    first, second = batches[0][0][0], batches[0][0][1]
    assert not torch.equal(first, second)
    assert not torch.equal(batches[0][0][0], batches[1][0][0])
    epoch = torch.cat([step[0] for step in batches[0]])
    assert len(set(epoch.tolist())) == 48  # a permutation, cut to whole batches


@pytest.mark.parametrize("family", ["cnn", "resnet", "mobilenet"])
def test_batched_training_gives_the_weights_of_separate_trainings(family: str) -> None:
    data = load_dataset("digits", max_train_samples=128)
    images, labels = data.train_x[torch.arange(128)].double(), data.train_y
    seeds = [0, 1, 2]
    batches = bench.seed_batches(len(labels), 32, seeds, epochs=2)
    # In float64: a grouped convolution adds in another order than a single one, and in float32 that rounding
    # is amplified by training (seed 1 here: 1e-7 after one step, 1e-3 after two, through a batch-norm channel
    # of near-zero variance), whichever side of the comparison rounds differently. In float64 it stays far
    # below the tolerance, so a real difference (a seed given another's batches or gradient) cannot hide.
    separate = bench.train_separate(_students(seeds, family), images, labels, batches, lr=0.05)
    batched = bench.train_batched(_students(seeds, family), images, labels, batches, lr=0.05)
    untrained = _students(seeds, family)
    assert bench.max_weight_difference(separate, untrained) > 1e-3  # they trained
    assert bench.max_weight_difference(separate, batched) < 1e-6
    # Each seed is its own model: batching did not mix them.
    assert bench.max_weight_difference(separate[:1], separate[1:2]) > 1e-3


def test_the_script_prints_the_ratio_and_the_per_convolution_timings(capsys: pytest.CaptureFixture[str]) -> None:
    torch.set_num_threads(1)
    bench.main(["--seeds", "2", "--epochs", "1", "--rounds", "1", "--max-train-samples", "128", "--depth", "1",
                "--width", "4"])
    out = capsys.readouterr().out
    assert "separate / batched = " in out and "largest weight difference after training" in out
    assert "2 grouped" in out
    difference = float(out.split("largest weight difference after training: ")[1].split()[0])
    assert difference < 1.0  # float32: the same training up to amplified rounding (see above)
