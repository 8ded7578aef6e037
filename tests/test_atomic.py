"""atomic_path: the target appears only when the write completed; a failed write leaves nothing; the
temporary files of writers that died (kill -9) are removed by the next write, those of live writers kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_support import files_in
from vidrestore.atomic import TMP_MARK, atomic_path, create_temp, discard_temp


def test_target_appears_only_after_the_block(tmp_path):
    target = tmp_path / "sub" / "out.json"
    with atomic_path(target) as tmp:
        tmp.write_text("{}")
        assert not target.exists() and tmp.suffix == ".json"
    assert target.read_text() == "{}"
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer died")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def hold_a_temp_in_another_process(target: Path) -> tuple[subprocess.Popen, Path]:
    """A real second process that makes a temporary file of `target` and keeps it (alive) until killed."""
    code = ("import sys; from vidrestore.atomic import create_temp; "
            "print(create_temp(sys.argv[1]), flush=True); sys.stdin.read()")
    process = subprocess.Popen([sys.executable, "-c", code, str(target)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    return process, Path(process.stdout.readline().strip())


def test_temporary_name_carries_the_pid_and_keeps_the_extension(tmp_path):
    tmp = create_temp(tmp_path / "out.mp4")
    assert tmp.parent == tmp_path and tmp.suffix == ".mp4"
    assert tmp.name.startswith(f".out.mp4.vidrestore-tmp-{os.getpid()}-")
    discard_temp(tmp)
    assert files_in(tmp_path) == []


def test_a_later_write_removes_the_leftovers_of_dead_writers_only(tmp_path):
    target = tmp_path / "out.mp4"
    other, other_tmp = hold_a_temp_in_another_process(target)
    try:
        mine = create_temp(target)  # both writers alive: neither file is a leftover
        assert other_tmp.exists() and mine.exists()
        assert create_temp(target).exists() and other_tmp.exists() and mine.exists()  # one process, two files
    finally:
        other.kill()  # as kill -9: nothing of it runs again
        other.wait()
    assert other_tmp.exists()  # a dead writer cannot clean up ...
    unrelated = tmp_path / f".out.mp4.bak{TMP_MARK}1-x.mp4"
    unrelated.write_bytes(b"")
    with atomic_path(target) as tmp:  # ... the next write of the same target does
        tmp.write_bytes(b"new")
    assert not other_tmp.exists() and mine.exists() and unrelated.exists()
    assert target.read_bytes() == b"new"


def test_finished_writes_release_their_locks(tmp_path):
    """No descriptor stays open per write, committed, discarded or moved into place by a plain os.replace."""
    target = tmp_path / "out.json"
    with atomic_path(target) as tmp:
        tmp.write_text("{}")
    before = open_descriptors()
    for _ in range(5):
        with atomic_path(target) as tmp:
            tmp.write_text("{}")
        discard_temp(create_temp(target))
        os.replace(create_temp(target), target)
    with atomic_path(target) as tmp:  # the next temporary file drops the locks of names that are gone
        tmp.write_text("{}")
    assert open_descriptors() == before
