"""Mixing a 60-minute clip: peak memory above the inputs, time, and block-wise loudness against pyloudnorm.

The original is a real speech recording (../shared/media/speech_silero_test_60s.wav, speech with
pauses) tiled with 2 s of silence between copies to the length, at 48 kHz stereo; the music is 32 kHz
mono noise, as MusicGen would hand it over. The mix is consumed block by block, as the file writer
does, and then once more as a whole array, for pyloudnorm. Prints a markdown table row.

Usage: SCORETRACK_MEDIA=../shared/media python bench/long_mix.py [MINUTES]
"""

import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from scoretrack import media, mix

MEDIA = Path(os.environ.get("SCORETRACK_MEDIA", Path(__file__).resolve().parents[2] / "shared" / "media"))
SPEECH = MEDIA / "speech_silero_test_60s.wav"
RATE, MUSIC_RATE = 48000, 32000


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports kB


def tiled_speech(minutes: float) -> np.ndarray:
    """The speech recording with 2 s pauses, repeated to ``minutes``, filled in place (no temporaries)."""
    speech = media.read_audio(SPEECH, sample_rate=RATE, channels=2, duration_s=60.0)
    period = speech.shape[1] + 2 * RATE
    out = np.zeros((2, int(round(minutes * 60 * RATE))), np.float32)
    for start in range(0, out.shape[1], period):
        piece = speech[:, : out.shape[1] - start]
        out[:, start : start + piece.shape[1]] = piece
    return out


def main() -> None:
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    original = tiled_speech(minutes)
    music = np.random.default_rng(0).standard_normal((1, int(round(minutes * 60 * MUSIC_RATE))), dtype=np.float32)
    music *= 0.1
    mix.mix(music[:, :MUSIC_RATE], original[:, :RATE], music_rate=MUSIC_RATE, sample_rate=RATE)  # load Silero
    inputs_mb = (original.nbytes + music.nbytes) / 2**20
    before = peak_rss_mb()
    tracemalloc.start()
    start = time.perf_counter()
    result = mix.mix(music, original, music_rate=MUSIC_RATE, sample_rate=RATE)
    mixed_s = time.perf_counter() - start
    written = 0
    for audio, dry, ducked in result.blocks():  # what the writer does
        written += audio.shape[1]
    total_s = time.perf_counter() - start
    traced_peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    rss_above_mb = peak_rss_mb() - before
    assert written == original.shape[1]

    import pyloudnorm

    blockwise = result.loudness_lufs  # measured by the mix, block by block
    whole = result.audio
    del result, original, music
    reference = pyloudnorm.Meter(RATE).integrated_loudness(whole.T)
    print(f"inputs {inputs_mb:.0f} MB; peak RSS before mixing {before:.0f} MB")
    print("| clip | inputs (MB) | peak RSS above inputs (MB) | numpy peak, tracemalloc (MB) | mix (s) | mix + render blocks (s) "
          "| block-wise LUFS | pyloudnorm LUFS | difference (LU) |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {minutes:g} min speech 48 kHz stereo + 32 kHz mono music | {inputs_mb:.0f} | {rss_above_mb:.0f} | "
          f"{traced_peak_mb:.0f} | {mixed_s:.1f} | {total_s:.1f} | {blockwise:.3f} | {reference:.3f} | "
          f"{abs(blockwise - reference):.4f} |")


if __name__ == "__main__":
    main()
