"""Side outputs: the music stem (WAV), the settings sidecar (JSON) and the mix picture (PNG)."""

from __future__ import annotations

import dataclasses
import json
import wave
from pathlib import Path

import numpy as np

from .media import atomic_output


def write_wav(path: Path, audio: np.ndarray, *, sample_rate: int, overwrite: bool = False) -> Path:
    """16-bit PCM WAV of float ``(channels, samples)`` audio, written atomically."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).round().astype("<i2").T.copy()
    with atomic_output(path, overwrite=overwrite) as temp:
        with wave.open(str(temp), "wb") as out:
            out.setnchannels(audio.shape[0])
            out.setsampwidth(2)
            out.setframerate(sample_rate)
            out.writeframes(pcm.tobytes())
    return path


def write_sidecar(path: Path, fingerprint: str, options) -> Path:
    """Record the settings an output was made with, so a rerun can skip it."""
    record = {"fingerprint": fingerprint, "options": dataclasses.asdict(options)}
    with atomic_output(path, overwrite=True) as temp:
        temp.write_text(json.dumps(record, indent=1))
    return path


def write_plot(path: Path, original: np.ndarray, mixed, *, sample_rate: int, seams_s: list[float]) -> Path:
    """One picture on one time axis: the original waveform, detected speech, music gain, window seams."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = max(1, original.shape[1] // 4000)
    times = np.arange(0, original.shape[1], step) / sample_rate
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(12, 5))
    top.plot(times, original.mean(axis=0)[::step], lw=0.5, color="0.3", label="original audio")
    for start, end in mixed.speech:
        top.axvspan(start, end, color="tab:orange", alpha=0.25, lw=0)
    top.set_ylabel("original (speech shaded)")
    bottom.plot(times, 20 * np.log10(np.maximum(mixed.gain[::step], 1e-6)), color="tab:blue", label="music gain")
    bottom.set_ylabel("music gain (dB)")
    bottom.set_xlabel("time (s)")
    for axis in (top, bottom):
        for seam in seams_s:
            axis.axvline(seam, color="tab:red", ls="--", lw=0.8)
    fig.suptitle(f"{mixed.loudness_lufs:.1f} LUFS, true peak {mixed.true_peak_dbtp:.1f} dBTP; red: window seams")
    fig.tight_layout()
    with atomic_output(path, overwrite=True) as temp:
        fig.savefig(temp, format="png", dpi=100)
    plt.close(fig)
    return path
