"""Interlaced frames as fields and back: split with bwdif, weave plane by plane, tag for the encoder.

An interlaced frame holds two pictures taken half a frame apart, on alternate lines. A face restorer
that sees the frame as one picture restores the combing as texture; instead each frame becomes its
two fields as full-height pictures at double rate (FFmpeg's bwdif in send_field mode through a PyAV
filter graph: it copies each field's own lines verbatim and interpolates the others from space and
time), faces are restored on those, and the two pictures are woven back: the even lines from the
top field's picture, the odd from the bottom's, in every plane. Lines nothing was pasted on come
out as they went in. Pictures made here carry no interlaced flags (PyAV cannot set them), so the
encoder tags them with setfield, which is what x264 and ProRes read their field order from.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Iterable, Iterator

import av
import numpy as np

from vidrestore.errors import MediaError, error_line
from vidrestore.video.patch import PATCHABLE_FORMATS, copy_picture, plane_array, sample_dtype
from vidrestore.video.types import FieldOf, Frame, VideoInfo

def first_parity(field_order: str) -> int:
    """The parity of the lines of the field shown first: 0 (even, top) for tff, 1 for bff."""
    return 0 if field_order == "tff" else 1


def plane_rows(picture: av.VideoFrame) -> list[np.ndarray]:
    """Writable (height, width) views of every plane of a planar picture (line padding cut off)."""
    dtype = sample_dtype(picture)
    return [plane_array(plane, dtype) for plane in picture.planes]


def _single_filter_graph(picture: av.VideoFrame, time_base: Fraction, name: str, args: str) -> av.filter.Graph:
    """buffer -> `name`=`args` -> buffersink, for pictures of `picture`'s size and format."""
    graph = av.filter.Graph()
    source = graph.add_buffer(width=picture.width, height=picture.height, format=picture.format.name,
                              time_base=time_base)
    node = graph.add(name, args)
    sink = graph.add("buffersink")
    source.link_to(node)
    node.link_to(sink)
    graph.configure()
    return graph


def _pull_all(graph: av.filter.Graph) -> list[av.VideoFrame]:
    """The pictures a filter graph has ready (none until it has what it needs)."""
    pictures = []
    while True:
        try:
            pictures.append(graph.pull())
        except (av.error.BlockingIOError, av.error.EOFError, BlockingIOError, EOFError):
            return pictures


def field_step(frame: Frame, info: VideoInfo) -> int:
    """A frame's duration in its own time base: its own, else one frame at the average rate."""
    if frame.duration:
        return frame.duration
    rate = info.average_rate or Fraction(25)
    return max(1, round(1 / (rate * frame.time_base)))


def field_frames(frames: Iterable[Frame], info: VideoInfo, field_order: str, *,
                 weaving: bool = True) -> Iterator[Frame]:
    """Each frame as its two fields (first in time first), full-height pictures at double rate.

    A field's `pts` is in half the frame's time base: the first at the frame's time, the second half
    a frame later; `index` stays the frame's, `field_of` says which field of which frame it is (without
    `weaving` the fields are the frames of a progressive output at field rate, numbered as such). Frames
    keep their decoded picture; the fields' pictures come out of bwdif one frame later (it looks at the
    next frame), the last ones when the stream ends. Fields to be woven back must be planar YUV or
    grey (what the write-back handles), so that their lines stay exact.
    """
    graph: av.filter.Graph | None = None
    waiting: list[Frame] = []
    parity = first_parity(field_order)

    def fields_of(pictures: list[av.VideoFrame]) -> Iterator[Frame]:
        for n, picture in enumerate(pictures):
            parent = waiting[0]
            number = n % 2
            field = field_frame(parent, picture, number, parity ^ number, field_step(parent, info))
            if not weaving:  # frames of the output in their own right
                field.field_of, field.index = None, 2 * parent.index + number
            yield field
            if number == 1:
                waiting.pop(0)

    try:
        for frame in frames:
            picture = frame.decoded
            if picture is None or (weaving and picture.format.name not in PATCHABLE_FORMATS):
                raise MediaError(f"frame {frame.index}: field-correct restoration takes planar YUV or grey pictures, "
                                 f"not {picture.format.name if picture else 'RGB'} (use --deinterlace or "
                                 "--field-order progressive)")
            if graph is None:
                graph = _single_filter_graph(picture, frame.time_base, "bwdif",
                                             f"mode=send_field:parity={field_order}:deint=all")
            waiting.append(frame)
            graph.push(picture)
            yield from fields_of(_pull_all(graph))
        if graph is not None:
            graph.push(None)
            yield from fields_of(_pull_all(graph))
    except av.FFmpegError as exc:
        raise MediaError(f"splitting frames into fields failed: {error_line(exc, os_reason=True)}") from exc
    if waiting:
        raise MediaError(f"bwdif gave no fields for the last {len(waiting)} frame(s)")


