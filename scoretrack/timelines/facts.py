"""The facts of a scored clip's timeline, gathered once for every format's writer.

:func:`build_timeline` gathers them as a small frozen :class:`Timeline` in whole frames: its rate and
length, the picture (or none, for a voice-over), the original sound, the music takes, the volume keys
and the markers. The rates a timeline may run at, the volume keys fitted to the ducking envelope and
timecodes live here too; the writers (``kdenlive``, ``fcpxml``, ``fcp7``, ``otio``) read only the facts.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import BadParameterError, UnreadableMediaError
from ..media import MediaInfo, check_input_file, open_input

AUDIO_ONLY_RATE = Fraction(25)  # frames per second of a timeline without a picture, unless one is chosen
CHECK_STEP_S = 0.01  # the envelope is checked (and, without a frame rate, keyed) every 10 ms
FLOOR_DB = -96.0  # quieter gains are keyed at -96 dB: silence in every editor
NTSC_BASES = (24, 30, 60)  # the NTSC rates (base x 1000/1001) a timeline may run at; every other rate is whole
MAX_RATE = 240
TIMECODE = re.compile(r"^(\d+):(\d\d):(\d\d)([:;.])(\d+)$")


@dataclass(frozen=True)
class Picture:
    """The video's picture, on the picture track from timeline frame 0."""

    width: int  # display size in pixels (a 90 or 270 degree rotation swaps the coded size)
    height: int
    start_frame: int  # the file's start timecode in frames at the timeline rate (0 without one)
    drop_frame: bool  # that timecode counts drop-frame (29.97 and 59.94 only)


@dataclass(frozen=True)
class Sound:
    """The original sound of the source file (its first audio stream)."""

    channels: int
    sample_rate: int  # Hz
    layout: str  # ffmpeg layout name, e.g. "stereo"


@dataclass(frozen=True)
class Take:
    """One dry music stem: take 1 plays, the others wait on their own muted tracks."""

    number: int  # 1, 2, ... as the user sees it
    path: Path  # absolute
    channels: int  # 1 (mono) or 2 (stereo)
    sample_rate: int  # Hz
    samples: int  # length, in samples
    bits: int  # sample size, 16, 24, 32 or 64 (float)


@dataclass(frozen=True)
class Marker:
    """A timeline marker: a window seam, a picture cut or a style change."""

    frame: int
    label: str  # "seam", "cut" or "style: TEXT"

    @property
    def kind(self) -> str:
        return self.label.split(":", 1)[0]


@dataclass(frozen=True)
class Timeline:
    """Everything a timeline file says, in whole frames at ``rate``; every writer reads only this.

    Tracks, top to bottom: the picture (none for an audio-only source), the original sound (none for a
    silent video; muted when ``sound_muted``), and one music track per take, take 1 playing and the others
    muted. Every clip runs from frame 0 for ``frames`` frames at 0 dB; the music's volume follows ``volume``
    on every take. Played, the timeline is the delivered mix without its loudness gain: the original at
    0 dB plus take 1's dry stem (already at its level against the original) under the ducking keys.
    """

    name: str
    source: Path  # the original file, absolute: the picture and the sound both come from it
    rate: Fraction  # frames per second: a whole number, or 24000/1001, 30000/1001, 60000/1001
    frames: int  # length, >= 1
    picture: Picture | None
    sound: Sound | None
    takes: tuple[Take, ...]  # >= 1, numbers unique, all as long as each other
    volume: tuple[tuple[int, float], ...]  # (frame, gain in dB) keys, frames increasing from 0 to ``frames``
    markers: tuple[Marker, ...]  # frames within [0, frames], in time order
    sound_muted: bool = False  # the original sound waits muted: the delivered mix does not hold it (--mix replace, music)

    def __post_init__(self):
        if not (self.frames >= 1 and self.rate > 0):
            raise BadParameterError(f"a timeline of {self.frames} frames at {self.rate} fps holds nothing")
        if self.picture is None and self.sound is None:
            raise BadParameterError(f"{self.source}: has neither picture nor sound to put on a timeline")
        if not self.takes or len({take.number for take in self.takes}) != len(self.takes):
            raise BadParameterError(f"takes {[take.number for take in self.takes]} must be one or more distinct numbers")
        if len({take.samples for take in self.takes}) != 1:
            raise BadParameterError(f"music takes differ in length: {[take.samples for take in self.takes]} samples")
        frames = [frame for frame, _ in self.volume]
        if not frames or frames[0] != 0 or frames[-1] != self.frames or frames != sorted(set(frames)):
            raise BadParameterError(f"volume keys at frames {frames[:3]}...{frames[-1:]} must rise from 0 "
                                    f"to {self.frames}")
        if any(not 0 <= marker.frame <= self.frames for marker in self.markers):
            raise BadParameterError(f"markers at frames {[m.frame for m in self.markers]} must lie "
                                    f"in [0, {self.frames}]")

    @property
    def duration_s(self) -> float:
        return float(self.frames / self.rate)

    @property
    def volume_s(self) -> list[tuple[float, float]]:
        """The volume keys as (time in seconds, gain in dB)."""
        return [(float(frame / self.rate), gain_db) for frame, gain_db in self.volume]


