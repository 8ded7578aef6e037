"""Video I/O on PyAV: threaded decoding and frame-accurate encoding that keeps audio and timing.

    with VideoSource("in.mp4") as src, VideoSink("out.mp4", src.info) as sink:
        for frame in src:          # Frame(index, pts, time_base, duration, image)
            sink.write(frame)
"""

from vidrestore.video.codecs import PRESETS, EncoderSettings
from vidrestore.video.probe import probe
from vidrestore.video.sink import SinkStats, VideoSink
from vidrestore.video.source import VideoSource, read_frames
from vidrestore.video.transcode import TranscodeResult, open_sink, passthrough
from vidrestore.video.types import ColorInfo, DecodeStats, Frame, StreamInfo, VideoInfo

__all__ = [
    "PRESETS",
    "ColorInfo",
    "DecodeStats",
    "EncoderSettings",
    "Frame",
    "SinkStats",
    "StreamInfo",
    "TranscodeResult",
    "VideoInfo",
    "VideoSink",
    "VideoSource",
    "open_sink",
    "passthrough",
    "probe",
    "read_frames",
]
