"""Accuracy and loss of a model on a labelled set, in inference mode and memory-sized batches."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainers.data import SplitImages, inference_batch_size

EVAL_BATCH_SIZE = 1024


def evaluate(model: nn.Module, images: torch.Tensor | SplitImages, labels: torch.Tensor) -> tuple[float, float]:
    """Accuracy (a fraction) and mean cross-entropy of ``model`` on a labelled set."""
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    with torch.inference_mode():
        size = inference_batch_size(images.shape[1:], EVAL_BATCH_SIZE)
        for start in range(0, len(labels), size):
            logits = model(images[start:start + size])
            batch_labels = labels[start:start + size]
            loss_sum += F.cross_entropy(logits, batch_labels, reduction="sum").item()
            correct += (logits.argmax(dim=1) == batch_labels).sum().item()
    model.train(was_training)
    return correct / len(labels), loss_sum / len(labels)
