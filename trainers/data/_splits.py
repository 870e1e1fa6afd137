"""Deterministic stratified splits: which images are train, validation and test."""

from __future__ import annotations

import numpy as np

from trainers.data._info import DatasetError


def check_fraction(label: str, value: float) -> None:
    if not 0 < value < 1:
        raise DatasetError(f"{label} must be between 0 and 1 (exclusive), got {value}")


def _sklearn_split(
    labels: np.ndarray, indices: np.ndarray, size: float | int, seed: int, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (rest, taken) split of `indices`, where `taken` has `size` samples or that fraction."""
    from sklearn.model_selection import train_test_split

    try:
        rest, taken = train_test_split(indices, test_size=size, stratify=labels[indices], random_state=seed)
    except ValueError as error:
        # sklearn refuses when a class is too small for every part to get one of it.
        reason = str(error).splitlines()[0]
        raise DatasetError(
            f"cannot split {what} ({len(indices)} samples) with every class in every part: {reason}; "
            "use more samples per class or other fractions"
        ) from None
    return np.sort(rest), np.sort(taken)


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out) with `fraction` of the samples held out, stratified by label."""
    return _sklearn_split(labels, np.arange(len(labels)), fraction, seed, what)


def stratified_three_way(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int, what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint (train, val, test) indices covering all samples, val and test as fractions of the whole."""
    rest, test = _sklearn_split(labels, np.arange(len(labels)), test_fraction, seed, what)
    # val_fraction is of the whole, so it is a larger share of what is left after the test split.
    train, val = _sklearn_split(labels, rest, val_fraction / (1 - test_fraction), seed, what)
    return train, val, test


def stratified_subset(labels: np.ndarray, size: int, seed: int, what: str) -> np.ndarray:
    """Indices of a stratified subset of `size` samples."""
    return _sklearn_split(labels, np.arange(len(labels)), size, seed, what)[1]