def timeline_rate(frame_rate: float) -> Fraction:
    """The editing rate for a video's average frame rate.

    The nearest of the whole rates and the NTSC rates 24000/1001, 30000/1001 and 60000/1001: FCP 7 XML
    can express no other (a ``timebase`` integer and an ``ntsc`` flag), and Kdenlive and OpenTimelineIO
    take the same. A variable-rate video (10.505 fps on average) gets the nearest whole rate (11).

    Raises
    ------
    BadParameterError
        ``frame_rate`` is not a positive finite number.
    """
    if not (math.isfinite(frame_rate) and frame_rate > 0):
        raise BadParameterError(f"frame_rate={frame_rate} must be a positive number of frames per second")
    candidates = [Fraction(max(1, round(frame_rate)))]
    candidates += [Fraction(base * 1000, 1001) for base in NTSC_BASES]
    return min(candidates, key=lambda rate: abs(float(rate) - frame_rate))


def check_rate(rate: str | float | Fraction) -> Fraction:
    """A timeline rate chosen by the user ("25", "23.976", "30000/1001") as the exact rate it names.

    Raises
    ------
    BadParameterError
        Not a whole number of frames per second from 1 to 240, nor an NTSC rate (23.976, 29.97, 59.94).
    """
    try:
        value = Fraction(str(rate).strip())
    except (ValueError, ZeroDivisionError):
        value = None
    nearest = timeline_rate(float(value)) if value is not None and 0 < value <= MAX_RATE else None
    if nearest is None or abs(float(nearest - value)) > 0.002:
        raise BadParameterError(f"timeline rate {rate!r} must be a whole number of frames per second (1 to "
                                f"{MAX_RATE}) or an NTSC rate (23.976, 29.97, 59.94)")
    return nearest


def frame_count(duration_s: float, rate: Fraction) -> int:
    """Whole frames in ``duration_s`` at ``rate``: the nearest, halves rounded up."""
    return int(math.floor(duration_s * rate + 0.5))


def source_rate(info: MediaInfo, *, audio_only_rate: str | float | Fraction = AUDIO_ONLY_RATE) -> Fraction:
    """The rate a clip's timelines run at: its picture's (:func:`timeline_rate`), or ``audio_only_rate``.

    Called by the plan, so a clip that no timeline can hold is refused before any model work.

    Raises
    ------
    BadParameterError
        The picture has no usable frame rate, the chosen rate is not one a timeline can hold, or the
        clip is shorter than one frame.
    """
    if info.is_video:
        if not (math.isfinite(info.video.frame_rate) and info.video.frame_rate > 0):
            raise BadParameterError(f"{info.path}: the picture has no frame rate ({info.video.frame_rate}); "
                                    "a timeline needs one")
        rate = timeline_rate(info.video.frame_rate)
    else:
        rate = check_rate(audio_only_rate)
    if frame_count(info.duration_s, rate) < 1:
        raise BadParameterError(f"{info.path}: {info.duration_s:.3f} s is shorter than one frame at {float(rate):g} fps; "
                                "it cannot be placed on a timeline")
    return rate


