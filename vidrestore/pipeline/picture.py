"""The picture as the source holds it: fields or frames, which colour goes in, what the output is.

`picture_plan(info, options)` decides, before any work, how a job treats its source (specs/archive.md
section 1): an interlaced source is restored on its fields and woven back (or written progressive at
field rate with --deinterlace); a monochrome one (a grey pixel format, or chroma planes flat at
neutral on frames sampled across the file) takes only the restored luma, so no colour comes in.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import av
import numpy as np

from vidrestore.errors import VidrestoreError
from vidrestore.pipeline.options import RestoreOptions
from vidrestore.video.patch import PATCHABLE_FORMATS, plane_array, sample_dtype
from vidrestore.video.paths import is_url
from vidrestore.video.probe import sampled_pictures
from vidrestore.video.types import VideoInfo

log = logging.getLogger(__name__)

SAMPLED_FRAMES = 5  # pictures spread over the file that decide whether its chroma is flat
NEUTRAL_TOLERANCE = 2  # levels (at 8 bits) a chroma sample may stray from neutral in a monochrome source
NEUTRAL_PERCENTILE = 99.5  # of |chroma - neutral|: a caption or logo in colour does not make a film colour
DARK_LUMA = 48  # levels (at 8 bits): a picture whose brighter tenth is darker says nothing of its colour
INFORMATIVE_PICTURES = 2  # pictures bright enough to tell, at least, before a source is called monochrome


@dataclass(frozen=True)
class PicturePlan:
    """How a job treats the source's picture, and the video the encoder writes."""

    field_order: str  # of the source as restored: tff, bff or progressive
    deinterlace: bool  # fields written as progressive frames at field rate
    luma_only: bool  # only restored luma goes into the picture (the source's chroma kept)
    colour_reason: str  # why luma_only is what it is, for the log and the report
    output: VideoInfo  # what the encoder writes: the source's, with the field order and timing of the output

    @property
    def fields(self) -> bool:
        """True when faces are restored on the fields of interlaced frames."""
        return self.field_order != "progressive"

    @property
    def weaving(self) -> bool:
        """True when restored fields are woven back into interlaced frames."""
        return self.fields and not self.deinterlace

    def describe(self) -> str:
        """One line for the log: the structure and the colour the job keeps."""
        structure = ("progressive" if not self.fields else
                     f"{self.field_order} fields, " + ("written progressive at field rate" if self.deinterlace
                                                      else "woven back into interlaced frames"))
        colour = "restored luma only" if self.luma_only else "restored colour"
        return f"picture: {structure}; {colour} ({self.colour_reason})"


def source_field_order(info: VideoInfo, options: RestoreOptions) -> str:
    """The field order the job assumes: --field-order, else the stream's."""
    if options.field_order is not None and options.field_order != info.field_order:
        log.info("%s: field order %s as asked (the stream says %s)", info.path, options.field_order, info.field_order)
    return options.field_order or info.field_order


def monochrome_reason(info: VideoInfo) -> str | None:
    """Why the source is monochrome ("grey pixel format", "chroma flat at neutral on N sampled frames"), or None.

    Flat chroma is looked for on pictures spread over the file; black ones (fades, leaders) have
    neutral chroma in colour films too, so they are left out, and at least INFORMATIVE_PICTURES must
    remain. A stream (URL) is not sampled: only its pixel format tells.
    """
    fmt = av.VideoFormat(info.pix_fmt)
    if len(fmt.components) == 1 or fmt.name.startswith("gray"):
        return f"grey pixel format {info.pix_fmt}"
    if fmt.is_rgb:
        return None
    if is_url(info.path):
        log.info("%s: a stream is not sampled for flat chroma; give --colour source if it is monochrome", info.path)
        return None
    pictures = [p for p in sampled_pictures(info.path, SAMPLED_FRAMES) if not is_dark(p)]
    if len(pictures) < INFORMATIVE_PICTURES:
        log.info("%s: %d sampled picture(s) bright enough to tell its colour; taken as colour", info.path,
                 len(pictures))
        return None
    if all(chroma_is_neutral(p) for p in pictures):
        return f"chroma flat at neutral on {len(pictures)} sampled frames"
    return None


