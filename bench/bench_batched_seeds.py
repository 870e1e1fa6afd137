"""Benchmark: would training a configuration's seeds as one batched model make the final stage cheaper?

    .venv/bin/python bench/bench_batched_seeds.py                          # cnn d2 w5 on digits, 5 seeds
    .venv/bin/python bench/bench_batched_seeds.py --family mobilenet --depth 3 --width 3 --device cuda

The final stage trains each re-checked configuration over K seeds (and the baseline, the textbook arm and the
gain curve the same way). Side by side, interleaved over ``--rounds``, this trains K seeds of one student
with kdsearch's optimiser (SGD, Nesterov momentum, weight decay; plain cross-entropy, no augmentation):

- ``separate``: K models one after the other, as K final-stage tasks would;
- ``batched``: the K models' weights stacked (``torch.func.stack_module_state``) and trained as one model
  under ``torch.func.vmap`` (a convolution of K stacked weights runs as one grouped convolution), each seed
  on its own batches, one optimiser over the stacked tensors.

It prints the time of each, ``separate / batched`` (the target of 3 would cut the stage to a third) and the
largest weight difference between the two after training: a grouped convolution adds in another order than a
single one, and training can amplify that rounding by orders of magnitude (a batch-norm channel of near-zero
variance); in float64 the two agree to 1e-6 (``tests/bench/test_bench_batched_seeds.py``). Then, per
convolution of the student, the time of one forward and backward for one model and for K grouped together:
where ``grouped / single`` is near K, batching cannot pay on this device.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.func import functional_call, stack_module_state, vmap  # noqa: E402

from trainers import load_dataset  # noqa: E402
from trainers.models import build_student_for  # noqa: E402

TARGET_SPEEDUP = 3.0
Batches = list[list[torch.Tensor]]  # per epoch, per step: the K seeds' index batches stacked, shape (K, batch)


def seed_models(build: Callable[[], nn.Module], seeds: list[int]) -> list[nn.Module]:
    """One freshly initialised model per seed (``torch.manual_seed(seed)`` before each build)."""
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(build())
    return models


def seed_batches(samples: int, batch_size: int, seeds: list[int], epochs: int) -> Batches:
    """Each seed's shuffled mini-batches, epoch by epoch, from its own generator (the last batch dropped, so
    that every seed has the same batch shape)."""
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    steps = samples // batch_size
    batches = []
    for _ in range(epochs):
        orders = [torch.randperm(samples, generator=generator) for generator in generators]
        batches.append([torch.stack([order[step * batch_size:(step + 1) * batch_size] for order in orders])
                        for step in range(steps)])
    return batches


def _optimizer(parameters: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(parameters, lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)


def train_separate(models: list[nn.Module], images: torch.Tensor, labels: torch.Tensor, batches: Batches,
                   lr: float) -> list[nn.Module]:
    """Each model trained alone on its own seed's batches."""
    for index, model in enumerate(models):
        model.train()
        optimizer = _optimizer(list(model.parameters()), lr)
        for epoch in batches:
            for step in epoch:
                chosen = step[index]
                loss = F.cross_entropy(model(images[chosen]), labels[chosen])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    return models


def train_batched(models: list[nn.Module], images: torch.Tensor, labels: torch.Tensor, batches: Batches,
                  lr: float) -> list[nn.Module]:
    """The same trainings as ``train_separate``, the K models stacked and run as one under ``vmap``; the
    trained weights are copied back into ``models``."""
    for model in models:
        model.train()
    parameters, buffers = stack_module_state(models)
    skeleton = copy.deepcopy(models[0]).to("meta")

    def loss_of(params: dict, bufs: dict, batch_images: torch.Tensor, batch_labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(skeleton, (params, bufs), (batch_images,)), batch_labels)

    # Each model's loss depends on its own slice only, so the sum's gradient is each model's own gradient,
    # and SGD's update is elementwise: one optimiser over the stacked tensors is K independent ones.
    batched_loss = vmap(loss_of)
    optimizer = _optimizer(list(parameters.values()), lr)
    for epoch in batches:
        for step in epoch:
            loss = batched_loss(parameters, buffers, images[step], labels[step]).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    trained = parameters | buffers
    with torch.no_grad():
        for index, model in enumerate(models):
            for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
                tensor.copy_(trained[name][index])
    return models


def max_weight_difference(first: list[nn.Module], second: list[nn.Module]) -> float:
    """The largest absolute difference between corresponding floating-point weights and buffers."""
    largest = 0.0
    for one, other in zip(first, second, strict=True):
        theirs = other.state_dict()
        for name, tensor in one.state_dict().items():
            if tensor.is_floating_point():
                largest = max(largest, (tensor - theirs[name]).abs().max().item())
    return largest


