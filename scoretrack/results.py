"""What scoring a clip produced: one typed result per clip, in input order."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

STATUSES = ("ok", "skipped", "failed", "not started", "interrupted")


@dataclass
class TakeResult:
    """One take of a scored clip: its seed and the files that hold it."""

    number: int
    seed: int
    output: Path
    side: dict[str, Path] = field(default_factory=dict)
    status: str = "ok"  # ok (its output made by this run), skipped (already there) or not started (a stop came first)
    loudness_lufs: float | None = None  # of the take's output (from its sidecar when skipped)
    true_peak_dbtp: float | None = None
    loudness_gain_db: float | None = None  # what the take's mix adds to the original plus its ducked stem (dB)

    def to_json(self) -> dict:
        return {"number": self.number, "seed": self.seed, "output": str(self.output), "status": self.status,
                "loudness_lufs": self.loudness_lufs, "true_peak_dbtp": self.true_peak_dbtp,
                "loudness_gain_db": self.loudness_gain_db,
                "side": {name: str(path) for name, path in self.side.items()}}


@dataclass
class ScoreResult:
    """What scoring one clip produced (or why it did not)."""

    input: Path
    output: Path | None
    # ok, skipped (already done), failed, not started (the run stopped first) or interrupted (the run stopped
    # while writing its takes: ``takes`` says which are complete)
    status: str
    index: int = 0  # position in the job list
    error: str | None = None  # one-line message of a failed clip
    error_type: str | None = None  # the exception's class name, e.g. UnreadableMediaError
    exception: BaseException | None = field(default=None, repr=False, compare=False)  # the exception itself
    duration_s: float | None = None
    windows: int | None = None
    seed: int | None = None
    model: str | None = None
    melody: str | None = None  # the melody source used: video, harmonic, file or none (text only)
    loudness_lufs: float | None = None
    # the one gain (dB) from the original plus the ducked stem (and every timeline) to the output's loudness
    loudness_gain_db: float | None = None
    true_peak_dbtp: float | None = None
    seams_s: list[float] = field(default_factory=list)  # centres of the window crossfades
    cuts_s: list[float] = field(default_factory=list)  # picture cuts found (with follow_cuts)
    styles: list[str] = field(default_factory=list)  # the style text of each window
    side: dict[str, Path] = field(default_factory=dict)  # side files: music, music-dry, plot, each timeline kind
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    worker: str | None = None  # where it was scored (host:pid, or the Ray actor)
    queued_s: float | None = None  # time between planning and the start of its work
    notes: list[str] = field(default_factory=list)  # what the output could not keep of the input or reach, one line each
    # every take asked for, then the others its timelines hold; output, side and figures are the first's
    takes: list[TakeResult] = field(default_factory=list)

    @property
    def stems(self) -> Path | None:
        """The ducked music stem, when stems were written."""
        return self.side.get("music")

    @property
    def plot(self) -> Path | None:
        return self.side.get("plot")

    @classmethod
    def failure(cls, index: int, path, error: BaseException, **facts) -> "ScoreResult":
        """A failed clip that keeps its exception's type and message."""
        message = str(error) or type(error).__name__
        return cls(input=Path(path), output=None, status="failed", index=index, error=message,
                   error_type=type(error).__name__, exception=error, **facts)

    def to_json(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "exception"}
        data["input"] = str(self.input)
        data["output"] = None if self.output is None else str(self.output)
        data["side"] = {name: str(path) for name, path in self.side.items()}
        data["takes"] = [take.to_json() for take in self.takes]
        return data
