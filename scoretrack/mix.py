"""Mixing: crossfades, speech detection, ducking, fades and broadcast-clean loudness.

Functions take float32 ``(channels, samples)`` arrays with the sample rate passed explicitly and
return new arrays. :func:`mix` works block by block: the music is resampled, faded, ducked, mixed,
measured (ITU-R BS.1770 loudness and 4x true peak) and limited in blocks, so an hour of audio needs
about as much memory as a minute; :class:`MixResult` renders any stretch of the result on demand.
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Iterator

import numpy as np
from scipy import ndimage, signal

from .errors import BadParameterError
from .options import MixOptions

VAD_RATE = 16000  # Silero VAD runs at 16 kHz
VAD_FRAME_MS = 30  # resolution of the speech flags
ENVELOPE_HOP_S = 0.01  # ducking envelope resolution
LIMITER_HOP_S = 0.001  # limiter gain resolution
LIMITER_REACH_HOPS = 6  # the limiter starts falling this many hops before a peak...
LIMITER_SMOOTH_HOPS = 5  # ...in a ramp this many hops long
BLOCK_SAMPLES = 1 << 17  # samples per block when mixing and rendering
MAX_CHANNELS = 8
CEILING_MARGIN_DB = 0.001  # aim this far under the true-peak ceiling so float32 rounding cannot cross it

# ffmpeg's default layout for each channel count (av_channel_layout_default)
DEFAULT_LAYOUTS = {
    1: ("FC",), 2: ("FL", "FR"), 3: ("FL", "FR", "LFE"), 4: ("FL", "FR", "FC", "BC"), 5: ("FL", "FR", "FC", "BL", "BR"),
    6: ("FL", "FR", "FC", "LFE", "BL", "BR"), 7: ("FL", "FR", "FC", "LFE", "BC", "SL", "SR"),
    8: ("FL", "FR", "FC", "LFE", "BL", "BR", "SL", "SR"),
}
_LFE = {"LFE", "LFE2"}
# BS.1770 weights these 1.41 (as ffmpeg's ebur128 filter does); LFE 0; every other channel 1
_SURROUND = {"BL", "BR", "BC", "SL", "SR", "TBL", "TBR", "TBC", "SDL", "SDR"}

# ITU-R BS.1770-4 Annex 2: the 48-tap interpolating FIR for 4x true-peak oversampling, as 4 phases of 12
_TRUE_PEAK_PHASES = np.array([
    [0.0017089843750, 0.0109863281250, -0.0196533203125, 0.0332031250000, -0.0594482421875, 0.1373291015625,
     0.9721679687500, -0.1022949218750, 0.0476074218750, -0.0266113281250, 0.0148925781250, -0.0083007812500],
    [-0.0291748046875, 0.0292968750000, -0.0517578125000, 0.0891113281250, -0.1665039062500, 0.4650878906250,
     0.7797851562500, -0.2003173828125, 0.1015625000000, -0.0582275390625, 0.0330810546875, -0.0189208984375],
])
_TRUE_PEAK_PHASES = np.vstack([_TRUE_PEAK_PHASES, _TRUE_PEAK_PHASES[::-1, ::-1]])  # phases 2, 3 mirror 1, 0
_TRUE_PEAK_DELAY = 6  # samples from an input sample to the filter's main tap

def crossfade_join(a: np.ndarray, b: np.ndarray, *, fade_samples: int, curve: str = "equal_gain") -> np.ndarray:
    """Join ``a`` then ``b``, overlapping a's last and b's first ``fade_samples`` samples.

    ``equal_gain`` (linear, gains sum to 1) keeps the level of correlated signals, such as two
    decodings of the same codes; ``equal_power`` (sine/cosine, squared gains sum to 1) keeps the
    level of independent ones.

    Returns
    -------
    np.ndarray
        ``(channels, a + b - fade_samples)``.
    """
    if fade_samples < 0 or fade_samples > min(a.shape[1], b.shape[1]):
        raise BadParameterError(f"fade_samples={fade_samples} must be in [0, {min(a.shape[1], b.shape[1])}]")
    if fade_samples == 0:
        return np.concatenate([a, b], axis=1)
    ramp = (np.arange(fade_samples, dtype=np.float64) + 0.5) / fade_samples
    if curve == "equal_gain":
        fade_in, fade_out = ramp, 1 - ramp
    elif curve == "equal_power":
        fade_in, fade_out = np.sin(ramp * np.pi / 2), np.cos(ramp * np.pi / 2)
    else:
        raise BadParameterError(f"curve={curve!r} must be equal_gain or equal_power")
    middle = a[:, -fade_samples:] * fade_out + b[:, :fade_samples] * fade_in
    return np.concatenate([a[:, :-fade_samples], middle.astype(a.dtype), b[:, fade_samples:]], axis=1)


# ---------------------------------------------------------------- resampling and channel layouts


def _resample_span(read: Callable[[int, int], np.ndarray], length: int, *, up: int, down: int,
                   start: int, stop: int) -> np.ndarray:
    """Samples ``[start, stop)`` of ``scipy.signal.resample_poly(x, up, down, axis=1)``, where x has
    ``length`` samples and ``read(lo, hi)`` returns ``x[:, lo:hi]``; zeros past the resampled end.

    Only a slice of x with a margin for the filter is read, and the values equal the whole-signal
    resampling exactly (the slice starts where the polyphase grid of the whole signal does).
    """
    g = math.gcd(up, down)
    up, down = up // g, down // g
    margin = 10 * max(up, down) // up + down + 2  # resample_poly's filter half-length, in input samples
    lo = max(0, (start * down // up - margin) // down * down)
    hi = min(length, -(-stop * down // up) + margin)
    first = lo * up // down
    piece = read(lo, hi)
    out = np.zeros((piece.shape[0], stop - start), dtype=np.float32)
    if hi > lo:
        resampled = piece if up == down else signal.resample_poly(piece, up, down, axis=1)
        got = resampled[:, start - first : stop - first]
        out[:, : got.shape[1]] = got
    return out


def resample(audio: np.ndarray, *, sample_rate: int, target_rate: int, samples: int) -> np.ndarray:
    """Polyphase resampling to ``target_rate``, cut or zero-padded to exactly ``samples``; block by block."""
    out = np.empty((audio.shape[0], samples), dtype=np.float32)
    for start in range(0, samples, BLOCK_SAMPLES):
        stop = min(samples, start + BLOCK_SAMPLES)
        out[:, start:stop] = _resample_span(lambda lo, hi: audio[:, lo:hi], audio.shape[1], up=target_rate,
                                            down=sample_rate, start=start, stop=stop)
    return out


def layout_names(channels: int, channel_names: Iterable[str] | None = None) -> tuple[str, ...]:
    """ffmpeg channel names for ``channels`` channels: the given ones (checked), else ffmpeg's default layout."""
    if channel_names is None:
        if channels not in DEFAULT_LAYOUTS:
            raise BadParameterError(f"channels={channels}: audio must have 1 to {MAX_CHANNELS} channels")
        return DEFAULT_LAYOUTS[channels]
    names = tuple(channel_names)
    if len(names) != channels:
        raise BadParameterError(f"channel_names={names} name {len(names)} channels, the audio has {channels}")
    return names


