"""``load(app, seed)``: one application's train/test split, standardised with training statistics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from axtrain.datasets import raw
from axtrain.datasets.applications import APPLICATIONS, Application, unknown_application_message
from axtrain.datasets.split import feature_statistics, pixel_statistics, standardise, stratified_indices
from axtrain.errors import DataError

#: Share of each UCI data set held out for testing (the paper's 80/20 rule).
TEST_FRACTION = 0.2

#: MNIST pixels are scaled to [0, 1] before the global standardisation.
MNIST_PIXEL_SCALE = 1.0 / 255.0


@dataclass(frozen=True, eq=False)
class DataSplit:
    """One application's data, ready to train on.

    ``x = (raw * scale - mean) / std`` with ``mean``/``std`` computed on the training split only:
    per feature for UCI (shape ``[F]``, ``scale`` 1), one global value for MNIST (shape ``[]``,
    ``scale`` 1/255). Labels are class indices into ``class_names``.
    """

    app: str
    seed: int
    x_train: np.ndarray  #: float32 [N_train, *input_shape]
    y_train: np.ndarray  #: int64 [N_train]
    x_test: np.ndarray  #: float32 [N_test, *input_shape]
    y_test: np.ndarray  #: int64 [N_test]
    mean: np.ndarray  #: float64, broadcastable to one sample
    std: np.ndarray  #: float64, broadcastable to one sample; never 0
    scale: float  #: applied to raw values before centring
    class_names: tuple[str, ...]  #: original label of each class index

    def standardise(self, raw_x: np.ndarray) -> np.ndarray:
        """Apply this split's transform to raw samples (e.g. new data for inference)."""
        return standardise(raw_x, self.mean, self.std, self.scale)

    @property
    def application(self) -> Application:
        """The :class:`Application` this split belongs to."""
        return APPLICATIONS[self.app]


def get_application(app: str) -> Application:
    """The application called ``app``; an unknown name is a :class:`DataError` listing the known ones."""
    try:
        return APPLICATIONS[app]
    except (KeyError, TypeError):
        raise DataError(unknown_application_message(app)) from None


def load(app: str, seed: int = 0, data_dir: Path | str | None = None) -> DataSplit:
    """Load one application's train/test split, standardised with statistics of the training split.

    UCI apps: stratified 80/20 split chosen by ``seed``. MNIST apps: the official 60k/10k split
    (``seed`` has no effect; it is recorded). ``data_dir`` points at another copy of the data folder
    (same layout: ``uci/*.gz``, ``mnist/*.gz``); by default the bundled files are used.
    """
    application = get_application(app)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    if application.dataset == "mnist":
        return _load_mnist(application, seed, data_dir)
    table = raw.load_uci(application.dataset, data_dir)
    train_idx, test_idx = stratified_indices(table.labels, TEST_FRACTION, seed)
    x_train_raw = table.features[train_idx]
    mean, std = feature_statistics(x_train_raw)
    return DataSplit(
        app=app,
        seed=seed,
        x_train=standardise(x_train_raw, mean, std),
        y_train=table.labels[train_idx].copy(),
        x_test=standardise(table.features[test_idx], mean, std),
        y_test=table.labels[test_idx].copy(),
        mean=mean,
        std=std,
        scale=1.0,
        class_names=table.class_names,
    )


def _load_mnist(application: Application, seed: int, data_dir: Path | str | None) -> DataSplit:
    mnist = raw.load_mnist(data_dir)
    mean, std = pixel_statistics(mnist.train.features, MNIST_PIXEL_SCALE)
    mean_a, std_a = np.asarray(mean), np.asarray(std)
    shape = application.input_shape

    def prepare(images: np.ndarray) -> np.ndarray:
        return standardise(images, mean_a, std_a, MNIST_PIXEL_SCALE).reshape((images.shape[0], *shape))

    return DataSplit(
        app=application.name,
        seed=seed,
        x_train=prepare(mnist.train.features),
        y_train=mnist.train.labels.copy(),
        x_test=prepare(mnist.test.features),
        y_test=mnist.test.labels.copy(),
        mean=mean_a,
        std=std_a,
        scale=MNIST_PIXEL_SCALE,
        class_names=mnist.train.class_names,
    )
