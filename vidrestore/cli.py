"""The `vidrestore` command line: parses arguments and hands each subcommand to the library.

Errors the user can act on (VidrestoreError) print one line on stderr and exit with status 2;
Ctrl-C exits with 130. `--debug` shows tracebacks.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from vidrestore import __version__
from vidrestore.errors import VidrestoreError

log = logging.getLogger("vidrestore")

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


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


def _add_bench_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks that print numbers")
    bsub = p.add_subparsers(dest="bench_command", required=True, metavar="{model,video}")
    mp = bsub.add_parser("model", help="restorer throughput (faces/s) per batch size, precision and path")
    mp.add_argument("--device", default="auto", help="cpu, cuda or cuda:N (default: auto)")
    mp.add_argument("--batch-sizes", default="1,2,4,8", help="comma-separated batch sizes")
    mp.add_argument("--precisions", default="auto", help="fp32,bf16 (default: fp32 on CPU, both on CUDA)")
    mp.add_argument("--size", choices=["full", "small"], default="full", help="full v1.4 or a small config")
    mp.add_argument("--iters", type=int, default=0, help="timed iterations per point (0: automatic)")
    mp.add_argument("--checkpoint", help="time this checkpoint instead of random weights")
    mp.add_argument("--compile", action="store_true", help="torch.compile the model first")
    mp.add_argument("--skip-precision-check", action="store_true", help="skip the bf16-vs-fp32 comparison")
    mp.add_argument("--output", help="also write the table as Markdown to this file")
    mp.set_defaults(handler=_cmd_bench_model)
    _add_bench_video_parser(bsub)


def _cmd_bench_model(args: argparse.Namespace) -> int:
    from vidrestore.bench import model as bench_model

    return bench_model.run_cli(args)


def _add_bench_video_parser(bsub: argparse._SubParsersAction) -> None:
    vp = bsub.add_parser("video", help="decode/encode/pass-through fps beside the ffmpeg binary")
    vp.add_argument("--sizes", default="720p,1080p", help="comma-separated: 720p, 1080p or WxH")
    vp.add_argument("--seconds", type=float, default=4.0, help="length of each generated clip")
    vp.add_argument("--codec", default="libx264", help="encoder (default: libx264)")
    vp.add_argument("--preset", default=None, help="encoder preset (default: the codec's)")
    vp.add_argument("--threads", type=int, default=0, help="encoder threads (0: automatic)")
    vp.add_argument("--output", help="also write the table as Markdown to this file")
    vp.set_defaults(handler=_cmd_bench_video)


def _cmd_bench_video(args: argparse.Namespace) -> int:
    from vidrestore.bench import video as bench_video

    return bench_video.run_cli(args)


# --- probe ---------------------------------------------------------------------------------------


def _add_probe_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="print what a video holds (size, timing, tags, streams) as JSON")
    p.add_argument("file", help="video file or URL")
    p.set_defaults(handler=_cmd_probe)


def _cmd_probe(args: argparse.Namespace) -> int:
    import json

    from vidrestore.video import probe

    print(json.dumps(probe(args.file).to_json(), indent=2, ensure_ascii=False))
    return 0


# --- entry point ---------------------------------------------------------------------------------

SubparserAdder = Callable[[argparse._SubParsersAction], None]

PARSER_ADDERS: tuple[SubparserAdder, ...] = (
    _add_weights_parser,
    _add_bench_parser,
    _add_probe_parser,
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, one subparser per subcommand."""
    parser = argparse.ArgumentParser(
        prog="vidrestore",
        description="Restore faces in video with a GFP-GAN generative facial prior.",
    )
    parser.add_argument("--version", action="version", version=f"vidrestore {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--offline", action="store_true", help="never download; a missing file is an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in PARSER_ADDERS:
        add(sub)
    return parser


def _configure_logging(debug: bool, quiet: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = build_parser()
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
        return int(handler(args) or 0)
    except VidrestoreError as exc:
        if args.debug:
            raise
        print(f"vidrestore: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("vidrestore: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
