"""The add-on's plain-Python half: the command line, the background run, and where the music goes.

Nothing here imports ``bpy`` (nor scoretrack, nor torch): it runs the ``scoretrack`` command as a
subprocess, reads its progress lines and its ``--json`` rows, reads the ``.otio`` timeline it wrote
with :mod:`json`, and turns the timeline's seconds into the frames of a Blender scene where the movie
strip sits. ``__init__.py`` does the Blender half with these.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

PROGRESS = re.compile(r"generating (\d+)%")
MUSIC_TRACK = re.compile(r"^Music take (\d+)\b")
ORIGINAL_TRACK = "Original sound"  # the timelines' track of the input's own sound
ERROR_PREFIXES = ("scoretrack: error: ", "scoretrack: internal error: ")
INTERRUPTED = (130, 143, 129, -signal.SIGINT, -signal.SIGTERM)  # Ctrl-C, SIGTERM, SIGHUP (as exit codes)
MONO_MAKEUP_DB = 10 * math.log10(2)  # Blender mixes a mono strip into stereo 3.01 dB low
KEY_LEAD_FRAMES = 1  # Blender reaches a volume key's value about one frame after the key


def command_line(command: str, movie: str | os.PathLike, *, model: str, style: str, takes: int, seed: int,
                 extra: str = "") -> list[str]:
    """The argument list that scores ``movie`` with dry stems and an ``.otio`` timeline.

    Parameters
    ----------
    command : str
        How to run scoretrack, split like a shell would (``scoretrack``, ``/venv/bin/python -m scoretrack.cli``).
    movie : path
        The movie strip's file.
    model, style : str
        ``--model`` and ``--style``, passed as given (scoretrack checks them).
    takes, seed : int
        ``--takes`` and ``--seed``.
    extra : str
        Further options, split like a shell would (``--window 10 --stride 6``).

    Raises
    ------
    ValueError
        ``command`` is empty or either text cannot be split (an open quote).
    """
    base = shlex.split(command)
    if not base:
        raise ValueError("the scoretrack command is empty: set it in the add-on's preferences (e.g. scoretrack)")
    return [*base, str(movie), "--model", model, "--style", style, "--takes", str(takes), "--seed", str(seed),
            "--stems", "--timeline", "otio", "--json", *shlex.split(extra)]


def progress_percent(line: str) -> int | None:
    """The percentage in a ``scoretrack: generating 40% (...)`` line, else None."""
    found = PROGRESS.search(line)
    return int(found.group(1)) if found else None


class Run:
    """scoretrack running in the background: its stderr lines as they come, its stdout at the end.

    Two reader threads drain the pipes, so the caller polls without blocking (a modal operator's
    timer) or waits (a script). :meth:`cancel` sends SIGINT, on which scoretrack removes what it was
    writing and exits with 130.

    Raises
    ------
    OSError
        The command cannot be started (not found, not executable).
    """

    def __init__(self, argv: list[str]):
        self.argv = list(argv)
        self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace")
        self.lines: list[str] = []  # stderr, one entry per line, as it arrives
        self._stdout: list[str] = []
        self.cancelled = False
        self._readers = [threading.Thread(target=self._drain, args=(self.process.stderr, self.lines), daemon=True),
                         threading.Thread(target=self._drain, args=(self.process.stdout, self._stdout), daemon=True)]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _drain(pipe, into: list[str]) -> None:
        for line in pipe:
            into.append(line.rstrip("\n"))
        pipe.close()

    @property
    def status(self) -> str:
        """The latest ``scoretrack: ...`` line (loading, generating N%), for a status bar."""
        for line in reversed(self.lines):
            if line.startswith("scoretrack: ") and not line.startswith(ERROR_PREFIXES):
                return line
        return "scoretrack: starting..."

    @property
    def percent(self) -> int:
        """How much of the generation is done, from the latest progress line (0 before the first)."""
        found = (progress_percent(line) for line in reversed(self.lines))
        return next((percent for percent in found if percent is not None), 0)

    def poll(self) -> int | None:
        """The exit code once the run has ended and its output is read, else None."""
        if self.process.poll() is None:
            return None
        return self.wait()

    def wait(self) -> int:
        """Wait for the end of the run (and of its output); its exit code."""
        code = self.process.wait()
        for reader in self._readers:
            reader.join()
        return code

    def cancel(self) -> None:
        """Stop the run as Ctrl-C does (SIGINT; on Windows, terminate): it leaves nothing half made."""
        if self.process.poll() is None:
            self.cancelled = True
            if os.name == "posix":
                self.process.send_signal(signal.SIGINT)
            else:
                self.process.terminate()

    def rows(self) -> list[dict]:
        """The ``--json`` rows the run printed (none when it printed no JSON)."""
        try:
            rows = json.loads("\n".join(self._stdout))
        except ValueError:
            return []
        return rows if isinstance(rows, list) else []

    def error(self, code: int) -> str:
        """The one-line message of a run that exited with ``code``: scoretrack's own error line if any."""
        for line in reversed(self.lines):
            if line.startswith(ERROR_PREFIXES):
                return line
        failed = [row["error"] for row in self.rows() if row.get("error")]
        if failed:
            return f"scoretrack: error: {failed[0]}"
        last = next((line for line in reversed(self.lines) if line.strip()), "")
        return f"scoretrack exited with code {code}" + (f": {last}" if last else "")


