"""Pictures the live sinks show besides the frames: the statistics box and the 'no signal' card."""

from __future__ import annotations

from typing import Any, Mapping

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE = (255, 255, 255)
RED = (255, 80, 80)  # RGB, like the frames
CARD_GRAY = 72  # the plain card shown before any frame arrived
DARKEN = 0.3  # how much of the last frame's brightness the 'no signal' picture keeps
BOX_DARKEN = 0.35  # the same for the area behind the statistics text


def stats_lines(snapshot: Mapping[str, Any]) -> list[tuple[str, tuple[int, int, int]]]:
    """The statistics as short text lines with their colours (red for 'source down')."""
    def ms(key: str) -> str:
        value = snapshot.get(key)
        return "-" if value is None else f"{value:.0f}"

    lines = [
        (f"in {snapshot.get('fps_in', 0):.1f} fps  out {snapshot.get('fps_out', 0):.1f} fps", WHITE),
        (f"dropped {snapshot.get('dropped', 0)}  unrestored {snapshot.get('passed_through', 0)}", WHITE),
        (f"faces {snapshot.get('faces', 0)}  reconnects {snapshot.get('reconnects', 0)}", WHITE),
        (f"latency p50 {ms('latency_p50_ms')} ms  p95 {ms('latency_p95_ms')} ms", WHITE),
    ]
    if not snapshot.get("source_up", True):
        lines.append(("source down", RED))
    return lines


def text_scale(height: int) -> float:
    """A font scale that stays readable from small previews to 4K frames."""
    return float(np.clip(height / 900, 0.35, 1.6))


def draw_stats(image: np.ndarray, snapshot: Mapping[str, Any]) -> np.ndarray:
    """A copy of `image` with the statistics in a darkened box at the top left."""
    out = np.array(image, dtype=np.uint8, copy=True)
    lines = stats_lines(snapshot)
    scale = text_scale(out.shape[0])
    thickness = 1 if scale < 0.9 else 2
    (_, line_h), baseline = cv2.getTextSize("Ag", FONT, scale, thickness)
    step = line_h + baseline + max(2, line_h // 3)
    pad = max(4, line_h // 2)
    width = max(cv2.getTextSize(text, FONT, scale, thickness)[0][0] for text, _ in lines)
    box = out[: 2 * pad + step * len(lines), : 2 * pad + width]
    box[...] = cv2.convertScaleAbs(box, alpha=BOX_DARKEN)
    for i, (text, colour) in enumerate(lines):
        cv2.putText(out, text, (pad, pad + line_h + i * step), FONT, scale, colour, thickness, cv2.LINE_AA)
    return out


def no_signal_picture(width: int, height: int, message: str, last: np.ndarray | None) -> np.ndarray:
    """The last frame darkened (or a plain gray card) with 'NO SIGNAL' and `message` centred on it."""
    if last is None:
        picture = np.full((height, width, 3), CARD_GRAY, dtype=np.uint8)
    else:
        if last.shape[:2] != (height, width):
            last = cv2.resize(last, (width, height), interpolation=cv2.INTER_AREA)
        picture = cv2.convertScaleAbs(last, alpha=DARKEN)
    scale = text_scale(height) * 1.4
    lines = [("NO SIGNAL", scale * 1.6)] + [(text, scale) for text in wrap(message, width * 0.9, scale)]
    heights = [cv2.getTextSize(text, FONT, s, 2)[0][1] * 2 for text, s in lines]
    y = (height - sum(heights)) // 2
    for (text, s), line_h in zip(lines, heights):
        (text_w, text_h), _ = cv2.getTextSize(text, FONT, s, 2)
        y += line_h
        cv2.putText(picture, text, ((width - text_w) // 2, y - (line_h - text_h) // 2), FONT, s,
                    WHITE, 2, cv2.LINE_AA)
    return picture


def wrap(message: str, max_width: float, scale: float) -> list[str]:
    """`message` split into lines that fit `max_width` pixels at `scale` (long words stay whole)."""
    lines: list[str] = []
    for word in message.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(candidate, FONT, scale, 2)[0][0] <= max_width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines
