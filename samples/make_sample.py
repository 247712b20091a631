"""Make samples/sample.mp4: 8 s of moving colour bars with a hummed melody and synthetic speech.

Everything is synthesised here, so the sample carries no third-party rights.
Usage: python samples/make_sample.py OUTPUT.mp4
"""

import sys
from fractions import Fraction

import av
import numpy as np
from scipy import signal

SECONDS, FPS, RATE = 8, 24, 48000
MELODY_HZ = [262, 294, 330, 349, 392, 349, 330, 294]  # one note per second


VOWEL_FORMANTS_HZ = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410)]


def speech_like(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Syllables of a formant synthesiser: a gliding 130 Hz voice through vowel resonances, each
    syllable opened by a short fricative hiss. Silero VAD takes it for speech."""
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    f0 = 130 * (1 + 0.15 * np.sin(2 * np.pi * 0.5 * t) + 0.05 * np.sin(2 * np.pi * 3.1 * t))
    voice = signal.lfilter([1], [1, -0.97], -np.diff(2 * (np.cumsum(f0) / RATE % 1) - 1, prepend=0))
    out = np.zeros(n)
    syllable = int(0.2 * RATE)
    hiss_filter = signal.butter(2, [2500, 6000], "band", fs=RATE)
    for start in range(0, n, syllable):
        part = voice[start : start + syllable]
        vowel = np.zeros_like(part)
        for formant, bandwidth, gain in zip(VOWEL_FORMANTS_HZ[rng.integers(5)], (90, 110, 150), (1.0, 0.6, 0.3)):
            r = np.exp(-np.pi * bandwidth / RATE)
            vowel += gain * signal.lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * formant / RATE), r * r], part)
        ramp = np.clip(np.minimum(np.arange(part.size), part.size - np.arange(part.size)) / (0.04 * RATE), 0, 1)
        hiss = signal.lfilter(*hiss_filter, rng.standard_normal(part.size)) * (np.arange(part.size) < 0.05 * RATE)
        out[start : start + syllable] = vowel * ramp / np.abs(vowel).max() + 0.15 * hiss
    return 0.3 * out / np.abs(out).max()


def soundtrack() -> np.ndarray:
    """A hummed melody with speech-like passages at 2-4 s and 5.5-7 s."""
    t = np.arange(SECONDS * RATE) / RATE
    notes = np.repeat(MELODY_HZ, RATE)[: t.size]
    mixed = 0.15 * np.sin(2 * np.pi * np.cumsum(notes) / RATE)
    rng = np.random.default_rng(0)
    for start, end in ((2.0, 4.0), (5.5, 7.0)):
        span = slice(int(start * RATE), int(end * RATE))
        mixed[span] += speech_like(end - start, rng)
    return np.stack([mixed] * 2).astype(np.float32)


def main(path: str) -> None:
    audio = soundtrack()
    with av.open(path, "w") as out:
        video = out.add_stream("libx264", rate=FPS, options={"crf": "28", "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        sound = out.add_stream("aac", rate=RATE, layout="stereo")
        for i in range(SECONDS * FPS):
            x = (np.arange(320)[None, :] + 4 * i) % 320
            frame = np.stack([(x * 255 // 320).repeat(240, 0), np.full((240, 320), 96), (255 - x * 255 // 320).repeat(240, 0)], -1)
            out.mux(video.encode(av.VideoFrame.from_ndarray(frame.astype(np.uint8), format="rgb24")))
        out.mux(video.encode(None))
        for start in range(0, audio.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, start : start + 1024]), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = RATE, start, Fraction(1, RATE)
            out.mux(sound.encode(frame))
        out.mux(sound.encode(None))
    print(path)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "samples/sample.mp4")
