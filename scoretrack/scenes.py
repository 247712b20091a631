"""The picture's structure: hard cuts found in the video's own frames, and where window seams go.

:func:`detect_cuts` decodes every frame (the only stage that decodes the picture, so it runs only
when asked), shrinks it to 64x36 YUV and scores each frame by how much it differs from the one
before; a cut is a frame whose change is both large and much larger than its neighbours'.
:func:`place_seams` is pure: it moves the seams of the regular window plan onto cuts and onto
style changes while keeping every window within the model's context.
"""

from __future__ import annotations

import bisect
import functools
import math
import os
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import media
from .errors import BadParameterError, UnreadableMediaError
from .options import CUT_REACH_S, FRESH_S, MIN_PROMPT_S, ScoreOptions  # the limits --help states

ANALYSIS_SIZE = (64, 36)  # width, height of the frames compared: enough for shot changes, cheap to compare
NEIGHBOUR_FRAMES = 6  # frames either side whose median change is a frame's local baseline
BASELINE_RATIO = 2.0  # a cut changes at least this many times more than its neighbours do


def detect_cuts(path: str | os.PathLike, *, threshold: float = 9.0, min_scene_s: float = 0.4,
                info: media.MediaInfo | None = None) -> list[float]:
    """Times of the hard cuts in a video, found by decoding every frame.

    A frame starts a new shot when its mean absolute change from the previous frame (Y, U and V of
    a 64x36 copy, 0-255 scale) is at least ``threshold`` and at least twice the median change of the
    six frames either side. The second test keeps fast motion and whip pans (large changes on every
    frame) from counting; fades change little per frame and do not count either. Of cuts closer than
    ``min_scene_s``, the larger change is kept.

    Parameters
    ----------
    path : str or PathLike
        The video file.
    threshold : float
        Smallest change that can be a cut, in 8-bit levels, > 0. Measured on hand-listed cuts
        (BENCHMARKS.md): 8 to 10 give the same result; lower finds flashes, higher misses dim cuts.
    min_scene_s : float
        Shortest shot in seconds, >= 0.
    info : MediaInfo, optional
        The file's :func:`scoretrack.media.probe` result, when the caller has it.

    Returns
    -------
    list of float
        Cut times in seconds on the clip's timeline (0 = the first video frame), ascending.

    Raises
    ------
    BadParameterError
        ``threshold`` or ``min_scene_s`` out of range.
    UnreadableMediaError
        The file cannot be read or decoded.
    """
    if not threshold > 0:
        raise BadParameterError(f"threshold={threshold} must be positive (try 9)")
    if not min_scene_s >= 0:
        raise BadParameterError(f"min_scene_s={min_scene_s} must be >= 0")
    info = info or media.probe(path)
    if info.video is None:
        raise UnreadableMediaError(f"{info.path}: has no picture, so it has no cuts")
    times_s, changes = _frame_changes(path, info)
    return [float(t - info.video.start_s) for t in _pick_cuts(times_s, changes, threshold=threshold,
                                                               min_scene_s=min_scene_s)]


def _frame_changes(path, info: media.MediaInfo) -> tuple[np.ndarray, np.ndarray]:
    """Presentation time of every video frame and its mean absolute change from the previous one."""
    width, height = ANALYSIS_SIZE
    times, changes, previous = [], [], None
    with media.open_input(path) as container:
        stream = container.streams[info.video.index]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            small = frame.to_ndarray(width=width, height=height, format="yuv444p",
                                     interpolation="AREA").astype(np.int16)
            if frame.time is not None:
                times.append(frame.time)
            else:  # a stream without timestamps: count frames
                times.append(info.video.start_s + len(times) / max(info.video.frame_rate, 1.0))
            changes.append(np.nan if previous is None else float(np.abs(small - previous).mean()))
            previous = small
    return np.array(times, dtype=np.float64), np.array(changes, dtype=np.float64)


