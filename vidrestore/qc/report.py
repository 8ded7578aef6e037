"""The results of `vidrestore qc` and what they are written as: JSON for machines, Markdown for people, a
plot of the face-region flicker over time and a strip of the worst frames (before | after), each atomic."""

from __future__ import annotations

import heapq
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vidrestore.atomic import atomic_path
from vidrestore.errors import VidrestoreError
from vidrestore.qc.background import BackgroundCheck
from vidrestore.qc.flicker import TemporalStability
from vidrestore.qc.structure import StructureResult

log = logging.getLogger(__name__)

STRIP_FRAMES = 4
STRIP_HEIGHT = 160


@dataclass
class WorstFrames:
    """The STRIP_FRAMES frames with the highest output warping error, as (source, output) crops of their faces."""

    count: int = STRIP_FRAMES
    _heap: list[tuple[float, int, np.ndarray, np.ndarray]] = field(default_factory=list, repr=False)

    def offer(self, error: float, index: int, source: np.ndarray, output: np.ndarray, boxes: np.ndarray) -> None:
        """Keep this frame if it is among the worst so far (only the face area is copied)."""
        if len(self._heap) >= self.count and error <= self._heap[0][0]:
            return
        x0, y0 = boxes[:, :2].min(axis=0)
        x1, y1 = boxes[:, 2:].max(axis=0)
        item = (error, index, _tile(source[y0:y1, x0:x1]), _tile(output[y0:y1, x0:x1]))
        if len(self._heap) < self.count:
            heapq.heappush(self._heap, item)
        else:
            heapq.heapreplace(self._heap, item)

    @property
    def frames(self) -> list[tuple[float, int, np.ndarray, np.ndarray]]:
        """Worst first."""
        return sorted(self._heap, key=lambda item: -item[0])


def _tile(crop: np.ndarray) -> np.ndarray:
    """A crop scaled to STRIP_HEIGHT rows."""
    h, w = crop.shape[:2]
    width = max(1, round(w * STRIP_HEIGHT / max(h, 1)))
    return cv2.resize(crop, (width, STRIP_HEIGHT), interpolation=cv2.INTER_AREA if h > STRIP_HEIGHT else cv2.INTER_LINEAR)


def strip_image(worst: WorstFrames) -> np.ndarray:
    """One row per worst frame: source | output, labelled with the frame and its warping error (RGB uint8)."""
    rows = []
    for error, index, before, after in worst.frames:
        row = np.concatenate([before, np.full((STRIP_HEIGHT, 4, 3), 255, np.uint8), after], axis=1)
        cv2.putText(row, f"frame {index}  E={error:.3g}", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1)
        rows.append(row)
    width = max(r.shape[1] for r in rows)
    return np.concatenate([np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0))) for r in rows], axis=0)


@dataclass
class QcReport:
    """Everything `vidrestore qc` measured about one output against its source."""

    source: Path
    output: Path
    structure: StructureResult
    background: BackgroundCheck
    stability: TemporalStability
    regions: str  # "tracks" or "re-detected"
    output_jitter: float | None
    source_jitter: float | None
    identity: dict[str, Any]
    scene_cuts: list[tuple[int, float]]
    chunk_boundaries: list[tuple[int, float]]
    worst: WorstFrames

    @property
    def ok(self) -> bool:
        """The pass/fail verdict: structure and background (the temporal figures are measurements)."""
        return self.structure.ok and self.background.ok

    @property
    def first_failure(self) -> str | None:
        failure = self.structure.first_failure
        if failure is not None:
            return f"structure: {failure.name}: {failure.detail}"
        if not self.background.ok:
            return f"background: {self.background.failure or 'no frames compared'}"
        return None

    def to_json(self) -> dict[str, Any]:
        s = self.stability
        ratio = s.ratio
        return {
            "source": str(self.source), "output": str(self.output), "ok": self.ok, "first_failure": self.first_failure,
            "structure": self.structure.to_json(),
            "background": {**self.background.to_json(), "face_regions": self.regions},
            "temporal": {
                "warping_error_output": s.output_error, "warping_error_source": s.source_error,
                "warping_error_ratio": "inf" if ratio is not None and math.isinf(ratio) else ratio,
                "frames_measured": len(s.frames),
                "landmark_jitter_output": self.output_jitter, "landmark_jitter_source": self.source_jitter,
                "per_frame": [{"index": f.index, "t": round(f.seconds, 6), "output": f.output, "source": f.source}
                              for f in s.frames],
            },
            "identity": self.identity,
            "scene_cuts": [i for i, _ in self.scene_cuts],
            "chunk_boundaries": [i for i, _ in self.chunk_boundaries],
            "worst_frames": [i for _, i, _, _ in self.worst.frames],
        }


