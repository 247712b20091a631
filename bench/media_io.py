"""Extract + mux on the 70 s clip against bare PyAV baselines measured in the same run.

Also times the non-generation stages of a score (probe, read audio, melody, mix, mux) and, for
reference, moviepy's write_videofile on the same clip. Usage: python bench/media_io.py [CLIP]
"""

import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from scoretrack import media, melody, mix
from scoretrack.pipeline import MIX_RATE

CLIP = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared/media/tos_battle_clip_70s.webm")


def best_of(runs, fn):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def baseline_remux(out: Path) -> None:
    """Bare PyAV: decode the audio once, copy the video packets into a new file."""
    with av.open(str(CLIP)) as source:
        for _ in source.decode(audio=0):
            pass
    with av.open(str(CLIP)) as source, av.open(str(out), "w", format="matroska") as target:
        copy = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.size:
                packet.stream = copy
                target.mux(packet)


def baseline_same_work(out: Path) -> None:
    """Bare PyAV doing what scoretrack's extract + mux must: decode and resample the audio to 48 kHz,
    encode it as Opus, and copy the video packets."""
    with av.open(str(CLIP)) as source, av.open(str(out), "w", format="matroska") as target:
        copy = target.add_stream_from_template(source.streams.video[0])
        opus = target.add_stream("libopus", rate=MIX_RATE, layout="stereo")
        resampler = av.AudioResampler(format="flt", layout="stereo", rate=MIX_RATE)
        written = 0
        for packet in source.demux(source.streams.video[0], source.streams.audio[0]):
            if not packet.size:
                continue
            if packet.stream.type == "video":
                packet.stream = copy
                target.mux(packet)
                continue
            for frame in packet.decode():
                for resampled in resampler.resample(frame):
                    resampled.pts, written = written, written + resampled.samples
                    target.mux(opus.encode(resampled))
        target.mux(opus.encode(None))


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    info = media.probe(CLIP)
    silence = np.zeros((2, media.sample_count(info.duration_s, MIX_RATE)), np.float32)

    def extract_and_mux():
        clip_info = media.probe(CLIP)  # as the pipeline does: one probe, shared by read and mux
        audio = media.read_audio(CLIP, sample_rate=MIX_RATE, channels=2, duration_s=clip_info.duration_s)
        media.mux(CLIP, audio + silence, sample_rate=MIX_RATE, output=folder / "o.mkv", overwrite=True, info=clip_info)

    def stages_without_generate():
        clip_info = media.probe(CLIP)
        original = media.read_audio(CLIP, sample_rate=MIX_RATE, channels=2, duration_s=clip_info.duration_s)
        reference = mix.resample(original.mean(0, keepdims=True), sample_rate=MIX_RATE, target_rate=32000,
                                 samples=media.sample_count(info.duration_s, 32000))
        melody.chroma(reference[:, : 30 * 32000])
        music = np.random.default_rng(0).standard_normal(original.shape).astype(np.float32) * 0.1
        mixed = mix.mix(music, original, sample_rate=MIX_RATE)
        media.mux(CLIP, mixed.audio, sample_rate=MIX_RATE, output=folder / "s.mkv", overwrite=True, info=clip_info)

    base = best_of(3, lambda: baseline_same_work(folder / "b.mkv"))
    remux = best_of(3, lambda: baseline_remux(folder / "r.mkv"))
    ours = best_of(3, extract_and_mux)
    probe = best_of(3, lambda: media.probe(CLIP))
    stages = best_of(1, stages_without_generate)
    print(f"clip: {CLIP.name} ({info.duration_s:.2f} s)")
    print(f"baseline PyAV decode + remux only:            {remux:.3f} s")
    print(f"baseline PyAV decode + resample + encode + remux: {base:.3f} s")
    print(f"scoretrack read_audio + mux:   {ours:.3f} s  ratio {ours / base:.2f}x (vs remux only {ours / remux:.1f}x)")
    print(f"  of which probe:              {probe:.3f} s")
    print(f"all stages but generate:       {stages:.3f} s  ratio {stages / base:.2f}x")
    try:
        from moviepy import VideoFileClip
    except ImportError:
        return
    with VideoFileClip(str(CLIP)) as clip:
        start = time.perf_counter()
        clip.write_videofile(str(folder / "m.webm"), logger=None)
        moviepy_s = time.perf_counter() - start
    print(f"moviepy write_videofile:       {moviepy_s:.3f} s  ratio {moviepy_s / base:.2f}x (scoretrack is {moviepy_s / ours:.0f}x faster)")


if __name__ == "__main__":
    main()
