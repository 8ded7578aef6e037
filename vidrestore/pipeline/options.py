"""RestoreOptions: every setting of the main job in one typed record, loadable from a YAML preset.

Presets ship inside the package as vidrestore/presets/<name>.yaml (default, fast, quality, live), so
a wheel install has them as a checkout does; a preset may be named or given as a path, and
command-line values override what it says. A preset's CRF belongs to its encoder: it is dropped when
the command line picks an encoder that has no quality setting (ffv1, prores_ks) without giving --crf.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import yaml

from vidrestore.errors import VidrestoreError, error_line
from vidrestore.video.codecs import AUTO_CODEC, check_quality, takes_quality
from vidrestore.video.geometry import MATRICES, Upscale, output_info
from vidrestore.video.types import FIELD_ORDERS, VideoInfo

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

log = logging.getLogger(__name__)

PRESET_FOLDER = "presets"  # inside the vidrestore package
DEFAULT_PRESET = "default"
NO_MODEL = "none"
COLOUR_MODES = ("auto", "source", "restored")
MASKS = ("box", "parse")
BG_UPSAMPLERS = ("lanczos", "realesrgan", "none")  # none: no network on the background (a Lanczos resize)


@dataclass(frozen=True)
class RestoreOptions:
    """What the main job does: which model and detector, how it batches, blends and encodes."""

    model: str = "GFPGANv1.4"  # a checkpoint name, a file path, or "none" (no pixel changes)
    detector: str = "retinaface_mobile0.25"  # detector name or weights path, or "none" (with --model none only)
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    precision: str | None = None  # fp32 or bf16; default bf16 on CUDA, fp32 on CPU
    batch_size: int | None = None  # faces per restorer call; default per device
    max_batch_frames: int = 16  # frames gathered at most for one restoration batch
    detect_every: int = 5  # run the detector every K frames (tracking in between)
    det_size: int = 640  # long side of the detector's input
    analysis_chunk: int = 8  # frames analysed per tracker call (batched detection)
    smoothing_lag: int = 8  # frames of landmark look-ahead (faces.lag.FILE_MODE_LAG); 0 = causal, as live mode needs
    blend: float = 1.0  # fidelity blend: 1 = fully restored face, 0 = original face
    only_center_face: bool = False  # restore only the face nearest the image centre
    largest_face: bool = False  # restore only the largest face
    codec: str = AUTO_CODEC  # auto: ProRes, DNxHD/HR and FFV1 sources in their own codec and profile, others libx264
    crf: int | None = None  # quality (CRF or the codec's own); default the codec preset's
    preset: str | None = None  # encoder speed preset (x264/x265 "medium", ...)
    backend: str = "pyav"  # pyav or ffmpeg
    queue_size: int = 8  # items between two stages (bounds memory)
    offline: bool | None = None  # never download weights
    field_order: str | None = None  # tff, bff or progressive; None: what the stream says
    deinterlace: bool = False  # interlaced sources: progressive output at field rate instead of woven fields
    colour: str = "auto"  # source: restored luma only, the source's chroma kept; restored; auto: source if monochrome
    mask: str = "box"  # paste-back mask: feathered box, or face parsing (face and hair)
    parser: str = "parsenet"  # face parser weights (name or path) for mask=parse
    upscale: float = 1.0  # output size: this factor times the stored size
    square_pixels: bool = False  # fold the sample aspect ratio into the width (square output pixels)
    bg_upsampler: str | None = None  # lanczos, realesrgan or none; default lanczos when upscaling
    bg_model: str | None = None  # Real-ESRGAN weights; default RealESRGAN_x2plus up to 2x, x4plus above
    bg_tile: int = 400  # Real-ESRGAN tile side in pixels (0: whole frames)
    matrix: str = "keep"  # output YUV matrix: keep (tagged), or bt709 (converted; with upscaling)

    def __post_init__(self) -> None:
        if not 0.0 <= self.blend <= 1.0:
            raise VidrestoreError(f"blend must be between 0 and 1, not {self.blend}")
        for name in ("detect_every", "det_size", "analysis_chunk", "queue_size", "max_batch_frames"):
            if getattr(self, name) < 1:
                raise VidrestoreError(f"{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if self.smoothing_lag < 0:
            raise VidrestoreError(f"smoothing-lag must be 0 or more, not {self.smoothing_lag}")
        if self.batch_size is not None and self.batch_size < 1:
            raise VidrestoreError(f"batch-size must be at least 1, not {self.batch_size}")
        if self.restores and not self.tracks:
            raise VidrestoreError("--detector none only goes with --model none: faces must be found to be restored")
        if self.field_order is not None and self.field_order not in FIELD_ORDERS:
            raise VidrestoreError(f"field-order must be one of {', '.join(FIELD_ORDERS)}, not {self.field_order!r}")
        if self.colour not in COLOUR_MODES:
            raise VidrestoreError(f"colour must be one of {', '.join(COLOUR_MODES)}, not {self.colour!r}")
        self._check_upscaling()
        check_quality(self.codec, self.crf)  # before any model is loaded or file opened

    def _check_upscaling(self) -> None:
        """The mask, upscale and background options make sense together."""
        for name, value, choices in (("mask", self.mask, MASKS), ("matrix", self.matrix, MATRICES),
                                     ("bg-upsampler", self.bg_upsampler or "lanczos", BG_UPSAMPLERS)):
            if value not in choices:
                raise VidrestoreError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        Upscale(self.upscale, self.square_pixels)  # a factor it takes, before any model is loaded
        if self.bg_tile < 0:
            raise VidrestoreError(f"bg-tile must be 0 (whole frames) or more, not {self.bg_tile}")
        if self.background == "realesrgan" and self.upscale == 1.0:
            raise VidrestoreError("--bg-upsampler realesrgan needs --upscale above 1")
        if self.matrix != "keep" and not self.upscales:
            raise VidrestoreError("--matrix bt709 converts frames that are upscaled: use it with --upscale "
                                  "or --square-pixels")

    @property
    def upscales(self) -> bool:
        """True when the output is not the stored size (every frame is then resized)."""
        return self.upscale != 1.0 or self.square_pixels

    def output_info(self, info: VideoInfo) -> VideoInfo:
        """What the output of a video with this `info` is: upscaled size, SAR, colour tags (`info` at 1x)."""
        return output_info(info, Upscale(self.upscale, self.square_pixels), self.matrix)

    @property
    def background(self) -> str:
        """The background upsampler in effect: lanczos unless realesrgan is asked (none is a plain resize)."""
        return "realesrgan" if self.bg_upsampler == "realesrgan" else "lanczos"

    @property
    def restores(self) -> bool:
        """False for --model none: the pipeline runs without touching a pixel."""
        return str(self.model).lower() != NO_MODEL

    @property
    def tracks(self) -> bool:
        """False for --detector none: no face analysis (with --model none, a pure I/O run)."""
        return str(self.detector).lower() != NO_MODEL

    def with_overrides(self, overrides: Mapping[str, Any]) -> "RestoreOptions":
        """A copy with the given fields replaced; None values mean 'not given' and are skipped."""
        return dataclasses.replace(self, **_given(overrides))


def _given(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The overrides that were given (None means 'not given'), checked to be RestoreOptions fields."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    _check_known(given, "override")
    return given


def _check_known(values: Mapping[str, Any], where: str) -> None:
    """VidrestoreError naming any key that is not a RestoreOptions field."""
    known = {f.name for f in fields(RestoreOptions)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise VidrestoreError(f"unknown {where} option(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")


def _packaged_presets() -> Traversable:
    """The package's folder of preset files (read through importlib.resources, so any install has it)."""
    return importlib.resources.files("vidrestore") / PRESET_FOLDER


