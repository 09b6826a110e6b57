"""Reading the bundled data files: checksum, gunzip, parse. No splitting, no scaling.

Each file is verified against its SHA-256 the first time it is read in a process; the parsed arrays
are cached (keyed by path, size and modification time, so a replaced file is read and verified again)
and returned read-only, so that no caller can change what the next caller sees.

The parsers are small pure functions of bytes/text, so the checks that a correct checksum makes
unreachable for the bundled files (bad IDX header, wrong column count) can still be tested.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from axtrain.errors import DataError

#: The folder holding the bundled files (``uci/*.gz`` and ``mnist/*.gz``).
DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "files"

#: SHA-256 of every bundled file, by path relative to the data folder. Also listed in files/NOTICE.md.
SHA256: dict[str, str] = {
    "uci/wdbc.data.gz": "2c5ba985a0a4a45dd98834594720ece1362c436c78f1fa57b23a5499db66a420",
    "uci/segmentation.csv.gz": "5f0fbe4956fd1880dfbcd8c46dcff038495b901efcde8f6377b71671854e3477",
    "uci/ionosphere.data.gz": "3469748d4997e5a9f5144e56eb05516342ec095aa2682db935e957b29e8e4665",
    "uci/sat.data.gz": "352e0f687d7da489051767c91c38583f473f84f3c20513a59f6f449d0307e216",
    "mnist/train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "mnist/train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "mnist/t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "mnist/t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}


@dataclass(frozen=True)
class RawTable:
    """A whole data set as read from disk: features as stored, labels as class indices.

    ``labels[i]`` indexes ``class_names``; the class names are sorted, so the mapping is stable and
    does not depend on the order in which classes first appear in a file.
    """

    features: np.ndarray  # float64 [N, F] for UCI, uint8 [N, 28, 28] for MNIST
    labels: np.ndarray  # int64 [N]
    class_names: tuple[str, ...]


@dataclass(frozen=True)
class RawMnist:
    """MNIST with its official split kept apart."""

    train: RawTable
    test: RawTable


def data_path(relative: str, data_dir: Path | str | None = None) -> Path:
    """Where a bundled file lives under ``data_dir`` (default: the package's own copy)."""
    return Path(data_dir if data_dir is not None else DEFAULT_DATA_DIR) / relative


def read_verified(relative: str, data_dir: Path | str | None = None) -> bytes:
    """Read a data file, check its SHA-256 and return its *uncompressed* bytes."""
    path = data_path(relative, data_dir)
    expected = SHA256[relative]
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise DataError(
            f"data file {path} cannot be read ({exc.strerror or exc}); expected a file with SHA-256 {expected}"
        ) from None
    actual = hashlib.sha256(blob).hexdigest()
    if actual != expected:
        raise DataError(
            f"data file {path} is corrupt: SHA-256 {actual}, expected {expected} "
            "(restore it from the axtrain distribution)"
        )
    return gunzip(blob, path, expected)


def gunzip(blob: bytes, path: Path | str, expected: str) -> bytes:
    """Decompress a gzip blob; a truncated or malformed stream is a :class:`DataError`."""
    try:
        return gzip.decompress(blob)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"data file {path} is not a complete gzip file ({exc}); expected SHA-256 {expected}") from None