def _pick_cuts(times_s: np.ndarray, changes: np.ndarray, *, threshold: float, min_scene_s: float) -> list[float]:
    """Times of the frames whose change is large and stands out from its neighbours' (see detect_cuts)."""
    if len(changes) < 2:
        return []
    padded = np.pad(changes, NEIGHBOUR_FRAMES, constant_values=np.nan)
    around = np.lib.stride_tricks.sliding_window_view(padded, 2 * NEIGHBOUR_FRAMES + 1).copy()
    around[:, NEIGHBOUR_FRAMES] = np.nan  # the frame itself is not its own baseline
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: clips of two frames
        baseline = np.nan_to_num(np.nanmedian(around, axis=1))
    candidates = np.flatnonzero((changes >= threshold) & (changes >= BASELINE_RATIO * baseline))
    kept: list[float] = []
    for index in candidates[np.argsort(-changes[candidates], kind="stable")]:
        if all(abs(times_s[index] - t) >= min_scene_s for t in kept):
            kept.append(float(times_s[index]))
    return sorted(kept)


def place_seams(duration_s: float, *, cuts_s=(), style_changes_s=(), window_s: float = 30.0,
                stride_s: float = 18.0, prompt_s: float = 12.0, reach_s: float = CUT_REACH_S,
                frame_rate: int = 50) -> list[float]:
    """Seams (crossfade centres between consecutive windows) moved onto cuts and style changes.

    Starts from the regular plan, whose seam ``k`` is the centre of the overlap of window ``k-1``
    (ending at ``(k-1)*stride_s + window_s``) and window ``k`` (starting at ``k*stride_s``): the first
    at ``(stride_s + window_s) / 2``, then every ``stride_s``. Going from the start, each seam moves to
    the cut nearest its regular place within ``reach_s``, and the next seam's regular place follows
    the one chosen. Every style change is a seam, exactly. A seam is moved no further than the
    constraints below allow, and seams are added where a gap would be too long. A cut within
    ``reach_s`` of a seam's place but beyond where that seam may go gets an extra seam before it,
    when one fits (on a cut if one is in range).

    Constraints, with ``p = prompt_s``, ``W = window_s``, ``D = duration_s`` and seams
    ``s_1 < ... < s_n``; window ``k`` spans ``[s_k - p/2, s_(k+1) + p/2]``, the first starts at 0
    and the last ends at ``D``, and each window's first ``p`` seconds are its prompt (the previous
    window's music):

    - no seams only when ``D <= W``;
    - first window: ``p/2 + 1 <= s_1 <= W - p/2`` (at most ``W`` long; 1 s of its own music
      before the next window's prompt starts);
    - every pair: ``p + 1 <= s_(k+1) - s_k <= W - p`` (window at most ``W``; at least 1 s of new
      music between its prompt and the next window's);
    - last window: ``D - W + p/2 <= s_n <= D - p/2 - 1`` (at most ``W``; at least 1 s of new music
      after its prompt).

    Times are handled in codec frames of ``1 / frame_rate`` s: ``D`` is rounded up to whole frames
    (as the window plan counts them), cuts and style changes to the nearest frame, and seams are
    whole frames, so the window plan converts them exactly.

    Parameters
    ----------
    duration_s : float
        Clip length in seconds, > 0.
    cuts_s : sequence of float
        Cut times in seconds (any order; those outside the clip are ignored).
    style_changes_s : sequence of float
        Times in seconds where the text conditioning changes; each becomes a seam.
    window_s : float
        Longest window in seconds (the model's context, 30 for MusicGen).
    stride_s : float
        Regular distance between seams in seconds, > 0.
    prompt_s : float
        Continuation prompt (window overlap) in seconds, >= ``MIN_PROMPT_S`` (8) and at most
        ``(window_s - 1) / 2`` so that a gap between seams can exist.
    reach_s : float
        Farthest a seam moves to reach a cut, in seconds, >= 0.
    frame_rate : int
        Codec frames per second (50 for MusicGen).

    Returns
    -------
    list of float
        Seam times in seconds, ascending; empty for a single window.

    Raises
    ------
    BadParameterError
        A setting is out of range, or the style changes cannot all be seams (one too close to the
        start, to the end or to another, or at a distance from another that no chain of windows fits).

    Notes
    -----
    Why the prompt is at least 8 s: the prompt is all the model hears of the previous window, and to
    continue the music rather than restart it, it must pick up tempo, metre, key and instrumentation,
    which takes about two bars. 8 s holds two bars of 4/4 at 60 bpm (the slow end of film cues) and
    a four-bar phrase at 120 bpm; 4 s would be a single slow bar, too little to fix the tempo.
    audiocraft continues with 12 s (``extend_stride`` 18 of 30), the default here, which keeps the
    regular plan unchanged.

    The prompt also sets how far seams can move. With ``W = 30`` and ``p = 12`` gaps lie in
    [13, 18] s: the regular stride is already the longest gap, so a seam moves later only after an
    earlier one did, and two style changes 18-26 s apart cannot both be seams. With ``p = 8`` gaps
    lie in [9, 22] s and every cut within 4 s of a regular seam can be reached (on random cut lists
    44 % of seams land on cuts at 12 s, 55 % at 10 s and 64 % at 8 s).
    """
    rate = frame_rate
    _check_seam_options(duration_s, window_s=window_s, stride_s=stride_s, prompt_s=prompt_s,
                        reach_s=reach_s, frame_rate=frame_rate)
    span = math.ceil(duration_s * rate - 1e-6)  # whole codec frames, as the window plan counts them
    window, stride, prompt = round(window_s * rate), round(stride_s * rate), round(prompt_s * rate)
    reach, fresh = round(reach_s * rate), round(FRESH_S * rate)
    rules = _Spacing(edge_min=prompt // 2 + fresh, edge_max=window - prompt // 2,
                   gap_min=prompt + fresh, gap_max=window - prompt)
    styles = sorted({round(t * rate) for t in style_changes_s})
    _check_styles(styles, span, rules, rate)
    cuts = sorted({round(t * rate) for t in cuts_s if 0 < t < duration_s})
    seams: list[int] = []
    while True:
        upcoming = [s for s in styles if not seams or s > seams[-1]]
        if not upcoming and span - (seams[-1] if seams else 0) <= (rules.edge_max if seams else window):
            break
        if seams:
            low, high, regular = seams[-1] + rules.gap_min, seams[-1] + rules.gap_max, seams[-1] + stride
        else:
            low, high, regular = rules.edge_min, rules.edge_max, (stride + window) // 2
        # where the next seam may go and still reach the next style change (exactly) or the end
        if upcoming:
            onward = functools.partial(rules.reachable, upcoming[0], 0, 0)
        else:
            onward = functools.partial(rules.reachable, span, rules.edge_min, rules.edge_max)
        allowed = onward(low, high)
        natural = _nearest(regular, allowed)
        within = cuts[bisect.bisect_left(cuts, natural - reach):bisect.bisect_right(cuts, natural + reach)]
        near = _cuts_inside(within, allowed)
        if near:
            seams.append(_nearest_cut(near, natural))
        else:
            beyond = [c for c in within if c > high and (c < upcoming[0] if upcoming else True)]
            seams.extend(_via_extra_seam(beyond, natural, cuts, allowed, onward, rules) or [natural])
    return [s / rate for s in seams]


