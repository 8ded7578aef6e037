"""The typed records that flow between video stages: decoded frames and probe results."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import av
import numpy as np

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is 3.11+; the package supports 3.10

FIELD_ORDERS = ("tff", "bff", "progressive")  # a frame's structure, by the field shown first
# AVFieldOrder (libavcodec/defs.h) as vidrestore writes it: TT and BB, the field shown first.
AV_FIELD_ORDER = {"progressive": 1, "tff": 2, "bff": 3}
# AVFieldOrder as streams carry it -> the field shown first. TB and BT are how FFmpeg names interleaved
# fields (QuickTime's fiel 9 and 14: the field of the first line shown earlier, or later): the ffmpeg
# command line tags top-field-first frames TB (bottom first BT) for every codec but MJPEG, and Apple's
# writers put fiel 9 on top-field-first video, which FFmpeg reads as TB. So TB is tff in the files that
# exist, whatever the comment of defs.h ("bottom displayed first") says.
FIELD_ORDER_NAMES = {**{value: name for name, value in AV_FIELD_ORDER.items()}, 4: "tff", 5: "bff"}


@dataclass(eq=False)
class Frame:
    """One decoded picture with the timing it came with; the encoder writes exactly this timing.

    `image` is H x W x 3 RGB (uint8, or uint16 for high bit depth). A frame made `from_picture`
    converts lazily: until `image` is read or set, the sink encodes the decoded picture itself, with
    no colour conversion (the pure pass-through path). Only this class touches its private fields;
    the stages change a frame through its methods.
    """

    index: int
    pts: int | None
    time_base: Fraction
    duration: int | None = None
    key_frame: bool = False
    corrupt: bool = False
    _image: np.ndarray | None = field(default=None, repr=False)
    _native: av.VideoFrame | None = field(default=None, repr=False)
    _image_format: str = field(default="rgb24", repr=False)
    field_of: FieldOf | None = field(default=None, repr=False)  # set on the field pictures of an interlaced frame

    @classmethod
    def from_picture(cls, picture: av.VideoFrame, index: int, *, time_base: Fraction,
                     pixel_format: str = "rgb24", **fields: Any) -> Self:
        """A frame of a decoded picture, with the picture's timing (`time_base` where it has none);
        `pixel_format` (rgb24 or rgb48le) is what `image` converts it to."""
        return cls(index=index, pts=picture.pts, time_base=picture.time_base or time_base,
                   duration=picture.duration or None, key_frame=bool(picture.key_frame),
                   corrupt=bool(picture.is_corrupt), _native=picture, _image_format=pixel_format, **fields)

    @classmethod
    def from_rgb(cls, image: np.ndarray, index: int, pts: int | None, time_base: Fraction,
                 duration: int | None = None) -> Self:
        """A frame of RGB pixels (H x W x 3, uint8 or uint16) with the timing given."""
        return cls(index=index, pts=pts, time_base=time_base, duration=duration, _image=image)

    @property
    def image(self) -> np.ndarray:
        """The pixels as an RGB array, converted from the decoded picture on first access (and kept)."""
        if self._image is None:
            self._image = self.rgb()
        return self._image

    @image.setter
    def image(self, value: np.ndarray) -> None:
        self._image = value

    def rgb(self) -> np.ndarray:
        """The pixels as an RGB array without keeping a converted copy (the encoder still takes the
        decoded picture of a frame nothing changed)."""
        if self._image is not None:
            return self._image
        if self._native is None:
            raise ValueError(f"frame {self.index} has no pixels")
        return self._native.to_ndarray(format=self._image_format, src_color_range=self._native.color_range)

    def convert(self) -> None:
        """Convert to RGB now and let the decoded picture go (a source that hands out RGB frames)."""
        self.image  # noqa: B018 - converts and keeps the RGB copy
        self._native = None

    def replace_image(self, image: np.ndarray) -> None:
        """New pixels that the decoded picture no longer describes (another size: an upscale); the
        encoder converts them, and the decoded picture is let go."""
        self._image = image
        self._native = None

    def drop_pixels(self) -> None:
        """Forget the RGB copy of a frame nothing changed, so the encoder takes the decoded picture as is."""
        if self._native is not None:
            self._image = None

    def set_picture(self, picture: av.VideoFrame) -> None:
        """From now on the frame is `picture` (its RGB copy, if any, is dropped): the write-back of a
        patched picture, or a picture the caller reformatted."""
        self._native = picture
        self._image = None

    @property
    def native(self) -> av.VideoFrame | None:
        """The decoded `av.VideoFrame` when its pixels were never touched, else None."""
        return self._native if self._image is None else None

    @property
    def decoded(self) -> av.VideoFrame | None:
        """The decoded picture the frame came with (or was set to), whether or not RGB was made from it."""
        return self._native

    @property
    def has_rgb(self) -> bool:
        """True when the frame holds RGB pixels (converted, set or pasted into), not only a decoded picture."""
        return self._image is not None

    @property
    def seconds(self) -> float | None:
        """Presentation time in seconds (informational)."""
        return None if self.pts is None else float(self.pts * self.time_base)


@dataclass(frozen=True, eq=False)
class FieldOf:
    """What a field picture is: field `number` (0 = first in time) of `parent`, whose lines of
    `parity` (0 = even, top; 1 = odd, bottom) it holds exactly, the others interpolated; `picture`
    is the field's picture as made (a field whose picture is still this one was not touched)."""

    parent: Frame
    number: int
    parity: int
    picture: av.VideoFrame


