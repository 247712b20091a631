"""The exceptions scoretrack raises: one root, a few children, each message one line."""


class ScoretrackError(Exception):
    """Root of every error scoretrack raises on purpose; the CLI prints its message as one line."""


class BadParameterError(ScoretrackError, ValueError):
    """A setting is out of range or inconsistent (the message repeats the bad value)."""


class UnreadableMediaError(ScoretrackError):
    """An input file is missing, empty, not media, truncated, or lacks the stream it needs."""


class OutputExistsError(ScoretrackError, FileExistsError):
    """The output file exists and overwriting was not asked for."""


class ModelUnavailableError(ScoretrackError):
    """The model cannot be loaded (weights not cached and the hub unreachable, or a bad folder)."""


class DeviceMemoryError(ScoretrackError):
    """The model or one clip's generation does not fit in the device's memory (the message says what to change)."""
