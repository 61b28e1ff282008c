"""Small data sets from the lessons, made on the host with a seeded NumPy Generator.

Each returns ``(X, y)`` as host NumPy arrays: X float32 of shape (n, features)
and y shaped for the loss the lesson uses ((n, 1) float32 for binary
cross-entropy). Move them with ``backend.asarray`` or pass them to a model,
which moves host arrays itself.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

import backends

from ._checks import check_int, check_number
from .nn.init import host_rng
from .text import CharVocabulary, sliding_windows  # noqa: F401  (bp.data's text helpers)
from .tasks import adder  # noqa: F401  (bp.data's synthetic sequence tasks)


def xor():
    """The four XOR points: X (4, 2) float32, y (4, 1) float32 = [0, 1, 1, 0]."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    y = np.array([[0], [1], [1], [0]], dtype=np.float32)
    return X, y


def spiral(n: int = 400, noise: float = 0.3, seed=0):
    """Two interleaved spirals, standardized: X (n, 2) float32, y (n, 1) float32 in {0, 1}.

    For each point theta = sqrt(u) * 2 pi with u ~ U(0, 1) and r = 2 theta + pi;
    class 0 is (r cos theta, r sin theta), class 1 the same point reflected
    through the origin; then Gaussian noise of std ``noise`` is added and each
    feature is standardized to mean 0 and std 1. Class 0 has ceil(n/2) points.
    """
    n = check_int("spiral", "n", n, minimum=2)
    noise = check_number("spiral", "noise", noise)
    rng = host_rng(seed)
    n0 = (n + 1) // 2
    n1 = n - n0
    theta = np.sqrt(rng.random(n)) * 2 * np.pi
    radius = 2 * theta + np.pi
    sign = np.concatenate([np.ones(n0), -np.ones(n1)])
    points = sign[:, None] * np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1)
    points += rng.normal(0.0, noise, points.shape)
    X = (points - points.mean(axis=0)) / points.std(axis=0)
    y = np.concatenate([np.zeros(n0), np.ones(n1)])[:, None]
    return X.astype(np.float32), y.astype(np.float32)


def moons(n: int = 200, noise: float = 0.15, seed=0):
    """Two interleaving half circles: X (n, 2) float32, y (n, 1) float32 in {0, 1}.

    Class 0 is (cos t, sin t) and class 1 is (1 - cos t, 0.5 - sin t) for t evenly
    spaced in [0, pi] (as scikit-learn's make_moons), shuffled, plus Gaussian noise of
    std ``noise``. Class 0 has ceil(n/2) points.
    """
    n = check_int("moons", "n", n, minimum=2)
    noise = check_number("moons", "noise", noise)
    rng = host_rng(seed)
    n0 = (n + 1) // 2
    n1 = n - n0
    t0, t1 = np.linspace(0, np.pi, n0), np.linspace(0, np.pi, n1)
    points = np.concatenate([np.stack([np.cos(t0), np.sin(t0)], axis=1),
                             np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)], axis=1)])
    labels = np.concatenate([np.zeros(n0), np.ones(n1)])
    order = rng.permutation(n)
    points, labels = points[order], labels[order]
    points += rng.normal(0.0, noise, points.shape)
    return points.astype(np.float32), labels[:, None].astype(np.float32)


def train_test_split(X, y, test_size: float = 0.2, seed=0):
    """Shuffle and split: returns X_train, X_test, y_train, y_test (scikit-learn's order).

    ``test_size`` is a fraction in (0, 1) or a number of samples; the test part has
    ceil(test_size * n) samples, as in scikit-learn.
    """
    (X, y), back = _on_host("train_test_split", X, y)
    if X.ndim == 0 or y.ndim == 0 or len(X) != len(y):
        raise ValueError(f"train_test_split: X and y must have the same length, got "
                         f"{X.shape} and {y.shape}")
    n = len(X)
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float, np.integer, np.floating)):
        raise ValueError(f"train_test_split: test_size must be a number, got {test_size!r}")
    n_test = int(test_size) if isinstance(test_size, (int, np.integer)) else int(np.ceil(test_size * n))
    if isinstance(test_size, (float, np.floating)) and not 0 < test_size < 1:
        raise ValueError(f"train_test_split: a fractional test_size must be in (0, 1), got {test_size}")
    if not 0 < n_test < n:
        raise ValueError(f"train_test_split: test_size {test_size} leaves {n_test} of {n} samples for testing")
    order = host_rng(seed).permutation(n)
    test, train = order[:n_test], order[n_test:]
    return back(X[train]), back(X[test]), back(y[train]), back(y[test])


