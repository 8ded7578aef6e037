"""`vidrestore live SOURCE [sinks]`: the command line of live mode (arguments -> source, sinks, run)."""

from __future__ import annotations

import argparse
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from vidrestore.arguments import (
    OUTPUT_SIZE_OPTIONS,
    add_model_arguments,
    warn_unused_output_options,
)
from vidrestore.errors import VidrestoreError
from vidrestore.live import POLICIES

if TYPE_CHECKING:  # the modules that run live mode import torch: only when it runs, not to build the parser
    from vidrestore.live.source import SourceOptions
    from vidrestore.live.types import LiveSink, LiveStats

log = logging.getLogger(__name__)

MODEL_OVERRIDES = ("model", "detector", "device", "precision", "batch_size", "detect_every", "det_size", "blend",
                   "only_center_face", "largest_face")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `vidrestore live`."""
    p.add_argument("source", help="webcam index (0) or device (/dev/video0), a URL (rtsp://, rtmp://, http://, "
                   "udp://, srt://) or a file, played at its own rate")
    p.add_argument("--config", default="live", help="preset name or YAML file (default: live)")
    m = p.add_argument_group("model and faces")
    add_model_arguments(m)
    s = p.add_argument_group("source")
    s.add_argument("--transport", choices=["tcp", "udp"], default="tcp", help="RTSP transport (default tcp)")
    s.add_argument("--timeout", type=float, default=5.0, help="seconds without data before the source is "
                   "reopened (default 5)")
    s.add_argument("--input-format", help="FFmpeg input format (v4l2, dshow, avfoundation, ...)")
    s.add_argument("--input-option", action="append", default=[], metavar="KEY=VALUE",
                   help="FFmpeg input option, e.g. video_size=1280x720 or framerate=30 (repeatable)")
    s.add_argument("--loop", action="store_true", help="play a file source in a loop")
    s.add_argument("--max-retries", type=int, help="reopen attempts in a row before giving up (default: forever "
                   "for cameras and feeds)")
    lat = p.add_argument_group("latency")
    lat.add_argument("--policy", choices=POLICIES, default="drop", help="when restoration is behind: drop frames at "
                     "the source, newest kept (default), or pass late frames through unrestored")
    lat.add_argument("--max-latency", type=float, default=200.0, metavar="MS",
                     help="passthrough: a frame that waited longer goes out unrestored (default 200 ms)")
    lat.add_argument("--max-in-flight", type=int, default=3, help="frames between source and sinks at most (default 3)")
    lat.add_argument("--duration", type=float, help="stop after this many seconds")
    lat.add_argument("--stats-interval", type=float, default=5.0, help="seconds between statistics log lines")
    out = p.add_argument_group("sinks (any combination, at least one)")
    out.add_argument("--window", action="store_true", help="show the restored feed in a window (q or Esc quits)")
    out.add_argument("--record", metavar="FILE", help="record the restored feed with the source's timestamps")
    out.add_argument("--segment-seconds", type=float, help="split the recording into segments of this length")
    out.add_argument("--no-audio", action="store_true", help="record video only (by default the source's audio "
                     "is copied into the recording)")
    out.add_argument("--preview", metavar="[HOST:]PORT", help="HTTP MJPEG preview for browsers, e.g. 8090 or 0.0.0.0:8090")
    out.add_argument("--restream", metavar="URL", help="re-stream to rtsp://, rtmp://, udp:// or srt://")
    out.add_argument("--restream-format", help="FFmpeg output format of the re-stream (guessed from the URL)")


def source_options(args: argparse.Namespace) -> SourceOptions:
    """The source settings of the arguments (KEY=VALUE input options checked)."""
    from vidrestore.live.source import SourceOptions

    extra: dict[str, str] = {}
    for item in args.input_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise VidrestoreError(f"--input-option wants KEY=VALUE, not {item!r}")
        extra[key] = value
    return SourceOptions(transport=args.transport, timeout=args.timeout, input_format=args.input_format,
                         input_options=extra, loop=args.loop, max_retries=args.max_retries,
                         audio=not args.no_audio)


def parse_host_port(text: str) -> tuple[str, int]:
    """'8090' or 'HOST:8090' -> (host, port); 127.0.0.1 when no host is given."""
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise VidrestoreError(f"--preview wants [HOST:]PORT, not {text!r}") from None
    if not 0 <= number <= 65535:
        raise VidrestoreError(f"--preview port out of range: {number}")
    return host or "127.0.0.1", number


def build_sinks(args: argparse.Namespace, stats: LiveStats, stop: threading.Event) -> list[LiveSink]:
    """The sinks the arguments ask for; VidrestoreError when none is given."""
    sinks: list[LiveSink] = []
    try:
        if args.record:
            from vidrestore.live.record import RecordingSink

            sinks.append(RecordingSink(Path(args.record), segment_seconds=args.segment_seconds))
        if args.preview is not None:
            from vidrestore.live.preview import PreviewServer

            host, port = parse_host_port(args.preview)
            preview = PreviewServer(host, port, stats=stats)
            log.info("preview on %s", preview.url)
            sinks.append(preview)
        if args.restream:
            from vidrestore.live.restream import RestreamSink

            sinks.append(RestreamSink(args.restream, format=args.restream_format))
        if args.window:
            from vidrestore.live.window import WindowSink

            sinks.append(WindowSink(stats=stats, on_quit=stop.set))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    if not sinks:
        raise VidrestoreError("give at least one sink: --window, --record FILE, --preview PORT or --restream URL")
    return sinks


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of `vidrestore live`."""
    from vidrestore.live.runner import LiveOptions, run_live
    from vidrestore.live.source import LiveSource, classify
    from vidrestore.pipeline.options import load_options

    if args.segment_seconds is not None and not args.record:
        raise VidrestoreError("--segment-seconds goes with --record")
    overrides = {name: getattr(args, name) for name in (*MODEL_OVERRIDES, *OUTPUT_SIZE_OPTIONS)}
    overrides["offline"] = True if getattr(args, "offline", False) else None
    options = load_options(args.config, overrides)
    warn_unused_output_options(args, options)
    live = LiveOptions(policy=args.policy, max_latency=args.max_latency / 1000.0, duration=args.duration,
                       max_in_flight=args.max_in_flight, stats_interval=args.stats_interval)
    sopts = source_options(args)
    if classify(args.source) != "file" and sopts.max_retries is None:
        log.info("live source %s: reopened with backoff whenever it drops (Ctrl-C stops)", args.source)
    stop = threading.Event()
    source = LiveSource(args.source, sopts)
    sinks = build_sinks(args, source.stats, stop)
    stats = run_live(source, sinks, options, live, stop=stop)
    snapshot = stats.snapshot()
    log.info("frames in %d, out %d, dropped %d, unrestored %d, faces %d", snapshot["frames_in"],
             snapshot["frames_out"], snapshot["dropped"], snapshot["passed_through"], snapshot["faces"])
    return 0