@dataclass(frozen=True)
class TakeMusic:
    """One take's dry music, as the timeline places it."""

    number: int  # 1, 2, ...
    path: Path
    enabled: bool  # take 1 plays; the others are disabled (muted) tracks
    gain_db: float  # constant gain the timeline carries on the clip or track (0 when none)


@dataclass(frozen=True)
class Score:
    """What the add-on places, read from scoretrack's ``.otio`` timeline, in seconds from the source's start."""

    takes: tuple[TakeMusic, ...]
    keys: tuple[tuple[float, float], ...]  # (time in s, gain in dB) of the ducking, time increasing
    markers: tuple[tuple[float, str], ...]  # (time in s, label): "seam", "cut", "style: TEXT"
    original_plays: bool = True  # False under --mix replace or music: the delivered file holds no original sound


def _seconds(rational: dict) -> float:
    return float(rational["value"]) / float(rational["rate"])


def _file_path(url: str) -> Path:
    return Path(url2pathname(unquote(urlparse(url).path)))


def _gain_db(*items: dict) -> float:
    return sum(float(item.get("metadata", {}).get("scoretrack", {}).get("gain_db", 0.0)) for item in items)


def read_score(otio_path: str | os.PathLike) -> Score:
    """The takes, the ducking keys and the markers of a ``NAME.scored.otio`` file.

    Takes are the audio tracks named ``Music take N``; each clip's volume keys are in its ``volume``
    effect's ``metadata["scoretrack"]["keyframes"]`` (``time_s``, ``gain_db``); a ``gain_db`` in a
    track's or clip's ``metadata["scoretrack"]`` is added as a constant gain. A disabled ``Original
    sound`` track means the delivered file holds none of it (``--mix replace`` or ``music``).

    Raises
    ------
    ValueError
        The file is not such a timeline (not OTIO JSON, no music track, no keys).
    OSError
        The file cannot be read.
    """
    document = json.loads(Path(otio_path).read_text(encoding="utf-8"))
    try:
        score = _score(document["tracks"])
    except (KeyError, TypeError, IndexError, AttributeError) as error:
        raise ValueError(f"{otio_path}: is not scoretrack's .otio timeline (no {error} where expected)") from error
    if not score.takes or not score.keys:
        raise ValueError(f"{otio_path}: holds no music track with volume keys (is it scoretrack's .otio timeline?)")
    return score


def _score(stack: dict) -> Score:
    takes, keys, original_plays = [], (), True
    for track in stack["children"]:
        if track.get("name") == ORIGINAL_TRACK and track.get("kind") == "Audio":
            original_plays = bool(track.get("enabled", True))
        found = MUSIC_TRACK.match(track.get("name", ""))
        if not found or not track.get("children"):
            continue
        clip = track["children"][0]
        reference = clip.get("media_references", {}).get(clip.get("active_media_reference_key", "DEFAULT_MEDIA"))
        reference = reference or clip["media_reference"]
        takes.append(TakeMusic(int(found.group(1)), _file_path(reference["target_url"]),
                               bool(track.get("enabled", True)), _gain_db(track, clip)))
        for effect in clip.get("effects", []):
            frames = effect.get("metadata", {}).get("scoretrack", {}).get("keyframes")
            if not keys and frames:
                keys = tuple((float(key["time_s"]), float(key["gain_db"])) for key in frames)
    markers = tuple(sorted((_seconds(marker["marked_range"]["start_time"]), marker["name"])
                           for marker in stack.get("markers", [])))
    return Score(tuple(sorted(takes, key=lambda take: take.number)), keys, markers, original_plays)


@dataclass(frozen=True)
class Placement:
    """Where a movie strip shows its source, in scene frames: source time t is at ``origin + t * fps``.

    Built from the strip's ``frame_start`` (where its first frame would sit untrimmed) less
    ``animation_offset_start`` (frames cut off its file's start); ``first`` and ``end`` are its
    visible range (``frame_final_start``, ``frame_final_end``, end exclusive).
    """

    origin: float  # scene frame of source time 0
    fps: float  # scene frames per second (the movie's rate)
    first: int
    end: int

    def __post_init__(self):
        if not (self.fps > 0 and self.end > self.first):
            raise ValueError(f"a strip from frame {self.first} to {self.end} at {self.fps} fps shows nothing")

    def frame(self, time_s: float) -> float:
        """The scene frame that shows source time ``time_s``."""
        return self.origin + time_s * self.fps

    def volume_keys(self, keys, *, gain_db: float = 0.0, mono: bool = False) -> list[tuple[float, float]]:
        """Blender volume keys ``(scene frame, linear volume)`` that play ``keys`` (seconds, dB) on time.

        Each key moves :data:`KEY_LEAD_FRAMES` early, since Blender reaches a key's value that much late;
        ``gain_db`` is added to every key, and for a mono strip :data:`MONO_MAKEUP_DB` as well, since
        Blender mixes mono into stereo that much low.
        """
        offset_db = gain_db + (MONO_MAKEUP_DB if mono else 0.0)
        return [(self.frame(time_s) - KEY_LEAD_FRAMES, 10 ** ((key_db + offset_db) / 20)) for time_s, key_db in keys]

    def markers(self, markers) -> list[tuple[int, str]]:
        """Scene markers ``(frame, label)`` of those ``markers`` (seconds, label) the strip shows."""
        placed = [(round(self.frame(time_s)), label) for time_s, label in markers]
        return [(frame, label) for frame, label in placed if self.first <= frame < self.end]
