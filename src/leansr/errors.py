"""One exception type for bad input, so the CLI can print one sentence instead of a traceback."""


class LeansrError(Exception):
    """A user-facing error: the message is one clear sentence."""


class CheckpointError(LeansrError):
    """A checkpoint that cannot be read, trusted or recognised."""


class ImageError(LeansrError):
    """An image file that cannot be read or written."""


class OutputError(LeansrError):
    """An output that cannot be written (missing folder, read-only, disk full): exit code 1, not 2."""