def digits(images: bool = False):
    """scikit-learn's bundled 8x8 handwritten digits (no download).

    Returns X (1797, 64) float32 scaled to [0, 1] and y (1797,) int64 labels 0-9, the
    shape ``SoftmaxCrossEntropyLoss`` takes; with ``images=True`` X is (1797, 1, 8, 8)
    (N, channels, height, width), the layout Conv2d takes. Needs scikit-learn: pip install -e ".[data]".
    """
    if not isinstance(images, bool):
        raise TypeError(f"digits: images must be True or False, got {images!r}")
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError('bp.data.digits() needs scikit-learn, which is not installed: '
                          'pip install -e ".[data]" (or pip install scikit-learn)') from None
    bunch = load_digits()
    X = (bunch.data / 16.0).astype(np.float32)
    return (X.reshape(-1, 1, 8, 8) if images else X), bunch.target.astype(np.int64)


def _binary_or_multiclass(labels, n_classes):
    """(n, 1) float32 for two classes (binary cross-entropy), (n,) int64 for more (softmax)."""
    if n_classes == 2:
        return labels[:, None].astype(np.float32)
    return labels.astype(np.int64)


def circles(n: int = 200, noise: float = 0.05, factor: float = 0.5, seed=0):
    """Two concentric circles: X (n, 2) float32, y (n, 1) float32 (1 = inner circle).

    The outer circle has radius 1 and ceil(n/2) points at evenly spaced angles; the inner
    one radius ``factor``; points shuffled, then Gaussian noise of std ``noise`` (as
    scikit-learn's make_circles).
    """
    n = check_int("circles", "n", n, minimum=2)
    noise = check_number("circles", "noise", noise)
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < 1:
        raise ValueError(f"circles: factor must be in (0, 1), got {factor!r}")
    rng = host_rng(seed)
    n_outer = (n + 1) // 2
    n_inner = n - n_outer
    outer = np.linspace(0, 2 * np.pi, n_outer, endpoint=False)
    inner = np.linspace(0, 2 * np.pi, n_inner, endpoint=False)
    points = np.concatenate([np.stack([np.cos(outer), np.sin(outer)], axis=1),
                             factor * np.stack([np.cos(inner), np.sin(inner)], axis=1)])
    labels = np.concatenate([np.zeros(n_outer), np.ones(n_inner)])
    order = rng.permutation(n)
    points, labels = points[order], labels[order]
    points += rng.normal(0.0, noise, points.shape)
    return points.astype(np.float32), _binary_or_multiclass(labels, 2)


