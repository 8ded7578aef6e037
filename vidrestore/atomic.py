"""Atomic file writes: write to a temporary file beside the target, rename it into place when complete.

A temporary file is named after the process writing it (`.NAME.vidrestore-tmp-PID-XXXX.EXT`) and
locked with fcntl.flock while that process holds it. The kernel drops the lock when the process dies,
however it dies (kill -9, out of memory, power cut), so a later write of the same target can tell the
leftovers of dead runs (lock free: removed) from the files of runs still writing (locked: kept).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import stat
import tempfile
import threading
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

TMP_MARK = ".vidrestore-tmp-"

_held: dict[str, int] = {}  # temporary files of this process -> the descriptor that holds each one's lock
_held_guard = threading.Lock()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` that replaces it when the block succeeds and is removed if it fails.

    Readers never see a half-written file under the final name, whatever stops the writer.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = create_temp(path)
    try:
        yield tmp
        commit_temp(tmp, path)
    except BaseException:
        discard_temp(tmp)
        raise


def temp_prefix(target: Path) -> str:
    """The start of the name of every temporary file of `target`."""
    return f".{target.name}{TMP_MARK}"


def create_temp(target: str | os.PathLike, suffix: str | None = None) -> Path:
    """Create an empty hidden file beside `target`, named after and locked by this process.

    It keeps the target's extension (or `suffix`): muxers and image writers choose the format by it.
    Temporary files of `target` left by dead runs are removed first. OSError when the folder refuses it.
    """
    target = Path(os.path.abspath(target))  # absolute: the lock table must not depend on the working folder
    _release_renamed()
    remove_stale_temps(target)
    prefix = f"{temp_prefix(target)}{os.getpid()}-"
    while True:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=target.suffix if suffix is None else suffix,
                                    dir=target.parent)
        if _lock_new_file(fd):
            break
        os.close(fd)  # another run took it for a leftover in the instant before the lock: make another
    _make_readable(name)
    with _held_guard:
        _held[name] = fd
    return Path(name)


def commit_temp(tmp: Path, target: str | os.PathLike) -> None:
    """Rename a finished temporary file onto its target and release its lock."""
    os.replace(tmp, target)
    _release(tmp)


def discard_temp(tmp: Path) -> None:
    """Delete a temporary file if it is there and release its lock; OSError if it cannot be deleted."""
    try:
        tmp.unlink(missing_ok=True)
    finally:
        _release(tmp)


def remove_stale_temps(target: Path) -> list[Path]:
    """Delete the temporary files of `target` whose owner is gone (lock free); returns what was removed."""
    folder = target.parent
    pattern = re.compile(re.escape(temp_prefix(target)) + r"\d+-")
    try:
        names = sorted(name for name in os.listdir(folder) if pattern.match(name))
    except OSError:
        return []
    return [folder / name for name in names if _remove_if_unlocked(folder / name)]


def _lock_new_file(fd: int) -> bool:
    """Lock a file just made; False when it was deleted before the lock was ours (then it must be remade)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits only while another run looks at it as a possible leftover
    except OSError as exc:
        log.debug("no file locks in this folder (%s): temporary files cannot be told from leftovers", exc)
        return True
    return os.fstat(fd).st_nlink > 0


def _remove_if_unlocked(path: Path) -> bool:
    """Delete `path` if it is a regular file that no process holds locked; True when deleted."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                log.debug("cannot lock %s (%s): kept", path, exc)
            return False  # a live run writes it (or locks do not work here): not ours to remove
        path.unlink()
    except OSError as exc:
        log.warning("could not remove %s, left by a run that stopped: %s", path, exc)
        return False
    finally:
        os.close(fd)
    log.info("removed %s, left by a run that stopped before it finished", path)
    return True


def _release(tmp: Path) -> None:
    """Close the descriptor holding a temporary file's lock (nothing if this process holds none)."""
    with _held_guard:
        fd = _held.pop(os.fspath(tmp), None)
    if fd is not None:
        os.close(fd)


def _release_renamed() -> None:
    """Close the locks of temporary files whose name is gone: moved into place by a plain os.replace."""
    with _held_guard:
        gone = [name for name, fd in _held.items() if not _still_names(name, fd)]
        for name in gone:
            os.close(_held.pop(name))


def _still_names(name: str, fd: int) -> bool:
    """True while the path `name` is the file open on `fd`."""
    try:
        now = os.lstat(name)
    except OSError:
        return False
    held = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def _make_readable(name: str) -> None:
    """mkstemp makes files private (0600); give the output the permissions a plain open() would."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)
