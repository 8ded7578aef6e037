"""Encoder presets and container compatibility, checked before any work starts."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from fractions import Fraction

import av

from vidrestore.errors import MediaError
from vidrestore.video.types import VideoInfo

log = logging.getLogger(__name__)


# AVColorSpace -> swscale colourspace (SWS_CS_*), for RGB -> YUV conversion with the source's matrix.
SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}


@dataclass(frozen=True)
class Preset:
    """Sane defaults for one encoder."""

    options: dict[str, str]
    pix_fmt_8: str | None = "yuv420p"
    pix_fmt_hi: str | None = "yuv420p10le"
    quality_option: str | None = "crf"
    lossless: bool = False
    mp4_tag: str | None = None


PRESETS: dict[str, Preset] = {
    "libx264": Preset({"crf": "18", "preset": "medium"}),
    "libx265": Preset({"crf": "20", "preset": "medium", "x265-params": "log-level=error"},
                      mp4_tag="hvc1"),
    "ffv1": Preset({"level": "3", "g": "1", "slicecrc": "1"}, pix_fmt_8=None, pix_fmt_hi=None,
                   quality_option=None, lossless=True),
    "prores_ks": Preset({"profile": "3", "vendor": "apl0"}, pix_fmt_8="yuv422p10le",
                        pix_fmt_hi="yuv422p10le", quality_option=None),
    # DNxHR SQ when asked by name: DNxHD's own profiles hold only a few sizes, rates and bit rates
    "dnxhd": Preset({"profile": "dnxhr_sq"}, pix_fmt_8="yuv422p", pix_fmt_hi="yuv422p10le", quality_option=None),
    "libvpx-vp9": Preset({"crf": "30", "b": "0", "row-mt": "1"}, pix_fmt_hi=None),
    "libsvtav1": Preset({"crf": "30", "preset": "8"}),
    "h264_nvenc": Preset({"preset": "p5", "rc": "vbr", "cq": "19"}, pix_fmt_hi=None,
                         quality_option="cq"),
    "hevc_nvenc": Preset({"preset": "p5", "rc": "vbr", "cq": "21"}, pix_fmt_hi="p010le",
                         quality_option="cq", mp4_tag="hvc1"),
}
ALIASES = {"h264": "libx264", "x264": "libx264", "hevc": "libx265", "h265": "libx265",
           "x265": "libx265", "prores": "prores_ks", "vp9": "libvpx-vp9", "av1": "libsvtav1",
           "nvenc": "h264_nvenc"}


AUTO_CODEC = "auto"  # no --codec: the source's mezzanine codec and profile again, else DEFAULT_CODEC
DEFAULT_CODEC = "libx264"
# What an archive expects back: the decoder's name of a mezzanine codec -> the encoder that writes it.
MEZZANINE_ENCODERS = {"prores": "prores_ks", "dnxhd": "dnxhd", "ffv1": "ffv1"}
# The profile FFmpeg's decoder names -> the encoder's profile option that writes it.
PRORES_PROFILES = {"Proxy": "0", "LT": "1", "Standard": "2", "HQ": "3", "4444": "4", "XQ": "5"}
DNXHD_PROFILES = {"DNXHD": "dnxhd", "DNXHR LB": "dnxhr_lb", "DNXHR SQ": "dnxhr_sq", "DNXHR HQ": "dnxhr_hq",
                  "DNXHR HQX": "dnxhr_hqx", "DNXHR 444": "dnxhr_444"}
# Encoders that code fields (interlaced DCT and motion estimation) when asked; others only tag the order.
# DNxHD codes fields in its own profile only: FFmpeg refuses interlaced DNxHR.
INTERLACED_FLAGS = {"libx264": "+ildct+ilme", "prores_ks": "+ildct", "mpeg2video": "+ildct+ilme", "dnxhd": "+ildct"}
DNXHD_PROFILE = "dnxhd"


def canonical_encoder(name: str) -> str:
    """The encoder an alias stands for (h264 -> libx264); any other name unchanged."""
    return ALIASES.get(name, name)


def _checked_encoder(name: str) -> str:
    """The encoder whose settings a codec name is checked against: auto as the default encoder."""
    name = canonical_encoder(name)
    return DEFAULT_CODEC if name == AUTO_CODEC else name


def mezzanine_options(info: VideoInfo) -> tuple[str, dict[str, str]] | None:
    """(encoder, options) that write the source's mezzanine codec with its profile; None for other codecs."""
    encoder = MEZZANINE_ENCODERS.get(info.codec)
    if encoder == "prores_ks":
        profile = PRORES_PROFILES.get(info.profile or "")
        return encoder, {} if profile is None else {"profile": profile}
    if encoder == "dnxhd":
        profile = DNXHD_PROFILES.get(info.profile or "", DNXHD_PROFILE)
        rate = {"b": str(dnxhd_bit_rate(info))} if profile == DNXHD_PROFILE else {}
        return encoder, {"profile": profile, **rate}
    return (encoder, {}) if encoder else None


