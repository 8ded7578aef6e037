"""`vidrestore serve`: its options and its handler (heavy imports happen only when it runs)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from vidrestore.arguments import (
    OUTPUT_SIZE_OPTIONS,
    add_model_arguments,
    warn_unused_output_options,
)
from vidrestore.server.settings import MIB, ServerSettings

TOKEN_ENV = "VIDRESTORE_TOKEN"
MODEL_OPTIONS = ("model", "detector", "device", "precision", "batch_size", "det_size", "blend", "only_center_face")
DEFAULTS = ServerSettings()
# option, ServerSettings field, unit of the option in the field's unit, help
LIMITS = (
    ("--max-image-mb", "max_image_bytes", MIB, "largest image upload in MiB"),
    ("--max-video-mb", "max_video_bytes", MIB, "largest video upload in MiB"),
    ("--max-pixels", "max_pixels", 1, "most pixels of an image or a video frame"),
    ("--max-video-seconds", "max_video_seconds", 1, "longest video in seconds"),
    ("--upload-timeout", "upload_timeout_s", 1, "seconds to receive a request body (then 408)"),
    ("--request-timeout", "request_timeout_s", 1, "seconds an image may wait for and run on the model (then 504)"),
    ("--max-queued-jobs", "max_queued_jobs", 1, "video jobs waiting before 429"),
    ("--max-pending-images", "max_pending_images", 1, "image requests in progress before 429"),
    ("--max-batch", "max_batch", 1, "images of concurrent requests restored in one model call (1: no batching)"),
    ("--batch-wait-ms", "batch_wait_ms", 1, "milliseconds the image worker waits to fill a batch"),
    ("--retention", "retention_s", 1, "seconds finished jobs and their files are kept"),
    ("--max-connections", "max_connections", 1, "open connections before 503"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `vidrestore serve`: address and token, the model (loaded once), the limits."""
    p.add_argument("--host", default=DEFAULTS.host, help="address to listen on (default 127.0.0.1; "
                   "any other needs a token)")
    p.add_argument("--port", type=int, default=DEFAULTS.port, help="port (default 8000; 0: any free port)")
    p.add_argument("--token", help=f"bearer token required on /v1 and /metrics (default: ${TOKEN_ENV})")
    p.add_argument("--work-dir", help="folder for uploads and job files (default: a temporary folder)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="let web pages of this origin call the API (CORS), e.g. https://app.example.com; repeatable")
    m = p.add_argument_group("model (loaded once at startup; requests may ask for model=none, blend, centre face)")
    m.add_argument("--config", help="preset name (default, fast, quality) or YAML file")
    add_model_arguments(m, tracking=False)
    lim = p.add_argument_group("limits")
    for flag, name, scale, text in LIMITS:
        value = getattr(DEFAULTS, name)
        kind = type(value) if scale == 1 else float  # counts stay whole numbers; sizes in MiB may be fractions
        lim.add_argument(flag, dest=name, type=kind, default=value / scale if scale != 1 else value, metavar="N",
                         help=f"{text} (default {value / scale:.10g})")


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    """ServerSettings from the parsed options (token from the environment when not given)."""
    limits = {}
    for _, name, scale, _ in LIMITS:
        value = getattr(args, name) * scale
        limits[name] = int(value) if isinstance(getattr(DEFAULTS, name), int) else value
    return ServerSettings(host=args.host, port=args.port, token=args.token or os.environ.get(TOKEN_ENV) or None,
                          work_dir=Path(args.work_dir) if args.work_dir else None,
                          cors_origins=tuple(args.allow_origin), **limits)


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of `vidrestore serve`."""
    settings = settings_from_args(args)
    settings.check_exposure()  # before the model loads: a refused address fails at once
    from vidrestore.pipeline.options import load_options
    from vidrestore.server.runner import serve

    overrides = {name: getattr(args, name) for name in (*MODEL_OPTIONS, *OUTPUT_SIZE_OPTIONS)}
    options = load_options(args.config, overrides)
    warn_unused_output_options(args, options)
    serve(settings, options)
    return 0
