"""Extract + mux on the 70 s clip against bare PyAV baselines measured in the same run.

Also times the non-generation stages of a score (probe, read audio, melody, mix, mux; each against the
same-work baseline, best of 3 interleaved) and, for
reference, moviepy's write_videofile on the same clip. The baseline encodes Opus at scoretrack's bitrate
(192 kb/s), or at libopus's default with --default-bitrate.
Usage: python bench/media_io.py [CLIP] [--moviepy] [--default-bitrate]
"""

import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from scoretrack import media, melody, mix
from scoretrack.pipeline import MIX_RATE

MUSIC_RATE = 32000  # MusicGen's rate
# the baseline's Opus bitrate: scoretrack's own (the same work), or libopus's default with --default-bitrate
BASELINE_BITRATE = None if "--default-bitrate" in sys.argv else media.AUDIO_BITRATE

ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
CLIP = Path(ARGS[0] if ARGS else Path(__file__).resolve().parents[2] / "shared/media/tos_battle_clip_70s.webm")


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
        if BASELINE_BITRATE:
            opus.bit_rate = BASELINE_BITRATE
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


def stages_without_generate(folder: Path, timings: dict[str, float]) -> None:
    """Every stage of a score but generation, on the clip: probe, read audio, melody chroma, mix, mux."""
    marks = [time.perf_counter()]

    def mark(name):
        marks.append(time.perf_counter())
        timings[name] = marks[-1] - marks[-2]

    clip_info = media.probe(CLIP)
    mark("probe")
    original = media.read_audio(CLIP, sample_rate=MIX_RATE, channels=2, duration_s=clip_info.duration_s,
                                start_s=clip_info.start_s)  # as the pipeline does: no second probe
    mark("read audio")
    reference = mix.downmix(original, sample_rate=MIX_RATE, target_rate=MUSIC_RATE)
    melody.chroma(reference[:, : 30 * MUSIC_RATE])
    mark("melody chroma")
    music = (0.1 * np.random.default_rng(0).standard_normal((1, media.sample_count(clip_info.duration_s, MUSIC_RATE))))
    mixed = mix.mix(music.astype(np.float32), original, music_rate=MUSIC_RATE, sample_rate=MIX_RATE)
    mark("mix")
    media.mux(CLIP, (audio for audio, _, _ in mixed.blocks()), sample_rate=MIX_RATE, output=folder / "s.mkv",
              overwrite=True, info=clip_info)  # block by block, as the pipeline's writer does
    mark("mux (renders the mix)")


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    info = media.probe(CLIP)
    silence = np.zeros((2, media.sample_count(info.duration_s, MIX_RATE)), np.float32)

    def extract_and_mux():
        clip_info = media.probe(CLIP)  # as the pipeline does: one probe, shared by read and mux
        audio = media.read_audio(CLIP, sample_rate=MIX_RATE, channels=2, duration_s=clip_info.duration_s,
                                 start_s=clip_info.start_s)
        media.mux(CLIP, audio + silence, sample_rate=MIX_RATE, output=folder / "o.mkv", overwrite=True, info=clip_info)

    mix.mix(np.zeros((1, MUSIC_RATE), np.float32), np.ones((2, MIX_RATE), np.float32), music_rate=MUSIC_RATE,
            sample_rate=MIX_RATE)  # load Silero once, as a long-lived process has
    base, stages, ours, timings = [], [], [], []
    for _ in range(3):  # interleaved, so a change in the machine's load hits both alike
        base.append(best_of(1, lambda: baseline_same_work(folder / "b.mkv")))
        timings.append({})
        stages.append(best_of(1, lambda: stages_without_generate(folder, timings[-1])))
        ours.append(best_of(1, extract_and_mux))
    remux = best_of(3, lambda: baseline_remux(folder / "r.mkv"))
    best = int(np.argmin(stages))
    print(f"clip: {CLIP.name} ({info.duration_s:.2f} s), best of 3 interleaved")
    print(f"baseline PyAV decode + remux only:            {remux:.3f} s")
    print(f"baseline PyAV decode + resample + encode + remux: {min(base):.3f} s")
    print(f"scoretrack read_audio + mux:   {min(ours):.3f} s  ratio {min(ours) / min(base):.2f}x")
    print(f"all stages but generate:       {min(stages):.3f} s  ratio {min(stages) / min(base):.2f}x")
    for name, seconds in timings[best].items():
        print(f"  {name:24s} {seconds:.3f} s")
    if "--moviepy" not in sys.argv:  # minutes on a busy machine: only when asked
        return
    from moviepy import VideoFileClip

    with VideoFileClip(str(CLIP)) as clip:
        start = time.perf_counter()
        clip.write_videofile(str(folder / "m.webm"), logger=None)
        moviepy_s = time.perf_counter() - start
    print(f"moviepy write_videofile:       {moviepy_s:.3f} s  ratio {moviepy_s / min(base):.2f}x")


if __name__ == "__main__":
    main()
