"""Shapes, counts, splits and standardisation of every application (UCI and MNIST)."""

from __future__ import annotations

import numpy as np
import pytest

from axtrain.datasets import APPLICATIONS, DataSplit, get_application, load, raw, split_validation
from axtrain.errors import DataError

UCI_APPS = ["breast-cancer", "image-segmentation", "ionosphere", "satimage"]

# Sizes from the data sets' documentation (shared/datasets/README.md), not from the code.
EXPECTED = {
    # app: (rows, features, class counts in the file order of the sorted class names)
    "breast-cancer": (569, 30, [357, 212]),  # B, M
    "image-segmentation": (2310, 19, [330] * 7),
    "ionosphere": (351, 34, [126, 225]),  # b, g
    "satimage": (6435, 36, None),  # 6 classes present, counts not documented
}


@pytest.fixture(scope="module")
def mnist_mlp() -> DataSplit:
    return load("mnist-mlp")


def test_six_applications_with_the_papers_names() -> None:
    assert list(APPLICATIONS) == [
        "breast-cancer",
        "image-segmentation",
        "ionosphere",
        "satimage",
        "mnist-mlp",
        "mnist-cnn",
    ]
    assert APPLICATIONS["satimage"].topology == (36, 64, 64, 7)
    assert APPLICATIONS["mnist-cnn"].kind == "cnn"
    assert APPLICATIONS["mnist-cnn"].input_shape == (1, 28, 28)
    assert APPLICATIONS["breast-cancer"].sram_voltages_mv == (400, 660)
    assert {APPLICATIONS[a].sram_voltages_mv for a in APPLICATIONS if a != "breast-cancer"} == {(660, 850)}
    for app in APPLICATIONS.values():
        if app.kind == "mlp":
            assert app.topology[0] == app.n_features == int(np.prod(app.input_shape))


@pytest.mark.parametrize("name", UCI_APPS)
def test_uci_shapes_counts_and_classes(name: str) -> None:
    rows, features, class_counts = EXPECTED[name]
    data = load(name)
    app = APPLICATIONS[name]
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert data.x_train.shape[0] + data.x_test.shape[0] == rows == app.n_samples
    assert data.x_train.shape[1:] == data.x_test.shape[1:] == (features,) == app.input_shape
    assert (data.y_train.size, data.y_test.size) == (app.n_train, app.n_test)
    assert data.y_test.size == int(np.ceil(0.2 * rows - 1e-9))
    labels = np.concatenate([data.y_train, data.y_test])
    assert set(labels.tolist()) == set(range(app.n_classes))
    if class_counts is not None:
        assert np.bincount(labels).tolist() == class_counts
    assert np.isfinite(data.x_train).all() and np.isfinite(data.x_test).all()


def test_satimage_maps_labels_1_to_7_without_6() -> None:
    data = load("satimage")
    assert data.class_names == ("1", "2", "3", "4", "5", "7")
    assert APPLICATIONS["satimage"].n_classes == 6
    assert int(data.y_train.max()) == 5


