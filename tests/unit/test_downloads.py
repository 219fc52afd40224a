"""atrepo._io.downloads: part files of live downloads are kept, those of killed ones cleaned."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atrepo import AtrepoError
from atrepo._io.downloads import GRACE, clean, part_file

KILLED = """
import os, signal, sys
from pathlib import Path
from atrepo._io.downloads import part_file
with part_file(Path(sys.argv[1]), "did_plc_killed") as part:
    part.write_bytes(b"x" * 5000)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_part_a_killed_process_left_is_cleaned_after_the_grace(tmp_path):
    folder = tmp_path / "downloads"
    done = subprocess.run([sys.executable, "-c", KILLED, str(folder)], check=False)
    assert done.returncode == -9
    (part,) = folder.glob("*.part")
    assert part.stat().st_size == 5000 and len(list(folder.glob("*.lock"))) == 1
    assert clean(folder) == 5000                  # young: kept (and counted) for now
    assert clean(folder, now=time.time() + GRACE + 1) == 0
    assert list(folder.iterdir()) == []           # the part and its lock


def test_a_live_download_is_kept_however_old(tmp_path):
    folder = tmp_path / "downloads"
    with part_file(folder, "did_plc_live") as part:
        part.write_bytes(b"y" * 300)
        for path in folder.iterdir():
            _age(path, 10 * GRACE)               # stalled for ten minutes, still running
        assert clean(folder) == 300 + 0          # the part's bytes (the lock file is empty)
        assert part.exists()
    assert list(folder.iterdir()) == []          # both deleted when the download ends


def test_an_old_part_without_a_lock_is_stale(tmp_path):
    """Parts of earlier versions had no lock file."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    old, young, other = (folder / "a-1.part", folder / "b-2.part", folder / "notes.txt")
    for path in (old, young, other):
        path.write_bytes(b"z" * 10)
    _age(old, 2 * GRACE)
    _age(other, 2 * GRACE)
    assert clean(folder) == 10 and not old.exists() and young.exists() and other.exists()


def test_a_folder_that_cannot_hold_a_file_is_an_atrepo_error(tmp_path):
    blocked = tmp_path / "downloads"
    blocked.write_text("a file where the folder should be")
    with pytest.raises(AtrepoError, match="cannot create a download file") as info:
        with part_file(blocked, "did_plc_x"):
            pass
    assert info.value.fields["path"] == blocked


def test_a_stale_part_that_cannot_be_deleted_is_still_counted(tmp_path, monkeypatch):
    folder = tmp_path / "downloads"
    folder.mkdir()
    stale = folder / "a-1.part"
    stale.write_bytes(b"q" * 40)
    _age(stale, 2 * GRACE)

    def refused(self: Path, missing_ok: bool = False) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "unlink", refused)   # another user's cache, say
    assert clean(folder) == 40 and stale.exists()