def parse_idx(data: bytes, path: Path | str, expected_ndim: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (MNIST's format) into a uint8 array, without copying.

    Header: two zero bytes, type code 0x08 (ubyte), the number of dimensions, then one big-endian
    uint32 per dimension. The payload must be exactly the product of the dimensions.
    """
    where = f"data file {path}: bad IDX header"
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{where} (magic bytes missing)")
    if data[2] != 0x08:
        raise DataError(f"{where} (type code 0x{data[2]:02x}, expected 0x08 unsigned byte)")
    ndim = data[3]
    if ndim != expected_ndim:
        raise DataError(f"{where} ({ndim} dimensions, expected {expected_ndim})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{where} (file ends inside the header)")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    size = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != size:
        raise DataError(f"{where} (payload of {len(data) - header} bytes, shape {shape} needs {size})")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def parse_delimited(
    text: str,
    path: Path | str,
    *,
    n_columns: int,
    label_column: int,
    feature_columns: slice,
    separator: str | None,
    skip_header: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """Parse a text table into float64 features and label strings, checking every row's width.

    ``separator=None`` splits on runs of white space (Satimage); otherwise on that character.
    Blank lines are ignored.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if skip_header:
        lines = lines[1:]
    rows: list[list[str]] = []
    for number, line in enumerate(lines, start=2 if skip_header else 1):
        cells = [cell.strip() for cell in line.split(separator)]
        if len(cells) != n_columns:
            raise DataError(f"data file {path}, data row {number}: {len(cells)} columns, expected {n_columns}")
        rows.append(cells)
    if not rows:
        raise DataError(f"data file {path} holds no rows")
    try:
        features = np.array([row[feature_columns] for row in rows], dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"data file {path}: a feature is not a number ({exc})") from None
    return features, [row[label_column] for row in rows]


def _encode(names: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Label strings -> int64 indices into the sorted class names."""
    classes, indices = np.unique(np.asarray(names), return_inverse=True)
    return indices.astype(np.int64), tuple(str(c) for c in classes)


def _freeze(table: RawTable) -> RawTable:
    table.features.flags.writeable = False
    table.labels.flags.writeable = False
    return table


# name -> (file, columns, label column, feature columns, separator, header)
_UCI_FORMATS: dict[str, tuple[str, int, int, slice, str | None, bool]] = {
    "wdbc": ("uci/wdbc.data.gz", 32, 1, slice(2, 32), ",", False),
    "segmentation": ("uci/segmentation.csv.gz", 20, 0, slice(1, 20), ",", True),
    "ionosphere": ("uci/ionosphere.data.gz", 35, 34, slice(0, 34), ",", False),
    "sat": ("uci/sat.data.gz", 37, 36, slice(0, 36), None, False),
}


def _file_key(relative: str, data_dir: Path | str | None) -> tuple[str, int, int]:
    """Cache key: the resolved path plus size and mtime, so a replaced file is re-verified."""
    path = data_path(relative, data_dir)
    try:
        stat = path.stat()
    except OSError:
        return (str(path), -1, -1)  # read_verified reports the missing file
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def load_uci(name: str, data_dir: Path | str | None = None) -> RawTable:
    """One UCI data set (``wdbc``, ``segmentation``, ``ionosphere``, ``sat``), verified and parsed."""
    relative = _UCI_FORMATS[name][0]
    return _load_uci_cached(name, data_dir if data_dir is None else str(data_dir), _file_key(relative, data_dir))


@functools.lru_cache(maxsize=16)
def _load_uci_cached(name: str, data_dir: str | None, key: tuple[str, int, int]) -> RawTable:
    del key  # only part of the cache key
    relative, n_columns, label_column, feature_columns, separator, header = _UCI_FORMATS[name]
    path = data_path(relative, data_dir)
    text = read_verified(relative, data_dir).decode("ascii", errors="replace")
    features, names = parse_delimited(
        text,
        path,
        n_columns=n_columns,
        label_column=label_column,
        feature_columns=feature_columns,
        separator=separator,
        skip_header=header,
    )
    labels, class_names = _encode(names)
    if name == "sat":
        # Satimage labels are the integers 1..7 with class 6 empty: sort numerically, not as text.
        order = sorted(class_names, key=int)
        remap = np.array([order.index(c) for c in class_names], dtype=np.int64)
        labels, class_names = remap[labels], tuple(order)
    return _freeze(RawTable(features, labels, class_names))


_MNIST_FILES = {
    "train": ("mnist/train-images-idx3-ubyte.gz", "mnist/train-labels-idx1-ubyte.gz"),
    "test": ("mnist/t10k-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz"),
}


def load_mnist(data_dir: Path | str | None = None) -> RawMnist:
    """MNIST's official 60k/10k split as uint8 images [N, 28, 28] and int64 labels, verified."""
    keys = tuple(_file_key(f, data_dir) for pair in _MNIST_FILES.values() for f in pair)
    return _load_mnist_cached(data_dir if data_dir is None else str(data_dir), keys)


@functools.lru_cache(maxsize=2)
def _load_mnist_cached(data_dir: str | None, keys: tuple[tuple[str, int, int], ...]) -> RawMnist:
    del keys  # only part of the cache key
    parts: dict[str, RawTable] = {}
    for part, (image_file, label_file) in _MNIST_FILES.items():
        images = parse_idx(read_verified(image_file, data_dir), data_path(image_file, data_dir), 3)
        labels = parse_idx(read_verified(label_file, data_dir), data_path(label_file, data_dir), 1)
        if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
            raise DataError(
                f"data file {data_path(image_file, data_dir)}: images {images.shape} do not match "
                f"{labels.shape[0]} labels of 28x28 digits"
            )
        if int(labels.max()) > 9:
            raise DataError(f"data file {data_path(label_file, data_dir)}: label {int(labels.max())} outside 0..9")
        parts[part] = _freeze(RawTable(images, labels.astype(np.int64), tuple(str(d) for d in range(10))))
    return RawMnist(train=parts["train"], test=parts["test"])


def clear_cache() -> None:
    """Forget every parsed file (tests use it to force a fresh read and checksum)."""
    _load_uci_cached.cache_clear()
    _load_mnist_cached.cache_clear()
