"""The `vidrestore` command line: parses arguments and hands each subcommand to the library.

Errors the user can act on (VidrestoreError) print one line on stderr and exit with status 2;
Ctrl-C exits with 130 and SIGTERM with 143, both after the same clean-up. `--debug` shows tracebacks.
Building the parser imports no torch: the heavy modules are imported by the command that runs.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, Iterator, Sequence

from vidrestore import __version__
from vidrestore.arguments import (
    OUTPUT_SIZE_OPTIONS,
    add_model_arguments,
    add_run_flags_everywhere,
    warn_unused_output_options,
)
from vidrestore.errors import Terminated, VidrestoreError

log = logging.getLogger("vidrestore")

EXIT_FAILURE = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, what a shell reports for a process SIGTERM stopped


# --- weights -------------------------------------------------------------------------------------


def _add_weights_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="list, download and verify model checkpoints")
    wsub = p.add_subparsers(dest="weights_command", required=True, metavar="{list,download,verify}")
    lp = wsub.add_parser("list", help="known checkpoints and where each one is found")
    lp.set_defaults(handler=_cmd_weights_list)
    dp = wsub.add_parser("download", help="download checkpoints into the user cache (or --dir)")
    dp.add_argument("names", nargs="*", help="checkpoint names (default: all)")
    dp.add_argument("--dir", help="folder to download into")
    dp.set_defaults(handler=_cmd_weights_download)
    vp = wsub.add_parser("verify", help="check the sha256 of checkpoints that are present")
    vp.add_argument("names", nargs="*", help="checkpoint names (default: all present)")
    vp.set_defaults(handler=_cmd_weights_verify)


def _cmd_weights_list(args: argparse.Namespace) -> int:
    from vidrestore import weights

    return weights.cli_list(args)


def _cmd_weights_download(args: argparse.Namespace) -> int:
    from vidrestore import weights

    return weights.cli_download(args)


def _cmd_weights_verify(args: argparse.Namespace) -> int:
    from vidrestore import weights

    return weights.cli_verify(args)


# --- bench ---------------------------------------------------------------------------------------


def _bench_runner(name: str):
    """The handler of `vidrestore bench NAME`: vidrestore.bench.NAME.run_cli, imported when it runs."""

    def run(args: argparse.Namespace) -> int:
        return importlib.import_module(f"vidrestore.bench.{name}").run_cli(args)

    return run


_BENCH_OPTIONS = {
    "device": (("--device",), dict(default="auto", help="cpu, cuda or cuda:N (default: auto)")),
    "detector": (("--detector",), dict(default="retinaface_mobile0.25", help="detector name or weights path")),
    "full": (("--full",), dict(action="store_true", help="also run the full v1.4 configuration")),
    "output": (("--output",), dict(help="also write the report as Markdown to this file")),
}


def _bench_subparser(bsub: argparse._SubParsersAction, name: str, help: str, *options: str) -> argparse.ArgumentParser:
    """`vidrestore bench NAME` with the options benchmarks share (device, detector, full, output) and its handler."""
    p = bsub.add_parser(name, help=help)
    for option in options:
        flags, kwargs = _BENCH_OPTIONS[option]
        p.add_argument(*flags, **kwargs)
    p.set_defaults(handler=_bench_runner(name))
    return p


def _add_bench_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks that print numbers")
    bsub = p.add_subparsers(dest="bench_command", required=True,
                            metavar="{model,video,pipeline,faces,server,live,degrade,gpu,archive,picture,upscale,"
                                    "stability}")
    mp = _bench_subparser(bsub, "model", "restorer throughput (faces/s) per batch size, precision and path", "device", "output")
    mp.add_argument("--batch-sizes", default="1,2,4,8", help="comma-separated batch sizes")
    mp.add_argument("--precisions", default="auto", help="fp32,bf16 (default: fp32 on CPU, both on CUDA)")
    mp.add_argument("--size", choices=["full", "small"], default="full", help="full v1.4 or a small config")
    mp.add_argument("--iters", type=int, default=0, help="timed iterations per point (0: automatic)")
    mp.add_argument("--checkpoint", help="time this checkpoint instead of random weights")
    mp.add_argument("--compile", action="store_true", help="torch.compile the model first")
    mp.add_argument("--cuda-graphs", action="store_true", help="also time each batched point as a CUDA graph replay")
    mp.add_argument("--skip-precision-check", action="store_true", help="skip the bf16-vs-fp32 comparison")
    _add_bench_video_parser(bsub)
    _add_bench_pipeline_parser(bsub)
    _add_bench_faces_parser(bsub)
    _add_bench_server_parser(bsub)
    _add_bench_live_parser(bsub)
    _add_bench_degrade_parser(bsub)
    _add_bench_gpu_parser(bsub)
    _add_bench_archive_parser(bsub)
    _add_bench_picture_parser(bsub)
    _add_bench_upscale_parser(bsub)
    _add_bench_stability_parser(bsub)


def _add_bench_picture_parser(bsub: argparse._SubParsersAction) -> None:
    pp = _bench_subparser(bsub, "picture", "interlaced 576i: field-correct vs --deinterlace vs progressive fps", "device", "detector", "output")
    pp.add_argument("--seconds", type=float, default=1.0, help="length of the clip (25 frames a second)")


def _add_bench_upscale_parser(bsub: argparse._SubParsersAction) -> None:
    up = _bench_subparser(bsub, "upscale", "background upsampling fps: Lanczos vs Real-ESRGAN (small, full)", "device", "output")
    up.add_argument("--size", default="720p", help="source size: 720p (default), 1080p or WxH; output is 2x")
    up.add_argument("--frames", type=int, default=2, help="frames timed per point (default 2)")
    up.add_argument("--tile", type=int, default=400, help="Real-ESRGAN tile side (default 400)")
    up.add_argument("--cpu-tiles", type=int, default=2, help="on a CPU, tiles each network is timed on "
                    "(default 2; fps is computed from the tiles per frame)")


def _add_bench_stability_parser(bsub: argparse._SubParsersAction) -> None:
    sp = _bench_subparser(bsub, "stability", "face-region flicker: the official per-frame loop vs vidrestore causal "
                          "and file mode (warping error, jitter)", "detector", "output")
    sp.add_argument("--media", help="folder of talking-head .mp4 videos (default: ../shared/media/videos)")
    sp.add_argument("--clips", type=int, default=5, help="talking heads to use at most (default 5)")
    sp.add_argument("--frames", type=int, default=30, help="frames of each clip (default 30)")
    sp.add_argument("--long-side", type=int, default=320, help="clips scaled to this long side (default 320)")
    sp.add_argument("--checkpoint", help="a trained checkpoint instead of the small random-weight model")


def _add_bench_archive_parser(bsub: argparse._SubParsersAction) -> None:
    ap = _bench_subparser(bsub, "archive", "archive mode: 1 vs 2 workers vs Ray, overhead against file mode, memory", "device", "detector", "output")
    ap.add_argument("--seconds", type=float, default=8.0, help="length of the clip the speeds are measured on")
    ap.add_argument("--chunk-seconds", type=float, help="chunk length (default: a quarter of --seconds)")
    ap.add_argument("--rss-seconds", type=float, default=2.0, help="length of the memory run's clip (and 10x that)")
    ap.add_argument("--preset", default="veryfast", help="x264 preset for every run")


def _add_bench_gpu_parser(bsub: argparse._SubParsersAction) -> None:
    gp = _bench_subparser(bsub, "gpu", "every GPU figure in one budgeted run: report.md and figures.json", "device", "detector")
    gp.add_argument("--budget", type=float, default=480.0, help="total seconds for all benchmarks (default 480)")
    gp.add_argument("--out", default="benchmarks/gpu/out", help="folder for report.md, figures.json and run.log")
    gp.add_argument("--quick", action="store_true", help="tiny models and clips: checks the run end to end in seconds")
    gp.add_argument("--only", help="comma-separated benchmarks to run (default: all, in order of value)")
    gp.add_argument("--grace", type=float, default=15.0, help="seconds past its budget before a benchmark is stopped")


def _add_bench_degrade_parser(bsub: argparse._SubParsersAction) -> None:
    dp = _bench_subparser(bsub, "degrade", "training data: loader vs device degradation beside one iteration", "device", "output")
    dp.add_argument("config", nargs="?", default="configs/train_gfpgan.yaml", help="training config")
    dp.add_argument("--data", help="folder of aligned faces (overrides data.train)")
    dp.add_argument("--batch-size", type=int, help="override run.batch_size")
    dp.add_argument("--workers", type=int, help="loader workers to count with (default: data.num_workers)")
    dp.add_argument("--images", type=int, default=24, help="images timed on the loader path")
    dp.add_argument("--batches", type=int, default=4, help="batches timed on the device path")
    dp.add_argument("--steps", type=int, default=3, help="training iterations timed (0: none)")


def _add_bench_live_parser(bsub: argparse._SubParsersAction) -> None:
    lp = _bench_subparser(bsub, "live", "live mode: added latency p50/p95, sustained fps and drops", "device", "detector", "full", "output")
    lp.add_argument("--sizes", default="720p,1080p", help="comma-separated: 720p, 1080p")
    lp.add_argument("--faces", default="1,4", help="faces per frame, comma-separated (1 or 4)")
    lp.add_argument("--seconds", type=float, default=10.0, help="length of each source clip")
    lp.add_argument("--fps", type=int, default=30, help="frame rate of the source clips")


def _add_bench_video_parser(bsub: argparse._SubParsersAction) -> None:
    vp = _bench_subparser(bsub, "video", "decode/encode/pass-through fps beside the ffmpeg binary", "output")
    vp.add_argument("--sizes", default="720p,1080p", help="comma-separated: 720p, 1080p or WxH")
    vp.add_argument("--seconds", type=float, default=4.0, help="length of each generated clip")
    vp.add_argument("--codec", default="libx264", help="encoder (default: libx264)")
    vp.add_argument("--preset", default=None, help="encoder preset (default: the codec's)")
    vp.add_argument("--threads", type=int, default=0, help="encoder threads (0: automatic)")


def _add_bench_pipeline_parser(bsub: argparse._SubParsersAction) -> None:
    pp = _bench_subparser(bsub, "pipeline", "end-to-end fps and per-stage times beside a per-frame baseline", "device", "detector", "full", "output")
    pp.add_argument("--sizes", default="720p,1080p", help="comma-separated: 720p, 1080p")
    pp.add_argument("--seconds", type=float, default=2.0, help="length of each clip (made from the sample)")
    pp.add_argument("--batch-size", type=int, help="faces per restorer call (default: per device)")
    pp.add_argument("--preset", default="veryfast", help="x264 preset for every encoder in the run")
    pp.add_argument("--baseline-frames", type=int, help="frames the per-frame baseline runs on (default: all)")


def _add_bench_faces_parser(bsub: argparse._SubParsersAction) -> None:
    fp = _bench_subparser(bsub, "faces", "detector calls, faces lost and landmark jitter, raw vs tracked", "device", "detector", "output")
    fp.add_argument("--media", help="folder of .mp4 videos (default: ../shared/media/videos)")
    fp.add_argument("--det-size", type=int, default=640, help="long side the detector works at")
    fp.add_argument("--detect-every", type=int, default=5, help="detect at least every K frames")
    fp.add_argument("--limit", type=int, help="frames per video (default: all)")
    fp.add_argument("--lag", type=int, default=0, help="frames of look-ahead for landmark smoothing (default 0, causal)")
    fp.add_argument("--hd-clip", help="video upscaled to 1080p for the timing (default: the first one)")


def _add_bench_server_parser(bsub: argparse._SubParsersAction) -> None:
    sp = _bench_subparser(bsub, "server", "HTTP API requests/s and p50/p95 latency at 1, 4, 16 clients, batching on vs off", "device", "detector", "output")
    sp.add_argument("--faces", help="folder of 512x512 face images (default: ../shared/media/faces)")
    sp.add_argument("--clients", default="1,4,16", help="comma-separated numbers of concurrent clients")
    sp.add_argument("--requests", type=int, default=64, help="timed requests per point (at least 4 per client)")
    sp.add_argument("--max-batch", type=int, default=16, help="the server's --max-batch when batching is on")
    sp.add_argument("--rounds", type=int, default=2, help="measure every point this many times, keep the best")
    sp.add_argument("--model", help="checkpoint name or path (default: a small random-weight model)")


# --- probe ---------------------------------------------------------------------------------------


def _add_probe_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="print what a video holds (size, timing, tags, streams) as JSON")
    p.add_argument("file", help="video file or URL")
    p.set_defaults(handler=_cmd_probe)


def _cmd_probe(args: argparse.Namespace) -> int:
    import json

    from vidrestore.video.probe import probe_report

    print(json.dumps(probe_report(args.file), indent=2, ensure_ascii=False))
    return 0


# --- restore (the main job: `vidrestore IN OUT`) -------------------------------------------------

RESTORE_OVERRIDES = ("model", "detector", "device", "precision", "batch_size", "max_batch_frames", "detect_every",
                     "det_size", "blend", "only_center_face", "largest_face", "codec", "crf", "preset", "backend",
                     "queue_size", "smoothing_lag", "field_order", "deinterlace", "colour")


def _add_restore_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "restore", help="restore the faces of a video or an image (the default: `vidrestore IN OUT`)",
        description="Restore faces in a video (or an image) with GFP-GAN. Timing, audio and subtitles are kept; "
        "pixels outside faces are untouched. Options not given come from the preset (--config, default: "
        "the packaged 'default' preset).",
    )
    _add_restore_arguments(p)
    p.set_defaults(handler=_cmd_restore)


def _add_restore_arguments(p: argparse.ArgumentParser, compare: bool = True) -> None:
    """IN OUT and the model and encoder options of the main job (`restore` and `archive` share them)."""
    p.add_argument("input", help="input video (any FFmpeg-readable file) or image (jpg, png, ...)")
    p.add_argument("output", help="output file; the container or image format follows its extension")
    p.add_argument("--config", help="preset name (default, fast, quality, live) or YAML file; options given here override it")
    m = p.add_argument_group("model and faces")
    add_model_arguments(m)
    m.add_argument("--max-batch-frames", type=int, help="frames gathered at most for one restoration batch")
    m.add_argument("--smoothing-lag", type=int, help="pictures of look-ahead for landmark smoothing: frames, or "
                   "fields of interlaced sources (default 8; 0 = causal, as live mode)")
    pic = p.add_argument_group("picture")
    pic.add_argument("--field-order", choices=["tff", "bff", "progressive"], help="the source's field order when "
                     "its tag is wrong (default: what the stream says); interlaced sources are restored field by field")
    pic.add_argument("--deinterlace", action="store_true", default=None, help="interlaced sources: write "
                     "progressive frames at field rate (twice the frames) instead of woven interlaced frames")
    pic.add_argument("--colour", "--color", dest="colour", choices=["auto", "source", "restored"],
                     help="source: only the restored luma goes in, the source's chroma is kept; restored: the "
                     "model's colours; auto (default): source for monochrome sources, else restored")
    e = p.add_argument_group("output video")
    e.add_argument("--codec", help="video encoder: auto (default: ProRes, DNxHD/HR and FFV1 sources keep their codec "
                   "and profile, others libx264), libx264, libx265, ffv1 (lossless), prores_ks, libvpx-vp9, ...")
    e.add_argument("--crf", type=int, help="quality: CRF for x264/x265/vp9/av1 (lower is better; default 18)")
    e.add_argument("--preset", help="encoder speed preset (x264/x265: ultrafast .. veryslow)")
    e.add_argument("--backend", choices=["pyav", "ffmpeg"], help="encoder backend (default pyav)")
    e.add_argument("--queue-size", type=int, help="items queued between two stages (bounds memory; default 8)")
    if compare:
        e.add_argument("--compare", metavar="OUT2", help="also write a side-by-side before|after video")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")


def _restore_options(args: argparse.Namespace):
    """The main job's RestoreOptions: the preset (--config) with the options given on the command line."""
    from vidrestore.pipeline.options import load_options

    overrides = {name: getattr(args, name) for name in (*RESTORE_OVERRIDES, *OUTPUT_SIZE_OPTIONS)}
    overrides["offline"] = True if args.offline else None
    options = load_options(args.config, overrides)
    warn_unused_output_options(args, options)
    return options


