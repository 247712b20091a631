"""Mixing: crossfades, speech detection, ducking, fades and broadcast-clean loudness.

All functions take float32 ``(channels, samples)`` arrays with the sample rate passed explicitly and
return new arrays.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pyloudnorm
from scipy import ndimage, signal

from .errors import BadParameterError

VAD_RATE = 16000  # Silero VAD runs at 16 kHz
VAD_FRAME_MS = 30
ENVELOPE_HOP_S = 0.01  # ducking envelope resolution
TRUE_PEAK_OVERSAMPLING = 4  # ITU-R BS.1770-4 Annex 2 asks for at least 4x at 48 kHz
MIX_MODES = ("mix", "replace", "music")


@dataclass(frozen=True)
class MixOptions:
    """How the music meets the original audio."""

    mode: str = "mix"  # mix: original + ducked music; replace: music alone; music: ducked music alone
    depth_db: float = -12.0  # music gain under speech
    attack_ms: float = 100.0  # time to go down the full depth
    release_ms: float = 500.0  # time to come back up from the full depth
    hold_ms: float = 300.0  # stay ducked this long after speech; bridges short pauses
    lookahead_ms: float = 100.0  # start ducking this early, so a word never starts over full music
    vad_threshold: float = 0.5  # Silero speech probability above which a frame is speech
    music_level_db: float = -6.0  # music loudness relative to the original audio's, in mix mode
    target_lufs: float = -14.0  # integrated loudness of the result (-23 for broadcast)
    true_peak_dbtp: float = -1.0  # ceiling for the oversampled peak
    fade_in_s: float = 1.0
    fade_out_s: float = 2.0

    def validate(self) -> None:
        """Raise :class:`BadParameterError` naming the first bad value."""
        if self.mode not in MIX_MODES:
            raise BadParameterError(f"mode={self.mode!r} must be one of {', '.join(MIX_MODES)}")
        if self.depth_db > 0:
            raise BadParameterError(f"depth_db={self.depth_db} must be <= 0 dB")
        for name in ("attack_ms", "release_ms", "hold_ms", "lookahead_ms", "fade_in_s", "fade_out_s"):
            if getattr(self, name) < 0:
                raise BadParameterError(f"{name}={getattr(self, name)} must be >= 0")
        if not 0 < self.vad_threshold < 1:
            raise BadParameterError(f"vad_threshold={self.vad_threshold} must be in (0, 1)")
        if not -70 <= self.target_lufs <= 0:
            raise BadParameterError(f"target_lufs={self.target_lufs} must be in [-70, 0] LUFS")
        if self.true_peak_dbtp > 0:
            raise BadParameterError(f"true_peak_dbtp={self.true_peak_dbtp} must be <= 0 dBTP")


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


def resample(audio: np.ndarray, *, sample_rate: int, target_rate: int, samples: int) -> np.ndarray:
    """Polyphase resampling to ``target_rate``, cut or zero-padded to exactly ``samples``."""
    if sample_rate != target_rate:
        g = np.gcd(sample_rate, target_rate)
        audio = signal.resample_poly(audio, target_rate // g, sample_rate // g, axis=1)
    out = np.zeros((audio.shape[0], samples), dtype=np.float32)
    n = min(samples, audio.shape[1])
    out[:, :n] = audio[:, :n]
    return out


@functools.lru_cache(maxsize=1)
def _silero_model():
    from silero_vad import load_silero_vad

    return load_silero_vad()  # TorchScript model shipped inside the wheel; nothing is downloaded


def detect_speech(audio: np.ndarray, *, sample_rate: int, threshold: float = 0.5) -> np.ndarray:
    """Speech/non-speech decision every 30 ms, by Silero VAD (its model ships in its wheel).

    Chosen over WebRTC's VAD by measurement on real recordings (BENCHMARKS.md): WebRTC called 95%
    of an orchestral recording speech, Silero none of it.

    Parameters
    ----------
    audio : np.ndarray
        ``(channels, samples)``; channels are averaged.
    sample_rate : int
        Rate of ``audio`` in Hz.
    threshold : float
        Speech probability above which a frame is speech, in (0, 1).

    Returns
    -------
    np.ndarray
        bool, one value per 30 ms frame from the start.
    """
    import torch
    from silero_vad import get_speech_timestamps

    samples = int(round(audio.shape[1] * VAD_RATE / sample_rate))
    mono = resample(audio.mean(axis=0, keepdims=True), sample_rate=sample_rate, target_rate=VAD_RATE, samples=samples)[0]
    frame = VAD_RATE * VAD_FRAME_MS // 1000
    flags = np.zeros(samples // frame, dtype=bool)
    if not np.any(mono):
        return flags
    with torch.inference_mode():
        stamps = get_speech_timestamps(torch.from_numpy(np.clip(mono, -1, 1)), _silero_model(), threshold=threshold,
                                       sampling_rate=VAD_RATE, min_silence_duration_ms=100, speech_pad_ms=30)
    for stamp in stamps:
        flags[stamp["start"] // frame : -(-stamp["end"] // frame)] = True
    return flags


def speech_regions(flags: np.ndarray, *, frame_s: float = VAD_FRAME_MS / 1000) -> list[tuple[float, float]]:
    """(start_s, end_s) of each run of True in per-frame speech flags."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(s * frame_s, e * frame_s) for s, e in zip(starts, ends)]