def _figure(value: float | None, digits: int = 5) -> str:
    if value is None:
        return "n/a"
    return "inf" if math.isinf(value) else f"{value:.{digits}g}"


def markdown(report: QcReport, plot: Path | None = None, strip: Path | None = None) -> str:
    """The report for people: verdict, each structural check, background, temporal stability, identity."""
    verdict = "PASS" if report.ok else f"FAIL: {report.first_failure}"
    lines = [f"# vidrestore qc: {report.output.name} against {report.source.name}", "", f"**{verdict}**", "",
             "## Structure", "", "| check | ok | detail |", "|---|---|---|"]
    lines += [f"| {c.name} | {'yes' if c.ok else '**no**'} | {c.detail} |" for c in report.structure.checks]
    b = report.background
    lines += ["", "## Background (outside the face regions)", "",
              (f"- verdict: **{b.verdict}** ({'lossless' if b.lossless else 'lossy'} output; face regions "
               f"{report.regions})"),
              (f"- PSNR {_figure(b.psnr, 4)} dB over {b.frames} frames, worst frame {_figure(b.worst_psnr, 4)} dB; "
               f"{100 * b.changed_share:.4f}% of the pixels changed")]
    if b.failure:
        lines.append(f"- first failure: {b.failure}")
    s = report.stability
    lines += ["", "## Temporal stability in the faces", "",
              "| | output | source | ratio |", "|---|---:|---:|---:|",
              (f"| warping error (Lai et al., DIS flow, {len(s.frames)} frames) | {_figure(s.output_error)} | "
               f"{_figure(s.source_error)} | {_figure(s.ratio, 3)} |"),
              (f"| landmark jitter (eye distances) | {_figure(report.output_jitter)} | "
               f"{_figure(report.source_jitter)} | {_figure(_ratio(report.output_jitter, report.source_jitter), 3)} |"),
              ""]
    ident = report.identity
    if ident.get("status") == "measured":
        lines.append(f"Identity drift (ArcFace cosine distance): consecutive frames mean "
                     f"{_figure(ident['consecutive_mean'], 4)} (max {_figure(ident['consecutive_max'], 4)}), to the "
                     f"source mean {_figure(ident['to_source_mean'], 4)} (max {_figure(ident['to_source_max'], 4)}).")
    else:
        lines.append(f"Identity drift: absent ({ident.get('reason', '')}).")
    lines += ["", f"Scene cuts at frames: {', '.join(str(i) for i, _ in report.scene_cuts) or 'none'}."]
    if report.chunk_boundaries:
        lines.append(f"Archive chunk boundaries at frames: {', '.join(str(i) for i, _ in report.chunk_boundaries)}.")
    if plot is not None:
        lines += ["", f"![face-region flicker over time]({plot.name})"]
    if strip is not None:
        lines += ["", f"Worst frames (source | output): ![worst frames]({strip.name})"]
    return "\n".join(lines) + "\n"


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def write_json(report: QcReport, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report.to_json(), indent=1))


def write_markdown(report: QcReport, path: Path, plot: Path | None, strip: Path | None) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(markdown(report, plot, strip))


def write_png(image: np.ndarray, path: Path) -> None:
    """An RGB image as PNG, atomically."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise VidrestoreError(f"cannot encode {path} as PNG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.tobytes())


def write_strip(report: QcReport, path: Path) -> None:
    """The worst frames strip; a note in the log when no frame was measured."""
    if not report.worst.frames:
        log.warning("no frame with faces was measured: %s not written", path)
        return
    write_png(strip_image(report.worst), path)


def write_plot(report: QcReport, path: Path) -> None:
    """Warping error per frame in the face regions, output and source, over time; scene cuts and chunk
    boundaries as vertical lines (matplotlib, drawn off-screen)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError:
        raise VidrestoreError("--plot needs matplotlib: pip install 'vidrestore[qc]'") from None
    frames = report.stability.frames
    fig = Figure(figsize=(10, 3.6), dpi=100)
    ax = fig.add_subplot()
    t = [f.seconds for f in frames]
    ax.plot(t, [f.output for f in frames], label="output", color="tab:red", linewidth=1.2)
    ax.plot(t, [f.source for f in frames], label="source", color="tab:blue", linewidth=1.0)
    for k, (_, seconds) in enumerate(report.scene_cuts):
        ax.axvline(seconds, color="gray", linestyle="--", linewidth=0.8, label="scene cut" if k == 0 else None)
    for k, (_, seconds) in enumerate(report.chunk_boundaries):
        ax.axvline(seconds, color="tab:green", linestyle=":", linewidth=1.0, label="chunk boundary" if k == 0 else None)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("warping error in faces")
    ax.set_title(f"{report.output.name}: face-region flicker (ratio {_figure(report.stability.ratio, 3)})")
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
