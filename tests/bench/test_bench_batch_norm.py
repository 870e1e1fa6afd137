"""``bench/bench_batch_norm.py`` compares like with like: both alternatives compute what batch norm computes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.bench.scripts import load_bench_script

bench = load_bench_script("bench_batch_norm")


def _trained_norm(channels: int) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(channels)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1.0, 1.0)
    return norm


def test_the_eager_batch_norm_is_batch_norm_forward_and_backward() -> None:
    shape = (8, 5, 4, 4)
    norm = _trained_norm(5)
    images = (torch.randn(shape) * 2 + 0.5).contiguous(memory_format=torch.channels_last).requires_grad_()
    grad = torch.randn(shape)
    expected = norm(images)
    expected.backward(grad)
    expected_grads = [images.grad.clone(), norm.weight.grad.clone(), norm.bias.grad.clone()]
    images.grad, norm.weight.grad, norm.bias.grad = None, None, None
    rows = images.permute(0, 2, 3, 1).reshape(-1, 5)
    out = bench._EagerBatchNorm.apply(rows, norm.weight, norm.bias).reshape(8, 4, 4, 5).permute(0, 3, 1, 2)
    out.backward(grad)
    torch.testing.assert_close(out, expected)
    for got, want in zip([images.grad, norm.weight.grad, norm.bias.grad], expected_grads, strict=True):
        torch.testing.assert_close(got, want)


def test_the_contiguous_detour_computes_what_the_batch_norm_does() -> None:
    norm = _trained_norm(5)
    images = torch.randn(8, 5, 4, 4).contiguous(memory_format=torch.channels_last)
    detoured = bench._contiguous_detour(norm, images)
    assert detoured.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(detoured, nn.BatchNorm2d.forward(norm, images))


def test_it_prints_every_layer_and_step(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(bench, "LAYERS", ((4, 5, 4, 4),))
    monkeypatch.setattr(bench, "STEPS", (("cnn", 1, 2, 8),))
    bench.main(["--rounds", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("  5x4x4: channels_last ") and "eager ops" in lines[1]
    assert lines[3].startswith("  cnn d1 w2 at 8 px: as it is ") and "detour" in lines[3]