def dnxhd_bit_rate(info: VideoInfo) -> int:
    """The bit rate that writes the source's DNxHD profile again; MediaError when none does.

    DNxHD's profiles are whole Mb/s of a table (per size, field structure and pixel format), which the
    encoder matches exactly, while a container's average rate of the same profile comes out a little
    above or below (a 220 Mb/s file at 29.97 fps as 219.98): of the two whole Mb/s around it, the first
    that opens the encoder (a throwaway one, before any work) is the profile's.
    """
    mbits = (info.bit_rate or 0) / 1_000_000
    for candidate in dict.fromkeys((math.floor(mbits), math.ceil(mbits))):
        if candidate > 0 and _dnxhd_opens(info, candidate * 1_000_000):
            return candidate * 1_000_000
    structure = "i" if info.interlaced else "p"
    raise MediaError(f"{info.path}: DNxHD at {mbits:.2f} Mb/s, {info.width}x{info.height}{structure} {info.pix_fmt} "
                     "is none of the profiles FFmpeg's DNxHD encoder writes: give --codec (dnxhd with DNxHR SQ, "
                     "prores_ks, ffv1)")


def _dnxhd_opens(info: VideoInfo, bit_rate: int) -> bool:
    """Whether FFmpeg's DNxHD encoder opens for the source's size, rate, pixel format and fields at `bit_rate`."""
    context = av.CodecContext.create("dnxhd", "w")
    context.width, context.height, context.pix_fmt = info.width, info.height, info.pix_fmt
    rate = info.average_rate or Fraction(25)
    context.framerate, context.time_base, context.bit_rate = rate, 1 / rate, bit_rate
    options = {"profile": DNXHD_PROFILE}
    _add_interlaced_coding("dnxhd", info.field_order, options)
    context.options = options
    try:
        context.open()
    except (av.FFmpegError, ValueError):
        return False
    return True


def takes_quality(codec: str) -> bool:
    """Whether --crf means something for an encoder: it has a CRF (or its own quality option, NVENC's cq)."""
    preset = PRESETS.get(_checked_encoder(codec))
    return preset is not None and preset.quality_option is not None


def check_quality(codec: str, quality: int | None) -> None:
    """MediaError for a quality given to an encoder without one (lossless ffv1, prores_ks's fixed profiles)."""
    if quality is None or takes_quality(codec):
        return
    takers = ", ".join(name for name in PRESETS if takes_quality(name))
    raise MediaError(f"encoder {codec} {_why_no_quality(PRESETS.get(_checked_encoder(codec)))}: "
                     f"leave out --crf (it applies to {takers})")


def _why_no_quality(preset: Preset | None) -> str:
    """Why an encoder takes no quality value, for the error message."""
    if preset is None:
        return "has no quality setting vidrestore knows"
    return "is lossless" if preset.lossless else "has a fixed quality (its profile sets it)"