def planar_yuv(picture: av.VideoFrame) -> av.VideoFrame:
    """The picture as planar YUV with three planes (itself when it is; 4:4:4 otherwise)."""
    if picture.format.is_rgb or len(picture.planes) < 3:
        return picture.reformat(format="yuv444p16le" if sample_dtype(picture).itemsize > 1 else "yuv444p")
    return picture


def is_dark(picture: av.VideoFrame) -> bool:
    """True for a picture whose brighter tenth of luma is below DARK_LUMA (black, or nearly)."""
    picture = planar_yuv(picture)
    luma = plane_array(picture.planes[0], sample_dtype(picture))
    return float(np.percentile(luma, 90)) < DARK_LUMA << max(0, picture.format.components[0].bits - 8)


def chroma_is_neutral(picture: av.VideoFrame) -> bool:
    """True when nearly every chroma sample of a YUV picture (NEUTRAL_PERCENTILE of them) is within
    NEUTRAL_TOLERANCE of neutral."""
    picture = planar_yuv(picture)
    bits = picture.format.components[1].bits
    neutral, tolerance = 1 << (bits - 1), NEUTRAL_TOLERANCE << max(0, bits - 8)
    dtype = sample_dtype(picture)
    return all(float(np.percentile(np.abs(plane_array(plane, dtype).astype(np.int32) - neutral),
                                   NEUTRAL_PERCENTILE)) <= tolerance
               for plane in picture.planes[1:3])


def colour_choice(info: VideoInfo, options: RestoreOptions) -> tuple[bool, str]:
    """(luma only, why): --colour source or restored as asked; auto: source for monochrome sources."""
    if options.colour != "auto":
        return options.colour == "source", f"--colour {options.colour}"
    if not options.restores:
        return False, "no model: no pixel changes"
    reason = monochrome_reason(info)
    if reason is None:
        return False, "colour source"
    return True, f"monochrome source: {reason}"


def output_info(info: VideoInfo, field_order: str, deinterlace: bool) -> VideoInfo:
    """The video the encoder writes: interlaced with the field order, or progressive (at field rate
    after --deinterlace: twice the frames, in half the time base so every field time is exact)."""
    if field_order == "progressive" or not deinterlace:
        return dataclasses.replace(info, field_order=field_order)
    rate = info.average_rate * 2 if info.average_rate else None
    return dataclasses.replace(info, field_order="progressive", time_base=info.time_base / 2, average_rate=rate,
                               first_pts=None if info.first_pts is None else 2 * info.first_pts)


def picture_plan(info: VideoInfo, options: RestoreOptions) -> PicturePlan:
    """How the job treats the source's picture (fields, colour) and what it writes; logged."""
    field_order = source_field_order(info, options)
    if options.deinterlace and field_order == "progressive":
        log.warning("%s: --deinterlace on a progressive source changes nothing (give --field-order if it is "
                    "interlaced)", info.path)
    if field_order != "progressive" and not options.deinterlace and info.pix_fmt not in PATCHABLE_FORMATS:
        raise VidrestoreError(f"{info.path}: field-correct restoration keeps the lines of planar YUV or grey "
                              f"pictures, not {info.pix_fmt}: use --deinterlace or --field-order progressive")
    if field_order != "progressive" and not options.deinterlace and options.upscales:
        raise VidrestoreError(f"{info.path}: an interlaced source is restored field by field and woven back at its "
                              "own size: to upscale it, add --deinterlace (progressive output at field rate)")
    luma_only, reason = colour_choice(info, options)
    plan = PicturePlan(field_order, options.deinterlace and field_order != "progressive", luma_only, reason,
                       output_info(info, field_order, options.deinterlace))
    log.info("%s", plan.describe())
    return plan


def settled_options(options: RestoreOptions, plan: PicturePlan) -> RestoreOptions:
    """The options with the plan's field order and colour given explicitly, so that jobs over parts of
    the source (archive chunks) treat each part as the whole source was judged, without judging again."""
    return dataclasses.replace(options, field_order=plan.field_order, colour="source" if plan.luma_only else "restored")


def check_chunkable(plan: PicturePlan) -> None:
    """VidrestoreError for what archive mode cannot do: its chunks keep the source's frames one for one."""
    if plan.deinterlace:
        raise VidrestoreError("--deinterlace doubles the frames, and archive mode keeps the source's frames one "
                              "for one: use `vidrestore IN OUT --deinterlace`, or archive without it")