def conv_layers(model: nn.Module) -> list[nn.Conv2d]:
    """The model's convolutions, one per distinct shape (in, out, kernel, stride, groups)."""
    seen, layers = set(), []
    for layer in model.modules():
        if isinstance(layer, nn.Conv2d):
            key = (layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.groups)
            if key not in seen:
                seen.add(key)
                layers.append(layer)
    return layers


def conv_timing(layer: nn.Conv2d, input_hw: int, batch_size: int, seeds: int, device: torch.device,
                repeats: int) -> tuple[float, float]:
    """Milliseconds of one forward and backward of ``layer`` for one model, and for ``seeds`` models as one
    grouped convolution (what ``vmap`` runs)."""
    def timed(images: torch.Tensor, weight: torch.Tensor, groups: int) -> float:
        def once() -> None:
            F.conv2d(images, weight, stride=layer.stride, padding=layer.padding, groups=groups).sum().backward()
        for _ in range(5):
            once()
        _sync(device)
        started = time.perf_counter()
        for _ in range(repeats):
            once()
        _sync(device)
        return (time.perf_counter() - started) / repeats * 1e3

    shape = (layer.in_channels, input_hw, input_hw)
    single = timed(torch.randn(batch_size, *shape, device=device, requires_grad=True),
                   layer.weight.detach().clone().to(device).requires_grad_(), layer.groups)
    grouped = timed(torch.randn(batch_size, seeds * shape[0], input_hw, input_hw, device=device, requires_grad=True),
                    layer.weight.detach().repeat(seeds, 1, 1, 1).to(device).requires_grad_(), layer.groups * seeds)
    return single, grouped


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir")
    parser.add_argument("--family", default="cnn")
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--width", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions of both sides")
    parser.add_argument("--max-train-samples", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a final-stage task uses 1)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = load_dataset(args.dataset, args.data_dir, max_train_samples=args.max_train_samples)
    train = data.train_x
    images, labels = train[torch.arange(len(train))].to(device), data.train_y.to(device)  # normalised floats
    seeds = list(range(args.seeds))
    batches = seed_batches(len(labels), args.batch_size, seeds, args.epochs)
    batches = [[step.to(device) for step in epoch] for epoch in batches]

    def build() -> nn.Module:
        return build_student_for(args.family, args.depth, args.width, data.info.input_shape,
                                 data.info.num_classes).to(device)

    times: dict[str, list[float]] = {"separate": [], "batched": []}
    trained: dict[str, list[nn.Module]] = {}
    for _ in range(args.rounds):
        for side, train in (("separate", train_separate), ("batched", train_batched)):
            models = seed_models(build, seeds)
            _sync(device)
            started = time.perf_counter()
            trained[side] = train(models, images, labels, batches, args.lr)
            _sync(device)
            times[side].append(time.perf_counter() - started)
    separate, batched = statistics.median(times["separate"]), statistics.median(times["batched"])
    speedup = separate / batched
    difference = max_weight_difference(trained["separate"], trained["batched"])
    print(f"{args.family} depth {args.depth} width {args.width} on {args.dataset} ({len(labels)} images, "
          f"{data.info.input_shape}), {args.seeds} seeds x {args.epochs} epochs, batch {args.batch_size}, "
          f"{args.threads} thread(s), {device} (medians of {args.rounds} interleaved rounds):")
    print(f"  separate {separate:.2f} s   batched (vmap) {batched:.2f} s   separate / batched = {speedup:.2f}  "
          f"(target >= {TARGET_SPEEDUP:.0f}: {'pass' if speedup >= TARGET_SPEEDUP else 'FAIL'})")
    print(f"  largest weight difference after training: {difference:.2e}")
    hw = data.info.input_shape[-1]
    print(f"  per convolution, forward + backward at batch {args.batch_size} (input {hw} px; later layers are "
          "smaller in the model):")
    for layer in conv_layers(trained["separate"][0]):
        single, grouped = conv_timing(layer, hw, args.batch_size, args.seeds, device, repeats=50)
        print(f"    conv {layer.in_channels}->{layer.out_channels} k{layer.kernel_size[0]} s{layer.stride[0]} "
              f"g{layer.groups}: one model {single:.3f} ms, {args.seeds} grouped {grouped:.3f} ms "
              f"({grouped / single:.1f}x one)")


if __name__ == "__main__":
    main()
