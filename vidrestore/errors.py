"""The exceptions users see (a clear, single-line message, no traceback) and `error_line`, which makes that line."""


class VidrestoreError(Exception):
    """An error the user can act on (bad input, missing weights, unsupported option).

    The command line prints its message on one line and exits non-zero; the Python API raises it.
    """


class CheckpointError(VidrestoreError):
    """A checkpoint file that cannot be loaded: missing, truncated, unsafe or of another architecture."""


class WeightsError(VidrestoreError):
    """A weights file that cannot be found, downloaded or verified."""


class MediaError(VidrestoreError):
    """An input or output media file that cannot be opened, decoded or written."""


class JobCancelled(VidrestoreError):
    """A job stopped on request (a cancel event, a client going away) before it finished."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill PID`, `timeout`, a service manager) received: it unwinds exactly as Ctrl-C does.

    Being a KeyboardInterrupt, every place that cleans up after Ctrl-C (temporary files, threads,
    sinks) does the same for it; the command line then exits with 143 (128 + SIGTERM).
    """


def error_line(exc: BaseException, max_chars: int | None = None, *, os_reason: bool = False) -> str:
    """An exception in one line for a message: the first line of its text, else its type's name.

    Unpicklers, YAML and FFmpeg write several lines; a user sees one. `os_reason` prefers an
    OSError's own reason ('No such file or directory') to a text that repeats the file name.
    """
    text = ((getattr(exc, "strerror", None) if os_reason else None) or str(exc)).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:max_chars] if max_chars else line