@dataclass(frozen=True)
class StreamInfo:
    """A non-video stream of the source (audio, subtitle, data) that the sink copies."""

    index: int
    type: str
    codec: str | None
    time_base: Fraction | None
    language: str | None
    metadata: dict[str, str]


@dataclass(frozen=True)
class ColorInfo:
    """Colour tags as FFmpeg enum values (AVColorPrimaries, AVColorTransferCharacteristic, ...)."""

    primaries: int = 2
    transfer: int = 2
    matrix: int = 2
    range: int = 0

    @property
    def specified(self) -> bool:
        """True when any tag says more than 'unspecified'."""
        return (self.primaries, self.transfer, self.matrix) != (2, 2, 2) or self.range != 0


@dataclass(frozen=True)
class VideoInfo:
    """What a probe found out about a file (or URL): the video stream and what travels with it."""

    path: str
    container: str
    codec: str
    width: int
    height: int
    time_base: Fraction
    pix_fmt: str
    bit_depth: int
    average_rate: Fraction | None = None
    duration: float | None = None
    rotation: int = 0
    sample_aspect_ratio: Fraction | None = None
    color: ColorInfo = field(default_factory=ColorInfo)
    video_index: int = 0
    first_pts: int | None = None
    streams: tuple[StreamInfo, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    video_metadata: dict[str, str] = field(default_factory=dict)
    field_order: str = "progressive"  # tff, bff or progressive (FIELD_ORDERS), from the stream and its frames
    profile: str | None = None  # the codec profile FFmpeg names ("HQ" for ProRes 422 HQ, "DNXHR HQ", ...)
    bit_rate: int | None = None  # of the video stream, where the container says (DNxHD's profiles need it)

    @property
    def interlaced(self) -> bool:
        """True for a source whose frames hold two fields (top or bottom field first)."""
        return self.field_order != "progressive"

    @property
    def stream_counts(self) -> dict[str, int]:
        """How many streams of each type the file holds, video included."""
        counts = {"video": 1}
        for s in self.streams:
            counts[s.type] = counts.get(s.type, 0) + 1
        return counts

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (fractions as 'num/den' strings)."""
        def frac(x: Fraction | None) -> str | None:
            return None if x is None else f"{x.numerator}/{x.denominator}"

        return {
            "path": self.path,
            "container": self.container,
            "codec": self.codec,
            "width": self.width,
            "height": self.height,
            "time_base": frac(self.time_base),
            "average_rate": frac(self.average_rate),
            "pix_fmt": self.pix_fmt,
            "bit_depth": self.bit_depth,
            "duration": self.duration,
            "rotation": self.rotation,
            "field_order": self.field_order,
            "profile": self.profile,
            "sample_aspect_ratio": frac(self.sample_aspect_ratio),
            "color": {"primaries": self.color.primaries, "transfer": self.color.transfer,
                      "matrix": self.color.matrix, "range": self.color.range},
            "stream_counts": self.stream_counts,
            "streams": [{"index": s.index, "type": s.type, "codec": s.codec,
                         "language": s.language} for s in self.streams],
            "metadata": dict(self.metadata),
        }


@dataclass
class DecodeStats:
    """What the decoder saw: frames out, packets in, and how many frames were lost or damaged."""

    frames: int = 0
    packets: int = 0
    decode_errors: int = 0
    corrupt_frames: int = 0
    truncated: bool = False

    @property
    def lost_frames(self) -> int:
        """Frames the file holds but FFmpeg could not decode."""
        return max(self.decode_errors, self.packets - self.frames, 0)
