"""Takes bookkeeping (issue 23): each take's own figures and status, timelines keep every take on disk, interrupted
and refused runs report what they did."""

import json
import shutil
import urllib.parse
from pathlib import Path

import opentimelineio as otio
import pytest

from conftest import MEDIA
from scoretrack import cli, writers
from test_cli import run

CLI_FAST = ["--window", "4", "--stride", "2.5", "--seed", "3"]


@pytest.fixture
def clip(tmp_path):
    source = tmp_path / "clip.mp4"
    shutil.copy(MEDIA / "realshort_1s.mp4", source)
    return source


def music_takes(timeline: Path) -> list[str]:
    """The dry stems on an OpenTimelineIO timeline's music tracks."""
    tracks = [track for track in otio.adapters.read_from_file(str(timeline)).audio_tracks() if "take" in track.name.lower()]
    return sorted(Path(urllib.parse.unquote(urllib.parse.urlparse(track[0].media_reference.target_url).path)).name
                  for track in tracks)


def test_each_take_keeps_its_figures_and_timelines_keep_every_take(clip, tiny_model_dir):
    args = [clip, "--model", tiny_model_dir, "--timeline", "otio", "--json", *CLI_FAST]
    done = run(*args, "--takes", "3")
    assert done.returncode == 0, done.stderr
    [first] = json.loads(done.stdout)
    loudness = [take["loudness_lufs"] for take in first["takes"]]
    assert None not in loudness and first["loudness_lufs"] == loudness[0]
    # a fourth take: the clip's figures stay take 1's (its output), take 1 is skipped with its figures
    done = run(*args, "--takes", "4")
    assert done.returncode == 0, done.stderr
    [report] = json.loads(done.stdout)
    assert [t["status"] for t in report["takes"]] == ["skipped", "skipped", "skipped", "ok"]
    assert [t["loudness_lufs"] for t in report["takes"][:3]] == loudness and report["takes"][3]["loudness_lufs"]
    assert report["output"] == report["takes"][0]["output"] and report["loudness_lufs"] == loudness[0]
    assert report["true_peak_dbtp"] == first["true_peak_dbtp"]
    # fewer takes later: takes 3 and 4 stay on the timeline, which holds every take made with these settings
    done = run(*args, "--takes", "2")
    assert done.returncode == 0, done.stderr
    [report] = json.loads(done.stdout)
    assert report["status"] == "skipped" and [t["number"] for t in report["takes"]] == [1, 2, 3, 4]
    assert music_takes(Path(report["side"]["otio"])) == [
        "clip.scored.music-dry.wav", *(f"clip.scored.take{n}.music-dry.wav" for n in (2, 3, 4))]


def test_a_take_made_alone_joins_the_clips_timeline_where_take_1_plays(clip, tiny_model_dir):
    """--take 3 after --takes 2: take 3's music goes onto the clip's own timeline (no NAME.take3.otio), take 1
    still playing; a rerun of it is skipped."""
    args = [clip, "--model", tiny_model_dir, "--timeline", "otio", "--json", *CLI_FAST]
    assert run(*args, "--takes", "2").returncode == 0
    done = run(*args, "--take", "3")
    assert done.returncode == 0, done.stderr
    timeline = clip.with_name("clip.scored.otio")
    assert not clip.with_name("clip.scored.take3.otio").exists()
    tracks = [t for t in otio.adapters.read_from_file(str(timeline)).audio_tracks() if "take" in t.name.lower()]
    assert [(t.name.split(" (")[0], t.enabled) for t in tracks] == [
        ("Music take 1", True), ("Music take 3", False), ("Music take 2", False)]
    assert music_takes(timeline) == [f"clip.scored{n}.music-dry.wav" for n in ("", ".take2", ".take3")]
    again = run(*args, "--take", "3")
    assert again.returncode == 0 and json.loads(again.stdout)[0]["status"] == "skipped", again.stderr


def test_a_stop_after_a_complete_take_reports_it(clip, tiny_model_dir, monkeypatch, capsys):
    """Ctrl-C once take 2's files and sidecar are complete (takes are written last-first, take 1 last)."""
    original = writers.write_sidecar

    def stop_at_take_1(path, record):
        if record.get("take") == 1 and "pending" in record:
            raise KeyboardInterrupt
        return original(path, record)

    monkeypatch.setattr(writers, "write_sidecar", stop_at_take_1)
    code = cli.main([str(clip), "--model", str(tiny_model_dir), "--takes", "2", "--json", *CLI_FAST])
    assert code == 130
    [report] = json.loads(capsys.readouterr().out)
    assert report["status"] == "interrupted"
    assert [(t["number"], t["status"]) for t in report["takes"]] == [(1, "not started"), (2, "ok")]
    assert report["takes"][1]["loudness_lufs"] is not None and not (clip.parent / "clip.scored.mp4").exists()
    monkeypatch.setattr(writers, "write_sidecar", original)
    code = cli.main([str(clip), "--model", str(tiny_model_dir), "--takes", "2", "--json", *CLI_FAST])
    assert code == 0
    [again] = json.loads(capsys.readouterr().out)
    assert [t["status"] for t in again["takes"]] == ["ok", "skipped"]


def test_a_usage_error_with_json_fails_every_clip_with_it(tmp_path):
    done = run(tmp_path / "a.mp4", tmp_path / "b.mp4", "--takes", "2", "--take", "3", "--json")
    assert done.returncode == 2
    rows = json.loads(done.stdout)
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert all("give one of them" in r["error"] and r["error_type"] == "BadParameterError" for r in rows)
