"""Command-line options shared by `vidrestore restore`, `live` and `serve`: the model and faces, and the run flags."""

from __future__ import annotations

import argparse
import logging
from typing import Any

log = logging.getLogger(__name__)

ArgumentGroup = Any  # argparse's _ArgumentGroup or an ArgumentParser

# RestoreOptions fields of the paste-back mask and the output size, which every mode takes
OUTPUT_SIZE_OPTIONS = ("mask", "parser", "upscale", "square_pixels", "bg_upsampler", "bg_model", "bg_tile", "matrix")


def add_model_arguments(group: ArgumentGroup, *, tracking: bool = True) -> None:
    """--model, --detector, --device, --precision, --batch-size, --det-size, --blend, face selection.

    With `tracking`, also --detect-every and --largest-face (jobs that follow faces over frames).
    """
    group.add_argument("--model", help="restorer: GFPGANv1.4 (default), GFPGANv1.3, a .pth checkpoint path, "
                       "or none (runs without changing a pixel)")
    group.add_argument("--detector", help="face detector: retinaface_mobile0.25 (default, fast), retinaface_resnet50, "
                       "a path, or none (with --model none: a pure decode/encode run)")
    group.add_argument("--device", help="auto (default: cuda if present), cpu, cuda or cuda:N")
    group.add_argument("--precision", choices=["fp32", "bf16"], help="default: bf16 on CUDA, fp32 on CPU")
    group.add_argument("--batch-size", type=int, help="faces per restorer call (default: 16 on CUDA, 1 on CPU for "
                       "full-size faces; halved automatically when GPU memory runs out)")
    group.add_argument("--det-size", type=int, help="long side of the detector's input in pixels (default 640)")
    group.add_argument("--blend", "--weight", dest="blend", type=float,
                       help="fidelity blend of the restored face with the original, 0..1 (1 = fully restored, default)")
    group.add_argument("--only-center-face", action="store_true", default=None,
                       help="restore only the face nearest the centre")
    if tracking:
        group.add_argument("--detect-every", type=int, help="run the detector every K frames, track in between "
                           "(default 5)")
        group.add_argument("--largest-face", action="store_true", default=None, help="restore only the largest face")
    add_output_size_arguments(group)


def add_output_size_arguments(group: ArgumentGroup) -> None:
    """--mask and --parser (how faces are pasted), --upscale and the background upsampler's options."""
    group.add_argument("--mask", choices=["box", "parse"], help="paste-back mask: box (feathered square, default) "
                       "or parse (face parsing: follows face and hair)")
    group.add_argument("--parser", help="face parser weights for --mask parse (default parsenet) or a path")
    group.add_argument("--upscale", type=float, help="output size: N times the input's (default 1; 2, 4, ... up to 8); "
                       "faces are pasted at that size")
    group.add_argument("--square-pixels", action="store_true", default=None,
                       help="fold the sample aspect ratio into the width (720x576 16:9 at 2x: 2048x1152)")
    group.add_argument("--bg-upsampler", choices=["lanczos", "realesrgan", "none"],
                       help="background upsampler with --upscale: lanczos (default), realesrgan, or none "
                       "(no network: the same Lanczos resize)")
    group.add_argument("--bg-model", help="Real-ESRGAN weights (default RealESRGAN_x2plus up to 2x, x4plus above) "
                       "or a path")
    group.add_argument("--bg-tile", type=int, help="Real-ESRGAN tile side in pixels (default 400; 0: whole frames)")
    group.add_argument("--matrix", choices=["keep", "bt709"], help="output YUV matrix when upscaling: keep (the "
                       "source's, tagged; default) or bt709 (converted)")


def add_run_flags_everywhere(parser: argparse.ArgumentParser) -> None:
    """The run flags on every subcommand (nested ones too), so they work before or after any of them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in dict.fromkeys(action.choices.values()):  # an alias maps to the same parser
                add_run_flags(subparser)
                add_run_flags_everywhere(subparser)


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """--offline, --debug and -q after the subcommand too (they also work before it).

    Their default is SUPPRESS: a flag not given after the subcommand keeps the value given before it.
    """
    parser.add_argument("--offline", action="store_true", default=argparse.SUPPRESS, help="never download weights")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only warnings and errors")


def warn_unused_output_options(args: argparse.Namespace, options: Any) -> None:
    """Log each output-size option given on the command line that the run's RestoreOptions leave without
    effect (--bg-tile without Real-ESRGAN, --parser with the box mask), so a mistyped command is noticed."""
    realesrgan, parse = options.background == "realesrgan", options.mask == "parse"
    for flag, name, used, needs in (("--bg-tile", "bg_tile", realesrgan, "--bg-upsampler realesrgan"),
                                    ("--bg-model", "bg_model", realesrgan, "--bg-upsampler realesrgan"),
                                    ("--parser", "parser", parse, "--mask parse")):
        if getattr(args, name, None) is not None and not used:
            log.warning("%s has no effect without %s", flag, needs)