@dataclass(frozen=True)
class EncoderSettings:
    """What to encode with: codec, quality (CRF or the codec's own), preset, pixel format, threads, and
    the field order of the frames (interlaced coding where the encoder has it)."""

    codec: str = DEFAULT_CODEC
    quality: int | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    threads: int = 0
    options: dict[str, str] = field(default_factory=dict)
    field_order: str = "progressive"
    chosen_for: str | None = None  # the source codec codec auto chose this encoder for (None: asked for)

    def resolved(self) -> "EncoderSettings":
        """The same settings with the codec alias resolved (h264 -> libx264)."""
        return replace(self, codec=canonical_encoder(self.codec))

    def for_source(self, info: VideoInfo) -> "EncoderSettings":
        """The settings for writing `info`'s frames: codec auto becomes the source's mezzanine codec and
        profile (a CRF or speed preset meant for the default encoder then dropped) or the default
        encoder; the field order is the one the frames are written with."""
        settings = replace(self.resolved(), field_order=info.field_order)
        if settings.codec != AUTO_CODEC:
            return settings
        mezzanine = mezzanine_options(info)
        if mezzanine is None:
            return replace(settings, codec=DEFAULT_CODEC)
        encoder, options = mezzanine
        if settings.quality is not None or settings.preset is not None:  # a preset's CRF too: not worth a notice
            log.debug("%s source: writing %s again; the quality and speed preset of %s do not apply",
                      info.codec, encoder, DEFAULT_CODEC)
        log.info("%s source (%s): writing %s with the same profile", info.codec, info.profile or "no profile", encoder)
        return replace(settings, codec=encoder, quality=None, preset=None, options={**options, **settings.options},
                       chosen_for=info.codec)

    def encoder_options(self) -> dict[str, str]:
        """Encoder options: the preset's defaults, then quality/preset, then explicit options."""
        preset = PRESETS.get(canonical_encoder(self.codec))
        opts = dict(preset.options) if preset else {}
        check_quality(self.codec, self.quality)
        if self.quality is not None:
            opts[preset.quality_option] = str(self.quality)
        if self.preset is not None:
            opts["preset"] = self.preset
        opts.update(self.options)
        _add_interlaced_coding(canonical_encoder(self.codec), self.field_order, opts)
        _add_reproducible_params(canonical_encoder(self.codec), opts)
        return opts


# Encoder parameters without which the same frames do not always encode the same. libx264 picks its
# AVX-512 MB-tree kernel on CPUs that have it, and that kernel reads memory nothing wrote (x264 core
# 165): the output then changes from run to run. cpu-independent puts the C version in its place
# (the rest of x264's assembly stays), which also makes the output the same on every CPU.
REPRODUCIBLE_PARAMS = {"libx264": ("x264-params", "cpu-independent", "1")}


def _add_reproducible_params(codec: str, opts: dict[str, str]) -> None:
    """Add the parameters that make `codec`'s output a function of its input alone to `opts`, in place;
    one the user set is left as it is."""
    if codec in REPRODUCIBLE_PARAMS:
        _add_param(opts, *REPRODUCIBLE_PARAMS[codec])


def _add_param(opts: dict[str, str], option: str, name: str, value: str) -> None:
    """Add name=value to the colon-separated parameter list `opts[option]` unless it names `name` already."""
    params = opts.get(option, "")
    if name not in {item.split("=")[0] for item in params.split(":")}:
        opts[option] = f"{params}:{name}={value}" if params else f"{name}={value}"


def _add_interlaced_coding(codec: str, field_order: str, opts: dict[str, str]) -> None:
    """For interlaced frames: the encoder's interlaced coding flags and, for x264, the field order
    (DNxHD's flags in its own profile only: FFmpeg has no interlaced DNxHR)."""
    if field_order == "progressive" or codec not in INTERLACED_FLAGS:
        return
    if codec == "dnxhd" and opts.get("profile") != DNXHD_PROFILE:
        return
    opts.setdefault("flags", INTERLACED_FLAGS[codec])
    if codec == "libx264":
        _add_param(opts, "x264-params", field_order, "1")


