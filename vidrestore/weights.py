"""Model checkpoints: the manifest of known files, where they are looked up, download and verification.

The manifest ships inside the package (vidrestore/weights_manifest.json, read through importlib.resources
on first use), so a wheel install knows the same checkpoints as a checkout.

Lookup order (DESIGN.md section 6): an explicit file path, then every folder of `$VIDRESTORE_WEIGHTS`
(several separated by os.pathsep), then the repository's `weights/` folder when running from a checkout,
then the user cache (`$XDG_CACHE_HOME/vidrestore/weights`, default `~/.cache/vidrestore/weights`).

A missing file is downloaded into the user cache with a progress bar unless downloads are off
(`offline=True`, `--offline` or `VIDRESTORE_OFFLINE=1`). `find_all_weights` resolves every file a run
needs before downloading any, and names all that cannot be had in one error, with what to do instead
(the folders searched, `$VIDRESTORE_WEIGHTS`, `--offline`). Downloads go to `<file>.part`, resume with an
HTTP Range request, are checked against the manifest's size and sha256 and only then renamed into place.
`VIDRESTORE_WEIGHTS_URL_BASE` replaces every manifest URL by `<base>/<file name>` (a mirror, or a test
server). A file found by lookup is checked by size only; `verify` (and `vidrestore weights verify`)
hashes it.
"""

from __future__ import annotations

import argparse
import enum
import functools
import hashlib
import http.client
import importlib.resources
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Iterable, Sequence

from tqdm import tqdm

from vidrestore import __version__
from vidrestore.errors import WeightsError, error_line

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

log = logging.getLogger(__name__)

MANIFEST_RESOURCE = "weights_manifest.json"  # inside the vidrestore package
_CHECKOUT_ROOT = Path(__file__).resolve().parent.parent  # the repository, when running from a checkout
KINDS = ("restorer", "detector", "parser", "upsampler", "training")

ENV_DIRS = "VIDRESTORE_WEIGHTS"
ENV_OFFLINE = "VIDRESTORE_OFFLINE"
ENV_URL_BASE = "VIDRESTORE_WEIGHTS_URL_BASE"

CHUNK_BYTES = 1 << 20
RETRY_BACKOFF_S = 1.0
RETRY_BACKOFF_MAX_S = 8.0
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_GFPGAN_VERSION_RE = re.compile(r"gfpganv(\d+\.\d+)")


# --- manifest ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightSpec:
    """One known checkpoint: what it is called, where it is published and how to check it."""

    name: str
    filename: str
    url: str
    sha256: str | None
    size: int | None
    kind: str
    description: str


def _spec_from_entry(entry: dict, manifest: Path | Traversable) -> WeightSpec:
    """A WeightSpec from one manifest entry, refusing entries that would make checks meaningless."""
    fields = set(WeightSpec.__dataclass_fields__)
    if not isinstance(entry, dict) or set(entry) != fields:
        raise WeightsError(f"{manifest}: entry {entry!r} must have exactly the keys {sorted(fields)}")
    spec = WeightSpec(**entry)
    if spec.sha256 is not None and not _SHA256_RE.fullmatch(spec.sha256):
        raise WeightsError(f"{manifest}: {spec.name}: sha256 must be 64 lowercase hex digits or null")
    if spec.size is not None and (not isinstance(spec.size, int) or spec.size <= 0):
        raise WeightsError(f"{manifest}: {spec.name}: size must be a positive number of bytes or null")
    if spec.kind not in KINDS:
        raise WeightsError(f"{manifest}: {spec.name}: kind must be one of {', '.join(KINDS)}")
    return spec


def packaged_manifest() -> Traversable:
    """The manifest file that ships inside the package."""
    return importlib.resources.files("vidrestore") / MANIFEST_RESOURCE


def load_manifest(path: Path | Traversable | None = None) -> dict[str, WeightSpec]:
    """The checkpoints listed in a manifest file (default: the packaged one), by name."""
    path = packaged_manifest() if path is None else path
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read the weights manifest {path}: {exc}") from exc
    specs = [_spec_from_entry(entry, path) for entry in data.get("checkpoints", [])]
    return {spec.name: spec for spec in specs}