def downmix_matrix(channel_names: Iterable[str]) -> np.ndarray:
    """libswresample's standard mono downmix: front left/right at -3 dB, centre at 0 dB, surrounds at
    -6 dB (surround mix level -3 dB times the -3 dB fold into the centre), LFE dropped.

    Returns
    -------
    np.ndarray
        float32 ``(1, channels)``, to be applied as ``matrix @ audio``.
    """
    names = tuple(channel_names)
    if names == ("FC",):
        return np.ones((1, 1), np.float32)
    weights = [1.0 if n == "FC" else 0.0 if n in _LFE else 0.5 if n in _SURROUND else math.sqrt(0.5) for n in names]
    return np.array([weights], np.float32)


def column_span(key, samples: int) -> tuple[int, int]:
    """``(start, stop)`` of ``audio[:, start:stop]``, the one way audio kept out of memory is indexed
    (:class:`MonoDownmix`, :class:`scoretrack.generate.DiskAudio`), clipped to ``samples``."""
    rows, columns = key if isinstance(key, tuple) else (key, slice(None))
    if rows != slice(None) or not isinstance(columns, slice) or columns.step not in (None, 1):
        raise TypeError(f"audio kept out of memory is read as audio[:, start:stop], not audio[{key!r}]")
    start, stop, _ = columns.indices(samples)
    return start, max(start, stop)


class MonoDownmix:
    """The mono downmix of ``audio`` at ``target_rate`` (:func:`downmix`), made span by span when
    read: ``view[:, a:b]`` reads only that span of ``audio`` (with the resampling filter's margin),
    so no full-length mono copy exists. ``shape`` is ``(1, samples at target_rate)``."""

    ndim = 2

    def __init__(self, audio: np.ndarray, *, sample_rate: int, target_rate: int,
                 channel_names: Iterable[str] | None = None):
        self.audio, self.sample_rate, self.target_rate = audio, sample_rate, target_rate
        self.matrix = downmix_matrix(layout_names(audio.shape[0], channel_names))
        self.shape = (1, int(round(audio.shape[1] * target_rate / sample_rate)))

    def __getitem__(self, key) -> np.ndarray:
        start, stop = column_span(key, self.shape[1])
        return _resample_span(lambda lo, hi: self.matrix @ _finite(self.audio[:, lo:hi]), self.audio.shape[1],
                              up=self.target_rate, down=self.sample_rate, start=start, stop=stop)


def _downmix_blocks(audio: np.ndarray, *, sample_rate: int, target_rate: int,
                    channel_names: Iterable[str] | None) -> Iterator[np.ndarray]:
    """The mono downmix of ``audio`` at ``target_rate``, as consecutive 1-D blocks."""
    mono = MonoDownmix(audio, sample_rate=sample_rate, target_rate=target_rate, channel_names=channel_names)
    step = max(1, BLOCK_SAMPLES * target_rate // sample_rate)
    for start in range(0, mono.shape[1], step):
        yield mono[:, start : start + step][0]


def downmix(audio: np.ndarray, *, sample_rate: int, target_rate: int,
            channel_names: Iterable[str] | None = None) -> np.ndarray:
    """Mono downmix (libswresample's matrix, :func:`downmix_matrix`) resampled to ``target_rate``.

    For the melody reference and speech detection: works block by block, so no full-length mono
    copy at ``sample_rate`` is made.

    Returns
    -------
    np.ndarray
        float32 ``(1, round(samples * target_rate / sample_rate))``.
    """
    out = np.empty((1, int(round(audio.shape[1] * target_rate / sample_rate))), np.float32)
    position = 0
    for block in _downmix_blocks(audio, sample_rate=sample_rate, target_rate=target_rate, channel_names=channel_names):
        out[0, position : position + len(block)] = block
        position += len(block)
    return out


def _finite(block: np.ndarray) -> np.ndarray:
    """``block`` as float32 with NaN and infinities replaced by silence."""
    block = np.asarray(block, dtype=np.float32)
    return block if np.isfinite(block).all() else np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)


# ---------------------------------------------------------------- speech detection


@functools.lru_cache(maxsize=1)
def _silero_model():
    import torch

    threads = torch.get_num_threads()
    from silero_vad import load_silero_vad  # importing silero_vad sets torch to one thread for the process

    torch.set_num_threads(threads)
    return load_silero_vad()  # TorchScript model shipped inside the wheel; nothing is downloaded


