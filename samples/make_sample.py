"""Make samples/astronaut.mp4: a short degraded clip with motion and sound, for trying `vidrestore IN OUT`.

The picture is scikit-image's `astronaut` (a public-domain NASA portrait that scikit-image ships).
A slow pan and zoom over it, then blur, downscaling and noise (what restoration should undo), and a
rising tone as the sound track; encoded H.264 + AAC with PyAV. Deterministic: same file every run.

    python samples/make_sample.py [--output samples/astronaut.mp4] [--seconds 4]
"""

from __future__ import annotations

import argparse
import logging
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from skimage import data

log = logging.getLogger("make_sample")

WIDTH, HEIGHT, FPS = 640, 480, 25
AUDIO_RATE = 44100


def camera_frame(photo: np.ndarray, t: float) -> np.ndarray:
    """The view at time t in 0..1: a crop that pans and zooms in slowly, resized to the clip size."""
    h, w = photo.shape[:2]
    crop_w = int(w * (0.95 - 0.25 * t))
    crop_h = int(crop_w * HEIGHT / WIDTH)
    x = int((w - crop_w) * (0.2 + 0.5 * t))
    y = int((h - crop_h) * (0.1 + 0.2 * t))
    return cv2.resize(photo[y : y + crop_h, x : x + crop_w], (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)


def degrade(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur, downscale by 3 and back, and add noise: a low-quality version of the frame."""
    blurred = cv2.GaussianBlur(frame, (0, 0), 1.2)
    small = cv2.resize(blurred, (WIDTH // 3, HEIGHT // 3), interpolation=cv2.INTER_AREA)
    up = cv2.resize(small, (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    noisy = up + rng.normal(0.0, 6.0, up.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def chirp(seconds: float) -> np.ndarray:
    """A mono tone rising from 220 Hz to 660 Hz, float32 in -0.3..0.3."""
    t = np.arange(int(seconds * AUDIO_RATE)) / AUDIO_RATE
    phase = 2 * np.pi * (220 * t + 220 * t * t / (2 * seconds))
    return (0.3 * np.sin(phase)).astype(np.float32)


def write_audio(out: av.container.OutputContainer, stream: av.AudioStream, samples: np.ndarray) -> None:
    """Encode and mux the samples in blocks of 1024."""
    for start in range(0, len(samples) - 1023, 1024):
        frame = av.AudioFrame.from_ndarray(samples[None, start : start + 1024], format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = AUDIO_RATE, start, Fraction(1, AUDIO_RATE)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def make_sample(output: Path, seconds: float = 4.0) -> Path:
    """Write the sample clip and return its path."""
    photo = data.astronaut()
    rng = np.random.default_rng(0)
    frames = int(seconds * FPS)
    with av.open(str(output), "w") as out:
        video = out.add_stream("libx264", rate=FPS, options={"crf": "26", "preset": "slow"})
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        audio = out.add_stream("aac", rate=AUDIO_RATE)
        audio.layout = "mono"
        for i in range(frames):
            image = degrade(camera_frame(photo, i / max(1, frames - 1)), rng)
            vf = av.VideoFrame.from_ndarray(image, format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, FPS)
            out.mux(video.encode(vf))
        out.mux(video.encode(None))
        write_audio(out, audio, chirp(seconds))
    log.info("wrote %s: %d frames, %.1f s, %d bytes", output, frames, seconds, output.stat().st_size)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("astronaut.mp4"))
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    make_sample(args.output, args.seconds)


if __name__ == "__main__":
    main()