@functools.cache
def known() -> dict[str, WeightSpec]:
    """The packaged manifest's checkpoints by name, read on first use (not when the module is imported)."""
    return load_manifest()


def __getattr__(name: str) -> Any:
    """`weights.KNOWN` is known(): the attribute older callers read, loaded on first access."""
    if name == "KNOWN":
        return known()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _aliases(spec: WeightSpec) -> set[str]:
    """Every case-folded name a spec answers to: name, file name, file stem, and 'v1.4'/'1.4' for GFPGAN."""
    names = {spec.name, spec.filename, Path(spec.filename).stem}
    version = _GFPGAN_VERSION_RE.fullmatch(spec.name.casefold())
    if version:
        names |= {f"v{version.group(1)}", version.group(1)}
    return {name.casefold() for name in names}


def spec_for(name: str, kind: str | None = None) -> WeightSpec:
    """The known checkpoint called `name` (case-insensitive, file names and GFPGAN version aliases too),
    of the given kind when one is given (a detector name is no restorer)."""
    wanted = name.strip().casefold()
    candidates = [spec for spec in known().values() if kind is None or spec.kind == kind]
    for spec in candidates:
        if wanted in _aliases(spec):
            return spec
    what = f"{kind} checkpoint" if kind else "checkpoint"
    raise WeightsError(f"unknown {what} {name!r}: not a file, and not one of {', '.join(s.name for s in candidates)}")


def source_url(spec: WeightSpec) -> str:
    """Where a checkpoint is downloaded from: the manifest URL, or `$VIDRESTORE_WEIGHTS_URL_BASE/<file>`."""
    base = os.environ.get(ENV_URL_BASE, "").strip()
    return f"{base.rstrip('/')}/{spec.filename}" if base else spec.url


# --- lookup --------------------------------------------------------------------------------------


def user_cache_dir() -> Path:
    """The per-user download folder: `$XDG_CACHE_HOME/vidrestore/weights` or `~/.cache/vidrestore/weights`."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    cache = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return cache / "vidrestore" / "weights"


def repo_weights_dir() -> Path | None:
    """The repository's `weights/` folder when running from a checkout, else None (an installed package's
    parent folder is site-packages, which holds no pyproject.toml)."""
    folder = _CHECKOUT_ROOT / "weights"
    return folder if (_CHECKOUT_ROOT / "pyproject.toml").is_file() and folder.is_dir() else None


def search_dirs() -> list[Path]:
    """The folders searched for checkpoints, first match wins: $VIDRESTORE_WEIGHTS, repo weights/, cache."""
    env_dirs = [Path(p).expanduser() for p in os.environ.get(ENV_DIRS, "").split(os.pathsep) if p.strip()]
    candidates = [*env_dirs, repo_weights_dir(), user_cache_dir()]
    unique: list[Path] = []
    for folder in candidates:
        if folder is not None and folder not in unique:
            unique.append(folder)
    return unique


def locate(spec: WeightSpec) -> Path | None:
    """The first file named like the checkpoint in search_dirs(), or None."""
    for folder in search_dirs():
        candidate = folder / spec.filename
        if candidate.is_file():
            return candidate
    return None


def is_offline(offline: bool | None = None) -> bool:
    """Whether downloads are off: the argument when given, else `VIDRESTORE_OFFLINE`."""
    if offline is not None:
        return offline
    return os.environ.get(ENV_OFFLINE, "").strip().casefold() in {"1", "true", "yes", "on"}


def _plural(specs: Sequence[WeightSpec], one: str, many: str) -> str:
    """`one` for a single file, `many` for several (the messages name one or all missing files)."""
    return one if len(specs) == 1 else many


def _supply_hint(specs: Sequence[WeightSpec]) -> str:
    """Where missing files can be put by hand: the folders searched, or a folder named by $VIDRESTORE_WEIGHTS."""
    folders = ", ".join(str(folder) for folder in search_dirs())
    return (f"looked in: {folders}. Put {_plural(specs, 'the file', 'the files')} into one of these folders "
            f"(or set {ENV_DIRS} to {_plural(specs, 'its', 'their')} folder)")


def _offline_message(specs: Sequence[WeightSpec]) -> str:
    """One line that says which files are missing, where they were looked for and what to do."""
    names = ", ".join(f"{spec.filename} ({spec.name})" for spec in specs)
    urls = ", ".join(spec.url for spec in specs)
    return (f"{names} not found and downloads are off (--offline or {ENV_OFFLINE}=1); {_supply_hint(specs)}; "
            f"{_plural(specs, 'it is', 'they are')} published at {urls}")


def _download_failed_message(failures: Sequence[tuple[WeightSpec, WeightsError]]) -> str:
    """One line naming every file whose download failed and why, and how to run without downloading."""
    reasons = "; ".join(str(exc) for _, exc in failures)
    specs = [spec for spec, _ in failures]
    return f"{reasons}; {_supply_hint(specs)}, then run with --offline (or {ENV_OFFLINE}=1) to skip downloading"


def _check_found_size(path: Path, spec: WeightSpec) -> Path:
    """The found file, unless its size shows it is truncated or another file (a cheap check, no hashing)."""
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        raise WeightsError(
            f"{path} is {size} bytes, but {spec.name} is {spec.size} bytes: a truncated or different file; "
            f"remove or replace it"
        )
    return path


def _looks_like_path(text: str) -> bool:
    """Whether a string names a file location rather than a checkpoint name."""
    return os.sep in text or (os.altsep is not None and os.altsep in text) or text.startswith("~")


def _local_or_spec(name_or_path: str | os.PathLike, kind: str | None) -> Path | WeightSpec:
    """The existing file for a path or a known name, else the spec of the known checkpoint still to fetch."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    text = os.fspath(name_or_path)
    if _looks_like_path(text):
        raise WeightsError(f"{kind + ' ' if kind else ''}weights file {text} does not exist or is not a file")
    spec = spec_for(text, kind)
    found = locate(spec)
    return spec if found is None else _check_found_size(found, spec)