def _via_extra_seam(beyond: list[int], natural: int, cuts: list[int], allowed: list[tuple[int, int]],
                    onward: Callable[[int, int], list[tuple[int, int]]], rules: "_Spacing") -> list[int]:
    """Two seams, an extra one then a cut of ``beyond`` (cuts past the next seam's reach), or none.

    ``onward(low, high)`` gives the positions in [low, high] from which the next style change or the
    end is reached. The extra seam goes on a cut where one fits, else as near ``natural`` as the
    spacing allows."""
    for cut in sorted(beyond, key=lambda c: (abs(c - natural), c)):
        if not onward(cut, cut):
            continue
        before = [(max(a, cut - rules.gap_max), min(b, cut - rules.gap_min)) for a, b in allowed]
        before = [(a, b) for a, b in before if a <= b]
        if not before:
            continue
        fitting = _cuts_inside(cuts, before)
        return [_nearest_cut(fitting, natural) if fitting else _nearest(natural, before), cut]
    return []


def _cuts_inside(cuts: list[int], intervals: list[tuple[int, int]]) -> list[int]:
    return [c for c in cuts if any(a <= c <= b for a, b in intervals)]


def _nearest_cut(cuts: list[int], target: int) -> int:
    """The cut nearest ``target`` (the earlier one on a tie)."""
    return min(cuts, key=lambda c: (abs(c - target), c))


