"""True peak as delivered (issue 23): what measuring a lossy output costs, and what it changes.

Real recordings stand in for generated music (mono, 32 kHz, as MusicGen gives it), mixed under real
dialogue or alone, for ``--seconds``. For each case: the true peak FFmpeg's ``ebur128=peak=true`` reads
in the file written from the mix as it is (before) and from the mix :func:`writers.deliverable` made
(after), the figure reported, and the seconds of writing the output against those of measuring it as
delivered (encode, decode, BS.1770, and the remix when the encoder overshot), in the same run.

Usage: python bench/delivery.py [--seconds 30]
"""

import argparse
import re
import subprocess
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg

from scoretrack import media, mix, writers
from scoretrack.options import MixOptions, ScoreOptions
from scoretrack.pipeline import MIX_RATE, Soundtrack
from scoretrack.plan import ClipRequest, plan_jobs

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
CASES = [  # (name, input, its sound as original or None, music, output extension)
    ("speech + music -> Opus", "speech_libri1_5703-47212-0000.ogg", True, "music_brahms_hungarian5.ogg", ".ogg"),
    ("jazz alone -> Opus", "music_vibe_ace.ogg", False, "music_vibe_ace.ogg", ".ogg"),
    ("orchestra alone -> AAC .m4a", "music_brahms_hungarian5.ogg", False, "music_brahms_hungarian5.ogg", ".m4a"),
    ("dialogue + jazz -> AAC .mp4", "his_girl_friday_dialogue.mp4", True, "music_vibe_ace.ogg", ".mp4"),
]


def ffmpeg_true_peak(path: Path) -> float:
    done = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostats", "-i", str(path), "-map",
                           "0:a:0", "-af", "ebur128=peak=true", "-f", "null", "-"], capture_output=True, text=True)
    return float(re.findall(r"Peak:\s+(-?[\d.]+) dBFS", done.stderr)[-1])


def run_case(folder: Path, name: str, source: str, with_original: bool, music_file: str, extension: str,
             seconds: float) -> None:
    clip = folder / f"clip{Path(source).suffix}"
    picture = ["-vn"] if clip.suffix == ".ogg" else []  # the jazz file's cover art is no picture to keep
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(MEDIA / source), *picture, "-t",
                    str(seconds), "-c", "copy", str(clip)], check=True)
    [job], _ = plan_jobs([ClipRequest(clip, folder / f"out{extension}", ScoreOptions(style="x"))], model_name="x")
    duration = job.info.duration_s
    original = (media.read_audio(clip, sample_rate=MIX_RATE, duration_s=duration, start_s=job.info.start_s)
                if with_original else None)
    music = media.read_audio(MEDIA / music_file, sample_rate=32000, channels=1, duration_s=duration)
    options = job.options.mix if with_original else MixOptions(mode="replace")
    mixed = mix.mix(music, original, music_rate=32000, sample_rate=MIX_RATE, options=options,
                    samples=media.sample_count(duration, MIX_RATE))
    track = Soundtrack(mixed=mixed, seams=[], windows=1, styles=["x"])
    take = job.takes[0]
    start = time.perf_counter()
    writers.write_output(job, take, track, sample_rate=MIX_RATE)
    write_s = time.perf_counter() - start
    before = ffmpeg_true_peak(take.output)
    start = time.perf_counter()
    delivered = writers.deliverable(job, track, sample_rate=MIX_RATE)
    deliver_s = time.perf_counter() - start
    writers.write_output(job, take, delivered, sample_rate=MIX_RATE)
    after = ffmpeg_true_peak(take.output)
    print(f"| {name} | {track.true_peak_dbtp:.2f} | {before:.1f} | {after:.1f} | {delivered.true_peak_dbtp:.2f} | "
          f"{delivered.loudness_lufs:.2f} | {write_s:.2f} s | {deliver_s:.2f} s ({deliver_s / write_s:.1f}x) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    print("| case | mix dBTP | FFmpeg TP before | FFmpeg TP after | reported TP | reported LUFS | write | deliver |")
    print("|---|---|---|---|---|---|---|---|")
    for case in CASES:
        with tempfile.TemporaryDirectory() as folder:
            run_case(Path(folder), *case, seconds=args.seconds)


if __name__ == "__main__":
    main()
