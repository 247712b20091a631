"""Memory of scoring an hour-long video: peak RSS of each phase against the model and the original audio.

Makes a 60-minute video (a tiny picture at 1 fps, real speech with pauses tiled as its sound) with the
ffmpeg binary imageio-ffmpeg ships, then scores it in this process with the tiny model
(independent windows, a large batch, so generation stays short). Reports the resident memory after
the model load, after reading the original audio, after generation, and the peak while mixing,
normalising and encoding block by block. Usage: python bench/long_clip.py MODEL_DIR [MINUTES]
"""

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from scoretrack import Scorer, media
from scoretrack.options import GenerationOptions, ScoreOptions
from scoretrack.pipeline import MIX_RATE
from scoretrack.plan import ClipRequest, plan_jobs

SPEECH = Path(__file__).resolve().parents[2] / "shared/media/speech_silero_test_60s.wav"
GB = 2**30


def rss() -> float:
    """Current resident memory in bytes (Linux)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def peak_rss() -> float:
    """Peak resident memory in bytes since the last :func:`reset_peak` (Linux's VmHWM)."""
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmHWM:"))


def reset_peak() -> None:
    """Start a new peak: Linux resets VmHWM to the current RSS when 5 is written to clear_refs."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def make_video(path: Path, minutes: float) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=gray:s=64x36:r=1",
                    "-stream_loop", "-1", "-i", str(SPEECH), "-t", str(minutes * 60), "-c:v", "libx264", "-g", "60",
                    "-c:a", "aac", "-ac", "2", "-ar", "48000", str(path)], check=True)


def main() -> None:
    model, minutes = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    folder = Path(tempfile.mkdtemp())
    clip = folder / "long.mp4"
    start = time.perf_counter()
    make_video(clip, minutes)
    print(f"made a {minutes:g} min video in {time.perf_counter() - start:.0f} s")
    scorer = Scorer(model)
    options = ScoreOptions(generation=GenerationOptions(independent_windows=True, batch_size=64, window_s=30,
                                                        stride_s=28))
    [job], _ = plan_jobs([ClipRequest(clip, folder / "long.scored.mp4", options)], model_name=scorer.model_name)
    after_load = rss()
    start = time.perf_counter()
    audio = scorer._read(job)
    original_bytes = audio.original.nbytes
    after_read = rss()
    reset_peak()
    [[track]] = scorer.soundtracks([audio])
    generation_peak, after_generate = peak_rss(), rss()
    generated_at = time.perf_counter()
    reset_peak()
    scorer._write(job, audio, track, {})
    done = time.perf_counter()
    mix_peak = peak_rss()
    print(f"| {minutes:g} min | model loaded {after_load / GB:.2f} GB | original audio {original_bytes / GB:.2f} GB "
          f"(RSS +{(after_read - after_load) / GB:.2f}) | peak during generation and mix analysis {generation_peak / GB:.2f} GB, "
          f"{after_generate / GB:.2f} GB after | peak while mixing and encoding {mix_peak / GB:.2f} GB, "
          f"{(mix_peak - after_generate) / GB:.2f} GB above the post-generation level | generation "
          f"{generated_at - start:.0f} s, mix+mux {done - generated_at:.0f} s | {track.loudness_lufs:.2f} LUFS |")
    written = media.probe(job.output)
    assert abs(written.duration_s - job.info.duration_s) < 0.01
    whole = media.read_audio(job.output, sample_rate=MIX_RATE, channels=None, duration_s=written.duration_s)
    from scoretrack import mix

    print(f"loudness of the written file, whole-signal pyloudnorm: {mix.integrated_loudness(whole, sample_rate=MIX_RATE):.2f} "
          f"LUFS; block-wise during the mix: {track.loudness_lufs:.2f} LUFS; peak |sample| {np.abs(whole).max():.3f}")


if __name__ == "__main__":
    main()
