"""The Ray executor on a real local Ray: good clips scored, bad ones failed alone, nothing left running.

The command-line tests start their own Ray (as a user's run does) with RAY_TMPDIR in a short folder of
their own, so the processes that Ray leaves (or not) can be told apart from other Rays on the machine.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from conftest import MEDIA

ray = pytest.importorskip("ray")

from scoretrack.errors import BadParameterError, UnreadableMediaError  # noqa: E402
from scoretrack.options import GenerationOptions, ScoreOptions  # noqa: E402
from scoretrack.pipeline import score_many  # noqa: E402
from scoretrack.plan import ClipRequest, SideOutputs  # noqa: E402
from scoretrack.ray_executor import CRASH_ON, RayExecutor, check_temp_dir  # noqa: E402

FAST = ["--window", "4", "--stride", "2.5"]
GOOD = ["grid_bbaf2n_speech.mpg", "ipad_IMG_0034_rot180.MOV", "realshort_1s.mp4", "speech_jfk.wav"]
KILLER = "kills-its-worker.mpg"  # a good clip under a name the test-only hook crashes on


@pytest.fixture
def ray_tmp():
    """A short RAY_TMPDIR (Ray's socket paths must fit in 107 bytes), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def processes_of(folder: Path) -> list[str]:
    """Live processes whose command line or environment names ``folder``: the Ray started with RAY_TMPDIR there."""
    key = os.fsencode(folder)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if key in cmdline or key in (entry / "environ").read_bytes():
                command = cmdline.replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{entry.name} {command[:100]}")
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def cli(*args, env: dict, **popen):
    command = [sys.executable, "-m", "scoretrack.cli", *map(str, args)]
    if popen:
        # a shell's background job ignores SIGINT, and children inherit that: restore Ctrl-C
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **popen)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def clips(folder: Path) -> list[Path]:
    """Short real clips, a truncated one and one the hook kills its worker on, in one folder."""
    folder.mkdir()
    paths = [folder / name for name in GOOD]
    for path in paths:
        shutil.copy(MEDIA / path.name, path)
    truncated = folder / "truncated.mp4"
    data = (MEDIA / "his_girl_friday_dialogue.mp4").read_bytes()
    truncated.write_bytes(data[: len(data) * 6 // 10])
    shutil.copy(MEDIA / "grid_bbaf2n_speech.mpg", folder / KILLER)
    return [*paths[:2], folder / KILLER, truncated, *paths[2:]]


def by_name(stdout: str) -> dict[str, dict]:
    return {Path(r["input"]).name: r for r in json.loads(stdout)}


def test_cli_on_ray_fails_bad_clips_alone_resumes_and_matches_local(tiny_model_dir, tmp_path, ray_tmp):
    inputs = clips(tmp_path / "ray")
    options = ["--model", tiny_model_dir, "--stems", "--json", "--batch-size", "2", "--takes", "2", *FAST]
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp), CRASH_ON: KILLER}

    done = cli(*inputs, *options, "--ray", "--ray-actors", "2", env=env)
    assert done.returncode == 1, done.stderr
    assert processes_of(ray_tmp) == []
    results = by_name(done.stdout)
    assert [Path(r["input"]).name for r in json.loads(done.stdout)] == [p.name for p in inputs]
    for name in GOOD:
        assert results[name]["status"] == "ok", results[name]
        assert "ray-actor:" in results[name]["worker"] and results[name]["queued_s"] >= 0
        assert [take["status"] for take in results[name]["takes"]] == ["ok", "ok"]
        assert all(Path(take["output"]).is_file() for take in results[name]["takes"])
    assert results[KILLER]["status"] == "failed"
    assert results[KILLER]["error"].startswith("the worker died while scoring this clip (ActorDiedError")
    assert results[KILLER]["error_type"] == "WorkerDiedError"
    assert results["truncated.mp4"]["status"] == "failed"
    assert results["truncated.mp4"]["error_type"] == "UnreadableMediaError"
    assert "truncated.mp4" in results["truncated.mp4"]["error"]
    assert f"{KILLER}: the worker died" in done.stderr and "truncated.mp4: " in done.stderr

    # The same clips and seeds on the local loop give the same music: the same codes, so the stems
    # agree to float rounding (the killer's neighbour was scored alone on Ray, batched here; a different
    # piece differs by about the music's peak). One thread, as a 1-CPU actor has.
    local = tmp_path / "local"
    local.mkdir()
    for path in inputs[:2] + inputs[-2:]:
        shutil.copy(path, local / path.name)
    here = cli(*sorted(local.iterdir()), *options, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert here.returncode == 0, here.stderr
    for name, report in by_name(here.stdout).items():
        for ours, theirs in zip(report["takes"], results[name]["takes"]):  # both takes
            ours, theirs = soundfile.read(ours["side"]["music"])[0], soundfile.read(theirs["side"]["music"])[0]
            # the stems sit at the original's level: compared against their own peak
            peak = np.abs(ours).max()
            assert peak > 1e-4, name
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=0.02 * peak, err_msg=name)

    # A rerun skips the done clips and scores the one whose worker died, now that nothing kills it.
    made = {name: os.stat(results[name]["output"]).st_mtime_ns for name in GOOD}
    env.pop(CRASH_ON)
    again = cli(*inputs, *options, "--ray", "--ray-actors", "2", env=env)
    assert again.returncode == 1, again.stderr  # the truncated clip still fails
    rerun = by_name(again.stdout)
    assert {name: rerun[name]["status"] for name in GOOD} == dict.fromkeys(GOOD, "skipped")
    assert {name: os.stat(results[name]["output"]).st_mtime_ns for name in GOOD} == made
    assert rerun[KILLER]["status"] == "ok" and rerun["truncated.mp4"]["status"] == "failed"
    assert processes_of(ray_tmp) == []