def blobs(n: int = 200, centers=((-1.0, -1.0), (1.0, 1.0)), std: float = 0.5 ** 0.5, seed=0):
    """Gaussian blobs, one class per center.

    Args:
        n: points in all, split as evenly as possible over the centers.
        centers: a list of (x1, x2, ...) centers (default: the lesson's (-1, -1) and (1, 1)),
            or an int k for k centers drawn uniformly in [-10, 10]^2.
        std: the standard deviation of every blob (default sqrt(0.5), the lesson's).
    Returns:
        X (n, d) float32; y (n, 1) float32 for two centers, (n,) int64 labels for more.
    """
    n = check_int("blobs", "n", n, minimum=2)
    rng = host_rng(seed)
    if isinstance(centers, (int, np.integer)) and not isinstance(centers, bool):
        if centers < 2:
            raise ValueError(f"blobs: need at least 2 centers, got {centers}")
        centers = rng.uniform(-10.0, 10.0, (int(centers), 2))
    centers = np.asarray(centers, dtype=np.float64)
    if centers.ndim != 2 or len(centers) < 2:
        raise ValueError(f"blobs: centers must be an int >= 2 or a list of at least 2 points, "
                         f"got shape {centers.shape}")
    if isinstance(std, bool) or not isinstance(std, (int, float)) or not 0 <= std < np.inf:
        raise ValueError(f"blobs: std must be a finite number >= 0, got {std!r}")
    k = len(centers)
    counts = [n // k + (1 if i < n % k else 0) for i in range(k)]
    points = np.concatenate([rng.normal(c, std, (m, centers.shape[1])) for c, m in zip(centers, counts)])
    labels = np.concatenate([np.full(m, i) for i, m in enumerate(counts)])
    return points.astype(np.float32), _binary_or_multiclass(labels, k)


def standardize(X_train, *others):
    """Scale features to mean 0, std 1 using the training set's statistics.

    Returns the standardized X_train followed by each array in ``others`` scaled with the
    same mean and std (so test data never leak into the statistics). Constant features are
    left centred, not divided by zero.
    """
    (X_train, *others), back = _on_host("standardize", X_train, *others)
    if X_train.ndim != 2 or len(X_train) == 0:
        raise ValueError(f"standardize: X_train must be (n, features) with n > 0, got {X_train.shape}")
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    for X in others:
        if X.ndim != 2 or X.shape[1] != X_train.shape[1]:
            raise ValueError(f"standardize: every array must have {X_train.shape[1]} features, got {X.shape}")
    scaled = [back(((X - mean) / std).astype(X_train.dtype)) for X in (X_train, *others)]
    return scaled[0] if not others else tuple(scaled)


# -- MNIST and Fashion-MNIST: the standard IDX files ------------------------------------------
# (where they are served, {file: SHA-256 of the .gz}); the checksums are the published ones.
_IDX_SOURCES = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", {
        "train-images-idx3-ubyte": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"}),
    "fashion_mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", {
        "train-images-idx3-ubyte": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"}),
}
# IDX type byte -> big-endian NumPy dtype
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    """Read one IDX file (gzip-compressed or not): the format MNIST and Fashion-MNIST ship in.

    Layout: two zero bytes, a type byte (0x08 = uint8, ...), the number of dimensions, one
    big-endian uint32 per dimension, then the values in C order. Raises ValueError for a file
    that is not IDX or whose length does not match its header.
    """
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":                                     # the gzip magic number
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_TYPES:
        raise ValueError(f"read_idx: {path} is not an IDX file (its header is {raw[:4]!r})")
    dtype, ndim = np.dtype(_IDX_TYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim                                              # magic + one uint32 per dimension
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4)) if len(raw) >= header else ()
    expected = header + int(np.prod(shape)) * dtype.itemsize if len(raw) >= header else header
    if len(raw) != expected:
        raise ValueError(f"read_idx: {path} holds {len(raw)} bytes, but its header promises {expected} "
                         f"(truncated, or not an IDX file)")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find_or_download(name, stem, folder, download):
    """The path of ``stem`` (.gz or not, '-' or '.' before idx) in ``folder``, downloaded if allowed."""
    for candidate in (stem + ".gz", stem, stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / candidate).is_file():
            return folder / candidate
    base_url, checksums = _IDX_SOURCES[name]
    url, target = base_url + stem + ".gz", folder / (stem + ".gz")
    where = (f"Download the four files {', '.join(f + '.gz' for f in checksums)} from {base_url} "
             f"and put them in {folder}")
    if not download:
        raise FileNotFoundError(f"bp.data.{name}: {stem}(.gz) is not in {folder}, and download=False. {where}")
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            payload = response.read()
    except (urllib.error.URLError, OSError) as error:
        raise FileNotFoundError(f"bp.data.{name}: {stem}(.gz) is not in {folder} and downloading {url} failed "
                                f"({error}); without network access: {where}") from None
    digest = hashlib.sha256(payload).hexdigest()
    if digest != checksums[stem]:
        raise ValueError(f"bp.data.{name}: {url} has SHA-256 {digest}, expected {checksums[stem]}; the download "
                         f"is corrupt or the server changed it, so nothing was saved. {where}")
    folder.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(payload)
    os.replace(partial, target)              # atomic: a half-written file never looks complete
    return target