def _speech_probabilities(blocks: Iterable[np.ndarray], *, frames_per_call: int = 4096) -> tuple[np.ndarray, int]:
    """Silero VAD's speech probability for each 512-sample frame of 16 kHz mono audio given in blocks.

    Runs the model's STFT and encoder on many frames at once and its LSTM cell as one LSTM over the
    sequence (state carried between calls): the same numbers as Silero's frame-by-frame loop, many
    times faster. Returns the probabilities and the number of samples read.
    """
    import torch

    model = _silero_model()._model
    frame, context = 512, model.context_size_samples
    cell = model.decoder.rnn
    lstm = torch.nn.LSTM(cell.weight_ih.shape[1], cell.weight_hh.shape[1])
    with torch.inference_mode():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(lstm, f"{name}_l0").copy_(getattr(cell, name))
    probs, state, previous, pending, read = [], None, np.zeros(context, np.float32), np.zeros(0, np.float32), 0

    def run(samples: np.ndarray) -> None:
        nonlocal state, previous
        frames = samples.reshape(-1, frame)
        contexts = np.concatenate([previous[None], frames[:-1, -context:]])
        previous = frames[-1, -context:].copy()
        with torch.inference_mode():
            features = model.encoder(model.stft(torch.from_numpy(np.concatenate([contexts, frames], axis=1))))
            hidden, state = lstm(features.squeeze(-1)[:, None, :], state)
            probs.append(model.decoder.decoder(hidden[:, 0, :, None].float()).mean(dim=(1, 2)).numpy())

    for block in blocks:
        read += len(block)
        pending = np.concatenate([pending, np.clip(block, -1, 1)])
        usable = len(pending) // (frame * frames_per_call) * frame * frames_per_call
        if usable:
            run(pending[:usable])
            pending = pending[usable:]
    while len(pending):
        chunk, pending = pending[: frame * frames_per_call], pending[frame * frames_per_call :]
        run(np.pad(chunk, (0, -len(chunk) % frame)))
    return (np.concatenate(probs) if probs else np.zeros(0, np.float32)), read


