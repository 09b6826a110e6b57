"""Missing and corrupt data files give one-line DataErrors naming the file and its SHA-256."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from axtrain.datasets import DEFAULT_DATA_DIR, SHA256, load, raw
from axtrain.errors import DataError


def test_bundled_files_match_their_checksums_and_the_notice() -> None:
    notice = (DEFAULT_DATA_DIR / "NOTICE.md").read_text()
    for relative, expected in SHA256.items():
        blob = (DEFAULT_DATA_DIR / relative).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == expected, relative
        assert f"{expected}  {relative}" in notice
    on_disk = {p.relative_to(DEFAULT_DATA_DIR).as_posix() for p in DEFAULT_DATA_DIR.rglob("*.gz")}
    assert on_disk == set(SHA256)


def _copy_uci(tmp_path: Path) -> Path:
    shutil.copytree(DEFAULT_DATA_DIR / "uci", tmp_path / "uci")
    return tmp_path


def test_copied_data_dir_loads_like_the_bundled_one(tmp_path: Path) -> None:
    data_dir = _copy_uci(tmp_path)
    a, b = load("ionosphere", seed=4, data_dir=data_dir), load("ionosphere", seed=4)
    np.testing.assert_array_equal(a.x_train, b.x_train)


def test_corrupt_file_names_path_and_expected_checksum(tmp_path: Path) -> None:
    data_dir = _copy_uci(tmp_path)
    target = data_dir / "uci" / "wdbc.data.gz"
    blob = bytearray(target.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    target.write_bytes(bytes(blob))
    with pytest.raises(DataError) as info:
        load("breast-cancer", data_dir=data_dir)
    message = str(info.value)
    assert str(target) in message and SHA256["uci/wdbc.data.gz"] in message
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load("mnist-mlp", data_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "mnist") in message and "expected a file with SHA-256" in message


def test_replaced_file_is_verified_again(tmp_path: Path) -> None:
    """The parse cache must not hide a file that was corrupted after its first load."""
    data_dir = _copy_uci(tmp_path)
    load("satimage", data_dir=data_dir)
    target = data_dir / "uci" / "sat.data.gz"
    target.write_bytes(target.read_bytes()[:-10])
    with pytest.raises(DataError, match="corrupt"):
        load("satimage", data_dir=data_dir)


def test_truncated_gzip() -> None:
    blob = gzip.compress(b"1,2,3\n" * 1000)
    with pytest.raises(DataError, match="not a complete gzip file.*expected SHA-256 abc"):
        raw.gunzip(blob[: len(blob) // 2], "x.gz", "abc")


def _idx(shape: tuple[int, ...], payload: int | None = None, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)
    n = int(np.prod(shape)) if payload is None else payload
    return header + bytes(range(256)) * (n // 256) + bytes(n % 256)


def test_idx_parser_round_trip_and_bad_headers() -> None:
    images = raw.parse_idx(_idx((3, 28, 28)), "f", 3)
    assert images.shape == (3, 28, 28) and images.dtype == np.uint8
    assert images.ravel()[:300].tolist() == list(range(256)) + list(range(44))
    with pytest.raises(DataError, match="bad IDX header.*magic"):
        raw.parse_idx(b"\x01" + _idx((2,))[1:], "f", 1)
    with pytest.raises(DataError, match="type code 0x0d"):
        raw.parse_idx(_idx((2,), type_code=0x0D), "f", 1)
    with pytest.raises(DataError, match="2 dimensions, expected 3"):
        raw.parse_idx(_idx((4, 4)), "f", 3)
    with pytest.raises(DataError, match="payload of 99 bytes"):
        raw.parse_idx(_idx((10, 10), payload=99), "f", 2)


def test_delimited_parser_checks_column_count() -> None:
    good = "1,2,a\n3,4,b\n\n"
    features, labels = raw.parse_delimited(
        good, "t.csv", n_columns=3, label_column=2, feature_columns=slice(0, 2), separator=","
    )
    assert features.tolist() == [[1.0, 2.0], [3.0, 4.0]] and labels == ["a", "b"]
    with pytest.raises(DataError, match=r"t\.csv, data row 2: 2 columns, expected 3"):
        raw.parse_delimited(
            "1,2,a\n3,b\n", "t.csv", n_columns=3, label_column=2, feature_columns=slice(0, 2), separator=","
        )
    with pytest.raises(DataError, match="not a number"):
        raw.parse_delimited("1,x,a\n", "t.csv", n_columns=3, label_column=2, feature_columns=slice(0, 2), separator=",")