def _cmd_restore(args: argparse.Namespace) -> int:
    from vidrestore.pipeline.job import restore_file

    options = _restore_options(args)
    restore_file(args.input, args.output, options, compare=args.compare,
                 progress=not (args.no_progress or args.quiet))
    return 0


def _add_archive_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "archive", help="restore hours of footage in frame-exact chunks: resumable, on several GPUs or Ray",
        description="Restore a long video in chunks of frames: the same command again resumes after any crash "
        "(finished chunks are kept), --workers/--gpus run chunks in parallel, --ray on a Ray cluster.",
    )
    _add_restore_arguments(p, compare=False)
    a = p.add_argument_group("archive")
    a.add_argument("--chunk-seconds", type=float, default=30.0, help="length of a chunk (default 30; cut at a "
                   "scene change where one is near)")
    a.add_argument("--work-dir", help="folder for the plan and the chunks (default: OUT.archive beside OUT)")
    w = a.add_mutually_exclusive_group()
    w.add_argument("--workers", type=int, help="worker processes on this machine (default 1)")
    w.add_argument("--gpus", help="comma-separated GPU numbers: one worker process per GPU (e.g. 0,1)")
    a.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", help="run the workers (--workers, --gpus) as "
                   "Ray actors: a local Ray without ADDRESS, else join that cluster (pip install vidrestore[ray])")
    a.add_argument("--report", metavar="FILE.json", help="write the plan, per-chunk results and the verification")
    a.add_argument("--fresh", action="store_true", help="remove the work folder and start over")
    p.set_defaults(handler=_cmd_archive)