def _fetch_all(specs: Sequence[WeightSpec], offline: bool | None, dest: Path, progress: bool) -> dict[str, Path]:
    """Download every spec into dest, by name; one WeightsError naming all that downloads are off for or failed."""
    if specs and is_offline(offline):
        raise WeightsError(_offline_message(specs))
    fetched: dict[str, Path] = {}
    failures: list[tuple[WeightSpec, WeightsError]] = []
    for spec in specs:
        try:
            fetched[spec.name] = download(spec, dest, progress=progress)
        except WeightsError as exc:
            failures.append((spec, exc))
    if failures:
        raise WeightsError(_download_failed_message(failures)) from failures[0][1]
    return fetched


def find_all_weights(
    wanted: Sequence[tuple[str | os.PathLike, str | None]],
    *,
    offline: bool | None = None,
    download_dir: Path | None = None,
    progress: bool = True,
) -> list[Path]:
    """The local files for (name or path, kind or None) pairs, downloading known checkpoints that are missing.

    Every name is checked before anything is downloaded, and all files that cannot be had are named in one
    WeightsError, so a run never fails once per missing file.
    """
    found = [_local_or_spec(name, kind) for name, kind in wanted]
    missing = list(dict.fromkeys(item for item in found if isinstance(item, WeightSpec)))
    fetched = _fetch_all(missing, offline, download_dir or user_cache_dir(), progress)
    return [fetched[item.name] if isinstance(item, WeightSpec) else item for item in found]


def find_weights(
    name_or_path: str | os.PathLike,
    *,
    kind: str | None = None,
    offline: bool | None = None,
    download_dir: Path | None = None,
    progress: bool = True,
) -> Path:
    """The local file for a checkpoint path or name (of `kind` when given), downloading a known one when missing."""
    return find_all_weights([(name_or_path, kind)], offline=offline, download_dir=download_dir,
                            progress=progress)[0]


# --- verification --------------------------------------------------------------------------------