def _load_idx_dataset(name, path, download, images):
    if not isinstance(images, bool) or not isinstance(download, bool):
        raise TypeError(f"{name}: images and download must be True or False, got {images!r}, {download!r}")
    folder = Path(path) if path is not None else Path.home() / ".cache" / "bpcore" / name
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"bp.data.{name}: path must be a folder holding the IDX files, got the file {folder}")
    arrays = {stem: read_idx(_find_or_download(name, stem, folder, download)) for stem in _IDX_SOURCES[name][1]}
    splits = []
    for split in ("train", "t10k"):
        pixels, labels = arrays[f"{split}-images-idx3-ubyte"], arrays[f"{split}-labels-idx1-ubyte"]
        if pixels.ndim != 3 or labels.ndim != 1 or len(pixels) != len(labels):
            raise ValueError(f"bp.data.{name}: {split} images {pixels.shape} and labels {labels.shape} do not "
                             f"pair up (expected (n, rows, cols) and (n,))")
        if labels.size and not 0 <= labels.min() <= labels.max() <= 9:
            raise ValueError(f"bp.data.{name}: {split} labels must be 0-9, got {labels.min()}..{labels.max()}")
        X = (pixels.astype(np.float32) / 255.0)
        X = X[:, None, :, :] if images else X.reshape(len(X), -1)
        splits.append((X, labels.astype(np.int64)))
    return tuple(splits)


def mnist(path=None, download: bool = True, images: bool = True):
    """MNIST handwritten digits from the standard IDX files: ((X_train, y_train), (X_test, y_test)).

    X float32 in [0, 1], shape (n, 1, 28, 28) (or (n, 784) with ``images=False``); y int64 0-9
    (60,000 training and 10,000 test images). ``path`` is a folder holding the four files
    (train-images-idx3-ubyte.gz, ..., gzip-compressed or not); missing files are downloaded into
    it (default ~/.cache/bpcore/mnist) and checked against their SHA-256. Without network access
    the error says which files to put where.
    """
    return _load_idx_dataset("mnist", path, download, images)


def fashion_mnist(path=None, download: bool = True, images: bool = True):
    """Zalando's Fashion-MNIST (10 kinds of clothing, the same IDX files and shapes as :func:`mnist`)."""
    return _load_idx_dataset("fashion_mnist", path, download, images)
def _on_host(owner, *arrays):
    """Host NumPy copies of ``arrays`` and ``back``, which returns a result where they came from.

    Arrays of a backend (a GPU's, where ``np.asarray`` refuses) are copied to the host, split or
    scaled there (these run once, before training) and moved back to that backend; host data,
    lists and tables stay on the host.
    """
    places = set()
    hosted = []
    for array in arrays:
        if backends.is_host_array(array) or isinstance(array, (list, tuple)) or hasattr(array, "to_numpy"):
            hosted.append(backends.host_array_from(array, f"{owner} input"))
            continue
        try:
            backend = backends.backend_of(array)
        except TypeError:
            raise TypeError(f"{owner}: expected arrays (NumPy, a list, or an array of a backend), "
                            f"got {type(array).__name__}") from None
        places.add(backend)
        hosted.append(backend.to_numpy(array))
    if len(places) > 1:
        raise TypeError(f"{owner}: the arrays live on different backends {sorted(b.spec for b in places)}")
    if not places:
        return hosted, lambda result: result
    backend = places.pop()
    return hosted, lambda result: backend.asarray(result)