def archive_devices(args: argparse.Namespace) -> tuple[str | None, ...]:
    """One device per worker: the --gpus as cuda:N, else --workers times the options' device."""
    if args.gpus:
        try:
            return tuple(f"cuda:{int(g)}" for g in args.gpus.split(","))
        except ValueError:
            raise VidrestoreError(f"--gpus takes GPU numbers separated by commas, not {args.gpus!r}") from None
    workers = 1 if args.workers is None else args.workers
    if workers < 1:
        raise VidrestoreError(f"--workers must be at least 1, not {workers}")
    return (None,) * workers


def _cmd_archive(args: argparse.Namespace) -> int:
    from vidrestore.archive.job import ArchiveSettings, archive_video

    settings = ArchiveSettings(
        chunk_seconds=args.chunk_seconds, work_dir=Path(args.work_dir) if args.work_dir else None,
        devices=archive_devices(args), ray=args.ray is not None, ray_address=args.ray or None,
        report=Path(args.report) if args.report else None, fresh=args.fresh,
        progress=not (args.no_progress or args.quiet))
    archive_video(args.input, args.output, _restore_options(args), settings)
    return 0


def _with_default_command(argv: Sequence[str], commands: Sequence[str]) -> list[str]:
    """`vidrestore IN OUT ...` means `vidrestore restore IN OUT ...`: insert the command name when the
    first non-option argument is an input rather than a subcommand (top-level options are all flags).

    VidrestoreError when that word is neither a command nor an input (a mistyped command, say).
    """
    argv = list(argv)
    for position, token in enumerate(argv):
        if token == "--" or not token.startswith("-"):
            if token not in commands:
                if token != "--" and not _could_be_input(token):
                    raise VidrestoreError(_not_a_command(token, commands))
                argv.insert(position, "restore")
            break
    return argv