class VerifyStatus(str, enum.Enum):
    """The outcome of checking one file against its manifest entry."""

    OK = "ok"
    MISMATCH = "mismatch"
    UNVERIFIED = "unverified"
    MISSING = "missing"


@dataclass(frozen=True)
class VerifyResult:
    """What `verify` found for one file; `detail` is a short human-readable explanation."""

    status: VerifyStatus
    path: Path
    detail: str
    actual_sha256: str | None = None

    @property
    def usable(self) -> bool:
        """True when the file is present and nothing shows it is wrong (ok or unverified)."""
        return self.status in (VerifyStatus.OK, VerifyStatus.UNVERIFIED)


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in chunks so large checkpoints never sit in memory."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, spec: WeightSpec) -> VerifyResult:
    """Check a file against the manifest's size and sha256: ok, mismatch, unverified or missing."""
    path = Path(path)
    if not path.is_file():
        return VerifyResult(VerifyStatus.MISSING, path, f"{path} does not exist")
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        return VerifyResult(VerifyStatus.MISMATCH, path, f"size {size} bytes, expected {spec.size} bytes")
    actual = sha256_file(path)
    if spec.sha256 is None:
        return VerifyResult(VerifyStatus.UNVERIFIED, path, f"no known sha256 (file has {actual})", actual)
    if actual != spec.sha256:
        return VerifyResult(VerifyStatus.MISMATCH, path, f"sha256 {actual}, expected {spec.sha256}", actual)
    return VerifyResult(VerifyStatus.OK, path, "sha256 matches", actual)


# --- download ------------------------------------------------------------------------------------


class _TransferCut(Exception):
    """The server sent less than it announced, or resumed at the wrong place: worth another attempt."""


_RETRYABLE = (OSError, http.client.HTTPException, _TransferCut)


def _part_path(final: Path) -> Path:
    """The temporary name a download is written under until it is complete and verified."""
    return final.with_name(final.name + ".part")


def _part_size(part: Path) -> int:
    """How many bytes an earlier attempt left in the .part file (0 if none)."""
    return part.stat().st_size if part.is_file() else 0


def _discard_unusable_part(part: Path, spec: WeightSpec) -> None:
    """Remove a .part that is already larger than the checkpoint: resuming it can never succeed."""
    if spec.size is not None and _part_size(part) > spec.size:
        log.info("%s: discarding an oversized partial download", part)
        part.unlink()