def preset_names() -> list[str]:
    """The names of the presets that ship with the package (default, fast, quality, live)."""
    return sorted(entry.name.removesuffix(".yaml") for entry in _packaged_presets().iterdir()
                  if entry.name.endswith(".yaml"))


def preset_path(name_or_path: str | Path) -> Path | Traversable:
    """The YAML file of a packaged preset name (vidrestore/presets/<name>.yaml) or an explicit path."""
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise VidrestoreError(f"config file not found: {path}")
        return path
    candidate = _packaged_presets() / f"{name_or_path}.yaml"
    if not candidate.is_file():
        raise VidrestoreError(f"unknown config {name_or_path!r} (available: {', '.join(preset_names()) or 'none'}; "
                              "or give a YAML file)")
    return candidate


def load_options(config: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> RestoreOptions:
    """Options from a preset (default: the packaged default preset) with overrides applied."""
    path = preset_path(config or DEFAULT_PRESET)
    values = _read_yaml(path)
    _check_known(values, f"config ({path.name})")
    given = _given(overrides)
    return RestoreOptions(**{**_without_stray_crf(values, given), **given})


def _without_stray_crf(values: dict[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """The preset's values less its CRF when the overrides choose an encoder without a quality setting
    and give no CRF of their own: the preset's number was meant for its own encoder."""
    if "crf" in given or "codec" not in given or takes_quality(given["codec"]) or values.get("crf") is None:
        return values
    log.debug("the preset's crf %s does not apply to encoder %s", values["crf"], given["codec"])
    return {k: v for k, v in values.items() if k != "crf"}


def _read_yaml(path: Path | Traversable) -> dict[str, Any]:
    """The mapping at the top level of a YAML file (a `restore:` section if there is one)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise VidrestoreError(f"cannot read config {path}: {error_line(exc)}") from None
    if isinstance(data, dict) and isinstance(data.get("restore"), dict):
        data = data["restore"]
    if not isinstance(data, dict):
        raise VidrestoreError(f"config {path} must be a mapping of option: value")
    return data
