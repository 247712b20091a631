"""Make samples/sample.mp4: 8 s of moving colour bars with a hummed melody and speech-like bursts.

Everything is synthesised here, so the sample carries no third-party rights.
Usage: python samples/make_sample.py OUTPUT.mp4
"""

import sys
from fractions import Fraction

import av
import numpy as np

SECONDS, FPS, RATE = 8, 24, 48000
MELODY_HZ = [262, 294, 330, 349, 392, 349, 330, 294]  # one note per second


def soundtrack() -> np.ndarray:
    t = np.arange(SECONDS * RATE) / RATE
    notes = np.repeat(MELODY_HZ, RATE)[: t.size]
    melody = 0.2 * np.sin(2 * np.pi * np.cumsum(notes) / RATE)
    rng = np.random.default_rng(0)
    bursts = np.zeros_like(t)  # "speech": noisy formant-like bursts at 2-4 s and 5.5-7 s
    for start, end in ((2.0, 4.0), (5.5, 7.0)):
        span = slice(int(start * RATE), int(end * RATE))
        carrier = np.sin(2 * np.pi * 150 * t[span]) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t[span]))
        bursts[span] = 0.3 * carrier * (0.6 + 0.4 * rng.random(carrier.size))
    return np.stack([melody + bursts] * 2).astype(np.float32)


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
