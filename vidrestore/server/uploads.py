"""Request bodies streamed to disk: a raw body or the file part of a multipart form, never whole in memory.

The byte count of the body is checked against the limit as it arrives (and against Content-Length
before anything is read): the request fails with 413 the moment it is over. Small form fields
(options) are kept in memory, bounded in number and size. Names on disk are the caller's, never the
client's.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import anyio
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from vidrestore.server.errors import ApiError

log = logging.getLogger(__name__)

MAX_FIELDS = 16
MAX_FIELD_BYTES = 1024
MAX_PART_HEADER_BYTES = 8192
SUFFIX_PATTERN = re.compile(r"^\.[a-z0-9]{1,5}$")


@dataclass
class Upload:
    """A received body: the file on disk, its size, the form fields that came with it, the client's name."""

    path: Path
    size: int
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None

    @property
    def suffix(self) -> str:
        """The extension of the client's file name if it is a plain short one, else ''."""
        suffix = Path(self.filename or "").suffix.lower()
        return suffix if SUFFIX_PATTERN.match(suffix) else ""


def too_large(limit: int) -> ApiError:
    """The 413 error for a body over `limit` bytes."""
    return ApiError(413, "upload_too_large", f"the upload is larger than the limit of {limit} bytes")


def declared_length(request: Request, limit: int) -> int | None:
    """The body length the client announced; 413 at once when it is over the limit."""
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.strip().isdigit():
        raise ApiError(400, "bad_request", "Content-Length is not a number")
    if int(value) > limit:
        raise too_large(limit)
    return int(value)


async def receive_upload(request: Request, dest: Path, limit: int, timeout_s: float) -> Upload:
    """Stream the request body into `dest` (the file part of a multipart form, else the whole body).

    413 as soon as more than `limit` bytes arrived, 408 when the body takes longer than `timeout_s`,
    400 for an empty or malformed body. `dest` is removed when anything fails.
    """
    declared_length(request, limit)
    content_type, options = parse_options_header(request.headers.get("content-type"))
    try:
        with anyio.fail_after(timeout_s):
            if content_type == b"multipart/form-data":
                upload = await _receive_multipart(request, dest, limit, options.get(b"boundary"))
            else:
                upload = await _receive_raw(request, dest, limit)
    except TimeoutError:
        dest.unlink(missing_ok=True)
        raise ApiError(408, "upload_timeout", f"the upload did not arrive within {timeout_s:g} s") from None
    except ClientDisconnect:
        dest.unlink(missing_ok=True)
        raise ApiError(400, "client_disconnected", "the client went away during the upload") from None
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    if upload.size == 0:
        dest.unlink(missing_ok=True)
        raise ApiError(400, "empty_upload", "the upload is empty")
    return upload


class _Counter:
    """Counts body bytes against the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if self.total > self.limit:
            raise too_large(self.limit)


async def _receive_raw(request: Request, dest: Path, limit: int) -> Upload:
    """The whole body is the file."""
    counter = _Counter(limit)
    with dest.open("wb") as out:
        async for chunk in request.stream():
            counter.add(chunk)
            out.write(chunk)
    return Upload(dest, counter.total)


async def _receive_multipart(request: Request, dest: Path, limit: int, boundary: bytes | None) -> Upload:
    """The first part with a file name (or named 'file') goes to disk; the other parts are option fields."""
    if not boundary:
        raise ApiError(400, "bad_multipart", "multipart/form-data without a boundary")
    counter = _Counter(limit)
    form = _FormSink(dest)
    try:
        parser = MultipartParser(boundary, form.callbacks())
        async for chunk in request.stream():
            counter.add(chunk)
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise ApiError(400, "bad_multipart", f"malformed multipart body ({exc})") from None
    finally:
        form.close()
    if not form.complete:
        raise ApiError(400, "bad_multipart", "the multipart body ended before its closing boundary")
    if form.file_size is None:
        raise ApiError(400, "missing_file", "no file in the form: send it in a part named 'file'")
    return Upload(dest, form.file_size, form.fields, form.filename)


class _FormSink:
    """Callbacks of python-multipart's streaming parser: the file part to disk, fields to a small dict."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.file_size: int | None = None
        self.complete = False
        self._headers: dict[str, str] = {}
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._header_bytes = 0
        self._name = ""
        self._value: bytearray | None = None
        self._file: BinaryIO | None = None

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _part_begin(self) -> None:
        self._headers, self._header_bytes = {}, 0
        self._header_name, self._header_value = bytearray(), bytearray()

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_PART_HEADER_BYTES:
            raise ApiError(400, "bad_multipart", "a part's headers are too long")

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        name = self._header_name.decode("latin-1").strip().lower()
        self._headers[name] = self._header_value.decode("latin-1").strip()
        self._header_name, self._header_value = bytearray(), bytearray()

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get("content-disposition", ""))
        self._name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        if filename is not None or self._name == "file":
            if self.file_size is not None:
                raise ApiError(400, "bad_multipart", "send one file per request")
            self.filename = filename.decode("utf-8", "replace") if filename is not None else None
            self._file = self.dest.open("wb")
            self.file_size = 0
        else:
            if len(self.fields) >= MAX_FIELDS:
                raise ApiError(400, "bad_multipart", f"more than {MAX_FIELDS} form fields")
            self._value = bytearray()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self._file.write(data[start:end])
            self.file_size = (self.file_size or 0) + end - start
        elif self._value is not None:
            self._value += data[start:end]
            if len(self._value) > MAX_FIELD_BYTES:
                raise ApiError(400, "bad_multipart",
                               f"form field {self._name!r} is longer than {MAX_FIELD_BYTES} bytes")

    def _part_end(self) -> None:
        if self._file is not None:
            self.close()
        elif self._value is not None:
            try:
                self.fields[self._name] = self._value.decode("utf-8")
            except UnicodeDecodeError:
                raise ApiError(400, "bad_multipart", f"form field {self._name!r} is not UTF-8 text") from None
            self._value = None

    def _end(self) -> None:
        self.complete = True
