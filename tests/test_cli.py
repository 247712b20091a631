"""The scoretrack command end to end with the tiny model on real clips."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from conftest import MEDIA, sha256
from scoretrack import media
from scoretrack.plan import FIGURES
from test_media import bad_inputs, video_packets

FAST = ["--window", "4", "--stride", "2.5"]


def run(*args, cwd=None):
    """Run the installed command as a user would (argument list, no shell)."""
    return subprocess.run([sys.executable, "-m", "scoretrack.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


@pytest.mark.parametrize("name", ["his_girl_friday_dialogue.mp4", "edge_no_duration_vp9_opus.webm",
                                  "noaudio_bug_video_640.mp4", "grid_bbaf2n_speech.mpg"])
def test_scores_a_real_clip(name, tiny_model_dir, tmp_path):
    source = tmp_path / name
    shutil.copy(MEDIA / name, source)
    before = sha256(source)
    done = run(source, "--style", "cinematic strings", "--model", tiny_model_dir, "--json", "--stems", "--plot", *FAST)
    assert done.returncode == 0, done.stderr
    printed = [line for line in done.stderr.splitlines() if "warning" in line.lower()]  # nothing but the one expected
    assert len(printed) == name.startswith("noaudio") and all("no audio stream" in line for line in printed), printed
    [report] = json.loads(done.stdout)
    out = Path(report["output"])
    assert report["status"] == "ok" and out.name.startswith(source.stem + ".scored")
    assert set(report["timings"]) >= {"probe", "read_audio", "generate", "mix", "write"}
    # the true peak is measured on the encoded file: at the ceiling within the meters' agreement; the loudness
    # at the target, or as far under it as the peak limiter's bound holds the clip, with a note saying so
    short = [note for note in report["notes"] if "under the -14 LUFS target" in note]
    assert report["true_peak_dbtp"] <= -1 + 0.1 and report["loudness_lufs"] <= -14 + 0.1
    assert bool(short) == (report["loudness_lufs"] <= -14.5), (report["loudness_lufs"], short)
    assert sha256(source) == before
    assert video_packets(out) == video_packets(source)
    info = media.probe(source)
    assert media.probe(out).duration_s == pytest.approx(info.duration_s, abs=0.002)
    with av.open(str(out)) as container:  # the output plays: every audio frame decodes
        assert sum(f.samples for f in container.decode(audio=0)) > 0
    assert Path(report["side"]["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("music", "music-dry"):
        stem = soundfile.info(report["side"][name])
        assert stem.samplerate == 48000 and stem.frames == round(info.duration_s * 48000)
    if short:  # a rerun skips the clip and reports it as the run that made it did: figures, gain and note
        again = run(source, "--style", "cinematic strings", "--model", tiny_model_dir, "--json", "--stems", "--plot",
                    *FAST)
        [skipped] = json.loads(again.stdout)
        assert skipped["status"] == "skipped" and skipped["notes"] == report["notes"]
        assert [skipped[k] for k in FIGURES] == [report[k] for k in FIGURES]  # loudness_gain_db was null


@pytest.mark.parametrize("case", ["missing", "directory", "zero-byte", "text", "truncated", "image"])
def test_bad_input_exits_2_with_one_line(case, tmp_path, tiny_model_dir):
    path = bad_inputs(tmp_path)[case]
    listing = sorted(tmp_path.iterdir())
    done = run(path, "--model", tiny_model_dir)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert sorted(tmp_path.iterdir()) == listing


@pytest.mark.parametrize("name", ["clip with spaces.mp4", "clip é 音.mp4", "-leading-dash.mp4"])
def test_awkward_names(name, tmp_path, tiny_model_dir):
    shutil.copy(MEDIA / "realshort_1s.mp4", tmp_path / name)
    done = run("--model", tiny_model_dir, *FAST, "--", name, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / name.replace(".mp4", ".scored.mp4")).exists()


def test_bad_flag_value_exits_2(tiny_model_dir):
    done = run(MEDIA / "realshort_1s.mp4", "--model", tiny_model_dir, "--window", "45")
    assert done.returncode == 2 and "--window 45" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_missing_model_exits_2_with_advice(tmp_path):
    done = run(MEDIA / "realshort_1s.mp4", "--model", tmp_path / "nowhere", "-o", tmp_path / "o.mp4")
    assert done.returncode == 2 and "HF_HUB_OFFLINE" in done.stderr and "does not exist" in done.stderr
    assert "Traceback" not in done.stderr


def test_batch_with_a_corrupt_clip_resume_and_force(tmp_path, tiny_model_dir):
    good = ["realshort_1s.mp4", "ipad_IMG_0034_rot180.MOV"]
    for name in good:
        shutil.copy(MEDIA / name, tmp_path / name)
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 1000)
    manifest = tmp_path / "clips.csv"
    manifest.write_text("path,style,seed\n" + "".join(f"{n},calm piano,3\n" for n in good) + "broken.mp4,jazz,\n")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    done = run("--manifest", manifest, "--out-dir", out_dir, "--model", tiny_model_dir, "--json", *FAST)
    assert done.returncode == 1
    report = {Path(r["input"]).name: r for r in json.loads(done.stdout)}
    assert [report[n]["status"] for n in good] == ["ok", "ok"] and report["broken.mp4"]["status"] == "failed"
    assert report["realshort_1s.mp4"]["seed"] == 3
    assert sorted(p.name for p in out_dir.iterdir() if not p.name.endswith(".json")) == [
        "ipad_IMG_0034_rot180.scored.MOV", "realshort_1s.scored.mp4"]
    stamp = os.stat(out_dir / "realshort_1s.scored.mp4").st_mtime_ns
    again = run("--manifest", manifest, "--out-dir", out_dir, "--model", tiny_model_dir, "--json", *FAST)
    assert [r["status"] for r in json.loads(again.stdout)][:2] == ["skipped", "skipped"]
    assert os.stat(out_dir / "realshort_1s.scored.mp4").st_mtime_ns == stamp
    forced = run("--manifest", manifest, "--out-dir", out_dir, "--model", tiny_model_dir, "--json", "--force", *FAST)
    assert [r["status"] for r in json.loads(forced.stdout)][:2] == ["ok", "ok"]
    assert os.stat(out_dir / "realshort_1s.scored.mp4").st_mtime_ns != stamp


def test_changed_settings_are_not_skipped(tmp_path, tiny_model_dir):
    shutil.copy(MEDIA / "realshort_1s.mp4", tmp_path / "a.mp4")
    assert run(tmp_path / "a.mp4", "--model", tiny_model_dir, *FAST).returncode == 0
    other = run(tmp_path / "a.mp4", "--model", tiny_model_dir, "--seed", "5", *FAST)
    assert other.returncode == 2 and "already exists" in other.stderr


def test_python_api_and_same_seed(scorer, tmp_path):
    import numpy as np

    from scoretrack import ScoreOptions
    from scoretrack.generate import GenerationOptions

    options = ScoreOptions(style="warm synth", generation=GenerationOptions(window_s=4, stride_s=2.5, seed=11))
    first = scorer.score(MEDIA / "realshort_1s.mp4", output=tmp_path / "a.mp4", options=options, stems=True)
    second = scorer.score(MEDIA / "realshort_1s.mp4", output=tmp_path / "b.mp4", options=options, stems=True)
    read = lambda p: media.read_audio(p, sample_rate=48000, duration_s=first.duration_s)
    # generation is bit-exact (test_generate); the stem may differ by one 16-bit step here and there
    np.testing.assert_allclose(read(first.stems), read(second.stems), atol=2 / 32768)
    assert first.status == "ok" and first.windows == 1


def interrupted_run(folder: Path, tiny_model_dir: Path, signum: int, *extra: str) -> subprocess.Popen:
    """Start scoring a 70 s clip and send ``signum`` once its first tenth of decode steps is done (the run then
    has most of its generating and all its writing ahead); return the finished process with its stderr read."""
    shutil.copy(MEDIA / "tos_battle_clip_70s.webm", folder / "long.webm")
    process = subprocess.Popen([sys.executable, "-m", "scoretrack.cli", "long.webm", "--model", str(tiny_model_dir),
                                "--melody", "harmonic", *extra], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    while "generating 10%" not in (line := process.stderr.readline()) and line:  # an event, not a clock
        lines.append(line)
    process.send_signal(signum)
    _, rest = process.communicate(timeout=120)
    process.stderr_text = "".join(lines) + line + rest
    return process


def test_interrupt_leaves_nothing_behind(tmp_path, tiny_model_dir):
    import signal

    process = interrupted_run(tmp_path, tiny_model_dir, signal.SIGINT)
    assert process.returncode == 130 and "interrupted" in process.stderr_text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.webm"]


def test_same_seed_gives_identical_stems_across_runs(tmp_path, tiny_model_dir):
    shutil.copy(MEDIA / "realshort_1s.mp4", tmp_path / "a.mp4")
    for name in ("one.mp4", "two.mp4"):
        assert run(tmp_path / "a.mp4", "--model", tiny_model_dir, "--seed", "4", "--stems", "-o", tmp_path / name).returncode == 0
    one, _ = soundfile.read(tmp_path / "one.music.wav", dtype="int32")
    two, _ = soundfile.read(tmp_path / "two.music.wav", dtype="int32")
    assert one.any() and np.array_equal(one, two)


def test_a_log_gets_progress_lines_and_the_summary_notes_a_dropped_timecode(tmp_path, tiny_model_dir):
    # stderr is a pipe here, as in CI: the old command printed nothing between loading and the summary
    from make_media import video

    video(tmp_path / "a.mp4", "-c:v", "libx264", "-preset", "ultrafast", "-timecode", "01:00:00:00")
    video(tmp_path / "b.mp4", "-c:v", "libx264", "-preset", "ultrafast")
    (tmp_path / "clips.csv").write_text("path,style,output\na.mp4,jazz,a.scored.mkv\nb.mp4,calm piano,\n")
    done = run("--manifest", tmp_path / "clips.csv", "--model", tiny_model_dir, *FAST)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    clips = [line for line in lines if line.startswith("scoretrack: clip ")]
    assert [line.split()[2:4] for line in clips] == [["1/2", "ok:"], ["2/2", "ok:"]], done.stderr
    steps = [line for line in lines if line.startswith("scoretrack: generating ")]
    percents = [int(line.split()[2].rstrip("%")) for line in steps]
    assert percents == sorted(set(percents)) and percents[-1] == 100 and len(percents) <= 10, steps
    assert all("s left)" in line for line in steps) and lines.index(steps[0]) < lines.index(clips[0])
    assert (f"note: {tmp_path / 'a.mp4'}: timecode 01:00:00:00 dropped: a Matroska (.mkv) file cannot hold it "
            "(write .mp4 or .m4v or .mov to keep it)") in lines
    assert media.probe(tmp_path / "b.scored.mp4").video.timecode is None  # b has none to keep
