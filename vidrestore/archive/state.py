"""The work folder of an archive job: the plan, the chunk files and one done-record per finished chunk.

    WORK/plan.json             the plan (keyed by the input and the options that change pixels)
    WORK/chunks/NNNNN.EXT      chunk files (written under a temporary name, renamed when complete)
    WORK/done/NNNNN.json       a finished chunk's ChunkResult, written atomically after its file

A chunk counts as done only when its record exists and its file holds the plan's frames.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

from vidrestore.atomic import atomic_path, remove_stale_temps
from vidrestore.archive.workers import ChunkResult

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class WorkFolder:
    """Paths inside an archive job's work folder."""

    root: Path
    suffix: str  # the chunk files' container, the output's

    @property
    def plan_path(self) -> Path:
        return self.root / "plan.json"

    def chunk_path(self, index: int) -> Path:
        """The chunk file of chunk `index`."""
        return self.root / "chunks" / f"{index:05d}{self.suffix}"

    def done_path(self, index: int) -> Path:
        """The done-record of chunk `index`."""
        return self.root / "done" / f"{index:05d}.json"

    def create(self) -> None:
        """Make the folder and its subfolders; remove temporary files dead runs left in them."""
        for sub in ("chunks", "done"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for folder in (self.root, self.root / "chunks", self.root / "done"):
            for target in {_target_of(p) for p in folder.iterdir() if ".vidrestore-tmp-" in p.name}:
                remove_stale_temps(folder / target)

    def clear_chunks(self) -> None:
        """Forget every chunk (a new plan): remove the chunk files and done-records."""
        for sub in ("chunks", "done"):
            shutil.rmtree(self.root / sub, ignore_errors=True)
        self.create()

    def remove(self) -> None:
        """Remove the whole work folder (--fresh, or after a successful job)."""
        shutil.rmtree(self.root, ignore_errors=True)


def _target_of(temp_name: str) -> str:
    """The final name a temporary file `.NAME.vidrestore-tmp-PID-XXXX.EXT` was written for."""
    return temp_name[1:].split(".vidrestore-tmp-")[0]


def write_done(folder: WorkFolder, result: ChunkResult) -> None:
    """Record a chunk as done (atomic: a crash leaves the old state or the new, never half a file)."""
    with atomic_path(folder.done_path(result.index)) as tmp:
        tmp.write_text(json.dumps(dataclasses.asdict(result)))


def read_done(folder: WorkFolder, index: int) -> ChunkResult | None:
    """The done-record of a chunk, None when it has none (or an unreadable one)."""
    try:
        return ChunkResult(**json.loads(folder.done_path(index).read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        log.warning("done-record of chunk %d unreadable (%s): redoing it", index, exc)
        return None


def forget_done(folder: WorkFolder, index: int) -> None:
    """Drop a chunk's record and file (it is redone)."""
    folder.done_path(index).unlink(missing_ok=True)
    folder.chunk_path(index).unlink(missing_ok=True)
