"""bp.data.digits(images=True) and the MNIST / Fashion-MNIST IDX reader, on tiny files the test writes.

Nothing here touches the network: downloads are replaced by stand-ins that fail or return bytes.
"""
from __future__ import annotations

import gzip
import hashlib
import struct
import urllib.error

import numpy as np
import pytest

import bpcore as bp
from bpcore import data


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: 0, 0, type 0x08, ndim, big-endian sizes, values."""
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_set(folder, rng, n_train=5, n_test=3, compress=True, dotted=False):
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        pixels = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        for kind, array in (("images-idx3", pixels), ("labels-idx1", labels)):
            name = f"{split}-{kind}-ubyte"
            if dotted:
                name = name.replace("-idx", ".idx")
            payload = idx_bytes(array)
            (folder / (name + (".gz" if compress else ""))).write_bytes(gzip.compress(payload) if compress else payload)
        made[split] = (pixels, labels)
    return made


def test_digits_as_images():
    X, y = bp.data.digits(images=True)
    flat, _ = bp.data.digits()
    assert X.shape == (1797, 1, 8, 8) and X.dtype == np.float32 and y.shape == (1797,)
    np.testing.assert_array_equal(X.reshape(1797, 64), flat)
    with pytest.raises(TypeError, match="images"):
        bp.data.digits(images="yes")


@pytest.mark.parametrize("compress,dotted", [(True, False), (False, False), (False, True)])
def test_mnist_reads_idx_files_gzipped_or_not(tmp_path, rng, compress, dotted):
    made = write_set(tmp_path, rng, compress=compress, dotted=dotted)
    (X_train, y_train), (X_test, y_test) = bp.data.mnist(tmp_path, download=False)
    assert X_train.shape == (5, 1, 28, 28) and X_test.shape == (3, 1, 28, 28) and X_train.dtype == np.float32
    np.testing.assert_allclose(X_train[:, 0], made["train"][0] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y_test, made["t10k"][1])
    assert y_train.dtype == np.int64
    (flat, _), _ = bp.data.fashion_mnist(tmp_path, download=False, images=False)
    assert flat.shape == (5, 784)


def test_read_idx_other_types_and_bad_files(tmp_path):
    values = np.arange(6, dtype=">i4").reshape(2, 3)
    path = tmp_path / "ints.idx"
    path.write_bytes(bytes([0, 0, 0x0C, 2]) + struct.pack(">2I", 2, 3) + values.tobytes())
    np.testing.assert_array_equal(data.read_idx(path), np.arange(6).reshape(2, 3))
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(path)
    path.write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(path)


def test_missing_files_without_network_say_where_to_put_them(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError, match=r"downloading https://.*failed.*put them in .*empty"):
        bp.data.mnist(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="download=False.*train-images-idx3-ubyte.gz"):
        bp.data.fashion_mnist(tmp_path, download=False)


class FakeResponse:
    def __init__(self, payload):
        self.payload = payload

    def read(self):
        return self.payload

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_is_checked_against_sha256_and_saved_atomically(tmp_path, rng, monkeypatch):
    source = tmp_path / "server"
    write_set(source, rng)
    served = {path.name: path.read_bytes() for path in source.iterdir()}
    checksums = {name[:-3]: hashlib.sha256(payload).hexdigest() for name, payload in served.items()}
    monkeypatch.setitem(data._IDX_SOURCES, "mnist", ("https://example.invalid/", checksums))
    monkeypatch.setattr(data.urllib.request, "urlopen",
                        lambda url, timeout: FakeResponse(served[url.rsplit("/", 1)[1]]))
    (X_train, _), _ = bp.data.mnist(tmp_path / "cache")
    assert X_train.shape == (5, 1, 28, 28)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(served)     # no .part left
    wrong = dict(checksums, **{"t10k-labels-idx1-ubyte": "0" * 64})
    monkeypatch.setitem(data._IDX_SOURCES, "mnist", ("https://example.invalid/", wrong))
    with pytest.raises(ValueError, match="SHA-256.*nothing was saved"):
        bp.data.mnist(tmp_path / "other")
    assert not (tmp_path / "other" / "t10k-labels-idx1-ubyte.gz").exists()


def test_mismatched_or_bad_labels_are_refused(tmp_path, rng):
    write_set(tmp_path, rng)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.full(3, 12, dtype=np.uint8))))
    with pytest.raises(ValueError, match="labels must be 0-9"):
        bp.data.mnist(tmp_path, download=False)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(4, dtype=np.uint8))))
    with pytest.raises(ValueError, match="do not pair up"):
        bp.data.mnist(tmp_path, download=False)
    with pytest.raises(NotADirectoryError):
        bp.data.mnist(tmp_path / "t10k-labels-idx1-ubyte.gz")


def test_cnn_mnist_example_trains_on_idx_files_and_explains_missing_ones(tmp_path, rng, capsys):
    import importlib.util
    import os

    examples = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
    spec = importlib.util.spec_from_file_location("example_cnn_mnist", os.path.join(examples, "cnn_mnist.py"))
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    write_set(tmp_path / "mnist", rng, n_train=8, n_test=4)
    result = example.main(["--data", str(tmp_path / "mnist"), "--epochs", "1", "--out", str(tmp_path / "out")])
    assert 0.0 <= result["accuracy"] <= 1.0 and np.isfinite(result["loss"])
    assert "Total params" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stopped:
        example.main(["--data", str(tmp_path / "nothing"), "--fashion"])
    assert stopped.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()
    assert len(message) == 1 and "put them in" in message[0] and "--download" in message[0]