def _could_be_input(token: str) -> bool:
    """True for what `restore` may read or was meant to: a path (it exists, or it has a folder or an
    extension, so a missing one is reported as a missing input), or a URL FFmpeg opens by itself."""
    path = Path(token)
    return "://" in token or path.exists() or bool(path.suffix) or len(path.parts) > 1


def _not_a_command(token: str, commands: Sequence[str]) -> str:
    """The message for a first word that is neither a command nor a file, with the nearest command."""
    close = difflib.get_close_matches(token, commands, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"the commands are {', '.join(commands)}"
    return f"{token!r} is neither a command nor an existing file; {hint} (see vidrestore --help)"


# --- train, eval, degrade ------------------------------------------------------------------------


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train or fine-tune GFP-GAN with the paper's recipe (YAML config)")
    p.add_argument("config", help="training config, e.g. configs/train_gfpgan.yaml")
    p.add_argument("--resume", help="training checkpoint to resume from (e.g. OUT_DIR/latest.pth)")
    p.add_argument("--iterations", type=int, help="run this many iterations and stop (default: to total_iter)")
    p.add_argument("--out-dir", help="override run.out_dir of the config")
    p.set_defaults(handler=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from vidrestore.train.trainer import train_from_config

    train_from_config(args.config, resume=args.resume, iterations=args.iterations, out_dir=args.out_dir)
    return 0


def _add_eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="restore a folder of faces and report PSNR/SSIM/LPIPS/identity/NIQE/sharpness")
    p.add_argument("--model", required=True, help="checkpoint path or name (e.g. GFPGANv1.4)")
    p.add_argument("--data", required=True, help="DIR with lq/ and gt/, or clean faces (degraded with --seed)")
    p.add_argument("--out", default="eval_report", help="folder for metrics.json, report.md, grid.png")
    p.add_argument("--seed", type=int, default=0, help="degradation seed for clean faces (default 0)")
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N faces")
    p.add_argument("--degraded", action="store_true", help="DIR holds degraded faces without ground truth")
    p.add_argument("--device", default="auto", help="cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--niqe-model", metavar="PATH",
                   help="NIQE pristine model (.npz); default: the niqe_pristine weights file when present")
    _add_degradation_argument(p)
    p.set_defaults(handler=_cmd_eval)


def _add_degradation_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--degradation", metavar="TRAIN_CONFIG",
                   help="degrade with the degradation section of this training config (default: the paper's, at 512)")