@pytest.mark.parametrize("signum, group", [(signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["ctrl-c", "sigterm"])
def test_no_ray_process_outlives_an_interrupted_cli(signum, group, tiny_model_dir, tmp_path, ray_tmp):
    clip = tmp_path / "speech.wav"
    shutil.copy(MEDIA / "speech_silero_test_60s.wav", clip)
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    run = cli(clip, "--model", tiny_model_dir, "--ray", "--ray-actors", "1", *FAST, env=env, start_new_session=group)
    deadline = time.monotonic() + 300
    while not any("ray::_ScorerActor" in p for p in processes_of(ray_tmp)):  # the actor is up: mid-run
        assert run.poll() is None and time.monotonic() < deadline, run.stderr.read() if run.poll() else "no actor"
        time.sleep(0.2)
    time.sleep(1)
    os.killpg(run.pid, signum) if group else run.send_signal(signum)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr
    assert processes_of(ray_tmp) == []
    assert [p.name for p in tmp_path.iterdir()] == ["speech.wav"]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the in-process tests (RayExecutor uses it and leaves it running)."""
    folder = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_TMPDIR", str(folder))
        ray.init(address="local", num_cpus=2, object_store_memory=128 << 20, include_dashboard=False,
                 log_to_driver=False)
        yield
        ray.shutdown()
    shutil.rmtree(folder, ignore_errors=True)


def test_inputs_the_workers_cannot_see_fail_by_name(local_ray, tiny_model_dir, tmp_path):
    names = ["realshort_1s.mp4", "grid_bbaf2n_speech.mpg"]
    for name in names:
        shutil.copy(MEDIA / name, tmp_path / name)
    options = ScoreOptions(generation=GenerationOptions(window_s=4, stride_s=2.5))
    requests = [ClipRequest(tmp_path / name, options=options) for name in names]

    class VanishingAfterPlan(RayExecutor):  # the file is gone by the time the workers look
        def run(self, jobs, **kwargs):
            (tmp_path / names[1]).unlink()
            super().run(jobs, **kwargs)

    steps, total = [], []
    executor = VanishingAfterPlan(model=str(tiny_model_dir), device="cpu", actors=2)
    ok, gone = score_many(requests, model=str(tiny_model_dir), executor=executor, side=SideOutputs(stems=True),
                          on_step=steps.append, on_total=total.append)
    assert ok.status == "ok" and "ray-actor:" in ok.worker and ok.stems.is_file()
    assert gone.status == "failed" and isinstance(gone.exception, UnreadableMediaError)
    assert gone.error.startswith(f"{tmp_path / names[1]}: not found on the Ray worker")
    assert sum(steps) == total[0] > 0  # every step counted on the cluster, once
    assert ray.is_initialized()  # a Ray the executor did not start is left to its owner


@pytest.mark.parametrize("settings, message", [
    ({"actors": 0}, "actors=0 must be a positive number"),
    ({"device": "cuda:1"}, "device='cuda:1': on Ray each actor is given its own GPU"),
])
def test_bad_settings_are_refused_before_ray_starts(settings, message):
    with pytest.raises(BadParameterError, match=message):
        RayExecutor(model="m", **settings)


def test_a_temp_folder_too_long_for_ray_sockets_is_refused(monkeypatch):
    monkeypatch.setenv("RAY_TMPDIR", "/tmp/" + "x" * 60)
    with pytest.raises(BadParameterError, match="too long for Ray's socket paths"):
        check_temp_dir()
