"""One writer per output: a second run on the same files reports them as taken, or waits with --wait;
never two runs that both say "ok" for one output."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import MEDIA
from scoretrack import claims
from test_cli import FAST

CLIP = "realshort_1s.mp4"

HOLDER = """
import sys, time
from pathlib import Path
from scoretrack.claims import Claims
from scoretrack.plan import ClipRequest, plan_jobs, SideOutputs
jobs, _ = plan_jobs([ClipRequest(Path(sys.argv[1]), Path(sys.argv[2]))], model_name="m", side=SideOutputs(stems=True))
with Claims() as held:
    ready, _ = held.claim_jobs(jobs, [], options={}, model_name="m", overwrite=False)
    print(len(ready), flush=True)
    time.sleep(float(sys.argv[3]))
"""


def command(*args):
    return [sys.executable, "-m", "scoretrack.cli", *map(str, args)]


@pytest.fixture
def clip(tmp_path):
    shutil.copy(MEDIA / CLIP, tmp_path / "a.mp4")
    return tmp_path / "a.mp4"


def hold(clip: Path, output: Path, seconds: float) -> subprocess.Popen:
    """Another process that claims ``output`` (and its stems) for ``seconds``."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(clip), str(output), str(seconds)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "1"
    return process


def test_a_second_run_reports_the_output_as_taken(clip, tmp_path, tiny_model_dir):
    output = tmp_path / "a.scored.mp4"
    holder = hold(clip, output, 60)
    try:
        done = subprocess.run(command(clip, "--stems", "--json", "--model", tiny_model_dir, *FAST),
                              capture_output=True, text=True, timeout=600)
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 2, done.stderr
    [report] = json.loads(done.stdout)
    assert report["status"] == "failed" and report["error_type"] == "OutputBusyError"
    assert f"is being written by another scoretrack run (pid {holder.pid}); wait for it or use --wait" in report["error"]
    assert "loading" not in done.stderr and not output.exists()


def test_with_wait_the_second_run_waits_and_finds_the_work_done(tmp_path, tiny_model_dir):
    # two real runs on the same files: the first scores, the second waits for it and skips (same settings)
    clip = tmp_path / "a.mp4"
    shutil.copy(MEDIA / "his_girl_friday_dialogue.mp4", clip)  # 6 s: long enough to be found at work
    first = subprocess.Popen(command(clip, "--stems", "--json", "--model", tiny_model_dir, *FAST),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = claims.lock_path(tmp_path / "a.scored.mp4")
    while not lock.exists() and first.poll() is None:
        time.sleep(0.05)
    # the first run is held still until the second waits for it: under load the second once started so late
    # that the first had finished, and it skipped the clip without waiting
    first.send_signal(signal.SIGSTOP)
    try:
        second = subprocess.Popen(command(clip, "--stems", "--json", "--wait", "--model", tiny_model_dir, *FAST),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        waiting = ""
        while "waiting for" not in waiting and (line := second.stderr.readline()):
            waiting += line
    finally:
        first.send_signal(signal.SIGCONT)
    second_out, second_err = second.communicate(timeout=600)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0 and second.returncode == 0, (err, waiting + second_err)
    statuses = [json.loads(out)[0]["status"], json.loads(second_out)[0]["status"]]
    assert statuses == ["ok", "skipped"], (statuses, waiting + second_err)
    assert "waiting for" in waiting
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "a.scored.mp4", "a.scored.mp4.scoretrack.json",
                                                          "a.scored.music-dry.wav", "a.scored.music.wav"]


def test_a_wait_for_other_settings_refuses_instead_of_replacing(clip, tmp_path, tiny_model_dir):
    holder = hold(clip, tmp_path / "a.scored.mp4", 3)
    done = subprocess.run(command(clip, "--stems", "--json", "--wait", "--model", tiny_model_dir, *FAST),
                          capture_output=True, text=True, timeout=600)
    holder.wait()
    assert done.returncode == 0 and json.loads(done.stdout)[0]["status"] == "ok", done.stderr  # the holder wrote nothing
    other = subprocess.Popen(command(clip, "--stems", "--seed", "5", "--json", "--force", "--model", tiny_model_dir,
                                     *FAST), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = claims.lock_path(tmp_path / "a.scored.mp4")
    while not lock.exists() and other.poll() is None:
        time.sleep(0.05)
    waited = subprocess.run(command(clip, "--stems", "--json", "--wait", "--model", tiny_model_dir, *FAST),
                            capture_output=True, text=True, timeout=600)
    other.communicate(timeout=600)
    [report] = json.loads(waited.stdout)
    assert other.returncode == 0 and report["status"] == "failed" and "made with other settings" in report["error"]


def test_a_killed_holder_leaves_nothing_that_blocks(clip, tmp_path):
    output = tmp_path / "a.scored.mp4"
    holder = hold(clip, output, 60)
    holder.kill()
    holder.wait()
    assert claims.lock_path(output).exists()  # left behind by SIGKILL, but no longer locked
    from scoretrack.plan import ClipRequest, plan_jobs

    jobs, _ = plan_jobs([ClipRequest(clip, output)], model_name="m")
    with claims.Claims() as held:
        ready, settled = held.claim_jobs(jobs, [], options={}, model_name="m", overwrite=False)
        assert len(ready) == 1 and not settled
        assert claims.lock_path(output).read_text().strip() == str(os.getpid())
    assert not claims.lock_path(output).exists()