@dataclass(frozen=True)
class _Spacing:
    """Seam spacing in codec frames: to the clip's start or end, and between consecutive seams."""

    edge_min: int
    edge_max: int
    gap_min: int
    gap_max: int

    def chain_holds(self, distance: int, first_min: int, first_max: int) -> bool:
        """Whether ``distance`` splits into one span in [first_min, first_max] plus whole gaps."""
        most = math.floor((distance - first_min) / self.gap_min) if distance >= first_min else -1
        least = max(0, math.ceil((distance - first_max) / self.gap_max))
        return least <= most

    def reachable(self, anchor: int, first_min: int, first_max: int, low: int, high: int) -> list[tuple[int, int]]:
        """Intervals of positions in [low, high] from which a chain (as in chain_holds) reaches ``anchor``.

        ``first_min = first_max = 0`` when the anchor is a seam itself; the clip's end is reached by
        a last window's span [edge_min, edge_max]."""
        intervals = []
        m_low = max(0, math.ceil((anchor - high - first_max) / self.gap_max))
        m_high = math.floor((anchor - low - first_min) / self.gap_min)
        for m in range(m_low, m_high + 1):
            start = max(low, anchor - first_max - m * self.gap_max)
            end = min(high, anchor - first_min - m * self.gap_min)
            if (start, end) == (low, high):  # far from the anchor every position reaches it
                return [(low, high)]
            if start <= end:
                intervals.append((start, end))
        return intervals


def _nearest(target: int, intervals: list[tuple[int, int]]) -> int:
    """The point of ``intervals`` nearest ``target`` (the earlier one on a tie)."""
    points = [min(max(target, start), end) for start, end in intervals]
    return min(points, key=lambda p: (abs(p - target), p))


def _check_seam_options(duration_s, *, window_s, stride_s, prompt_s, reach_s, frame_rate) -> None:
    if not duration_s > 0:
        raise BadParameterError(f"duration_s={duration_s} must be positive")
    if not (isinstance(frame_rate, int) and frame_rate > 0):
        raise BadParameterError(f"frame_rate={frame_rate} must be a positive integer")
    if not prompt_s >= MIN_PROMPT_S:
        raise BadParameterError(f"prompt_s={prompt_s} is too short for continuous music: use at least {MIN_PROMPT_S}")
    if not window_s - prompt_s >= prompt_s + FRESH_S:
        raise BadParameterError(f"prompt_s={prompt_s} leaves no room between seams in window_s={window_s}: "
                                f"use prompt_s <= {(window_s - FRESH_S) / 2}")
    if not stride_s > 0:
        raise BadParameterError(f"stride_s={stride_s} must be positive")
    if not reach_s >= 0:
        raise BadParameterError(f"reach_s={reach_s} must be >= 0")