def _speech_flags(blocks: Iterable[np.ndarray], *, threshold: float) -> np.ndarray:
    """Speech/non-speech per 30 ms frame of 16 kHz mono audio given in blocks."""
    from silero_vad.utils_vad import get_speech_timestamps_from_probs

    probs, samples = _speech_probabilities(blocks)
    frame = VAD_RATE * VAD_FRAME_MS // 1000
    flags = np.zeros(samples // frame, dtype=bool)
    stamps = get_speech_timestamps_from_probs(probs.tolist(), sampling_rate=VAD_RATE, threshold=threshold,
                                              min_silence_duration_ms=100, speech_pad_ms=30,
                                              audio_length_samples=samples)
    for stamp in stamps:
        flags[stamp["start"] // frame : -(-stamp["end"] // frame)] = True
    return flags


def detect_speech(audio: np.ndarray, *, sample_rate: int, threshold: float = 0.5,
                  channel_names: Iterable[str] | None = None) -> np.ndarray:
    """Speech/non-speech decision every 30 ms, by Silero VAD (its model ships in its wheel).

    Chosen over WebRTC's VAD by measurement on real recordings (BENCHMARKS.md): WebRTC called 95%
    of an orchestral recording speech, Silero none of it.

    Parameters
    ----------
    audio : np.ndarray
        ``(channels, samples)``; downmixed to mono with libswresample's matrix (:func:`downmix_matrix`).
    sample_rate : int
        Rate of ``audio`` in Hz.
    threshold : float
        Speech probability above which a frame is speech, in (0, 1).
    channel_names : sequence of str, optional
        ffmpeg names of the channels; None: ffmpeg's default layout for the count.

    Returns
    -------
    np.ndarray
        bool, one value per 30 ms frame from the start.
    """
    blocks = _downmix_blocks(audio, sample_rate=sample_rate, target_rate=VAD_RATE, channel_names=channel_names)
    return _speech_flags(blocks, threshold=threshold)


def speech_regions(flags: np.ndarray, *, frame_s: float = VAD_FRAME_MS / 1000) -> list[tuple[float, float]]:
    """(start_s, end_s) of each run of True in per-frame speech flags."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(s * frame_s, e * frame_s) for s, e in zip(starts, ends)]


# ---------------------------------------------------------------- envelopes


def _hop_samples(sample_rate: int, hop_s: float) -> int:
    return max(1, int(round(sample_rate * hop_s)))


def duck_envelope(flags: np.ndarray, *, samples: int, sample_rate: int, options: MixOptions) -> np.ndarray:
    """Music gain (linear) every ``ENVELOPE_HOP_S`` that dips to ``depth_db`` under speech.

    Speech runs are held for ``hold_ms`` (so pauses shorter than that do not pump) and start
    ``lookahead_ms`` early; the gain moves in straight dB ramps that take ``attack_ms`` to go
    down the full depth and ``release_ms`` to come back, so with look-ahead >= attack the music
    is fully down when a word starts.

    Returns
    -------
    np.ndarray
        float64 ``(ceil(samples / hop) + 1,)`` in (0, 1]: point k is the gain at sample ``k * hop``,
        ``hop = round(sample_rate * ENVELOPE_HOP_S)``; :func:`expand_envelope` gives per-sample values.
    """
    hop = _hop_samples(sample_rate, ENVELOPE_HOP_S)
    hop_s = hop / sample_rate
    steps = -(-samples // hop) + 1
    index = np.minimum((np.arange(steps) * hop_s / (VAD_FRAME_MS / 1000)).astype(int), max(len(flags) - 1, 0))
    speech = flags[index] if len(flags) else np.zeros(steps, dtype=bool)
    hold = int(round(options.hold_ms / 1000 / hop_s))
    ahead = int(round(options.lookahead_ms / 1000 / hop_s))
    # widen each run: step i is ducked if speech lies within [i - hold, i + ahead]
    speech = np.convolve(speech.astype(np.int32), np.ones(hold + ahead + 1, np.int32))[ahead : ahead + steps] > 0
    target = np.where(speech, options.depth_db, 0.0)
    gain_db = np.empty(steps)
    level = target[0]  # speech at the very start: begin ducked, there is nothing to look ahead of
    down = _slew(options.attack_ms, options.depth_db, hop_s)
    up = _slew(options.release_ms, options.depth_db, hop_s)
    for i, goal in enumerate(target):
        level = max(goal, level - down) if goal < level else min(goal, level + up)
        gain_db[i] = level
    return 10 ** (gain_db / 20)


def music_envelope(flags: np.ndarray, *, samples: int, sample_rate: int, options: MixOptions) -> np.ndarray:
    """The music's gain every ``ENVELOPE_HOP_S`` in ``options.mode``: :func:`duck_envelope`, or 1 throughout
    in ``replace`` mode (nothing to duck under)."""
    if options.mode == "replace":
        return np.ones(-(-samples // _hop_samples(sample_rate, ENVELOPE_HOP_S)) + 1)
    return duck_envelope(flags, samples=samples, sample_rate=sample_rate, options=options)


def _slew(time_ms: float, depth_db: float, hop_s: float) -> float:
    """dB per envelope step that covers the full ducking depth in ``time_ms`` (0: at once)."""
    return abs(depth_db) * hop_s / (time_ms / 1000) if time_ms > 0 else float("inf")


def expand_envelope(points: np.ndarray, *, hop: int, start: int, stop: int) -> np.ndarray:
    """Per-sample values ``[start, stop)`` of an envelope given every ``hop`` samples (point k at
    sample ``k * hop``, linear in between, the last point held); each value depends on its position
    only, so any split into blocks gives the same samples."""
    first, last = start // hop, -(-stop // hop)
    ramp = np.arange(hop, dtype=np.float64) / hop
    low = points[np.minimum(np.arange(first, last), len(points) - 1)]
    high = points[np.minimum(np.arange(first + 1, last + 1), len(points) - 1)]
    values = (low[:, None] + (high - low)[:, None] * ramp).reshape(-1)
    return values[start - first * hop : stop - first * hop].astype(np.float32)


def _fade_gain(start: int, stop: int, *, samples: int, sample_rate: int, fade_in_s: float, fade_out_s: float) -> np.ndarray:
    """Half-cosine fade-in and fade-out gain for samples ``[start, stop)`` of a ``samples``-long clip."""
    index = np.arange(start, stop)
    gain = np.ones(stop - start, dtype=np.float64)
    for length_s, position in ((fade_in_s, index), (fade_out_s, samples - 1 - index)):
        length = min(int(round(length_s * sample_rate)), samples // 2)
        inside = position < length
        if length and inside.any():
            gain[inside] *= 0.5 - 0.5 * np.cos(np.pi * (position[inside] + 0.5) / length)
    return gain.astype(np.float32)


def fade_edges(audio: np.ndarray, *, sample_rate: int, fade_in_s: float, fade_out_s: float) -> np.ndarray:
    """Half-cosine fade in at the start and out at the end, each at most half the clip."""
    n = audio.shape[1]
    return audio.astype(np.float32) * _fade_gain(0, n, samples=n, sample_rate=sample_rate, fade_in_s=fade_in_s,
                                                 fade_out_s=fade_out_s)


# ---------------------------------------------------------------- measurement


def _accumulate(target: np.ndarray, values: np.ndarray, *, first: int, hop: int, ufunc: np.ufunc) -> None:
    """Fold per-sample ``values`` (sample ``first`` onwards) into bins of ``hop`` samples of ``target``
    with ``ufunc`` (add or maximum); values past the last bin go into it."""
    if not len(values):
        return
    cuts = np.arange((first // hop + 1) * hop, first + len(values), hop) - first
    folded = ufunc.reduceat(values, np.concatenate([[0], cuts]))
    bins = np.minimum(np.arange(first // hop, first // hop + len(folded)), len(target) - 1)
    ufunc.at(target, bins, folded)


@functools.lru_cache(maxsize=8)
def _k_weighting(sample_rate: int) -> np.ndarray:
    """BS.1770 K-weighting as second-order sections, designed as pyloudnorm designs it for any rate."""
    from pyloudnorm.iirfilter import IIRfilter

    shelf = IIRfilter(4.0, 1 / np.sqrt(2), 1500.0, sample_rate, "high_shelf")
    high_pass = IIRfilter(0.0, 0.5, 38.0, sample_rate, "high_pass")
    return np.vstack([signal.tf2sos(shelf.b, shelf.a), signal.tf2sos(high_pass.b, high_pass.a)])


def loudness_weights(channel_names: Iterable[str]) -> np.ndarray:
    """BS.1770 channel weights: 0 for LFE, 1.41 for surround and back channels, 1 otherwise."""
    return np.array([0.0 if n in _LFE else 1.41 if n in _SURROUND else 1.0 for n in channel_names])


class LoudnessMeter:
    """ITU-R BS.1770-4 integrated loudness, fed consecutive blocks.

    K-weighting runs as a stateful IIR across blocks; the weighted energy is kept per
    ``LIMITER_HOP_S``, and the 400 ms gating blocks (75% overlap) are formed from it at the end,
    as pyloudnorm forms them from the whole signal. A clip shorter than one gating block is one block.
    """

    def __init__(self, *, sample_rate: int, samples: int, weights: np.ndarray):
        self.sample_rate, self.samples, self.weights = sample_rate, samples, np.asarray(weights, np.float64)
        self.sos = _k_weighting(sample_rate)
        self.state = np.zeros((len(self.sos), len(self.weights), 2))
        self.hop = _hop_samples(sample_rate, LIMITER_HOP_S)
        self.energy = np.zeros(max(1, -(-samples // self.hop)))
        self.position = 0

    def add(self, block: np.ndarray) -> None:
        filtered, self.state = signal.sosfilt(self.sos, np.asarray(block, np.float64), axis=1, zi=self.state)
        power = np.einsum("c,cn->n", self.weights, filtered * filtered)
        _accumulate(self.energy, power, first=self.position, hop=self.hop, ufunc=np.add)
        self.position += block.shape[1]

    def lufs(self, gain: float | np.ndarray = 1.0) -> float:
        """Integrated loudness of everything added, scaled by ``gain`` (linear; one value, or one
        per hop to predict the effect of a slowly varying gain); -inf for silence."""
        energy = self.energy * np.square(gain)
        per_step = int(round(0.1 / LIMITER_HOP_S))  # hops per 100 ms, the step of the gating blocks
        count = int(np.round((self.samples / self.sample_rate - 0.4) / 0.1)) + 1
        if count < 1:
            z = np.array([energy.sum() / max(self.samples, 1)])
        else:
            steps = np.concatenate([energy, np.zeros(-len(energy) % per_step)]).reshape(-1, per_step).sum(axis=1)
            steps = np.concatenate([steps, np.zeros(max(0, count + 3 - len(steps)))])
            z = np.convolve(steps, np.ones(4))[3 : 3 + count] / (4 * per_step * self.hop)
        with np.errstate(divide="ignore"):
            levels = -0.691 + 10 * np.log10(z)
            gated = z[levels >= -70.0]
            if not len(gated):
                return float("-inf")
            relative = -0.691 + 10 * np.log10(gated.mean()) - 10
            gated = z[(levels > relative) & (levels > -70.0)]
            return float(-0.691 + 10 * np.log10(gated.mean())) if len(gated) else float("-inf")


def _oversampled_magnitude(extended: np.ndarray) -> np.ndarray:
    """For each sample after the first 11 of float32 ``extended`` (C, 11 + n): the largest magnitude
    among its 4 interpolated points, over all channels; the FIR as 48 shifted multiply-adds, which
    numpy runs several times faster than a general polyphase filter."""
    taps = _TRUE_PEAK_PHASES.shape[1]
    length = extended.shape[1] - taps + 1
    best, term = np.zeros(length, np.float32), np.empty((extended.shape[0], length), np.float32)
    for phase in _TRUE_PEAK_PHASES.astype(np.float32):
        total = extended[:, taps - 1 :] * phase[0]
        for k in range(1, taps):
            total += np.multiply(extended[:, taps - 1 - k : taps - 1 - k + length], phase[k], out=term)
        np.maximum(best, np.abs(total, out=total).max(axis=0), out=best)
    return best


class TruePeakMeter:
    """ITU-R BS.1770-4 Annex 2 true peak (4x oversampling with its 48-tap FIR), fed consecutive blocks.

    Keeps the largest oversampled magnitude over all channels per ``LIMITER_HOP_S`` of input, which
    the limiter reads; :meth:`finish` lets the filter ring out past the last sample.
    """

    def __init__(self, *, sample_rate: int, samples: int, channels: int):
        self.hop = _hop_samples(sample_rate, LIMITER_HOP_S)
        self.peaks = np.zeros(max(1, -(-samples // self.hop)))
        self.history = np.zeros((channels, len(_TRUE_PEAK_PHASES[0]) - 1), np.float32)
        self.position = 0

    def add(self, block: np.ndarray) -> None:
        taps = self.history.shape[1]
        extended = np.concatenate([self.history, np.asarray(block, np.float32)], axis=1)
        self.history = extended[:, -taps:]
        length = extended.shape[1] - taps
        magnitude = _oversampled_magnitude(extended)
        first = self.position - _TRUE_PEAK_DELAY
        skip = max(0, -first)
        _accumulate(self.peaks, magnitude[skip:], first=first + skip, hop=self.hop, ufunc=np.maximum)
        self.position += length

    def finish(self) -> None:
        self.add(np.zeros((self.history.shape[0], self.history.shape[1]), np.float32))

    def dbtp(self, gain: float = 1.0) -> float:
        peak = float(self.peaks.max()) * gain
        return 20 * math.log10(peak) if peak > 0 else float("-inf")


def integrated_loudness(audio: np.ndarray, *, sample_rate: int, channel_names: Iterable[str] | None = None) -> float:
    """ITU-R BS.1770 integrated loudness in LUFS with its channel weights; -inf for silence.

    Measured block by block (:class:`LoudnessMeter`); equal to pyloudnorm's whole-signal value.
    """
    meter = LoudnessMeter(sample_rate=sample_rate, samples=audio.shape[1],
                          weights=loudness_weights(layout_names(audio.shape[0], channel_names)))
    for start in range(0, audio.shape[1], BLOCK_SAMPLES):
        meter.add(_finite(audio[:, start : start + BLOCK_SAMPLES]))
    return meter.lufs()


def true_peak_db(audio: np.ndarray, *, sample_rate: int) -> float:
    """Peak of the 4x oversampled signal in dBTP (BS.1770-4 Annex 2); -inf for silence."""
    meter = TruePeakMeter(sample_rate=sample_rate, samples=audio.shape[1], channels=audio.shape[0])
    for start in range(0, audio.shape[1], BLOCK_SAMPLES):
        meter.add(audio[:, start : start + BLOCK_SAMPLES])
    meter.finish()
    return meter.dbtp()


def levels(blocks: Iterable[np.ndarray], *, sample_rate: int, samples: int,
           channel_names: Iterable[str] | None = None) -> tuple[float, float]:
    """Integrated loudness (LUFS) and true peak (dBTP) of a signal given as float ``(channels, n)``
    blocks in order, ``samples`` long (blocks beyond it are cut there); -inf for silence."""
    loudness = peak = None
    position = 0
    for block in blocks:
        block = block[:, : max(0, samples - position)]
        if loudness is None:
            loudness = LoudnessMeter(sample_rate=sample_rate, samples=samples,
                                     weights=loudness_weights(layout_names(block.shape[0], channel_names)))
            peak = TruePeakMeter(sample_rate=sample_rate, samples=samples, channels=block.shape[0])
        loudness.add(_finite(block))
        peak.add(block)
        position += block.shape[1]
    if loudness is None:
        return float("-inf"), float("-inf")
    peak.finish()
    return loudness.lufs(), peak.dbtp()


def _limiter_points(peaks: np.ndarray, *, ceiling: float) -> np.ndarray | None:
    """Look-ahead limiter gain, one point per ``LIMITER_HOP_S`` (as :func:`expand_envelope` reads it),
    that keeps every hop's oversampled peak under ``ceiling``; None when nothing reaches it.

    The minimum over +-LIMITER_REACH_HOPS, then a LIMITER_SMOOTH_HOPS-wide average, stays under the
    need of every hop within 4 hops, so the gain is down before a peak arrives and while it lasts.
    """
    need = np.minimum(1.0, ceiling / np.maximum(peaks, 1e-12))
    if need.min() >= 1.0:
        return None
    held = ndimage.minimum_filter1d(need, size=2 * LIMITER_REACH_HOPS + 1, mode="nearest")
    half = LIMITER_SMOOTH_HOPS // 2
    return np.convolve(np.pad(held, half, mode="edge"), np.full(LIMITER_SMOOTH_HOPS, 1 / LIMITER_SMOOTH_HOPS), "valid")


# ---------------------------------------------------------------- the mix


@dataclass(frozen=True, eq=False)
class _Render:
    """Everything that defines the mix, so any stretch of it can be computed on its own."""

    music: np.ndarray  # (1 or 2, n) at music_rate, or a generate.DiskAudio (read in spans alike)
    original: np.ndarray | None  # (C, samples) at sample_rate, in mix mode only
    music_rate: int
    sample_rate: int
    samples: int
    channels: int  # of the output
    music_channels: tuple[int, int]  # output channels the music goes to
    options: MixOptions
    envelope: np.ndarray  # ducking gain every ENVELOPE_HOP_S
    level: float = 1.0  # music gain that sets its level against the original (stems carry it)
    overall: float = 1.0  # the loudness gain of the whole mix (stems and timelines leave it out)
    limiter: np.ndarray | None = None  # limiter gain every LIMITER_HOP_S
    names: tuple[str, ...] = ("FL", "FR")  # of the output channels

    def dry(self, start: int, stop: int) -> np.ndarray:
        """The resampled, faded, level-set music for samples ``[start, stop)``."""
        music = _resample_span(lambda lo, hi: _finite(self.music[:, lo:hi]), self.music.shape[1], up=self.sample_rate,
                               down=self.music_rate, start=start, stop=stop)
        opts = self.options
        fade = _fade_gain(start, stop, samples=self.samples, sample_rate=self.sample_rate, fade_in_s=opts.fade_in_s,
                          fade_out_s=opts.fade_out_s)
        return music * (fade * np.float32(self.level))

    def __call__(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mix, dry music, ducked music) for samples ``[start, stop)``: the mix is the original plus the
        ducked music, times the loudness gain ``overall`` and the limiter; the music is neither's."""
        rate = self.sample_rate
        dry = self.dry(start, stop)
        ducked = dry * expand_envelope(self.envelope, hop=_hop_samples(rate, ENVELOPE_HOP_S), start=start, stop=stop)
        out = np.zeros((self.channels, stop - start), np.float32)
        if self.original is not None:
            out += _finite(self.original[:, start:stop])
        out[list(self.music_channels)] += ducked  # a mono row is broadcast to both
        out *= np.float32(self.overall)
        if self.limiter is not None:
            out *= expand_envelope(self.limiter, hop=_hop_samples(rate, LIMITER_HOP_S), start=start, stop=stop)
        return out, dry, ducked

    def blocks(self, block_samples: int = BLOCK_SAMPLES) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for start in range(0, self.samples, block_samples):
            yield self(start, min(self.samples, start + block_samples))

    def measure(self) -> tuple[LoudnessMeter, TruePeakMeter]:
        """One pass over the mix: its loudness and true-peak meters."""
        loudness = LoudnessMeter(sample_rate=self.sample_rate, samples=self.samples,
                                 weights=loudness_weights(self.names))
        peak = TruePeakMeter(sample_rate=self.sample_rate, samples=self.samples, channels=self.channels)
        for audio, _, _ in self.blocks():
            loudness.add(audio)
            peak.add(audio)
        peak.finish()
        return loudness, peak


@dataclass(frozen=True, eq=False)
class MixResult:
    """The final soundtrack and what shaped it; arrays are rendered block by block when first asked for.

    Attributes
    ----------
    sample_rate : int
    samples : int
        Length of every array, at ``sample_rate``.
    channel_names : tuple of str
        ffmpeg names of the output channels of :attr:`audio`.
    speech : list of (float, float)
        Detected speech regions, seconds.
    loudness_lufs, true_peak_dbtp : float
        Of :attr:`audio` (BS.1770 integrated loudness; 4x oversampled peak).
    envelope : np.ndarray
        The music gain (linear) every ``ENVELOPE_HOP_S``; :attr:`gain` per sample.
    """

    sample_rate: int
    samples: int
    channel_names: tuple[str, ...]
    speech: list[tuple[float, float]]
    loudness_lufs: float
    true_peak_dbtp: float
    envelope: np.ndarray
    _render: _Render = field(repr=False)
    _unlimited: tuple | None = field(default=None, repr=False)  # the meters of the mix before its gain and limiter

    def blocks(self, block_samples: int = BLOCK_SAMPLES) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield ``(audio, dry, ducked)`` blocks of ``block_samples`` samples in order (the last may be
        shorter): slices of :attr:`audio`, :attr:`music` and :attr:`ducked`, equal to them exactly."""
        if block_samples <= 0:
            raise BadParameterError(f"block_samples={block_samples} must be a positive integer")
        return self._render.blocks(block_samples)

    def _collect(self, which: int, channels: int) -> np.ndarray:
        out = np.empty((channels, self.samples), np.float32)
        for start in range(0, self.samples, BLOCK_SAMPLES):
            stop = min(self.samples, start + BLOCK_SAMPLES)
            out[:, start:stop] = self._render(start, stop)[which]
        return out

    @functools.cached_property
    def audio(self) -> np.ndarray:
        """The final mix, float32 ``(len(channel_names), samples)``."""
        return self._collect(0, len(self.channel_names))

    @property
    def loudness_gain_db(self) -> float:
        """The one gain, in dB, that brings the original plus :attr:`ducked` to the loudness of
        :attr:`audio` (which adds only the limiter's brief dips, where peaks would cross the ceiling)."""
        return float(20 * np.log10(self._render.overall))

    @functools.cached_property
    def music(self) -> np.ndarray:
        """The level-set, faded music before ducking, at the level that sits against the untouched
        original: without the loudness gain (:attr:`loudness_gain_db`) and the limiter, so the
        original plus :attr:`ducked` is the mix's balance; the music's own channels."""
        return self._collect(1, self._render.music.shape[0])

    @functools.cached_property
    def ducked(self) -> np.ndarray:
        """:attr:`music` times :attr:`gain`."""
        return self._collect(2, self._render.music.shape[0])

    @functools.cached_property
    def gain(self) -> np.ndarray:
        """The ducking gain, linear, float32 ``(samples,)``."""
        return expand_envelope(self.envelope, hop=_hop_samples(self.sample_rate, ENVELOPE_HOP_S), start=0,
                               stop=self.samples)


def _check_arrays(music: np.ndarray, original: np.ndarray | None, music_rate: int, sample_rate: int) -> None:
    for name, rate in (("music_rate", music_rate), ("sample_rate", sample_rate)):
        if not isinstance(rate, numbers.Integral) or rate <= 0:
            raise BadParameterError(f"{name}={rate} must be a positive integer number of Hz")
    if music.ndim != 2 or music.shape[0] not in (1, 2):
        raise BadParameterError(f"music has shape {music.shape}; it must be (1 or 2 channels, samples)")
    if original is not None and (original.ndim != 2 or not 1 <= original.shape[0] <= MAX_CHANNELS):
        raise BadParameterError(f"original has shape {original.shape}; it must be (1 to {MAX_CHANNELS} channels, samples)")


def mix(music: np.ndarray, original: np.ndarray | None, *, music_rate: int, sample_rate: int,
        options: MixOptions = MixOptions(), channel_names: Iterable[str] | None = None,
        samples: int | None = None, speech_flags: np.ndarray | None = None) -> MixResult:
    """Duck ``music`` under the speech in ``original``, mix them per ``options.mode``, and normalise.

    Works block by block: beyond its inputs it holds envelopes and meters (a few tens of MB for
    an hour), never a full-length copy of the audio.

    Parameters
    ----------
    music : np.ndarray or generate.DiskAudio
        ``(1 or 2, n)`` at ``music_rate``, the clip's length; resampled to ``sample_rate`` inside.
        NaN and infinities are treated as silence. Only read in spans, ``music[:, a:b]``, so music
        kept in a temporary file (:class:`scoretrack.generate.DiskAudio`) is never read whole.
    original : np.ndarray or None
        The clip's audio ``(C, samples)`` at ``sample_rate``, C from 1 to 8; None when it has none.
    music_rate, sample_rate : int
        Rates of ``music`` and of ``original`` and the result, in Hz.
    options : MixOptions
    channel_names : sequence of str, optional
        ffmpeg names of ``original``'s channels (e.g. ``("FL", "FR", "FC", "LFE", "BL", "BR")``);
        None: ffmpeg's default layout for the count (mono, stereo, ..., 5.1, 7.1).
    samples : int, optional
        Length of the result; defaults to ``original``'s, or the music's duration at ``sample_rate``.
    speech_flags : np.ndarray, optional
        :func:`detect_speech` of ``original`` with these options' threshold, when already known (the
        takes of a clip duck under one detection); None: detected here.

    Returns
    -------
    MixResult
        In ``mix`` mode with an original of 2 or more channels the result keeps its layout: the
        music goes to FL and FR (the first two channels if there are none) and every other channel
        passes through with only the common gain. A mono original with mono music gives a mono
        result. Otherwise the result is stereo (mono duplicated).

    Raises
    ------
    BadParameterError
        Bad options, shapes, rates or channel names.
    """
    _check_arrays(music, original, music_rate, sample_rate)
    if samples is None:
        samples = original.shape[1] if original is not None else int(round(music.shape[1] * sample_rate / music_rate))
    if original is not None and original.shape[1] != samples:
        raise BadParameterError(f"original has {original.shape[1]} samples, the mix {samples}; they must match")
    names = layout_names(original.shape[0], channel_names) if original is not None else None
    has_audio = original is not None and bool(np.any(original))
    if not has_audio:
        flags = np.zeros(0, bool)
    elif speech_flags is None:
        flags = detect_speech(original, sample_rate=sample_rate, threshold=options.vad_threshold, channel_names=names)
    else:
        flags = np.asarray(speech_flags, dtype=bool)
    envelope = music_envelope(flags, samples=samples, sample_rate=sample_rate, options=options)
    # mono music into a mono original stays mono; stereo music makes a mono original stereo
    keep_layout = options.mode == "mix" and original is not None and (original.shape[0] >= 2 or music.shape[0] == 1)
    out_names = names if keep_layout else ("FL", "FR")
    front = (out_names.index("FL"), out_names.index("FR")) if {"FL", "FR"} <= set(out_names) else (0, 1)[:len(out_names)]
    render = _Render(music=music, original=None, music_rate=music_rate, sample_rate=sample_rate, samples=samples,
                     channels=len(out_names), music_channels=front, options=options, envelope=envelope, names=out_names)
    if options.mode == "mix" and has_audio:
        placed = original if keep_layout else np.broadcast_to(original, (2, samples))  # mono: both sides
        render = replace(render, original=placed, level=_music_level(render, placed, out_names))
    return _normalise(render, speech=speech_regions(flags))


def _music_level(render: _Render, original: np.ndarray, names: tuple[str, ...]) -> float:
    """Gain that puts the faded music ``music_level_db`` from the original's loudness, both as they
    sit in the output (``original`` in its output channels ``names``, the music in the front pair);
    1 when either is silent. The music is measured at its own rate, before
    resampling (which leaves its loudness as it is), to save a pass."""
    original_lufs = integrated_loudness(original, sample_rate=render.sample_rate, channel_names=names)
    music, rate, opts = render.music, render.music_rate, render.options
    meter = LoudnessMeter(sample_rate=rate, samples=music.shape[1],
                          # each music channel feeds len(music_channels) / channels output channels
                          weights=np.full(music.shape[0], len(render.music_channels) / music.shape[0]))
    for start in range(0, music.shape[1], BLOCK_SAMPLES):
        stop = min(music.shape[1], start + BLOCK_SAMPLES)
        meter.add(_finite(music[:, start:stop]) * _fade_gain(start, stop, samples=music.shape[1], sample_rate=rate,
                                                               fade_in_s=opts.fade_in_s, fade_out_s=opts.fade_out_s))
    music_lufs = meter.lufs()
    if not (np.isfinite(music_lufs) and np.isfinite(original_lufs)):
        return 1.0
    return float(10 ** ((original_lufs + opts.music_level_db - music_lufs) / 20))


def _normalise(render: _Render, *, speech: list[tuple[float, float]], unlimited: tuple | None = None,
               ceiling_dbtp: float | None = None) -> MixResult:
    """Bring the mix to ``target_lufs`` with its true peak under ``true_peak_dbtp``.

    One pass measures the mix; a gain sets its loudness. Where peaks would then cross the ceiling,
    the look-ahead limiter takes them down; its (small) loss of loudness is predicted from the
    per-millisecond energies and made up, and a second pass measures the limited mix (repeated
    while it misses the target by 0.1 LU or more). The gain never asks the limiter for more than
    ``max_limiting_db``: where the target would, the mix stays under it. Silence stays silence.
    ``unlimited``: the first pass's meters, when already known (:func:`with_ceiling`); ``ceiling_dbtp``:
    the ceiling, when lower than the options' (:func:`with_ceiling`).
    """
    opts = render.options
    ceiling = 10 ** (((opts.true_peak_dbtp if ceiling_dbtp is None else ceiling_dbtp) - CEILING_MARGIN_DB) / 20)
    unlimited, unlimited_peak = unlimited or render.measure()
    loudness, peak, scale = unlimited, unlimited_peak, 1.0
    if np.isfinite(unlimited.lufs()):
        # at this gain the loudest peak needs exactly max_limiting_db of the limiter
        most = ceiling * 10 ** (opts.max_limiting_db / 20) / unlimited_peak.peaks.max()
        gain, aim = min(most, 10 ** ((opts.target_lufs - unlimited.lufs()) / 20)), opts.target_lufs
        for _ in range(4):
            limited = _predicted_limiter(unlimited, unlimited_peak.peaks, gain=gain, ceiling=ceiling, target_lufs=aim,
                                         most=most)
            if limited is None:
                render, scale = replace(render, overall=gain), gain  # the meters measured the mix before the gain
                break
            render = replace(render, overall=limited[1], limiter=limited[0])
            loudness, peak = render.measure()
            scale = 1.0
            short = loudness.lufs() < opts.target_lufs
            if abs(loudness.lufs() - opts.target_lufs) < 0.1 or (limited[1] >= most and short):  # as loud as it may be
                break
            aim += opts.target_lufs - loudness.lufs()  # the prediction missed by this much: aim off by as much
        excess = peak.peaks.max() * scale / ceiling
        if excess > 1:  # the limiter's smooth gain can leave a fraction of a dB: scale it away
            render = replace(render, overall=render.overall / excess)
            scale /= excess
    return MixResult(sample_rate=render.sample_rate, samples=render.samples, channel_names=render.names,
                     speech=speech, loudness_lufs=loudness.lufs(scale), true_peak_dbtp=peak.dbtp(scale),
                     envelope=render.envelope, _render=render, _unlimited=(unlimited, unlimited_peak))


def with_ceiling(result: MixResult, *, true_peak_dbtp: float) -> MixResult:
    """``result``'s mix normalised again with its true-peak ceiling at ``true_peak_dbtp``: the same
    loudness target, the limiter taking the peaks further down (for an encoder that overshoots)."""
    return _normalise(replace(result._render, overall=1.0, limiter=None), speech=result.speech,
                      unlimited=result._unlimited, ceiling_dbtp=true_peak_dbtp)


def _predicted_limiter(loudness: LoudnessMeter, peaks: np.ndarray, *, gain: float, ceiling: float,
                       target_lufs: float, most: float) -> tuple[np.ndarray, float] | None:
    """The limiter for the unlimited mix (measured by ``loudness`` and ``peaks``) times ``gain``, and
    the gain, at most ``most``, that makes up the loudness it takes, found on the per-hop measurements
    alone; None when no peak reaches the ceiling."""
    for _ in range(8):
        limiter = _limiter_points(peaks * gain, ceiling=ceiling)
        if limiter is None:
            return None
        per_hop = gain * (limiter + np.concatenate([limiter[1:], limiter[-1:]])) / 2
        missing = target_lufs - loudness.lufs(per_hop)
        if abs(missing) < 0.01 or (gain >= most and missing > 0):
            break
        gain = min(most, gain * 10 ** (missing / 20))
    return limiter, gain