def test_rows_are_the_files_rows() -> None:
    """Train + test is a permutation of the file's rows: nothing lost, nothing duplicated."""
    table = raw.load_uci("wdbc")
    data = load("breast-cancer", seed=3)
    restored = np.concatenate([data.x_train, data.x_test]) * data.std.astype(np.float32) + data.mean.astype(np.float32)
    # Sort both by the first feature, then compare all columns within float32 rounding.
    order_a = np.lexsort(restored.T[::-1])
    order_b = np.lexsort(table.features.T[::-1])
    np.testing.assert_allclose(restored[order_a], table.features[order_b], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", UCI_APPS)
def test_split_is_stratified(name: str) -> None:
    data = load(name, seed=7)
    n_classes = len(data.class_names)
    train = np.bincount(data.y_train, minlength=n_classes)
    test = np.bincount(data.y_test, minlength=n_classes)
    total = train + test
    share = data.y_test.size / total.sum()
    # Each class holds out its exact share, rounded down or up: within one sample.
    assert np.all(np.abs(test - total * share) <= 1.0), (test, total * share)


def test_seeded_determinism() -> None:
    a, b, c = load("ionosphere", seed=11), load("ionosphere", seed=11), load("ionosphere", seed=12)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert a.x_test.shape == c.x_test.shape
    assert not np.array_equal(a.mean, c.mean)  # another seed picks other training rows


@pytest.mark.parametrize("name", UCI_APPS)
def test_standardised_with_training_statistics_only(name: str) -> None:
    data = load(name, seed=1)
    constant = data.std == 1.0
    mean = data.x_train.mean(axis=0, dtype=np.float64)
    std = data.x_train.std(axis=0, dtype=np.float64)
    np.testing.assert_allclose(mean, 0.0, atol=1e-5)
    np.testing.assert_allclose(std[~constant], 1.0, atol=1e-4)
    # The test split is transformed with the same statistics, so it is not exactly centred.
    assert np.abs(data.x_test.mean(axis=0, dtype=np.float64)[~constant]).max() > 1e-3
    # Statistics of the whole file differ from the stored ones: the test rows were left out.
    full = raw.load_uci(data.application.dataset).features
    assert not np.allclose(full.mean(axis=0), data.mean)
    # DataSplit.standardise is the transform load() applied, bit for bit.
    redone = data.standardise(full)
    both = np.concatenate([data.x_train, data.x_test])
    np.testing.assert_array_equal(redone[np.lexsort(redone.T)], both[np.lexsort(both.T)])


def test_ionosphere_constant_column_gets_std_one() -> None:
    data = load("ionosphere")
    assert data.std[1] == 1.0
    assert np.all(data.x_train[:, 1] == 0.0) and np.all(data.x_test[:, 1] == 0.0)


def test_mnist_shapes_and_standardisation(mnist_mlp: DataSplit) -> None:
    data = mnist_mlp
    assert data.x_train.shape == (60000, 784) and data.x_test.shape == (10000, 784)
    assert data.x_train.dtype == np.float32
    assert set(np.unique(data.y_train).tolist()) == set(range(10))
    assert float(data.x_train.mean(dtype=np.float64)) == pytest.approx(0.0, abs=1e-5)
    assert float(data.x_train.std(dtype=np.float64)) == pytest.approx(1.0, abs=1e-4)
    # One global statistic, from the training images scaled to [0, 1]: the known MNIST values.
    assert data.mean.shape == () and float(data.mean) == pytest.approx(0.1307, abs=1e-4)
    assert float(data.std) == pytest.approx(0.3081, abs=1e-4)


def test_mnist_cnn_sees_the_same_values(mnist_mlp: DataSplit) -> None:
    cnn = load("mnist-cnn", seed=5)  # the seed does not change the official split
    assert cnn.x_train.shape == (60000, 1, 28, 28) and cnn.x_test.shape == (10000, 1, 28, 28)
    np.testing.assert_array_equal(cnn.x_test.reshape(10000, 784), mnist_mlp.x_test)
    np.testing.assert_array_equal(cnn.y_train, mnist_mlp.y_train)


def test_split_validation_is_stratified_and_disjoint() -> None:
    data = load("image-segmentation")
    ids = np.arange(data.y_train.size)
    x_tr, y_tr, x_val, y_val = split_validation(ids, data.y_train, fraction=0.25, seed=2)
    assert sorted(np.concatenate([x_tr, x_val]).tolist()) == ids.tolist()
    assert x_val.size == int(np.ceil(0.25 * ids.size))
    np.testing.assert_array_equal(y_val, data.y_train[x_val])
    counts = np.bincount(data.y_train, minlength=7)
    assert np.all(np.abs(np.bincount(y_val, minlength=7) - counts * x_val.size / ids.size) <= 1.0)
    again = split_validation(ids, data.y_train, fraction=0.25, seed=2)
    np.testing.assert_array_equal(again[2], x_val)


def test_unknown_app_and_bad_arguments() -> None:
    with pytest.raises(DataError, match="unknown application 'mnist'.*breast-cancer.*mnist-cnn"):
        load("mnist")
    with pytest.raises(DataError, match="seed"):
        load("ionosphere", seed=-1)
    with pytest.raises(DataError, match="fraction"):
        split_validation(np.zeros(10), np.zeros(10, np.int64), fraction=1.0)
    with pytest.raises(DataError, match="labels"):
        split_validation(np.zeros(10), np.zeros(9, np.int64))


def test_raw_arrays_are_read_only_and_cached() -> None:
    first = raw.load_uci("ionosphere")
    assert raw.load_uci("ionosphere") is first
    with pytest.raises(ValueError):
        first.features[0, 0] = 1.0


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [("breast-cancr", "breast-cancer"), ("satimg", "satimage"), ("mnist-mpl", "mnist-mlp"), ("ionosphre", "ionosphere")],
)
def test_an_unknown_application_suggests_the_closest_names(typo: str, suggestion: str) -> None:
    with pytest.raises(DataError, match=f"did you mean '{suggestion}'"):
        get_application(typo)


def test_a_name_close_to_nothing_gets_no_suggestion_but_the_list() -> None:
    with pytest.raises(DataError) as info:
        get_application("zzzz")
    assert "did you mean" not in str(info.value) and "breast-cancer" in str(info.value)
