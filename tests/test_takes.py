"""Takes to choose from: several takes of a clip, seeded per take, sharing its generation; files, resume, timelines."""

import json
import re
import shutil
import signal
import subprocess
import sys
import urllib.parse
from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest
import soundfile

from conftest import MEDIA, sha256
from scoretrack import generate, media
from scoretrack.options import GenerationOptions, ScoreOptions, take_seed
from test_cli import run

RATE = 48000
FAST = GenerationOptions(window_s=4.0, stride_s=2.5, seed=3)
CLI_FAST = ["--window", "4", "--stride", "2.5", "--seed", "3"]


def speech(seconds: float) -> np.ndarray:
    return media.read_audio(MEDIA / "speech_jfk.wav", sample_rate=RATE, channels=2, duration_s=seconds)


def test_takes_differ_take_1_is_the_plain_run_and_take_n_alone_is_take_n(scorer):
    audio = speech(6.0)
    options = ScoreOptions(style="calm piano", generation=FAST, takes=3)
    takes = scorer.soundtrack_takes(audio, RATE, options=options)
    assert [(t.take, t.seed) for t in takes] == [(1, 3), (2, take_seed(3, 2)), (3, take_seed(3, 3))]
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        assert np.abs(takes[a].music - takes[b].music).max() > 0.01  # three different pieces of music
    plain = scorer.soundtrack(audio, RATE, options=ScoreOptions(style="calm piano", generation=FAST))
    # equal codes (the test below); the loudness stage rounds differently from call to call, by 1e-7
    np.testing.assert_allclose(plain.music, takes[0].music, atol=1e-6)
    np.testing.assert_allclose(plain.mix, takes[0].mix, atol=1e-5)
    alone = scorer.soundtrack(audio, RATE, options=ScoreOptions(style="calm piano", generation=FAST, take=2))
    assert alone.take == 2
    np.testing.assert_allclose(alone.music, takes[1].music, atol=1e-6)
    # every take ducks under the same speech, by the same envelope
    assert takes[0].speech and all(t.speech == takes[0].speech for t in takes)
    np.testing.assert_array_equal(takes[2].envelope, takes[0].envelope)


def test_take_codes_do_not_depend_on_the_other_takes_in_the_call(music_model):
    melody = media.read_audio(MEDIA / "speech_jfk.wav", sample_rate=music_model.sample_rate, channels=1,
                              duration_s=5.0)
    requests = [generate.MusicRequest(style="jazz", duration_s=5.0, melody_audio=melody, seed=take_seed(3, t))
                for t in (1, 2, 3)]
    together: list[generate.GenerationTrace] = []
    generate.generate_music(music_model, requests, FAST, traces=together)
    for request, trace in zip(requests, together):
        alone: list[generate.GenerationTrace] = []
        generate.generate_music(music_model, [request], FAST, traces=alone)
        for ours, theirs in zip(trace.codes, alone[0].codes):
            np.testing.assert_array_equal(ours, theirs)
    assert not np.array_equal(together[0].codes[0], together[1].codes[0])


@pytest.fixture(scope="module")
def clip_with_speech(tmp_path_factory):
    folder = tmp_path_factory.mktemp("takes")
    source = folder / "dialogue clip.mp4"  # a space: odd names work
    shutil.copy(MEDIA / "his_girl_friday_dialogue.mp4", source)
    return source