def envelope_keyframes(
    gain: np.ndarray, *, sample_rate: int, tolerance_db: float = 0.5, frame_rate: float | None = None
) -> list[tuple[float, float]]:
    """Keyframes, in dB, only where the ducking envelope bends.

    Editors draw straight lines between volume keyframes, in dB or in linear gain (the value FCP 7
    XML stores); which one each uses is not documented, so the keys keep *both* lines within
    ``tolerance_db`` of the envelope at every 10 ms. A greedy fit: from each key, the next is the
    farthest point that keeps every checked point before it inside the band. A flat envelope gives
    two keys.

    With ``frame_rate``, keys fall on whole frames of :func:`timeline_rate` (editors hold them there)
    and hold the values of :func:`frame_fit`: the lines through every frame that come closest to the
    envelope. No key on frames can follow a bend sharper than the frame grid (a corner of a 12 dB,
    100 ms attack at 24 fps): there, and only there, the lines miss the envelope by as much as those
    lines through every frame do, for about a frame. Everywhere else the tolerance holds.

    Parameters
    ----------
    gain : np.ndarray
        Linear gain per sample, shape ``(samples,)``, >= 0 (``mix.duck_envelope``'s result).
    sample_rate : int
        Rate of ``gain`` in Hz, > 0.
    tolerance_db : float
        Largest departure from the envelope, in dB, > 0.
    frame_rate : float, optional
        The video's frame rate; keys on its frames. None: keys on the 10 ms checking grid.

    Returns
    -------
    list of (time_s, gain_db)
        Increasing times from 0 to the envelope's last sample (with ``frame_rate``, its nearest frame);
        gains floored at -96 dB.

    Raises
    ------
    BadParameterError
        An empty, multi-dimensional, negative or non-finite ``gain``, or a bad rate or tolerance.
    """
    gain = np.asarray(gain)
    if gain.ndim != 1 or gain.size == 0:
        raise BadParameterError(f"gain of shape {gain.shape} must be one value per sample, shape (samples,)")
    if not np.all(np.isfinite(gain)) or np.any(gain < 0):
        raise BadParameterError("gain must be finite and >= 0 (a linear gain per sample)")
    if sample_rate <= 0:
        raise BadParameterError(f"sample_rate={sample_rate} must be a positive number of Hz")
    if not tolerance_db > 0:
        raise BadParameterError(f"tolerance_db={tolerance_db} must be > 0 dB")
    times, level_db = _checked_envelope(gain, sample_rate)
    if frame_rate is None:
        grid, reference = times, level_db
    else:
        rate = timeline_rate(frame_rate)
        grid = np.arange(frame_count(times[-1], rate) + 1) / float(rate)
        reference = frame_fit(times, level_db, grid)
    allowance = np.maximum(tolerance_db, _interpolation_error(times, level_db, grid, reference))
    keys = _greedy_keys(times, level_db, allowance, grid, reference)
    return [(float(grid[j]), float(reference[j])) for j in keys]