def _check_styles(styles: list[int], span: int, rules: _Spacing, rate: int) -> None:
    """Refuse style changes that cannot all be seams, saying where they could go."""
    if styles and span < 2 * rules.edge_min:
        raise BadParameterError(
            f"style change at {styles[0] / rate:g} s: a {span / rate:g} s clip is too short for style changes with "
            f"these windows (each needs {rules.edge_min / rate:g} s of the clip before and after it, so clips from "
            f"{2 * rules.edge_min / rate:g} s)")
    for t in styles:
        if not (rules.edge_min <= t <= span - rules.edge_min):
            raise BadParameterError(
                f"style change at {t / rate:g} s is too close to the clip's start or end: place it between "
                f"{rules.edge_min / rate:g} s and {(span - rules.edge_min) / rate:g} s")
    pairs = [(0, styles[0], rules.edge_min, rules.edge_max)] if styles else []
    pairs += [(a, b, 0, 0) for a, b in zip(styles, styles[1:])]
    pairs += [(styles[-1], span, rules.edge_min, rules.edge_max)] if styles else []
    for a, b, first_min, first_max in pairs:
        if rules.chain_holds(b - a, first_min, first_max):
            continue
        distances = _chain_lengths(rules, first_min, first_max, span)
        if b == span:  # the last change, seen from the clip's end
            where, moved = [(span - high, span - low) for low, high in reversed(distances)], a
        else:
            where, moved = [(a + low, a + high) for low, high in distances], b
        where = [(max(low, rules.edge_min), min(high, span - rules.edge_min)) for low, high in where]
        where = [(low, high) for low, high in where if low <= high]
        advice = f"place the one at {moved / rate:g} s at {_spans(where, rate)}" if where else f"remove the one at {moved / rate:g} s"
        raise BadParameterError(
            f"no window plan puts seams at {a / rate:g} s and {b / rate:g} s (style changes or clip ends): "
            f"consecutive seams are {rules.gap_min / rate:g}-{rules.gap_max / rate:g} s apart; {advice}")


def _chain_lengths(rules: _Spacing, first_min: int, first_max: int, limit: int) -> list[tuple[int, int]]:
    """The distances, up to ``limit``, that one span in [first_min, first_max] plus whole gaps can cover,
    as merged intervals (see :meth:`_Spacing.chain_holds`)."""
    merged: list[tuple[int, int]] = []
    gaps = 0 if first_max else 1
    while first_min + gaps * rules.gap_min <= limit:
        low, high = first_min + gaps * rules.gap_min, first_max + gaps * rules.gap_max
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
        gaps += 1
    return merged


def _spans(intervals: list[tuple[int, int]], rate: int) -> str:
    """``7-13 s or 20-26 s`` for intervals in codec frames."""
    return " or ".join(f"{low / rate:g} s" if low == high else f"{low / rate:g}-{high / rate:g} s" for low, high in intervals)


def seam_plan(duration_s: float, options: ScoreOptions, cuts_s=(), *,
              frame_rate: int) -> tuple[list[float] | None, float | None]:
    """Where a clip's window seams go and how long each continuation prompt is.

    None, None: the regular plan. With ``follow_cuts`` the seams move onto the picture's cuts and the
    prompt is the 8 s minimum (a 12 s prompt leaves seams only 13-18 s apart, so most cuts would be
    out of reach; :func:`place_seams`' Notes say why 8 s still continues the music). Style changes
    are seams. The plan checks each clip with this before any model work, without its cuts.
    """
    gen = options.generation
    if gen.independent_windows or not (options.follow_cuts or options.styles_at):
        return None, None
    prompt_s = MIN_PROMPT_S if options.follow_cuts else gen.window_s - gen.stride_s
    seams = place_seams(duration_s, cuts_s=cuts_s if options.follow_cuts else (),
                        style_changes_s=[t for t, _ in options.styles_at], window_s=gen.window_s,
                        stride_s=gen.stride_s, prompt_s=prompt_s, frame_rate=frame_rate)
    return seams, prompt_s
