"""``bench/bench_batched_seeds.py``: K seeds trained as one vmapped model are the K separate trainings."""

from __future__ import annotations

import pytest
import torch

from tests.bench.scripts import load_bench_script
from trainers.models import build_student_for

bench = load_bench_script("bench_batched_seeds")


def _students(seeds: list[int], family: str = "cnn") -> list[torch.nn.Module]:
    return bench.seed_models(lambda: build_student_for(family, 2, 4, (1, 8, 8), 10), seeds)


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
    torch.manual_seed(0)
    images, labels = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
    seeds = [0, 1, 2]
    batches = bench.seed_batches(len(labels), 16, seeds, epochs=2)
    separate = bench.train_separate(_students(seeds, family), images, labels, batches, lr=0.05)
    batched = bench.train_batched(_students(seeds, family), images, labels, batches, lr=0.05)
    untrained = _students(seeds, family)
    assert bench.max_weight_difference(separate, untrained) > 1e-3  # they trained
    assert bench.max_weight_difference(separate, batched) < 1e-4
    # Each seed is its own model: batching did not mix them.
    assert bench.max_weight_difference(separate[:1], separate[1:2]) > 1e-3


def test_the_script_prints_the_ratio_and_the_per_convolution_timings(capsys: pytest.CaptureFixture[str]) -> None:
    torch.set_num_threads(1)
    bench.main(["--seeds", "2", "--epochs", "1", "--rounds", "1", "--max-train-samples", "128", "--depth", "1",
                "--width", "4"])
    out = capsys.readouterr().out
    assert "separate / batched = " in out and "largest weight difference after training" in out
    difference = float(out.split("largest weight difference after training: ")[1].split()[0])
    assert difference < 1e-4
    assert "2 grouped" in out
