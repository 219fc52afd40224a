"""atrepo.car._files: opening CAR files, reading ranges, and indexing a file chunk by chunk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import atrepo
from atrepo import car
from atrepo.car._files import index_fd, open_file, read_range
from atrepo.errors import CarError


def test_directory_is_a_car_error_naming_it(tmp_path: Path) -> None:
    # regression (issue 13, item 6): this was an IsADirectoryError from the first read
    for read in (car.read_car, atrepo.read_car, lambda path: open_file(str(path))):
        with pytest.raises(CarError, match="directory") as info:
            read(tmp_path)
        assert str(tmp_path) in str(info.value) and info.value.fields["path"] == str(tmp_path)


def test_a_path_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR)  # a writer, so that open_file's open does not wait for one
    try:
        with pytest.raises(CarError, match="not a regular file"):
            open_file(str(fifo))
    finally:
        os.close(fd)


def test_ranges_and_the_file_index_agree_with_the_bytes(ref_small: Any) -> None:
    data = ref_small.car.read_bytes()
    fd = open_file(str(ref_small.car))
    try:
        assert read_range(fd, 0, len(data)) == data
        assert read_range(fd, 10, 20) == data[10:20]
        assert read_range(fd, len(data) - 5, len(data) + 100) == data[-5:]
        roots, index = index_fd(fd, len(data))
    finally:
        os.close(fd)
    whole = car.read_car(data)
    assert roots == whole.roots and index.count == len(whole)
    assert sorted(index.in_file_order()) == index.in_file_order()
