"""An input is the same input when its bytes are: moved, copied, renamed or touched, its clip is done."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MEDIA
from scoretrack.options import ScoreOptions
from scoretrack.plan import ClipRequest, input_identity, plan_jobs, read_sidecar, sidecar_path
from scoretrack.writers import write_sidecar

CLIP = "realshort_1s.mp4"
FAST = ["--window", "4", "--stride", "2.5"]


def score(folder: Path, model: Path, *extra) -> dict:
    """Score folder/clip.mp4 with the command; its one JSON result."""
    done = subprocess.run([sys.executable, "-m", "scoretrack.cli", str(folder / "clip.mp4"), "--style", "calm",
                           "--model", str(model), "--json", *FAST, *extra], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    [result] = json.loads(done.stdout)
    return result


def test_moved_copied_and_touched_inputs_resume_a_changed_one_is_scored_again(tmp_path, tiny_model_dir):
    first = tmp_path / "d1"
    first.mkdir()
    shutil.copy(MEDIA / CLIP, first / "clip.mp4")
    assert score(first, tiny_model_dir)["status"] == "ok"
    moved = tmp_path / "d1_moved"
    first.rename(moved)
    output = moved / "clip.scored.mp4"
    stamp = output.stat().st_mtime_ns
    assert score(moved, tiny_model_dir)["status"] == "skipped"
    copied = tmp_path / "d1_copy"
    shutil.copytree(moved, copied)  # new inodes and times, same bytes
    assert score(copied, tiny_model_dir)["status"] == "skipped"
    os.utime(moved / "clip.mp4", ns=(1, 1))  # touched: only the times change
    assert score(moved, tiny_model_dir)["status"] == "skipped"
    assert output.stat().st_mtime_ns == stamp
    data = bytearray((copied / "clip.mp4").read_bytes())
    data[len(data) // 2] ^= 1  # one bit of the picture
    (copied / "clip.mp4").write_bytes(bytes(data))
    assert score(copied, tiny_model_dir)["status"] == "ok"
    assert read_sidecar(copied / "clip.scored.mp4")["input"]["sha256"] == input_identity(copied / "clip.mp4")["sha256"]


def test_the_model_is_the_same_model_however_its_folder_is_typed(tmp_path, tiny_model_dir):
    """A local model folder typed relatively, with a trailing slash or absolutely is one setting: a script
    run from another folder resumes the clip (the sidecar records the folder's absolute path)."""
    shutil.copy(MEDIA / CLIP, tmp_path / "clip.mp4")
    spellings = [(tiny_model_dir.parent, tiny_model_dir.name), (tiny_model_dir, "./"), (tmp_path, str(tiny_model_dir))]
    results = []
    for cwd, typed in spellings:
        done = subprocess.run([sys.executable, "-m", "scoretrack.cli", str(tmp_path / "clip.mp4"), "--style", "calm",
                               "--model", typed, "--json", *FAST], capture_output=True, text=True, timeout=600, cwd=cwd)
        assert done.returncode == 0, done.stderr
        results += json.loads(done.stdout)
    assert [r["status"] for r in results] == ["ok", "skipped", "skipped"]
    assert read_sidecar(tmp_path / "clip.scored.mp4")["settings"]["model"] == str(tiny_model_dir.resolve())


def old_sidecar(clip: Path, options: ScoreOptions) -> Path:
    """A finished take as an earlier scoretrack recorded it: input path, size, modification time and a
    hash of the file's ends (no hash of the whole file)."""
    [job], _ = plan_jobs([ClipRequest(clip, None, options)], model_name="tiny")
    take = job.takes[0]
    shutil.copy(MEDIA / CLIP, take.output)
    record = {"fingerprint": take.fingerprint, "take": 1, "seed": take.seed, "side": {}}
    from scoretrack.plan import file_identity

    record["input"] = {"path": str(clip.resolve()), "mtime_ns": clip.stat().st_mtime_ns, **file_identity(clip)}
    record["output"] = file_identity(take.output)
    write_sidecar(sidecar_path(take.output), record)
    return take.output


@pytest.mark.parametrize("case", ["untouched", "touched", "moved"])
def test_sidecars_without_the_whole_hash_compare_as_before(case, tmp_path):
    clip = tmp_path / "a" / "clip.mp4"
    clip.parent.mkdir()
    shutil.copy(MEDIA / CLIP, clip)
    options = ScoreOptions(style="calm")
    old_sidecar(clip, options)
    if case == "touched":
        os.utime(clip, ns=(1, 1))
    elif case == "moved":
        clip.parent.rename(tmp_path / "b")
        clip = tmp_path / "b" / "clip.mp4"
    jobs, settled = plan_jobs([ClipRequest(clip, None, options)], model_name="tiny")
    if case == "untouched":
        assert not jobs and settled[0].status == "skipped"
    elif case == "touched":  # path, size and ends as recorded, time not: made again, as before
        assert not settled and "output" in jobs[0].takes[0].make
    else:
        assert not jobs and settled[0].status == "failed" and "made from another input" in settled[0].error


def test_a_change_in_the_middle_of_a_large_input_is_seen_even_with_its_old_times(tmp_path):
    path = tmp_path / "long.bin"
    path.write_bytes(bytes(5 << 20))
    times = path.stat().st_atime_ns, path.stat().st_mtime_ns
    before = input_identity(path)
    with path.open("r+b") as handle:  # beyond the first and last MiB, which the old identity hashed
        handle.seek(2 << 20)
        handle.write(b"x")
    os.utime(path, ns=times)  # size and modification time as they were
    assert input_identity(path)["size"] == before["size"] and input_identity(path)["sha256"] != before["sha256"]
