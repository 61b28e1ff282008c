"""The data sets: shapes, dtypes, balance, determinism, and scikit-learn's generators as the reference."""
from __future__ import annotations

import numpy as np
import pytest

import bpcore as bp

GENERATORS = {
    "spiral": lambda seed: bp.data.spiral(200, noise=0.3, seed=seed),
    "moons": lambda seed: bp.data.moons(200, noise=0.15, seed=seed),
    "circles": lambda seed: bp.data.circles(200, noise=0.05, factor=0.5, seed=seed),
    "blobs": lambda seed: bp.data.blobs(200, seed=seed),
}


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_binary_sets_shapes_dtypes_balance(name):
    X, y = GENERATORS[name](0)
    assert X.shape == (200, 2) and X.dtype == np.float32
    assert y.shape == (200, 1) and y.dtype == np.float32
    assert set(np.unique(y)) == {0.0, 1.0}
    assert y.sum() == 100                                   # balanced
    assert np.all(np.isfinite(X))


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_same_seed_same_data(name):
    X1, y1 = GENERATORS[name](3)
    X2, y2 = GENERATORS[name](3)
    X3, _ = GENERATORS[name](4)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(X1, X3)


def test_odd_counts_give_class_zero_the_extra_point():
    _, y = bp.data.moons(7, seed=0)
    assert (y == 0).sum() == 4 and (y == 1).sum() == 3


def test_xor():
    X, y = bp.data.xor()
    np.testing.assert_array_equal(X, [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(y[:, 0], [0, 1, 1, 0])


def test_spiral_follows_its_definition():
    X, y = bp.data.spiral(2000, noise=0.0, seed=0)
    np.testing.assert_allclose(X.mean(axis=0), 0.0, atol=1e-5)        # standardized
    np.testing.assert_allclose(X.std(axis=0), 1.0, rtol=1e-4)
    # without noise, class 1 is class 0 reflected through the origin (before standardizing,
    # so compare radii of the raw points, recovered by undoing the scale)
    raw_radius = np.linalg.norm(X, axis=1)
    assert abs(np.median(raw_radius[y[:, 0] == 0]) - np.median(raw_radius[y[:, 0] == 1])) < 0.1


def test_moons_without_noise_lie_on_their_half_circles():
    X, y = bp.data.moons(400, noise=0.0, seed=0)
    upper = X[y[:, 0] == 0]
    lower = X[y[:, 0] == 1]
    np.testing.assert_allclose(np.linalg.norm(upper, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(lower - [1.0, 0.5], axis=1), 1.0, atol=1e-6)


def test_circles_without_noise_have_their_radii():
    X, y = bp.data.circles(300, noise=0.0, factor=0.3, seed=0)
    radius = np.linalg.norm(X, axis=1)
    np.testing.assert_allclose(radius[y[:, 0] == 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(radius[y[:, 0] == 1], 0.3, atol=1e-6)


def test_blobs_centres_spread_and_many_classes():
    X, y = bp.data.blobs(20000, centers=[(-1, -1), (1, 1)], std=0.5, seed=0)
    for label, centre in ((0, (-1, -1)), (1, (1, 1))):
        points = X[y[:, 0] == label]
        np.testing.assert_allclose(points.mean(axis=0), centre, atol=0.02)
        np.testing.assert_allclose(points.std(axis=0), 0.5, atol=0.02)
    X, y = bp.data.blobs(301, centers=4, seed=1)
    assert y.shape == (301,) and y.dtype == np.int64 and set(np.unique(y)) == {0, 1, 2, 3}
    assert np.bincount(y).tolist() == [76, 75, 75, 75]


def test_against_scikit_learn_statistically():
    datasets = pytest.importorskip("sklearn.datasets")
    ours, _ = bp.data.moons(4000, noise=0.1, seed=0)
    theirs, _ = datasets.make_moons(4000, noise=0.1, random_state=0)
    np.testing.assert_allclose(ours.mean(axis=0), theirs.mean(axis=0), atol=0.02)
    np.testing.assert_allclose(ours.std(axis=0), theirs.std(axis=0), atol=0.02)
    ours, _ = bp.data.circles(4000, noise=0.05, factor=0.5, seed=0)
    theirs, _ = datasets.make_circles(4000, noise=0.05, factor=0.5, random_state=0)
    quantiles = np.linspace(0.05, 0.95, 19)
    np.testing.assert_allclose(np.quantile(np.linalg.norm(ours, axis=1), quantiles),
                               np.quantile(np.linalg.norm(theirs, axis=1), quantiles), atol=0.02)


def test_digits():
    pytest.importorskip("sklearn")
    X, y = bp.data.digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert 0.0 <= X.min() and X.max() <= 1.0
    assert set(np.unique(y)) == set(range(10))


def test_train_test_split():
    X = np.arange(20).reshape(10, 2)
    y = np.arange(10)
    X_train, X_test, y_train, y_test = bp.data.train_test_split(X, y, test_size=0.25, seed=0)
    assert len(X_test) == 3 and len(X_train) == 7                # ceil(0.25 * 10), as scikit-learn
    np.testing.assert_array_equal(X_train[:, 0] // 2, y_train)   # rows stay paired
    assert sorted(np.concatenate([y_train, y_test]).tolist()) == list(range(10))
    again = bp.data.train_test_split(X, y, test_size=0.25, seed=0)
    np.testing.assert_array_equal(again[1], X_test)
    assert len(bp.data.train_test_split(X, y, test_size=4)[1]) == 4


def test_standardize_uses_training_statistics():
    rng = np.random.default_rng(0)
    X_train = rng.normal(5, 3, (500, 2)).astype(np.float32)
    X_test = rng.normal(5, 3, (100, 2)).astype(np.float32)
    train, test = bp.data.standardize(X_train, X_test)
    np.testing.assert_allclose(train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(train.std(axis=0), 1, rtol=1e-4)
    np.testing.assert_allclose(test, (X_test - X_train.mean(0)) / X_train.std(0), rtol=1e-5)
    constant = bp.data.standardize(np.ones((4, 2), dtype=np.float32))
    assert np.all(constant == 0)


@pytest.mark.parametrize("call, match", [
    (lambda: bp.data.spiral(1), "n must be an int >= 2"),
    (lambda: bp.data.moons(100, noise=-1), "noise"),
    (lambda: bp.data.circles(100, factor=1.5), "factor"),
    (lambda: bp.data.blobs(100, centers=1), "at least 2 centers"),
    (lambda: bp.data.blobs(100, std=-1.0), "std"),
    (lambda: bp.data.train_test_split(np.ones((4, 2)), np.ones(3)), "same length"),
    (lambda: bp.data.train_test_split(np.ones((4, 2)), np.ones(4), test_size=1.5), "test_size"),
    (lambda: bp.data.standardize(np.ones(3)), "X_train"),
    (lambda: bp.data.standardize(np.ones((3, 2)), np.ones((3, 3))), "2 features"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
