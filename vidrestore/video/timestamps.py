"""Frame timestamps compared across files: the same frame at the same time, whatever the time bases.

Times are compared in seconds, to the coarser of the two time bases and never finer than a millisecond:
Matroska stores milliseconds, and MP4 stores a stream's start offset in its movie time scale (1/1000 as
FFmpeg writes it), so a source starting at 512/15360 s comes back at 507/15360 s.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

TIME_PRECISION = Fraction(1, 1000)  # seconds: what every container keeps of a timestamp


def time_tolerance(a: Fraction, b: Fraction) -> Fraction:
    """Two times in these time bases are the same when they differ by less than this (seconds)."""
    return max(a, b, TIME_PRECISION)


def timing_mismatch(source: Sequence[int], source_base: Fraction, output: Sequence[int],
                    output_base: Fraction) -> str | None:
    """None when the output's frames (PTS, in presentation order) are the source's at the same times, else
    the first source frame missing or output frame extra, named with its time and both frame counts."""
    step = time_tolerance(source_base, output_base)
    s_times = [p * source_base for p in source]
    o_times = [p * output_base for p in output]
    i = j = 0
    while i < len(s_times) and j < len(o_times) and abs(s_times[i] - o_times[j]) < step:
        i, j = i + 1, j + 1
    if i == len(s_times) and j == len(o_times):
        return None
    counts = f"the output has {len(o_times)} frames, the source {len(s_times)}"
    if j == len(o_times) or (i < len(s_times) and s_times[i] < o_times[j]):
        there = f"; the output's frame {j} is at t={float(o_times[j]):.3f} s" if j < len(o_times) else ""
        return f"source frame {i} (t={float(s_times[i]):.3f} s) is missing from the output ({counts}{there})"
    return f"output frame {j} (t={float(o_times[j]):.3f} s) is not in the source ({counts})"