def _degradation_from(config: str | None):
    """The DegradationConfig of a training config file, or None for the paper's defaults."""
    if not config:
        return None
    from vidrestore.train.trainer import TrainConfig

    return TrainConfig.from_yaml(config).degradation


def _cmd_eval(args: argparse.Namespace) -> int:
    from vidrestore.train.evaluate import evaluate

    metrics = evaluate(args.model, args.data, args.out, seed=args.seed, limit=args.limit,
                       degraded=args.degraded, device=args.device, niqe_model=args.niqe_model,
                       degradation=_degradation_from(args.degradation))
    log.info("mean: %s", ", ".join(f"{k}={v:.4g}" for k, v in metrics["mean"].items() if v is not None))
    return 0


def _add_degrade_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("degrade", help="write degraded copies of a folder of faces (test sets)")
    p.add_argument("src", help="folder of clean aligned faces")
    p.add_argument("dst", help="output folder (PNG, same file stems)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--size", type=int, help="resize faces to SIZE x SIZE first (default: keep)")
    _add_degradation_argument(p)
    p.set_defaults(handler=_cmd_degrade)


def _cmd_degrade(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vidrestore.train.degradations import degrade_folder

    degrade_folder(Path(args.src), Path(args.dst), seed=args.seed, size=args.size,
                   cfg=_degradation_from(args.degradation))
    return 0


# --- track ---------------------------------------------------------------------------------------


def _add_track_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("track", help="detect and track faces; write per-frame tracks as JSON")
    p.add_argument("input", help="input video")
    p.add_argument("--json", required=True, help="where to write the tracks (JSON)")
    p.add_argument("--draw", metavar="OUT.mp4", help="also write a video with boxes, landmarks and ids")
    p.add_argument("--detector", default="retinaface_mobile0.25", help="detector name or weights path")
    p.add_argument("--device", default="auto", help="cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--detect-every", type=int, default=5, help="detect at least every K frames")
    p.add_argument("--det-size", type=int, default=640, help="long side the detector works at")
    p.add_argument("--conf", type=float, default=0.8, help="detector confidence threshold")
    p.add_argument("--limit", type=int, help="only the first N frames")
    p.add_argument("--lag", type=int, help="pictures of look-ahead for landmark smoothing (default: the file-mode "
                   "value, 8; 0 = causal, as live mode); fields on interlaced sources")
    p.add_argument("--field-order", choices=["tff", "bff", "progressive"], help="the source's field order when "
                   "its tag is wrong (default: what the stream says); interlaced sources are tracked field by field")
    p.set_defaults(handler=_cmd_track)


def _cmd_track(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vidrestore.faces.lag import FILE_MODE_LAG
    from vidrestore.pipeline.options import NO_MODEL, RestoreOptions
    from vidrestore.pipeline.track import run_track

    lag = FILE_MODE_LAG if args.lag is None else args.lag
    if lag < 0:
        raise VidrestoreError(f"--lag must be 0 or more, not {lag}")
    if args.limit is not None and args.limit < 1:
        raise VidrestoreError(f"--limit must be at least 1, not {args.limit}")
    # the main job's options, so that the tracks are the ones `vidrestore IN OUT` aligns faces with
    options = RestoreOptions(model=NO_MODEL, detector=args.detector, device=args.device, det_size=args.det_size,
                             detect_every=args.detect_every, smoothing_lag=lag, field_order=args.field_order)
    draw = Path(args.draw) if args.draw else None
    run_track(Path(args.input), Path(args.json), options, conf_threshold=args.conf, draw_path=draw,
              limit=args.limit, progress=not args.quiet)
    return 0


# --- serve ---------------------------------------------------------------------------------------


def _add_serve_parser(sub: argparse._SubParsersAction) -> None:
    from vidrestore.server.command import add_arguments

    p = sub.add_parser("serve", help="the HTTP API: restore images and videos as a service (FastAPI, uvicorn)")
    add_arguments(p)
    p.set_defaults(handler=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from vidrestore.server.command import run_cli

    return run_cli(args)


def _add_qc_parser(sub: argparse._SubParsersAction) -> None:
    from vidrestore.qc.command import add_arguments

    p = sub.add_parser("qc", help="check a restored video against its source: frames, streams, background, "
                       "flicker, identity (exit 1 on failure)")
    add_arguments(p)
    p.set_defaults(handler=_cmd_qc)


def _cmd_qc(args: argparse.Namespace) -> int:
    from vidrestore.qc.command import run_cli

    return run_cli(args)


def _add_live_parser(sub: argparse._SubParsersAction) -> None:
    from vidrestore.live.command import add_arguments

    p = sub.add_parser("live", help="restore a webcam or network feed as it plays, with bounded latency",
                       description="Restore faces in a live feed (webcam, RTSP/RTMP/HTTP/UDP/SRT, or a file played "
                       "at its own rate) into a window, a recording, an MJPEG preview and/or a re-stream.")
    add_arguments(p)
    p.set_defaults(handler=_cmd_live)


def _cmd_live(args: argparse.Namespace) -> int:
    from vidrestore.live.command import run_cli

    return run_cli(args)


# --- entry point ---------------------------------------------------------------------------------

SubparserAdder = Callable[[argparse._SubParsersAction], None]

PARSER_ADDERS: tuple[SubparserAdder, ...] = (
    _add_weights_parser,
    _add_bench_parser,
    _add_probe_parser,
    _add_restore_parser,
    _add_archive_parser,
    _add_train_parser,
    _add_eval_parser,
    _add_degrade_parser,
    _add_track_parser,
    _add_serve_parser,
    _add_live_parser,
    _add_qc_parser,
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, one subparser per subcommand."""
    parser = argparse.ArgumentParser(
        prog="vidrestore",
        description="Restore faces in video with a GFP-GAN generative facial prior.\n\n"
        "main job:  vidrestore IN OUT [options]   (see `vidrestore restore --help` for the options)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vidrestore {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--offline", action="store_true", help="never download; a missing file is an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in PARSER_ADDERS:
        add(sub)
    add_run_flags_everywhere(parser)
    return parser


def _command_names(parser: argparse.ArgumentParser) -> list[str]:
    """The subcommands of the parser, in the order of its help."""
    return list(next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)))


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises Terminated (a KeyboardInterrupt), so it cleans up as Ctrl-C does.

    Only the first one raises: a repeated SIGTERM must not break off the clean-up it started. A
    SIGTERM the parent set to be ignored stays ignored; the previous handler comes back afterwards.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    received = threading.Event()

    def terminate(signum: int, _frame: object) -> None:
        if received.is_set():
            log.warning("stopping already (SIGTERM again): cleaning up")
            return
        received.set()
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _configure_logging(debug: bool, quiet: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = build_parser()
    try:
        argv = _with_default_command(sys.argv[1:] if argv is None else argv, _command_names(parser))
    except VidrestoreError as exc:
        print(f"vidrestore: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    args = parser.parse_args(argv)
    _configure_logging(args.debug, args.quiet)
    if args.offline:
        import os

        os.environ["VIDRESTORE_OFFLINE"] = "1"
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USER_ERROR
    try:
        with _sigterm_as_interrupt():
            return int(handler(args) or 0)
    except VidrestoreError as exc:
        if args.debug:
            raise
        print(f"vidrestore: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Terminated:
        print("vidrestore: stopped (SIGTERM)", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("vidrestore: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - an unexpected failure still gets one line, not a traceback
        if args.debug:
            raise
        log.debug("unexpected error", exc_info=True)
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(
            f"vidrestore: error: {type(exc).__name__}{': ' + detail if detail else ''} (run with --debug for details)",
            file=sys.stderr,
        )
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