def _request(url: str, offset: int) -> urllib.request.Request:
    """A GET request for `url`, asking for the bytes from `offset` on when resuming."""
    headers = {"User-Agent": f"vidrestore/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.Request(url, headers=headers)


def _resume_offset(response: http.client.HTTPResponse, offset: int, part: Path) -> int:
    """Where the response body starts in the file: `offset` for a matching 206, 0 for a full 200."""
    if not offset or response.status != 206:
        if offset:
            log.info("%s: the server does not resume downloads; starting again", part.name)
        return 0
    content_range = response.headers.get("Content-Range", "")
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", content_range.strip())
    if not match or int(match.group(1)) != offset:
        part.unlink(missing_ok=True)
        raise _TransferCut(f"server resumed at {content_range!r} instead of byte {offset}")
    log.info("%s: resuming at byte %d", part.name, offset)
    return offset


def _open_part(part: Path, append: bool) -> BinaryIO:
    """The .part file opened for appending (resume) or rewriting (fresh start)."""
    try:
        return part.open("ab" if append else "wb")
    except OSError as exc:
        raise WeightsError(f"cannot write {part}: {error_line(exc, os_reason=True)}") from exc


def _write_chunk(f: BinaryIO, chunk: bytes, part: Path) -> None:
    """Append one chunk; a local write error is final (not a network problem worth retrying)."""
    try:
        f.write(chunk)
    except OSError as exc:
        raise WeightsError(f"cannot write {part}: {error_line(exc, os_reason=True)}") from exc


def _expected_total(response: http.client.HTTPResponse, start: int, spec: WeightSpec) -> int | None:
    """The file size this response should complete the .part to, if the server or manifest says."""
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit():
        return start + int(length)
    return spec.size


def _stream_body(
    response: http.client.HTTPResponse, part: Path, start: int, spec: WeightSpec, progress: bool
) -> None:
    """Copy the response body into the .part file with a progress bar; a short body is a _TransferCut."""
    total = _expected_total(response, start, spec)
    written = start
    with _open_part(part, append=start > 0) as f, tqdm(
        total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=spec.filename,
        disable=not progress, leave=False,
    ) as bar:
        while chunk := response.read(CHUNK_BYTES):
            _write_chunk(f, chunk, part)
            written += len(chunk)
            bar.update(len(chunk))
        f.flush()
        os.fsync(f.fileno())
    if total is not None and written < total:
        raise _TransferCut(f"connection closed after {written} of {total} bytes")


def _fetch_once(url: str, part: Path, spec: WeightSpec, timeout: float, progress: bool) -> bool:
    """One HTTP attempt that completes the .part file; returns whether it appended to earlier bytes."""
    offset = _part_size(part)
    if offset and offset == spec.size:
        return True  # an earlier attempt got every byte; only the check is left
    try:
        response = urllib.request.urlopen(_request(url, offset), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416:  # the .part does not fit the file on the server: start over
            part.unlink(missing_ok=True)
            raise _TransferCut("the server refused to resume") from exc
        if exc.code < 500 and exc.code not in (408, 429):
            reason = f"HTTP {exc.code} {exc.reason}"
            raise WeightsError(f"cannot download {spec.filename} from {url}: {reason}") from exc
        raise
    except ValueError as exc:  # urllib's answer to a malformed URL
        raise WeightsError(f"cannot download {spec.filename}: invalid URL {url!r}") from exc
    with response:
        start = _resume_offset(response, offset, part)
        _stream_body(response, part, start, spec, progress)
    return start > 0


def _describe(exc: BaseException) -> str:
    """A short reason for a failed attempt ('Name or service not known', not '<urlopen error ...>')."""
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        reason = exc.reason
        return error_line(reason, os_reason=True) if isinstance(reason, BaseException) else str(reason)
    return error_line(exc)


def _backoff_seconds(attempt: int) -> float:
    """How long to wait before retry number `attempt` (1, 2, ...): doubling, capped."""
    return min(RETRY_BACKOFF_S * 2 ** (attempt - 1), RETRY_BACKOFF_MAX_S)


def _fetch_with_retries(
    url: str, part: Path, spec: WeightSpec, *, timeout: float, retries: int, progress: bool
) -> bool:
    """Complete the .part file, retrying cut or failed connections; returns whether bytes were resumed."""
    last_error: Exception | None = None
    reason = "no attempt made"
    for attempt in range(max(retries, 0) + 1):
        if attempt:
            time.sleep(_backoff_seconds(attempt))
        try:
            return _fetch_once(url, part, spec, timeout, progress)
        except _RETRYABLE as exc:
            last_error = exc
            reason = _describe(exc)
            log.warning("%s: attempt %d of %d failed: %s", spec.filename, attempt + 1, retries + 1, reason)
    kept = f"; the partial file {part} is kept and the next run resumes it" if part.is_file() else ""
    raise WeightsError(
        f"cannot download {spec.filename} from {url} after {retries + 1} attempts: {reason}{kept}"
    ) from last_error


def _make_dir(folder: Path) -> None:
    """Create the download folder, turning a permission problem into a clear WeightsError."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsError(f"cannot create the weights folder {folder}: {error_line(exc, os_reason=True)}") from exc


def download(
    spec: WeightSpec,
    dest_dir: Path,
    *,
    progress: bool = True,
    timeout: float = 30,
    retries: int = 3,
) -> Path:
    """Download a checkpoint into dest_dir, verify it and only then move it under its final name."""
    dest_dir = Path(dest_dir)
    _make_dir(dest_dir)
    final = dest_dir / spec.filename
    part = _part_path(final)
    url = source_url(spec)
    log.info("downloading %s from %s to %s", spec.filename, url, dest_dir)
    _discard_unusable_part(part, spec)
    resumed = _fetch_with_retries(url, part, spec, timeout=timeout, retries=retries, progress=progress)
    result = verify(part, spec)
    if result.status is VerifyStatus.MISMATCH and resumed:
        log.warning("%s: resumed download failed its check (%s); restarting", spec.filename, result.detail)
        part.unlink()
        _fetch_with_retries(url, part, spec, timeout=timeout, retries=retries, progress=progress)
        result = verify(part, spec)
    if result.status is VerifyStatus.MISMATCH:
        part.unlink(missing_ok=True)
        raise WeightsError(f"downloaded {spec.filename} from {url} is not the expected file: {result.detail}")
    if result.status is VerifyStatus.UNVERIFIED:
        log.warning("%s: downloaded but unverified: the manifest has no sha256 for it", spec.filename)
    os.replace(part, final)
    log.info("%s: saved to %s", spec.filename, final)
    return final


# --- command line --------------------------------------------------------------------------------


def _specs_named(names: Iterable[str]) -> list[WeightSpec]:
    """The specs for the names given on the command line, or every known one when none is given."""
    names = list(names or [])
    return [spec_for(name) for name in names] if names else list(known().values())


def _human_size(size: int | None) -> str:
    """A byte count as MiB for the table, '?' when unknown."""
    return "?" if size is None else f"{size / 2**20:.1f} MiB"


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Write rows as aligned columns to stdout (the CLI's only direct output)."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def cli_list(args: argparse.Namespace) -> int:
    """`vidrestore weights list`: every known checkpoint and where it is found."""
    rows = []
    for spec in known().values():
        found = locate(spec)
        where = str(found) if found else "missing"
        rows.append((spec.name, spec.kind, spec.filename, _human_size(spec.size), where))
    _print_table(("name", "kind", "file", "size", "where"), rows)
    return 0


def _already_present(spec: WeightSpec, dest: Path | None) -> Path | None:
    """A good copy that makes a download unnecessary: in dest when given, else anywhere in search_dirs()."""
    existing = dest / spec.filename if dest is not None else locate(spec)
    if existing is None or not existing.is_file():
        return None
    result = verify(existing, spec)
    if result.usable:
        return existing
    log.warning("%s at %s fails its check (%s); downloading a fresh copy", spec.name, existing, result.detail)
    return None


def cli_download(args: argparse.Namespace) -> int:
    """`vidrestore weights download [NAMES] [--dir DIR]`: fetch the named (or all) checkpoints."""
    dest = Path(args.dir).expanduser() if getattr(args, "dir", None) else None
    progress = not getattr(args, "quiet", False)
    needed = []
    for spec in _specs_named(args.names):
        present = _already_present(spec, dest)
        if present is not None:
            log.info("%s: already present at %s", spec.name, present)
        else:
            needed.append(spec)
    _fetch_all(needed, None, dest or user_cache_dir(), progress)
    return 0


def _verify_row(spec: WeightSpec, path: Path) -> tuple[VerifyResult, tuple[str, ...]]:
    """Verify one checkpoint file and the table row describing the result."""
    result = verify(path, spec)
    if result.status is VerifyStatus.UNVERIFIED:
        log.warning("%s: unverified, the manifest has no sha256 for it", spec.filename)
    elif result.status is VerifyStatus.MISMATCH:
        log.error("%s at %s: %s", spec.filename, path, result.detail)
    return result, (spec.name, spec.filename, result.status.value, str(path))


def cli_verify(args: argparse.Namespace) -> int:
    """`vidrestore weights verify [NAMES]`: check present files; 1 on a mismatch or a named missing one."""
    explicit = bool(getattr(args, "names", None))
    rows, failed = [], False
    for spec in _specs_named(getattr(args, "names", None)):
        path = locate(spec)
        if path is None:
            if explicit:
                rows.append((spec.name, spec.filename, VerifyStatus.MISSING.value, "-"))
                failed = True
            continue
        result, row = _verify_row(spec, path)
        rows.append(row)
        failed = failed or not result.usable
    if rows:
        _print_table(("name", "file", "status", "path"), rows)
    else:
        log.info("no known checkpoint is present in %s", ", ".join(map(str, search_dirs())))
    return 1 if failed else 0