def field_frame(parent: Frame, picture: av.VideoFrame, number: int, parity: int, step: int) -> Frame:
    """Field `number` of `parent` as a frame of its own: the picture, at the field's time (half time base)."""
    frame = timed(Frame.from_picture(picture, parent.index, time_base=parent.time_base / 2,
                                     field_of=FieldOf(parent, number, parity, picture)),
                  None if parent.pts is None else 2 * parent.pts + number * step, parent.time_base / 2, step)
    frame.key_frame = parent.key_frame and number == 0
    return frame


def timed(frame: Frame, pts: int | None, time_base: Fraction, duration: int | None) -> Frame:
    """The frame with the timing given (its picture's own, bwdif's or none, is not what the encoder writes)."""
    frame.pts, frame.time_base, frame.duration = pts, time_base, duration
    return frame


def weave(first: Frame, second: Frame) -> Frame:
    """The frame the two restored fields of one frame make: each field's own lines from its picture.

    A field nothing was pasted on gives its lines from the frame's decoded picture (the same lines
    bwdif copied); when neither was, that picture itself is the result, untouched. The fields' faces
    must have been written back into their pictures (field_frames takes only formats that can be).
    """
    if first.has_rgb or second.has_rgb:
        raise ValueError(f"frame {first.index}: a field's restored pixels were not written back into its picture")
    parent = first.field_of.parent
    touched = [f for f in (first, second) if f.decoded is not f.field_of.picture]
    if not touched:
        parent.drop_pixels()
        return parent
    woven = copy_picture(parent.decoded)
    planes = plane_rows(woven)
    for f in touched:
        for target, source in zip(planes, plane_rows(f.decoded)):
            target[f.field_of.parity::2] = source[f.field_of.parity::2]
    frame = timed(Frame.from_picture(woven, parent.index, time_base=parent.time_base), parent.pts,
                  parent.time_base, parent.duration)
    frame.key_frame = parent.key_frame
    return frame


def check_pair(first: Frame, second: Frame) -> None:
    """MediaError unless the two are the fields of one frame, first in time first."""
    a, b = first.field_of, second.field_of
    if a is None or b is None or a.parent is not b.parent or (a.number, b.number) != (0, 1):
        raise MediaError(f"the fields of frame {first.index} do not come in pairs")


class FieldTagger:
    """Marks pictures as interlaced with the field order (setfield), as the encoder reads them; one
    graph per picture format (decoded pictures and converted ones may differ)."""

    def __init__(self, field_order: str, time_base: Fraction) -> None:
        self.field_order = field_order
        self.time_base = time_base
        self._graphs: dict[tuple[int, int, str], av.filter.Graph] = {}

    def tag(self, picture: av.VideoFrame) -> av.VideoFrame:
        """The picture flagged interlaced with the field order (pixels and timing unchanged)."""
        key = (picture.width, picture.height, picture.format.name)
        if key not in self._graphs:
            self._graphs[key] = _single_filter_graph(picture, self.time_base, "setfield", self.field_order)
        graph = self._graphs[key]
        pts, time_base = picture.pts, picture.time_base
        graph.push(picture)
        tagged = graph.pull()
        tagged.pts, tagged.time_base = pts, time_base
        return tagged