def duck_envelope(flags: np.ndarray, *, samples: int, sample_rate: int, options: MixOptions) -> np.ndarray:
    """Music gain (linear, per sample) that dips to ``depth_db`` under speech.

    Speech runs are held for ``hold_ms`` (so pauses shorter than that do not pump) and start
    ``lookahead_ms`` early; the gain moves in straight dB ramps that take ``attack_ms`` to go
    down the full depth and ``release_ms`` to come back, so with look-ahead >= attack the music
    is fully down when a word starts.

    Returns
    -------
    np.ndarray
        float32 ``(samples,)`` in (0, 1].
    """
    hop = ENVELOPE_HOP_S
    steps = max(1, int(np.ceil(samples / sample_rate / hop)))
    frame_times = np.arange(steps) * hop
    index = np.minimum((frame_times / (VAD_FRAME_MS / 1000)).astype(int), max(len(flags) - 1, 0))
    speech = flags[index] if len(flags) else np.zeros(steps, dtype=bool)
    hold = int(round(options.hold_ms / 1000 / hop))
    ahead = int(round(options.lookahead_ms / 1000 / hop))
    # widen each run: frame i is ducked if speech lies within [i - hold, i + ahead]
    speech = np.convolve(speech.astype(np.int32), np.ones(hold + ahead + 1, np.int32))[ahead : ahead + steps] > 0
    target = np.where(speech, options.depth_db, 0.0)
    gain_db = np.empty(steps)
    level = target[0]  # speech at the very start: begin ducked, there is nothing to look ahead of
    down = _slew(options.attack_ms, options.depth_db, hop)
    up = _slew(options.release_ms, options.depth_db, hop)
    for i, goal in enumerate(target):
        level = max(goal, level - down) if goal < level else min(goal, level + up)
        gain_db[i] = level
    times = np.arange(samples) / sample_rate
    return (10 ** (np.interp(times, frame_times, gain_db) / 20)).astype(np.float32)


def _slew(time_ms: float, depth_db: float, hop_s: float) -> float:
    """dB per envelope step that covers the full ducking depth in ``time_ms`` (0: at once)."""
    return abs(depth_db) * hop_s / (time_ms / 1000) if time_ms > 0 else float("inf")


def fade_edges(audio: np.ndarray, *, sample_rate: int, fade_in_s: float, fade_out_s: float) -> np.ndarray:
    """Half-cosine fade in at the start and out at the end, each at most half the clip."""
    out = audio.astype(np.float32, copy=True)
    n = out.shape[1]
    for length_s, at_start in ((fade_in_s, True), (fade_out_s, False)):
        length = min(int(round(length_s * sample_rate)), n // 2)
        if length:
            ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(length) + 0.5) / length)).astype(np.float32)
            if at_start:
                out[:, :length] *= ramp
            else:
                out[:, n - length :] *= ramp[::-1]
    return out


