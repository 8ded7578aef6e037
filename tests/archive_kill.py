"""`vidrestore archive ARGS...` that kills itself with SIGKILL right after its Kth chunk is recorded as done:
a crash mid-job at a known point. The pids of its worker processes go to PIDS first.

    python tests/archive_kill.py K PIDS archive IN OUT [options]
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from pathlib import Path

from vidrestore import cli
from vidrestore.archive import job


def main() -> int:
    after, pids, args = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    record = job.write_done
    recorded = []

    def record_then_die(folder, result) -> None:
        record(folder, result)
        recorded.append(result.index)
        if len(recorded) == after:
            pids.write_text(" ".join(str(p.pid) for p in multiprocessing.active_children()))
            os.kill(os.getpid(), signal.SIGKILL)

    job.write_done = record_then_die
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main())
