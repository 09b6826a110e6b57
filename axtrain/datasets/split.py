"""Stratified, seeded splits and train-only standardisation (numpy only)."""

from __future__ import annotations

import math

import numpy as np

from axtrain.errors import DataError


def n_held_out(n: int, fraction: float) -> int:
    """How many of ``n`` samples go to the held-out part: ``ceil(fraction * n)``.

    Rounding up follows the common convention (scikit-learn's ``train_test_split``), so ionosphere's
    351 rows give 71 test samples. The small tolerance keeps 0.2 * 2310 = 462.0000000001 at 462.
    """
    if not 0.0 < fraction < 1.0:
        raise DataError(f"held-out fraction {fraction} must lie strictly between 0 and 1")
    return min(n - 1, max(1, math.ceil(fraction * n - 1e-9)))


def stratified_indices(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into (kept, held_out), keeping each class's share in both parts.

    The held-out total is :func:`n_held_out`; it is shared among the classes by largest remainder
    (ties go to the lower class index), so each class holds out ``fraction * n_c`` rounded down or up:
    never more than one sample away from its exact share. Within a class the choice is a seeded
    permutation; both parts are shuffled again so that no batch is sorted by class.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size < 2:
        raise DataError(f"cannot split {labels.size} labels of shape {labels.shape}: need a 1-D array of two or more")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    total = n_held_out(labels.size, fraction)
    exact = counts * (total / labels.size)
    share = np.floor(exact).astype(np.int64)
    remainder = exact - share
    # Stable sort on -remainder: equal remainders keep class order, so the rule is deterministic.
    extra = np.argsort(-remainder, kind="stable")[: total - int(share.sum())]
    share[extra] += 1
    kept: list[np.ndarray] = []
    held: list[np.ndarray] = []
    for cls, n_out in zip(classes, share, strict=True):
        members = rng.permutation(np.flatnonzero(labels == cls))
        held.append(members[:n_out])
        kept.append(members[n_out:])
    return rng.permutation(np.concatenate(kept)), rng.permutation(np.concatenate(held))


def split_validation(
    x: np.ndarray, y: np.ndarray, fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stratified split of a training set into (x_tr, y_tr, x_val, y_val) for hyper-parameter choice.

    Use it on ``DataSplit.x_train``/``y_train`` only, so that the test split is never looked at while
    choosing hyper-parameters. Same rule as the train/test split (:func:`stratified_indices`).
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.shape[0] != y.shape[0]:
        raise DataError(f"split_validation: {x.shape[0]} samples but {y.shape[0]} labels")
    kept, held = stratified_indices(y, fraction, seed)
    return x[kept], y[kept], x[held], y[held]


def standardise(raw: np.ndarray, mean: np.ndarray, std: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """``(raw * scale - mean) / std`` as float32, computed in float32 in place (MNIST is 188 MB).

    The one formula every split uses, so :meth:`DataSplit.standardise` reproduces ``load`` exactly.
    """
    out = np.array(raw, dtype=np.float32, copy=True)
    if scale != 1.0:
        out *= np.float32(scale)
    out -= np.asarray(mean, dtype=np.float32)
    out /= np.asarray(std, dtype=np.float32)
    return out


def feature_statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and (population) standard deviation in float64; a constant feature gets std 1.

    Why 1: ionosphere's second column is all zeros; dividing by 0 would give NaN, and any std leaves a
    constant-zero column at zero after centring.
    """
    mean = x.mean(axis=0, dtype=np.float64)
    std = x.std(axis=0, dtype=np.float64)
    std[std <= 1e-12 * np.maximum(1.0, np.abs(mean))] = 1.0
    return mean, std


def pixel_statistics(images: np.ndarray, scale: float) -> tuple[float, float]:
    """Global mean and std of ``images * scale`` for uint8 images, exact via a 256-bin histogram."""
    counts = np.bincount(np.asarray(images, dtype=np.uint8).ravel(), minlength=256).astype(np.float64)
    values = np.arange(256, dtype=np.float64) * scale
    n = counts.sum()
    mean = float((counts * values).sum() / n)
    var = float((counts * (values - mean) ** 2).sum() / n)
    return mean, math.sqrt(var) if var > 0 else 1.0