def test_three_takes_from_the_command_line(clip_with_speech, tiny_model_dir, tmp_path):
    source = tmp_path / clip_with_speech.name
    shutil.copy(clip_with_speech, source)
    before = sha256(source)
    args = [source, "--model", tiny_model_dir, "--stems", "--plot", "--timeline", "otio", "--timeline", "kdenlive",
            "--json", *CLI_FAST]
    done = run(*args, "--takes", "3")
    assert done.returncode == 0, done.stderr
    [report] = json.loads(done.stdout)
    takes = report["takes"]
    assert [t["number"] for t in takes] == [1, 2, 3] and [t["status"] for t in takes] == ["ok"] * 3
    assert takes[0]["seed"] == 3 and len({t["seed"] for t in takes}) == 3
    outputs = [Path(t["output"]) for t in takes]
    assert [p.name for p in outputs] == ["dialogue clip.scored.mp4", "dialogue clip.scored.take2.mp4",
                                         "dialogue clip.scored.take3.mp4"]
    assert report["output"] == str(outputs[0]) and sha256(source) == before
    for take, output in zip(takes, outputs):
        assert output.is_file() and Path(str(output) + ".scoretrack.json").is_file()
        assert set(take["side"]) == ({"music", "music-dry", "plot", "otio", "kdenlive"} if take["number"] == 1
                                     else {"music", "music-dry", "plot"})
    dry = [soundfile.read(t["side"]["music-dry"])[0] for t in takes]
    # three different pieces of music (measured against their level: the stems sit at the original's)
    assert min(np.abs(dry[a] - dry[b]).max() / np.abs(dry[a]).max() for a, b in [(0, 1), (0, 2), (1, 2)]) > 0.1
    for line in ("take 1 (seed 3)", "take 2 (seed", "take 3 (seed"):
        assert line in done.stderr
    # the timelines hold three music tracks, take 1 playing and the others muted
    read = otio.adapters.read_from_file(takes[0]["side"]["otio"])
    music = [track for track in read.audio_tracks() if "take" in track.name.lower()]
    assert len(music) == 3 and [track.enabled for track in music] == [True, False, False]
    used = {Path(urllib.parse.unquote(urllib.parse.urlparse(track[0].media_reference.target_url).path)).name
            for track in music}
    assert used == {Path(t["side"]["music-dry"]).name for t in takes}
    kdenlive = Path(takes[0]["side"]["kdenlive"]).read_text(encoding="utf-8")
    assert all(Path(t["side"]["music-dry"]).name in kdenlive for t in takes)
    # take 1 is a plain run's music; --take 2 alone is take 2's
    plain = tmp_path / "plain"
    plain.mkdir()
    done = run(source, "--model", tiny_model_dir, "--stems", "--out-dir", plain, *CLI_FAST)
    assert done.returncode == 0, done.stderr
    assert sha256(plain / "dialogue clip.scored.music-dry.wav") == sha256(takes[0]["side"]["music-dry"])
    alone = tmp_path / "alone"
    alone.mkdir()
    done = run(source, "--model", tiny_model_dir, "--stems", "--out-dir", alone, "--take", "2", *CLI_FAST)
    assert done.returncode == 0, done.stderr
    assert sha256(alone / "dialogue clip.scored.take2.music-dry.wav") == sha256(takes[1]["side"]["music-dry"])
    # a rerun skips all three
    stamps = [p.stat().st_mtime_ns for p in outputs]
    done = run(*args, "--takes", "3")
    assert done.returncode == 0, done.stderr
    [again] = json.loads(done.stdout)
    assert again["status"] == "skipped" and [t["status"] for t in again["takes"]] == ["skipped"] * 3
    assert [p.stat().st_mtime_ns for p in outputs] == stamps


def test_a_fourth_take_later_makes_only_take_4(clip_with_speech, tiny_model_dir, tmp_path):
    source = tmp_path / clip_with_speech.name
    shutil.copy(clip_with_speech, source)
    args = [source, "--model", tiny_model_dir, "--stems", "--json", *CLI_FAST]
    assert run(*args, "--takes", "3").returncode == 0
    outputs = sorted(tmp_path.glob("*.scored*.mp4"))
    stamps = [p.stat().st_mtime_ns for p in outputs]
    done = run(*args, "--takes", "4")
    assert done.returncode == 0, done.stderr
    [report] = json.loads(done.stdout)
    assert [t["status"] for t in report["takes"]] == ["skipped", "skipped", "skipped", "ok"]
    assert [p.stat().st_mtime_ns for p in outputs] == stamps
    assert (tmp_path / "dialogue clip.scored.take4.mp4").is_file()


def test_a_timeline_remade_for_a_new_take_keeps_its_keys_and_regenerates_nothing(clip_with_speech, tiny_model_dir,
                                                                                     tmp_path):
    source = tmp_path / clip_with_speech.name
    shutil.copy(clip_with_speech, source)
    args = [source, "--model", tiny_model_dir, "--timeline", "kdenlive", "--json", *CLI_FAST]
    assert run(*args, "--takes", "2").returncode == 0
    project = tmp_path / "dialogue clip.scored.kdenlive"
    before = project.read_text(encoding="utf-8")
    take_1 = [tmp_path / "dialogue clip.scored.mp4", tmp_path / "dialogue clip.scored.music-dry.wav"]
    stamps = [p.stat().st_mtime_ns for p in take_1]
    done = run(*args, "--takes", "3")
    assert done.returncode == 0, done.stderr
    [report] = json.loads(done.stdout)
    assert [t["status"] for t in report["takes"]] == ["skipped", "skipped", "ok"]  # take 1: its timeline only
    assert [p.stat().st_mtime_ns for p in take_1] == stamps
    after = project.read_text(encoding="utf-8")
    assert "dialogue clip.scored.take3.music-dry.wav" in after and "take3" not in before

    def volume_keys(text: str) -> list[str]:  # the keyed volume filters' level properties
        return sorted(set(re.findall(r'<property name="level">([^<]+)</property>', text)))

    assert volume_keys(after) == volume_keys(before) and volume_keys(before)
    # take 1 alone now: the timeline keeps the takes on disk made with these settings, so nothing is left to make
    done = run(*args, "--take", "1")
    assert done.returncode == 0, done.stderr
    [report] = json.loads(done.stdout)
    assert report["status"] == "skipped" and [t["number"] for t in report["takes"]] == [1, 2, 3]
    assert report["loudness_lufs"] == report["takes"][0]["loudness_lufs"] is not None
    assert project.read_text(encoding="utf-8") == after
    assert [p.stat().st_mtime_ns for p in take_1] == stamps