def integrated_loudness(audio: np.ndarray, *, sample_rate: int) -> float:
    """ITU-R BS.1770 integrated loudness in LUFS (pyloudnorm); -inf for silence.

    Clips shorter than one 400 ms gating block are measured on a looped copy.
    """
    data = np.asarray(audio, dtype=np.float64)
    block = int(0.4 * sample_rate) + 1
    if data.shape[1] == 0 or not np.any(data):
        return float("-inf")
    if data.shape[1] < block:
        data = np.tile(data, (1, block // data.shape[1] + 1))
    with np.errstate(divide="ignore"):
        return float(pyloudnorm.Meter(sample_rate).integrated_loudness(data.T))


def true_peak_db(audio: np.ndarray, *, sample_rate: int) -> float:
    """Peak of the 4x oversampled signal in dBTP (-inf for silence)."""
    peak = float(np.max(_oversampled_peaks(audio), initial=0.0))
    return 20 * np.log10(peak) if peak > 0 else float("-inf")


def _oversampled_peaks(audio: np.ndarray, *, block: int = 1 << 18, margin: int = 256) -> np.ndarray:
    """Per original sample, the largest |value| among its 4x oversampled points, over all channels.

    Works block by block (with a margin for the interpolation filter) so memory stays a few MB
    whatever the clip's length."""
    n = audio.shape[1]
    peaks = np.empty(n)
    for start in range(0, n, block):
        lo, hi = max(0, start - margin), min(n, start + block + margin)
        up = signal.resample_poly(np.asarray(audio[:, lo:hi], dtype=np.float64), TRUE_PEAK_OVERSAMPLING, 1, axis=1)
        up = np.abs(up).max(axis=0).reshape(hi - lo, TRUE_PEAK_OVERSAMPLING).max(axis=1)
        end = min(n, start + block)
        peaks[start:end] = up[start - lo : end - lo]
    return peaks


def limit_true_peak(audio: np.ndarray, *, sample_rate: int, ceiling_dbtp: float, lookahead_ms: float = 5.0) -> np.ndarray:
    """A look-ahead peak limiter on the oversampled signal: the gain starts falling before a peak
    and no oversampled point exceeds ``ceiling_dbtp``."""
    ceiling = 10 ** (ceiling_dbtp / 20)
    peaks = _oversampled_peaks(audio)
    needed = np.minimum(1.0, ceiling / np.maximum(peaks, 1e-12))
    if needed.min() >= 1.0:
        return audio.astype(np.float32, copy=True)
    width = max(1, int(round(lookahead_ms / 1000 * sample_rate)))
    # the minimum over 2w+1 then a w-wide average stays below every sample's need within reach
    gain = ndimage.uniform_filter1d(ndimage.minimum_filter1d(needed, size=2 * width + 1), size=width)
    out = audio * gain
    residual = true_peak_db(out, sample_rate=sample_rate)
    if residual > ceiling_dbtp:  # rounding of the smoothed gain: scale the last fraction of a dB away
        out = out * 10 ** ((ceiling_dbtp - residual) / 20)
    return out.astype(np.float32)


def normalize_loudness(audio: np.ndarray, *, sample_rate: int, target_lufs: float, true_peak_dbtp: float) -> np.ndarray:
    """Bring integrated loudness to ``target_lufs`` with the true peak at or below ``true_peak_dbtp``.

    Gain then limiting, repeated a few times since limiting lowers loudness a little. Silence stays
    silence; the result is always finite.
    """
    out = np.nan_to_num(np.asarray(audio, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    for _ in range(4):
        loudness = integrated_loudness(out, sample_rate=sample_rate)
        if not np.isfinite(loudness) or abs(loudness - target_lufs) < 0.1:
            break
        out = limit_true_peak(out * 10 ** ((target_lufs - loudness) / 20), sample_rate=sample_rate,
                              ceiling_dbtp=true_peak_dbtp)
    return out.astype(np.float32)


@dataclass(frozen=True)
class MixResult:
    """The final soundtrack and what shaped it."""

    audio: np.ndarray  # (channels, samples) at the mix rate
    music: np.ndarray  # the ducked, faded music alone, same shape
    gain: np.ndarray  # (samples,) music gain envelope, linear
    speech: list[tuple[float, float]]  # detected speech regions, seconds
    loudness_lufs: float
    true_peak_dbtp: float


def mix(music: np.ndarray, original: np.ndarray | None, *, sample_rate: int, options: MixOptions = MixOptions()) -> MixResult:
    """Duck ``music`` under the speech in ``original``, mix them per ``options.mode``, and normalise.

    Parameters
    ----------
    music : np.ndarray
        ``(channels, samples)``.
    original : np.ndarray or None
        The video's audio on the same timeline and rate (same length), or None/silence.
    sample_rate : int
        Rate of both, in Hz.
    options : MixOptions

    Returns
    -------
    MixResult
    """
    options.validate()
    samples = music.shape[1]
    has_original = original is not None and np.any(original)
    flags = detect_speech(original, sample_rate=sample_rate, threshold=options.vad_threshold) if has_original else np.zeros(0, bool)
    if options.mode == "replace":
        gain = np.ones(samples, dtype=np.float32)
    else:
        gain = duck_envelope(flags, samples=samples, sample_rate=sample_rate, options=options)
    shaped = fade_edges(music, sample_rate=sample_rate, fade_in_s=options.fade_in_s, fade_out_s=options.fade_out_s)
    if options.mode == "mix" and has_original:
        original = np.broadcast_to(original, music.shape).astype(np.float32)
        music_lufs = integrated_loudness(shaped, sample_rate=sample_rate)
        original_lufs = integrated_loudness(original, sample_rate=sample_rate)
        if np.isfinite(music_lufs) and np.isfinite(original_lufs):
            shaped = shaped * 10 ** ((original_lufs + options.music_level_db - music_lufs) / 20)
    ducked = shaped * gain
    combined = original + ducked if options.mode == "mix" and has_original else ducked
    final = normalize_loudness(combined, sample_rate=sample_rate, target_lufs=options.target_lufs,
                               true_peak_dbtp=options.true_peak_dbtp)
    # the music stem carries the same overall gain as the mix, so stem and mix line up
    overall = _ratio(final, combined)
    return MixResult(
        audio=final,
        music=(ducked * overall).astype(np.float32),
        gain=gain,
        speech=speech_regions(flags),
        loudness_lufs=integrated_loudness(final, sample_rate=sample_rate),
        true_peak_dbtp=true_peak_db(final, sample_rate=sample_rate),
    )


def _ratio(after: np.ndarray, before: np.ndarray) -> float:
    """Least-squares gain from ``before`` to ``after`` (1 for silence)."""
    energy = float(np.sum(before.astype(np.float64) ** 2))
    return float(np.sum(after * before, dtype=np.float64) / energy) if energy > 0 else 1.0
