"""Melody features: the chroma MusicGen-melody is conditioned on, without torchaudio.

:func:`chroma` reproduces transformers' ``MusicgenMelodyFeatureExtractor`` (32 kHz, n_fft 16384,
hop 4096, 12 bins, one-hot argmax per frame) with ``torch.stft`` and the extractor's own
``chroma_filter_bank``; ``tests/test_melody.py`` checks it equals values the real extractor produced.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from transformers.audio_utils import chroma_filter_bank

from .errors import BadParameterError

SAMPLE_RATE = 32000
N_FFT = 16384
HOP_LENGTH = 4096
NUM_CHROMA = 12
MAX_CHROMA_FRAMES = 235  # the conditioner keeps at most this many frames (30 s); it drops the rest


@functools.lru_cache(maxsize=1)
def _filters() -> torch.Tensor:
    bank = chroma_filter_bank(sampling_rate=SAMPLE_RATE, num_frequency_bins=N_FFT, tuning=0, num_chroma=NUM_CHROMA)
    return torch.from_numpy(bank).float()


def chroma_frame_count(samples: int) -> int:
    """Frames :func:`chroma` returns for ``samples`` samples at 32 kHz."""
    return 1 + max(samples, N_FFT) // HOP_LENGTH


def chroma(audio: np.ndarray) -> np.ndarray:
    """One-hot chroma of mono 32 kHz audio, as MusicGen-melody's feature extractor computes it.

    Parameters
    ----------
    audio : np.ndarray
        float32 mono samples at 32 kHz, shape ``(samples,)`` or ``(1, samples)``. Not truncated:
        cut it to the span a window covers before calling.

    Returns
    -------
    np.ndarray
        float32, shape ``(frames, 12)`` with ``frames = 1 + max(samples, 16384) // 4096``; each row
        has a single 1 at its strongest pitch class.
    """
    wave = torch.as_tensor(np.asarray(audio, dtype=np.float32).reshape(-1))
    if wave.numel() < N_FFT:  # centre short input in zeros, as the extractor does
        pad = N_FFT - wave.numel()
        wave = torch.nn.functional.pad(wave, (pad // 2, pad // 2 + pad % 2))
    window = torch.hann_window(N_FFT)
    spec = torch.stft(
        wave, N_FFT, hop_length=HOP_LENGTH, win_length=N_FFT, window=window,
        center=True, pad_mode="reflect", normalized=False, onesided=True, return_complex=True,
    )
    power = (spec / window.pow(2).sum().sqrt()).abs().pow(2)
    raw = torch.einsum("cf,ft->ct", _filters(), power)
    norm = torch.nn.functional.normalize(raw, p=float("inf"), dim=0, eps=1e-6).T
    one_hot = torch.zeros_like(norm)
    one_hot.scatter_(1, norm.argmax(-1, keepdim=True), 1.0)
    return one_hot.numpy()


def harmonic(audio: np.ndarray, *, sample_rate: int) -> np.ndarray:
    """The harmonic part of mono audio (librosa HPSS): dialogue and drums make noisy chroma.

    Parameters
    ----------
    audio : np.ndarray
        float32 ``(1, samples)`` or ``(samples,)``.
    sample_rate : int
        Unused by the separation itself; kept so every stage takes the rate explicitly.

    Returns
    -------
    np.ndarray
        float32 of the same shape.
    """
    import librosa  # imported here: it is slow to import and only this option needs it

    if sample_rate <= 0:
        raise BadParameterError(f"sample_rate={sample_rate} must be positive")
    flat = np.asarray(audio, dtype=np.float32).reshape(-1)
    if flat.size < 2048:
        return np.asarray(audio, dtype=np.float32).copy()
    return librosa.effects.harmonic(flat, margin=2.0).astype(np.float32).reshape(np.shape(audio))
