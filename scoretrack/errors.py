"""The exceptions scoretrack raises: one root, a few children, each message one line."""


class ScoretrackError(Exception):
    """Root of every error scoretrack raises on purpose; the CLI prints its message as one line."""


class BadParameterError(ScoretrackError, ValueError):
    """A setting is out of range or inconsistent (the message repeats the bad value).

    Raised for one option field (``BadParameterError.of("depth_db", 5.0, "must be ...")``), it keeps
    the field, the value and the rule, so that the command line and the manifest reader can name the
    option as the user typed it (:meth:`named`). A rule may name other fields in braces
    (``"must be below {window_s}"``), which :meth:`named` renames too.
    """

    def __init__(self, message: str, *, field: str | None = None, value=None, rule: str = ""):
        super().__init__(message)
        self.field, self.value, self.rule = field, value, rule

    @classmethod
    def of(cls, field: str, value, rule: str) -> "BadParameterError":
        """The error for ``field=value``, worded in the API's names: ``depth_db=5.0 must be ...``."""
        return cls(f"{field}={value!r} {rule.format_map(_Names({}))}", field=field, value=value, rule=rule)

    def named(self, names: dict[str, str]) -> "BadParameterError":
        """This error worded with ``names`` (field -> option as typed, e.g. ``depth_db`` -> ``--duck-depth``):
        ``--duck-depth 5 must be ...``. An error for no field, or a field not in ``names``, stays as it is."""
        if self.field is None or self.field not in names:
            return self
        value = f"{self.value:g}" if isinstance(self.value, float) else repr(self.value) if isinstance(self.value, str) \
            else str(self.value)
        return BadParameterError(f"{names[self.field]} {value} {self.rule.format_map(_Names(names))}",
                                 field=self.field, value=self.value, rule=self.rule)


class _Names(dict):
    """Field names in a rule's braces, each replaced by its option name (or kept)."""

    def __missing__(self, key: str) -> str:
        return key


class UnreadableMediaError(ScoretrackError):
    """An input file is missing, empty, not media, truncated, or lacks the stream it needs."""


class OutputExistsError(ScoretrackError, FileExistsError):
    """The output file exists and overwriting was not asked for."""


class ModelUnavailableError(ScoretrackError):
    """The model cannot be loaded (weights not cached and the hub unreachable, or a bad folder)."""


class DeviceMemoryError(ScoretrackError):
    """The model or one clip's generation does not fit in the device's memory (the message says what to change)."""
