"""Long-form MusicGen generation: windows that continue each other, each conditioned on the melody
of its own time span (MusicGen-melody) or on text alone (MusicGen), joined into music of an exact length.

The window plan (:func:`plan_windows`) is pure arithmetic on frames; :func:`generate_music` runs the
model over it with scoretrack's decode loop (:mod:`scoretrack.decode`). A window after the first
starts with the previous window's last codes as its prompt (un-delayed EnCodec codes), so the model
continues the music instead of starting anew (as audiocraft's long-form generation does).
"""

from __future__ import annotations

import ctypes
import functools
import gc
import math
import os
import tempfile
import weakref
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
import torch

from . import decode, media, melody, sampling
from .errors import BadParameterError, DeviceMemoryError, ScoretrackError
from .mix import MonoDownmix, column_span, crossfade_join
from .model import MusicModel
from .options import GenerationOptions


@dataclass(frozen=True)
class Window:
    """One decode call's span, in codec frames of the clip's timeline."""

    index: int
    start: int  # first frame
    end: int  # one past the last frame
    prompt: int  # leading frames copied from the previous window (0 for the first, or independent)

    @property
    def frames(self) -> int:
        return self.end - self.start


def plan_windows(duration_s: float, *, window_s: float, stride_s: float, frame_rate: int, sample_rate: int,
                 continuation: bool = True, seams_s: Sequence[float] | None = None,
                 prompt_s: float | None = None) -> list[Window]:
    """Split a clip into windows of at most ``window_s``, every ``stride_s`` or on given seams.

    The windows cover ``ceil(round(duration_s * sample_rate) / (sample_rate / frame_rate))`` frames:
    enough codec frames for exactly ``round(duration_s * sample_rate)`` samples. Consecutive windows
    overlap by ``window_s - stride_s`` (or ``prompt_s``); the crossfade between them is centred in
    the overlap, at the times :func:`seam_times` returns.

    With ``seams_s``, window k starts ``prompt_s / 2`` before seam k, so every seam is a crossfade
    centre (within one codec frame), and there are no other seams. With ``P = prompt_s`` and
    ``W = window_s``, the seams must satisfy (each with one codec frame of tolerance)::

        P / 2 <= seams_s[0] <= W - P / 2                     (the first window fits, starting at 0)
        P <= seams_s[k+1] - seams_s[k] <= W - P              (each window makes >= P new seconds and fits)
        duration_s - W + P / 2 <= seams_s[-1] < duration_s - P / 2   (the last window fits, adds music)

    and with no seams, ``duration_s <= W``. So ``W >= 2 P`` is needed for two seams or more.

    Parameters
    ----------
    duration_s : float
        Clip length in seconds, > 0.
    window_s, stride_s : float
        Window length and advance in seconds.
    frame_rate : int
        Codec frames per second (50 for MusicGen).
    sample_rate : int
        Codec sample rate in Hz (32000 for MusicGen).
    continuation : bool
        Whether each window continues the previous one (sets ``prompt``).
    seams_s : sequence of float, optional
        Sorted crossfade centres in seconds; None places them every ``stride_s``.
    prompt_s : float, optional
        Overlap of consecutive windows with ``seams_s`` (the continuation prompt); default
        ``window_s - stride_s``.

    Returns
    -------
    list of Window

    Raises
    ------
    BadParameterError
        A non-positive duration, ``prompt_s`` without ``seams_s``, or seams outside the bounds above.
    """
    if duration_s <= 0:
        raise BadParameterError(f"duration_s={duration_s} must be positive")
    total = math.ceil(media.sample_count(duration_s, sample_rate) / (sample_rate // frame_rate))
    window = max(1, int(round(window_s * frame_rate)))
    if seams_s is None:
        if prompt_s is not None:
            raise BadParameterError(f"prompt_s={prompt_s} applies only with seams_s; set stride_s instead")
        return _stride_windows(total, window, max(1, int(round(stride_s * frame_rate))), continuation)
    overlap = int(round((window_s - stride_s if prompt_s is None else prompt_s) * frame_rate))
    if not 0 < overlap < window:
        raise BadParameterError(f"prompt_s={prompt_s} must be in (0, window_s={window_s}) seconds")
    starts = _seam_starts(seams_s, frame_rate=frame_rate, total=total, window=window, overlap=overlap)
    ends = [start + overlap for start in starts] + [total]
    return [Window(k, start, end, overlap if continuation and k else 0)
            for k, (start, end) in enumerate(zip([0] + starts, ends))]


def _stride_windows(total: int, window: int, stride: int, continuation: bool) -> list[Window]:
    windows = [Window(0, 0, min(window, total), 0)]
    while windows[-1].end < total:
        previous = windows[-1]
        start = previous.start + stride
        prompt = previous.end - start if continuation else 0
        windows.append(Window(previous.index + 1, start, min(start + window, total), prompt))
    return windows


def _seam_starts(seams_s: Sequence[float], *, frame_rate: int, total: int, window: int, overlap: int) -> list[int]:
    """Window starts (frames) that centre each overlap on a seam, within one frame.

    Each start is the rounded ideal, clamped into what the windows before it allow; a seam more
    than a frame outside that range is an error."""
    if len(seams_s) == 0 and total > window:
        raise BadParameterError(f"seams_s=() but the clip is {total / frame_rate:g} s, longer than one window "
                                f"({window / frame_rate:g} s): give seams")
    starts: list[int] = []
    for k, seam_s in enumerate(seams_s):
        ideal = seam_s * frame_rate - overlap / 2
        previous = starts[-1] if starts else 0
        lo, hi = previous + (overlap if starts else 0), previous + window - overlap
        if k == len(seams_s) - 1:
            lo, hi = max(lo, total - window), min(hi, total - overlap - 1)
        if lo > hi or not lo - 1 <= ideal <= hi + 1:
            raise BadParameterError(
                f"seams_s[{k}]={seam_s:g} s must lie in [{(lo + overlap / 2) / frame_rate:g}, "
                f"{(hi + overlap / 2) / frame_rate:g}] s for {window / frame_rate:g} s windows overlapping by "
                f"{overlap / frame_rate:g} s: move it (see plan_windows for the rules)")
        starts.append(min(max(int(round(ideal)), lo), hi))
    return starts


def seam_times(plan: Sequence[Window], *, frame_rate: int) -> list[float]:
    """Crossfade centres in seconds: the middle of each overlap between consecutive windows."""
    return [(window.start + previous.end) / 2 / frame_rate for previous, window in zip(plan, plan[1:])]


@dataclass(frozen=True)
class MusicRequest:
    """One clip to score: its style text, melody reference on its timeline, and exact length."""

    style: str
    duration_s: float
    # mono float32 at 32 kHz, (1, n) or (n,), or a MonoDownmix (made per window, never whole); None: text only
    melody_audio: np.ndarray | MonoDownmix | None = None
    seed: int | None = None  # overrides GenerationOptions.seed for this clip
    take_seeds: tuple[int, ...] | None = None  # the base seed of each take; None: one take with seed
    styles: tuple[tuple[float, str], ...] = ()  # (time_s, text): the style from time_s on; each time must be a seam
    seams_s: tuple[float, ...] | None = None  # crossfade centres in seconds (see plan_windows); None: every stride_s
    prompt_s: float | None = None  # continuation prompt with seams_s; None: window_s - stride_s


@dataclass
class GenerationTrace:
    """What the model was given and produced for each window, for tests and reports."""

    windows: list[Window] = field(default_factory=list)
    styles: list[str] = field(default_factory=list)  # per window, the style text it was conditioned on
    chroma: list[np.ndarray | None] = field(default_factory=list)  # per window, (frames, 12) or None
    prompts: list[np.ndarray | None] = field(default_factory=list)  # per window, (codebooks, prompt) codes
    codes: list[np.ndarray] = field(default_factory=list)  # per window, (codebooks, frames) codes


def window_styles(request: MusicRequest, plan: Sequence[Window], *, frame_rate: int) -> list[str]:
    """The style of each window: the one in force at its seam (at 0 for the first window).

    Raises
    ------
    BadParameterError
        A style change that is not on a seam of ``plan`` (within one codec frame).
    """
    times = [0.0] + seam_times(plan, frame_rate=frame_rate)
    tolerance = 1 / frame_rate + 1e-9  # seam_times lie within a frame of the seams asked for
    changes = sorted(request.styles)
    for time_s, _ in changes:
        if time_s < 0 or (time_s > tolerance and not any(abs(time_s - t) <= tolerance for t in times[1:])):
            raise BadParameterError(f"style change at {time_s:g} s is not on a window seam "
                                    f"(seams at {', '.join(f'{t:g}' for t in times[1:]) or 'none'} s): put a seam there")
    return [next((text for t, text in reversed(changes) if t <= time + tolerance), request.style) for time in times]


def window_chroma(melody_audio: np.ndarray | MonoDownmix | None, window: Window, *,
                  samples_per_frame: int) -> np.ndarray | None:
    """Chroma of the melody over the window's own time span (zero-padded past the clip's end)."""
    if melody_audio is None:
        return None
    if isinstance(melody_audio, np.ndarray):
        melody_audio = melody_audio.reshape(1, -1)
    lo, hi = window.start * samples_per_frame, window.end * samples_per_frame
    span = np.zeros(hi - lo, dtype=np.float32)
    piece = np.asarray(melody_audio[:, lo:hi], dtype=np.float32)[0]
    span[: piece.size] = piece
    return melody.chroma(span)[: melody.MAX_CHROMA_FRAMES]


def _tile_chroma(features: np.ndarray | None, num_chroma: int) -> np.ndarray:
    """Tile to 235 frames exactly as the model does for one clip, so batched rows equal solo ones.
    A row without melody gets the model's own 'no melody' input (a one-hot on bin 0)."""
    if features is None:
        features = np.zeros((1, num_chroma), dtype=np.float32)
        features[:, 0] = 1
    repeats = math.ceil(melody.MAX_CHROMA_FRAMES / features.shape[0])
    return np.tile(features, (repeats, 1))[: melody.MAX_CHROMA_FRAMES]


def _run_generate(mm: MusicModel, styles: Sequence[str], chromas: Sequence[np.ndarray | None], prompt: np.ndarray | None,
                  frames: int, options: GenerationOptions, seeds: Sequence[tuple[int, int]],
                  on_step: Callable[[int], None] | None) -> np.ndarray:
    """One window for a batch of rows by scoretrack's decode loop (:mod:`scoretrack.decode`), row i
    drawn from its (take seed, window index) ``seeds[i]``.

    The styles must have equal token counts (see :func:`_jobs`): padding would change the
    conditioning, since MusicGen-melody prefixes the decoder with every text position, padded or not,
    and counts positions from the start of that prefix. A text-only model gets no chroma.

    Returns codes ``(rows, codebooks, frames)``, the prompt's frames first.
    """
    with torch.inference_mode():
        tiled = [_tile_chroma(c, mm.model.config.num_chroma) for c in chromas] if mm.takes_melody else None
        cond = decode.conditioning(mm, styles, tiled, guided=options.guidance_scale > 1)
        keys = sampling.row_keys(torch.tensor([s for s, _ in seeds], device=mm.device),
                                 torch.tensor([w for _, w in seeds], device=mm.device))
        return decode.generate_window(mm, cond, prompt, frames, options, keys, on_step=on_step)


def _is_out_of_memory(error: BaseException | None) -> bool:
    """torch's OutOfMemoryError, or a CUDA/MPS RuntimeError that says it ran out of memory, or an error
    raised while handling one (ending a CUDA graph capture that ran out of memory raises its own)."""
    if error is None:
        return False
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower()) or _is_out_of_memory(error.__context__)


def free_device_memory() -> None:
    """Give the allocator's cached blocks back after an out-of-memory error, so a retry can use them."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        mps.empty_cache()


def memory_error(mm: MusicModel, options: GenerationOptions, error: BaseException) -> DeviceMemoryError:
    """The one-line error of a row that does not fit alone: what the weights and its KV cache need."""
    config = mm.model.decoder.config
    weights = sum(t.numel() * t.element_size() for t in [*mm.model.parameters(), *mm.model.buffers()])
    row = 2 * config.num_hidden_layers * config.hidden_size * config.max_position_embeddings * torch.finfo(mm.dtype).bits // 8
    row *= 2 if options.guidance_scale > 1 else 1
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
    return DeviceMemoryError(
        f"out of memory on {mm.device.type} generating one row alone ({first}): {mm.name} needs "
        f"{weights / 1e9:.2f} GB for its weights and up to {row / 1e9:.2f} GB per row for its KV cache"
        f"{' (doubled by guidance)' if options.guidance_scale > 1 else ''}; use a lower --batch-size, "
        "--dtype bfloat16 or float16, a smaller model, or --device cpu")


def _generate_rows(mm: MusicModel, styles: Sequence[str], chromas: Sequence[np.ndarray | None],
                   prompt: np.ndarray | None, frames: int, options: GenerationOptions,
                   seeds: Sequence[tuple[int, int]], on_step: Callable[[int], None] | None) -> list[np.ndarray | DeviceMemoryError]:
    """:func:`_run_generate`, retried in halves after an out-of-memory error, down to single rows.

    A row's draws depend only on its own (seed, window), so its codes are the same whatever attempt
    and half it ran in. Returns codes ``(codebooks, frames)`` per row, or the
    :class:`DeviceMemoryError` of a row that does not fit alone."""
    try:
        return list(_run_generate(mm, styles, chromas, prompt, frames, options, seeds, on_step))
    except Exception as error:
        if not _is_out_of_memory(error):
            raise
        failed = error
    free_device_memory()
    if len(seeds) == 1:
        return [memory_error(mm, options, failed)]
    half = len(seeds) // 2
    return [*_generate_rows(mm, styles[:half], chromas[:half], None if prompt is None else prompt[:half], frames,
                            options, seeds[:half], on_step),
            *_generate_rows(mm, styles[half:], chromas[half:], None if prompt is None else prompt[half:], frames,
                            options, seeds[half:], on_step)]


class _StepBudget:
    """Reports at most ``steps`` decode steps for one job, however many attempts its retries make."""

    def __init__(self, on_step: Callable[[int], None] | None, steps: int):
        self.on_step, self.left = on_step, steps

    def __call__(self, count: int) -> None:
        if self.on_step is not None and self.left > 0:
            self.left -= count
            self.on_step(count)


def _decode(mm: MusicModel, codes: np.ndarray) -> np.ndarray:
    """One row's codes ``(codebooks, frames)`` to audio ``(channels, frames * samples_per_frame)``.

    Decoded alone, over the row's own frames: EnCodec rounds differently in a batch, and its
    convolutions look ahead, so audio decoded with other rows or past the window would depend on them."""
    ids = torch.as_tensor(codes, dtype=torch.long, device=mm.device)[None, None]
    parts = [ids] if mm.model.decoder.config.audio_channels == 1 else [ids[:, :, ::2], ids[:, :, 1::2]]
    with torch.inference_mode():
        audio = torch.cat([mm.model.audio_encoder.decode(p, [None]).audio_values for p in parts], dim=1)
    return audio[0].float().cpu().numpy()


@dataclass(frozen=True)
class MusicPlan:
    """A request made ready to generate: its windows, the style, token count (the batching key) and
    melody chroma of each, the base seed of each take and its length. Holds no audio: made by
    :func:`plan_music`, so a caller can let the melody reference go before generation starts."""

    windows: list[Window]
    styles: list[str]
    tokens: list[int]
    seeds: tuple[int, ...]  # one per take
    duration_s: float
    chromas: list[np.ndarray | None] = field(default_factory=list)  # per window; empty until plan_music


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to give back this way
        return None


def give_back_freed_memory() -> None:
    """Return the freed parts of the heap to the system (glibc's ``malloc_trim``).

    Each window's chroma and each decode call leave tens of MB of freed temporaries that the
    allocator keeps but does not reuse well: over an hour's 129 windows the process grew by 0.8 GB
    (chroma) and 0.8 GB (generation) without it, measured in ``bench/long_clip.py``."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def request_windows(mm: MusicModel, request: MusicRequest, options: GenerationOptions) -> list[Window]:
    """The windows :func:`generate_music` will generate for ``request`` (its seams, or every stride)."""
    return plan_windows(request.duration_s, window_s=options.window_s, stride_s=options.stride_s,
                        frame_rate=mm.frame_rate, sample_rate=mm.sample_rate,
                        continuation=not options.independent_windows, seams_s=request.seams_s,
                        prompt_s=request.prompt_s)


def _plan(mm: MusicModel, request: MusicRequest, options: GenerationOptions) -> MusicPlan:
    windows = request_windows(mm, request, options)
    styles = window_styles(request, windows, frame_rate=mm.frame_rate)
    tokens = {style: len(mm.tokenizer(style).input_ids) for style in set(styles)}
    if request.take_seeds is not None:
        seeds = tuple(request.take_seeds)
        if not seeds:
            raise BadParameterError("take_seeds=() must name at least one take's seed (or be None)")
    else:
        seeds = (request.seed if request.seed is not None else options.seed,)
    if request.melody_audio is not None and not mm.takes_melody:
        raise BadParameterError(f"model {mm.name} is text only (MusicGen without melody input): give no melody")
    return MusicPlan(windows, styles, [tokens[s] for s in styles], seeds, request.duration_s)


def plan_music(mm: MusicModel, requests: Sequence[MusicRequest],
               options: GenerationOptions = GenerationOptions()) -> list[MusicPlan]:
    """Plan each request's windows and compute each window's melody chroma (the only use of the
    melody audio), checking every setting before any generation.

    Raises
    ------
    BadParameterError
        Bad options, seams or style change times.
    """
    per_frame = mm.sample_rate // mm.frame_rate
    plans = []
    for request in requests:
        plan = _plan(mm, request, options)
        chromas = []
        for window in plan.windows:
            chromas.append(window_chroma(request.melody_audio, window, samples_per_frame=per_frame))
            give_back_freed_memory()
        plans.append(replace(plan, chromas=chromas))
    return plans


def total_steps(mm: MusicModel, requests: Sequence[MusicRequest], options: GenerationOptions) -> int:
    """Decode steps :func:`generate_music` will run (for progress bars)."""
    plans = [_plan(mm, r, options) for r in requests]
    return sum(_decode_steps(mm, _job_frames(plans, job), plans[job[0][0]].windows[job[0][1]].prompt)
               for job in _jobs(plans, options))


def _decode_steps(mm: MusicModel, frames: int, prompt_frames: int) -> int:
    return decode.decode_steps(frames, prompt_frames, codebooks=mm.num_codebooks, audio_channels=mm.audio_channels)


def _job_frames(plans: list[MusicPlan], job: list[tuple[int, int]]) -> int:
    """Frames one decode call produces: its longest window's (shorter rows are cut after)."""
    return max(plans[i].windows[w].frames for i, w in job)


def generate_music(mm: MusicModel, requests: Sequence[MusicRequest | MusicPlan],
                   options: GenerationOptions = GenerationOptions(), *, on_step: Callable[[int], None] | None = None,
                   traces: list[GenerationTrace] | None = None, on_disk: bool = False) -> list[np.ndarray | DiskAudio]:
    """Generate music of each request's exact length, batching clips into shared decode calls.

    Continuation mode (default): window k of every clip is generated in one call, each row prompted
    with its own window k-1's last codes; windows are joined with an equal-gain crossfade inside the
    overlap, where both windows hold the same codes. Independent mode: all windows of a clip are rows
    of one call, joined by equal-power crossfades over the whole overlap. A window whose style
    differs from the one before still continues its codes, so the music turns rather than restarts.

    A clip's music depends only on its request and the options, not on its batch: window k of take t
    draws from the noise of its own key (``take_seeds[t]``, or ``seed`` for one take, and ``k``; see
    :mod:`scoretrack.sampling`), and rows share
    a call only when their style texts have the same token count (no padding). The takes of a clip
    share its plan and chroma and are rows of the same calls; ``batch_size`` counts clips.

    Memory: a call holds ``batch_size`` clips times their takes as rows (doubled with guidance); each
    row's KV cache is about ``2 * layers * hidden * 1750 * bytes`` (1 GB for musicgen-melody in
    float32), on top of the weights. A call that runs out of device memory is retried in halves,
    down to single rows, with the same codes; a row that does not fit alone fails its clip.

    Parameters
    ----------
    mm : MusicModel
    requests : sequence of MusicRequest or MusicPlan
        Plans from :func:`plan_music` (made with the same options) hold no melody audio, so a long
        clip's reference need not stay in memory while its music is generated.
    options : GenerationOptions
    on_step : callable, optional
        Called with 1 after every decode step.
    traces : list, optional
        When given, one :class:`GenerationTrace` per (request, take) is appended, as the results.
    on_disk : bool
        Keep each clip's music in a :class:`DiskAudio` (a temporary file) instead of memory: an
        hour is 0.46 GB at 32 kHz mono.

    Returns
    -------
    list of np.ndarray, DiskAudio or DeviceMemoryError
        Per request and take (request-major, takes in ``take_seeds`` order): float32
        ``(channels, round(duration_s * sample_rate))``, or, for each take of a clip a row of which
        did not fit in memory alone, that clip's :class:`DeviceMemoryError`.

    Raises
    ------
    BadParameterError
        Bad options, seams or style change times (checked before any generation).
    """
    plans = [r if isinstance(r, MusicPlan) else plan_music(mm, [r], options)[0] for r in requests]
    per_frame = mm.sample_rate // mm.frame_rate
    first = np.cumsum([0] + [len(p.seeds) for p in plans]).tolist()  # each plan's first (request, take) slot
    slots = [(i, t) for i, p in enumerate(plans) for t in range(len(p.seeds))]
    run_traces = [GenerationTrace(windows=list(plans[i].windows), styles=[""] * len(plans[i].windows),
                                  chroma=[None] * len(plans[i].windows), prompts=[None] * len(plans[i].windows),
                                  codes=[None] * len(plans[i].windows)) for i, _ in slots]
    shapes = [(mm.audio_channels, media.sample_count(plans[i].duration_s, mm.sample_rate)) for i, _ in slots]
    joiners = [_Joiner(plans[i].windows, per_frame, options, mm.sample_rate,
                       DiskAudio(*shape) if on_disk else np.zeros(shape, np.float32)) for (i, _), shape in zip(slots, shapes)]
    failed: dict[int, DeviceMemoryError] = {}  # clips a row of which did not fit alone
    for job in _jobs(plans, options):
        rows = [(i, t, plans[i].windows[w]) for i, w in job if i not in failed for t in range(len(plans[i].seeds))]
        if not rows:
            continue
        prompt_frames = rows[0][2].prompt
        chromas = [plans[i].chromas[win.index] for i, _, win in rows]
        prompt = None
        if prompt_frames:
            prompt = np.stack([run_traces[first[i] + t].codes[win.index - 1][:, -prompt_frames:] for i, t, win in rows])
        styles = [plans[i].styles[win.index] for i, _, win in rows]
        seeds = [(plans[i].seeds[t], win.index) for i, t, win in rows]
        frames = _job_frames(plans, job)
        results = _generate_rows(mm, styles, chromas, prompt, frames, options, seeds,
                                 _StepBudget(on_step, _decode_steps(mm, frames, prompt_frames)))
        for row, ((i, t, win), codes) in enumerate(zip(rows, results)):
            if isinstance(codes, DeviceMemoryError):
                failed.setdefault(i, codes)
                continue
            trace = run_traces[first[i] + t]
            trace.styles[win.index], trace.chroma[win.index] = styles[row], chromas[row]
            trace.prompts[win.index] = None if prompt is None else prompt[row]
            trace.codes[win.index] = codes[:, : win.frames]
            joiners[first[i] + t].add(win, _decode(mm, codes[:, : win.frames]))
        give_back_freed_memory()
    if traces is not None:
        traces.extend(run_traces)
    return [failed.get(i, joiner.music) for (i, _), joiner in zip(slots, joiners)]


def _jobs(plans: list[MusicPlan], options: GenerationOptions) -> list[list[tuple[int, int]]]:
    """Group (clip, window) pairs into decode calls of at most batch_size rows.

    Rows share a call only with equal style token counts. Continuation: window k of several clips
    (they share the prompt length). Independent: windows of one clip, several clips mixed when they fit."""
    if options.independent_windows:
        steps = [[(i, w.index) for i, plan in enumerate(plans) for w in plan.windows]]
    else:
        steps = [[(i, k) for i, plan in enumerate(plans) if len(plan.windows) > k]
                 for k in range(max(len(p.windows) for p in plans))]
    jobs = []
    for pairs in steps:
        groups: dict[int, list[tuple[int, int]]] = {}
        for i, w in pairs:
            groups.setdefault(plans[i].tokens[w], []).append((i, w))
        for group in groups.values():
            jobs += [group[s : s + options.batch_size] for s in range(0, len(group), options.batch_size)]
    return jobs


class DiskAudio:
    """float32 audio ``(channels, samples)`` kept in a temporary file instead of memory.

    Read and written by spans, ``audio[:, a:b]``, as the mixer and the writers read music block by
    block (:func:`scoretrack.mix.mix` takes it in place of an array); ``np.asarray(audio)`` reads it
    whole. The file is removed from its folder as soon as it is made, so nothing is left behind, even
    by a killed process; its space is freed when the object is.
    """

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, channels: int, samples: int, *, folder: str | os.PathLike | None = None):
        self.shape = (channels, samples)
        self._file = tempfile.TemporaryFile(dir=folder, buffering=0)
        weakref.finalize(self, self._file.close)  # closed with this object, not left to the file's own finalizer
        size = channels * samples * self.dtype.itemsize
        try:  # claim the space now (where the system can), so a full disk fails before generation, not after
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(self._file.fileno(), 0, max(size, 1))
            self._file.truncate(size)  # reads as silence until written
        except OSError as error:
            self._file.close()
            where = folder or tempfile.gettempdir()
            raise ScoretrackError(f"cannot keep {size / 1e6:.0f} MB of music in a temporary file in {where}: "
                                  f"{media.write_cause(error, where)} (free space, raise the limit, or set TMPDIR "
                                  "to a folder with more room)") from None

    def _offset(self, channel: int, sample: int) -> int:
        return (channel * self.shape[1] + sample) * self.dtype.itemsize

    def __getitem__(self, key) -> np.ndarray:
        start, stop = column_span(key, self.shape[1])
        out = np.empty((self.shape[0], stop - start), self.dtype)
        for channel, row in enumerate(out):
            self._file.seek(self._offset(channel, start))
            if self._file.readinto(row.data.cast("B")) != row.nbytes:
                raise OSError(f"short read from the temporary music file at sample {start}")
        return out

    def __setitem__(self, key, value) -> None:
        start, stop = column_span(key, self.shape[1])
        rows = np.ascontiguousarray(np.broadcast_to(np.asarray(value, self.dtype), (self.shape[0], stop - start)))
        for channel, row in enumerate(rows):
            self._file.seek(self._offset(channel, start))
            if self._file.write(row.data) != row.nbytes:
                raise OSError(f"short write to the temporary music file at sample {start}")

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self[:, :]
        return whole if dtype is None else whole.astype(dtype, copy=False)


class _Joiner:
    """A clip's music written into ``music`` (zeroed, ``(channels, samples)``: an array or a
    :class:`DiskAudio`) as its windows are decoded, in any order, each window crossfaded into the one
    before: linear in the clip's length, with no copy of the whole."""

    def __init__(self, windows: Sequence[Window], per_frame: int, options: GenerationOptions, sample_rate: int,
                 music: np.ndarray | DiskAudio):
        self.windows, self.per_frame, self.options, self.sample_rate = windows, per_frame, options, sample_rate
        self.music = music
        self.waiting: dict[int, np.ndarray] = {}
        self.placed = 0

    def add(self, window: Window, audio: np.ndarray) -> None:
        """Take ``window``'s decoded audio, ``(channels, window.frames * per_frame)``."""
        self.waiting[window.index] = audio
        while self.placed in self.waiting:
            self._place(self.windows[self.placed], self.waiting.pop(self.placed))
            self.placed += 1

    def _place(self, window: Window, audio: np.ndarray) -> None:
        start = window.start * self.per_frame
        if window.index == 0:
            self._write(start, audio)
            return
        overlap = (self.windows[window.index - 1].end - window.start) * self.per_frame
        if self.options.independent_windows:
            fade, curve = overlap, "equal_power"
        else:
            fade, curve = min(overlap, int(round(self.options.crossfade_s * self.sample_rate))), "equal_gain"
        # centre the fade in the overlap, where both windows have context on both sides (seam_times)
        lead = (overlap - fade) // 2
        faded = slice(start + lead, start + lead + fade)
        self._write(faded.start, crossfade_join(self.music[:, faded], audio[:, lead : lead + fade], fade_samples=fade,
                                                curve=curve))
        self._write(faded.stop, audio[:, lead + fade :])

    def _write(self, start: int, audio: np.ndarray) -> None:
        """Write ``audio`` from sample ``start``, cut at the clip's end (the last frame runs past it)."""
        stop = min(self.music.shape[1], start + audio.shape[1])
        if stop > start:
            self.music[:, start:stop] = audio[:, : stop - start]