def _writable_codec(name: str) -> av.Codec:
    """The av.Codec encoder named, or MediaError when this FFmpeg build lacks it."""
    try:
        return av.codec.Codec(name, "w")
    except (av.FFmpegError, ValueError) as exc:
        raise MediaError(f"encoder {name!r} is not available in this FFmpeg build "
                         "(try the ffmpeg backend, or another codec)") from exc


def choose_pix_fmt(settings: EncoderSettings, info: VideoInfo, supported: list[str]) -> str:
    """Pixel format for the output: explicit, else the source's if the encoder takes it, else the
    preset's 8- or 10-bit default; odd sizes go to 4:4:4 (4:2:0 needs even width and height)."""
    if settings.pix_fmt:
        if supported and settings.pix_fmt not in supported:
            raise MediaError(f"encoder {settings.codec} cannot write pixel format {settings.pix_fmt} "
                             f"(it takes: {', '.join(supported)})")
        return settings.pix_fmt
    preset = PRESETS.get(settings.codec, Preset({}))
    hi = info.bit_depth > 8
    candidates = [info.pix_fmt, preset.pix_fmt_hi if hi else preset.pix_fmt_8,
                  "yuv420p10le" if hi else None, "yuv420p", "yuv444p"]
    odd = info.width % 2 or info.height % 2
    for fmt in candidates:
        if fmt and (not supported or fmt in supported):
            if odd and _subsampled(fmt):
                continue
            return fmt
    if odd:
        for fmt in ("yuv444p10le" if hi else "yuv444p", "gbrp", "bgr0"):
            if fmt in supported:
                log.warning("%dx%d is odd: encoding %s as %s to keep every pixel",
                            info.width, info.height, settings.codec, fmt)
                return fmt
        raise MediaError(f"encoder {settings.codec} cannot encode the odd size {info.width}x{info.height}")
    return supported[0]


def _subsampled(pix_fmt: str) -> bool:
    """True for chroma-subsampled formats (4:2:0, 4:2:2, ...), which need even dimensions."""
    try:
        fmt = av.VideoFormat(pix_fmt, 16, 16)
    except ValueError:
        return False
    return not fmt.is_rgb and (fmt.chroma_width() != 16 or fmt.chroma_height() != 16)


def check_codec(settings: EncoderSettings, info: VideoInfo, container: av.container.OutputContainer,
                out_name: str, require_encoder: bool = True) -> str:
    """Validate codec, container and pixel format before work starts; returns the pixel format."""
    supported_fmts: list[str] = []
    if require_encoder:
        codec = _writable_codec(settings.codec)
        if codec.type != "video":
            raise MediaError(f"{settings.codec} is not a video encoder")
        supported_fmts = [f.name for f in (codec.video_formats or ())]
        family = codec.canonical_name
    else:
        family = _family_name(settings.codec)
    advice = "choose another container or codec" if settings.chosen_for is None else (
        f"codec auto chose it for the {settings.chosen_for} source: give --codec {DEFAULT_CODEC} (or another "
        "codec the container holds), or choose another container")
    check_container_holds(container, family, out_name, what=f"video encoder {settings.codec}", advice=advice)
    return choose_pix_fmt(settings, info, supported_fmts)


FAMILIES = {"dnxhd": "dnxhd", "libx264": "h264", "h264_nvenc": "h264", "libx265": "hevc", "hevc_nvenc": "hevc",
            "prores_ks": "prores", "libvpx-vp9": "vp9", "libsvtav1": "av1", "av1_nvenc": "av1"}


def _family_name(encoder: str) -> str:
    """Codec family of an encoder by name (for encoders PyAV's build may lack)."""
    return FAMILIES.get(encoder, encoder)


def check_container_holds(container: av.container.OutputContainer, codec_family: str, out_name: str, what: str,
                          advice: str = "choose another container or codec") -> None:
    """MediaError when the output container cannot hold a codec (where FFmpeg can tell)."""
    supported = set(container.supported_codecs)  # empty where the muxer cannot tell (mpegts)
    if supported and codec_family not in supported:
        raise MediaError(f"{out_name}: the {container.format.name} container cannot hold "
                         f"{what} ({codec_family}); {advice}")