def test_the_package_lists_its_names_for_completion():
    import scoretrack

    assert {"Scorer", "ScoreOptions", "TakeResult", "score"} <= set(dir(scoretrack))
    assert scoretrack.TakeResult.__name__ == "TakeResult"


@pytest.mark.parametrize("args, message", [
    (["--take", "2", "--takes", "3"], "--take 2 makes that take alone and --takes 3 takes 1 to 3: give one of them"),
    (["--take", "2", "--take", "3"], "--take given twice (2 and 3); give it once"),
    (["--takes", "2.5"], "argument --takes: invalid int value: '2.5'"),
    (["--takes", "17"], "--takes 17 must be an integer in [1, 16]"),
])
def test_contradictory_or_bad_take_options_get_one_line(args, message, clip_with_speech, tmp_path):
    done = run(clip_with_speech, "--model", tmp_path / "no model", *args)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr and "usage:" not in done.stderr


KILL_AT_TAKE_2 = """
import os, signal, sys
from scoretrack import cli, writers

write_output = writers.write_output

def write_then_die(job, take, *args, **kwargs):  # take 2's stems are in place, its video and final record not
    if take.number == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return write_output(job, take, *args, **kwargs)

writers.write_output = write_then_die
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_run_killed_while_writing_a_take_is_made_again_without_force(clip_with_speech, tiny_model_dir, tmp_path):
    """SIGKILL as soon as take 2's stems are in place (before its video and final record): the rerun
    knows the left files for its own, makes the take again and leaves nothing behind. The run kills
    itself at that point: a test that watched for the stem and then killed it raced the run under load."""
    source = tmp_path / clip_with_speech.name
    shutil.copy(clip_with_speech, source)
    args = [sys.executable, "-c", KILL_AT_TAKE_2, source, "--model", tiny_model_dir, "--stems", "--takes", "2",
            "--json", *CLI_FAST]
    stem = tmp_path / "dialogue clip.scored.take2.music.wav"
    killed = subprocess.run(list(map(str, args)), capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert stem.exists()
    done = run(*args[3:])
    assert done.returncode == 0, done.stderr
    [report] = json.loads(done.stdout)
    assert report["status"] == "ok" and all(Path(t["output"]).is_file() for t in report["takes"])
    assert [t["status"] for t in report["takes"]] == ["ok", "ok"]  # take 2 made again
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".scoretrack-")]
    assert "pending" not in json.loads((tmp_path / "dialogue clip.scored.take2.mp4.scoretrack.json").read_text())


def test_files_a_killed_run_left_are_its_own_but_a_users_are_not(tmp_path):
    from scoretrack.plan import ClipRequest, SideOutputs, pending_record, plan_jobs
    from scoretrack.writers import write_sidecar

    clip = tmp_path / "clip.mp4"
    shutil.copy(MEDIA / "realshort_1s.mp4", clip)
    request, side = ClipRequest(clip, None, ScoreOptions(takes=2)), SideOutputs(stems=True)
    [job], _ = plan_jobs([request], model_name="tiny", side=side)
    second = job.takes[1]
    second.side["music"].write_bytes(b"half a stem")  # what a kill leaves: a file in place, a pending record
    write_sidecar(Path(str(second.output) + ".scoretrack.json"), pending_record(second))
    [job], settled = plan_jobs([request], model_name="tiny", side=side)
    assert not settled and job.takes[1].make == ("output", "music", "music-dry")
    (tmp_path / "clip.scored.take2.mp4.scoretrack.json").unlink()  # no record: the stem is someone else's
    jobs, [refused] = plan_jobs([request], model_name="tiny", side=side)
    assert not jobs and refused.error_type == "OutputExistsError" and "take2.music.wav" in refused.error