def frame_fit(times: np.ndarray, level_db: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Values at ``grid`` (frame times) whose straight lines come closest to the envelope (``level_db`` at
    ``times``, in dB), in least squares. At a bend between two frames they share the miss on both sides
    of it, where the envelope's own values at the frames would leave all of it at the bend."""
    from scipy.linalg import solve_banded

    if grid.size < 2:
        return np.interp(grid, times, level_db)
    # the envelope at its checked points and at every frame, so that each frame has points beside it
    points = np.concatenate([times, grid])
    values = np.concatenate([level_db, np.interp(grid, times, level_db)])
    index = np.clip(np.searchsorted(grid, points, side="right") - 1, 0, grid.size - 2)
    share = np.clip((points - grid[index]) / (grid[index + 1] - grid[index]), 0, 1)  # the next frame's weight
    bands = np.zeros((3, grid.size))  # the normal equations: diagonal, and the frames on either side
    np.add.at(bands[1], index, (1 - share) ** 2)
    np.add.at(bands[1], index + 1, share ** 2)
    np.add.at(bands[0], index + 1, share * (1 - share))
    np.add.at(bands[2], index, share * (1 - share))
    right = np.zeros(grid.size)
    np.add.at(right, index, (1 - share) * values)
    np.add.at(right, index + 1, share * values)
    return np.maximum(solve_banded((1, 1), bands, right), FLOOR_DB)


def _checked_envelope(gain: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Times (every 10 ms, plus the last sample) and the envelope there in dB, floored at -96 dB."""
    last = (gain.size - 1) / sample_rate
    times = np.arange(0.0, last, CHECK_STEP_S)
    times = np.append(times, last) if times.size == 0 or times[-1] < last else times
    values = gain[np.minimum(np.round(times * sample_rate).astype(np.int64), gain.size - 1)].astype(np.float64)
    return times, _to_db(values)


def _interpolation_error(times, level_db, grid, reference) -> np.ndarray:
    """At each checked point, how far straight lines through ``reference`` at ``grid`` stray, in dB and in gain."""
    in_db = np.interp(times, grid, reference)
    in_gain = _to_db(np.interp(times, grid, 10 ** (reference / 20)))
    return np.maximum(np.abs(in_db - level_db), np.abs(in_gain - level_db))


def _to_db(gain):
    return np.maximum(20 * np.log10(np.maximum(gain, 1e-12)), FLOOR_DB)


def _greedy_keys(times, level_db, allowance, grid, reference) -> list[int]:
    """Indices into ``grid`` of the keys: from each key, the farthest grid point whose straight line
    (in dB and in gain) keeps every checked point within its allowance.

    Keys lie on ``reference``, which meets every allowance itself, so the next grid point is always
    reachable and the fit never fails."""
    lower, upper = level_db - allowance, level_db + allowance
    lower_gain, upper_gain = 10 ** (lower / 20), 10 ** (upper / 20)
    keys = [0]
    point = 1  # next checked point after the current key
    while keys[-1] < grid.size - 1:
        key = keys[-1]
        start_t, start_db = grid[key], reference[key]
        start_gain = 10 ** (start_db / 20)
        # slopes from the key that keep each checked point so far inside its band, in dB/s and gain/s
        slope_lo = gain_lo = -np.inf
        slope_hi = gain_hi = np.inf
        best, k = key + 1, point
        for j in range(key + 1, grid.size):
            while k < times.size and times[k] <= grid[j] + 1e-9:
                if times[k] > start_t + 1e-9:
                    span = times[k] - start_t
                    slope_lo = max(slope_lo, (lower[k] - start_db) / span)
                    slope_hi = min(slope_hi, (upper[k] - start_db) / span)
                    gain_lo = max(gain_lo, (lower_gain[k] - start_gain) / span)
                    gain_hi = min(gain_hi, (upper_gain[k] - start_gain) / span)
                k += 1
            if slope_lo > slope_hi + 1e-12 or gain_lo > gain_hi + 1e-12:
                break  # the band has closed: no later grid point can be reached either
            span = grid[j] - start_t
            slope = (reference[j] - start_db) / span
            gain_slope = (10 ** (reference[j] / 20) - start_gain) / span
            if slope_lo - 1e-9 <= slope <= slope_hi + 1e-9 and gain_lo - 1e-12 <= gain_slope <= gain_hi + 1e-12:
                best = j
        keys.append(best)
        point = int(np.searchsorted(times, grid[best] + 1e-9))
    return keys


def build_timeline(
    source: MediaInfo,
    *,
    takes: Sequence[tuple[int, str | os.PathLike]],
    gain: np.ndarray,
    gain_rate: int,
    markers: Sequence[tuple[float, str]] = (),
    audio_only_rate: str | float | Fraction = AUDIO_ONLY_RATE,
    name: str | None = None,
    tolerance_db: float = 0.5,
    sound_muted: bool = False,
) -> Timeline:
    """Gather a scored clip's timeline once: tracks, frames, takes, volume keys and markers.

    Parameters
    ----------
    source : MediaInfo
        The original file, as :func:`scoretrack.media.probe` found it (video, or audio only).
    takes : sequence of (int, path)
        The dry music stems (WAV or FLAC, mono or stereo, all of one length, as long as the clip) and
        their take numbers; the first plays, the others are muted on tracks of their own.
    gain : np.ndarray
        The ducking envelope, linear gain, shape ``(points,)`` (``Soundtrack.envelope``); every take
        gets the same volume keys, fitted by :func:`envelope_keyframes` on the timeline's frames.
    gain_rate : int
        Points per second of ``gain``, > 0 (100 for ``Soundtrack.envelope``).
    markers : sequence of (time_s, label)
        Window seams ("seam"), picture cuts ("cut") and style changes ("style: TEXT"), within the clip.
    audio_only_rate : str, float or Fraction
        The rate of a timeline without a picture (:func:`check_rate`); a video's own rate wins.
    name : str, optional
        The timeline's name; defaults to the source's file name without extension.
    tolerance_db : float
        How closely the volume keys follow ``gain``, dB.
    sound_muted : bool
        Mute the original sound's track: the mix holds the music alone (``--mix replace`` or ``music``).

    Raises
    ------
    BadParameterError
        A bad rate, duration, take list, envelope or marker.
    UnreadableMediaError
        A take is missing or not an audio file soundfile reads.
    """
    rate = source_rate(source, audio_only_rate=audio_only_rate)
    frames = frame_count(source.duration_s, rate)
    music = tuple(_take(number, path, duration_s=float(frames / rate), rate=rate) for number, path in takes)
    points = int(math.floor(frames / rate * gain_rate)) + 1  # the envelope over the timeline, no further
    gain = np.asarray(gain, dtype=np.float64).reshape(-1)
    if gain.size:
        gain = np.concatenate([gain[:points], np.full(max(0, points - gain.size), gain[-1])])
    keys = envelope_keyframes(gain, sample_rate=gain_rate, tolerance_db=tolerance_db, frame_rate=float(rate))
    # to 0.0001 dB: what every format keeps of a key, and no -1e-28 dB for 0 dB
    volume = {_frame_of(time_s, rate, frames, what="volume key"): round(gain_db, 4) + 0.0 for time_s, gain_db in keys}
    volume.setdefault(frames, round(keys[-1][1], 4) + 0.0)
    marks = sorted((_frame_of(time_s, rate, frames, what="marker"), str(label)) for time_s, label in markers)
    return Timeline(name=name or source.path.stem, source=source.path.resolve(), rate=rate, frames=frames,
                    picture=_picture(source, rate) if source.is_video else None,
                    sound=Sound(source.audio[0].channels, source.audio[0].sample_rate, source.audio[0].layout)
                    if source.has_audio else None,
                    takes=music, volume=tuple(sorted(volume.items())),
                    markers=tuple(Marker(frame, label) for frame, label in marks), sound_muted=sound_muted)


def _take(number: int, path: str | os.PathLike, *, duration_s: float, rate: Fraction) -> Take:
    """A music stem as a take, read with soundfile; it must be mono or stereo and last the timeline."""
    import soundfile

    if not (isinstance(number, int) and number >= 1):
        raise BadParameterError(f"take number {number!r} must be a whole number >= 1")
    path = check_input_file(path).resolve()
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise UnreadableMediaError(f"{path}: not an audio file soundfile reads "
                                   "(the music stem must be WAV or FLAC)") from error
    if info.channels not in (1, 2):
        raise BadParameterError(f"{path}: music take {number} has {info.channels} channels; a take is mono or stereo")
    if abs(info.frames / info.samplerate - duration_s) > 1 / rate:
        raise BadParameterError(f"{path}: music take {number} lasts {info.frames / info.samplerate:.3f} s, "
                                f"the timeline {duration_s:.3f} s")
    bits = {"PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "FLOAT": 32, "DOUBLE": 64}.get(info.subtype, 16)
    return Take(number=number, path=path, channels=info.channels, sample_rate=info.samplerate,
                samples=info.frames, bits=bits)


def _picture(source: MediaInfo, rate: Fraction) -> Picture:
    video = source.video
    turned = round(video.rotation) % 180 == 90
    width, height = (video.height, video.width) if turned else (video.width, video.height)
    start, drop = _start_timecode(source.path, rate)
    return Picture(width=width, height=height, start_frame=start, drop_frame=drop)


def _start_timecode(path: Path, rate: Fraction) -> tuple[int, bool]:
    """The frame number of the video's start timecode and whether it is drop-frame; (0, False) without one.

    Cameras and QuickTime tag it on the video or timecode (``tmcd``) stream, MXF on the container.
    Editors match media by it, so the clips' source times start there."""
    with open_input(path) as container:
        tags = [stream.metadata for stream in container.streams if stream.type in ("video", "data")]
        tags.append(container.metadata)
    text = next((tag["timecode"] for tag in tags if "timecode" in tag), None)
    try:
        return timecode_frame(text, rate) if text else (0, False)
    except ValueError:
        return 0, False  # a timecode that does not fit the rate is ignored, as editors do


def _frame_of(time_s: float, rate: Fraction, frames: int, *, what: str) -> int:
    """The nearest frame to ``time_s``, which must lie on the timeline (half a frame of slack at the end)."""
    if not (math.isfinite(time_s) and time_s >= 0 and frame_count(time_s, rate) <= frames):
        raise BadParameterError(f"{what} at {time_s} s lies outside the timeline [0, {float(frames / rate):.3f}] s")
    return frame_count(time_s, rate)


def timecode_frame(text: str, rate: Fraction) -> tuple[int, bool]:
    """``HH:MM:SS:FF`` (``;`` before the frames for drop-frame) as a frame number at ``rate``, and whether
    it is drop-frame (only 29.97 and 59.94 fps drop: two or four frame numbers each minute but every tenth).

    Raises
    ------
    ValueError
        Not a timecode, or a frame number the rate does not have.
    """
    match = TIMECODE.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a HH:MM:SS:FF timecode")
    hours, minutes, seconds, separator, frame = (int(g) if g.isdigit() else g for g in match.groups())
    base = round(rate)
    drop = separator == ";" and rate.denominator == 1001 and base in (30, 60)
    if frame >= base or minutes > 59 or seconds > 59:
        raise ValueError(f"{text!r} does not fit {float(rate):g} fps")
    total_minutes = 60 * hours + minutes
    dropped = (base // 15) * (total_minutes - total_minutes // 10) if drop else 0
    return ((total_minutes * 60 + seconds) * base + frame - dropped), drop


def timecode_text(frame: int, rate: Fraction, *, drop_frame: bool = False) -> str:
    """The timecode of ``frame`` at ``rate``: ``HH:MM:SS:FF``, or ``HH:MM:SS;FF`` drop-frame (29.97, 59.94)."""
    base = round(rate)
    drop = base // 15 if drop_frame and rate.denominator == 1001 and base in (30, 60) else 0
    if drop:
        per_ten_minutes, per_minute = base * 600 - 9 * drop, base * 60 - drop
        tens, rest = divmod(frame, per_ten_minutes)
        frame += 9 * drop * tens + (drop * ((rest - drop) // per_minute) if rest > drop else 0)
    seconds, frames = divmod(frame, base)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{';' if drop else ':'}{frames:02d}"
