"""Planning before work: every output and side file named, unique, writable, and resume decided by content."""

import os
import shutil
from pathlib import Path

import pytest

from conftest import MEDIA
from scoretrack.options import GenerationOptions, ScoreOptions
from scoretrack.plan import (ClipRequest, SideOutputs, plan_jobs, read_sidecar, sidecar_path, sidecar_record)
from scoretrack.writers import write_sidecar

CLIP = "realshort_1s.mp4"
MODEL = "tiny"


def copy(name: str, to: Path) -> Path:
    to.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(MEDIA / name, to)
    return to


def plan(requests, **kwargs):
    jobs, settled = plan_jobs(requests, model_name=MODEL, **kwargs)
    return {j.index: j for j in jobs}, {r.index: r for r in settled}


def test_two_inputs_of_one_name_into_one_folder_collide_before_any_work(tmp_path):
    a, b = copy(CLIP, tmp_path / "a" / "clip.mp4"), copy(CLIP, tmp_path / "b" / "clip.mp4")
    out = tmp_path / "out"
    out.mkdir()
    jobs, settled = plan([ClipRequest(a, out_dir=out), ClipRequest(b, out_dir=out)])
    assert list(jobs) == [0] and settled[1].status == "failed"
    assert "also written by" in settled[1].error and str(a) in settled[1].error
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("case", ["same input twice", "two rows one output", "stems of clip.mp4 and clip.mov"])
def test_every_written_file_is_unique(case, tmp_path):
    mp4 = copy(CLIP, tmp_path / "clip.mp4")
    if case == "same input twice":
        requests, side = [ClipRequest(mp4), ClipRequest(mp4)], SideOutputs()
    elif case == "two rows one output":
        other = copy("his_girl_friday_dialogue.mp4", tmp_path / "other.mp4")
        requests, side = [ClipRequest(mp4, tmp_path / "o.mp4"), ClipRequest(other, tmp_path / "o.mp4")], SideOutputs()
    else:
        mov = copy(CLIP, tmp_path / "clip.mov")
        requests, side = [ClipRequest(mp4), ClipRequest(mov)], SideOutputs(stems=True)
    jobs, settled = plan(requests, side=side)
    assert list(jobs) == [0] and settled[1].status == "failed" and "also written by" in settled[1].error


@pytest.mark.parametrize("case", ["output is a folder", "output is the input", "output is another input",
                                  "missing folder", "name too long", "container cannot hold the picture"])
def test_outputs_that_cannot_be_written_fail_up_front(case, tmp_path):
    clip = copy(CLIP, tmp_path / "clip.mp4")
    other = copy("his_girl_friday_dialogue.mp4", tmp_path / "other.mp4")
    output = {"output is a folder": tmp_path,
              "output is the input": clip,
              "output is another input": other,
              "missing folder": tmp_path / "nowhere" / "o.mp4",
              "name too long": tmp_path / ("x" * 240 + ".mp4"),
              "container cannot hold the picture": tmp_path / "o.webm"}[case]
    before = sorted(tmp_path.iterdir())
    jobs, settled = plan([ClipRequest(clip, output, ScoreOptions(style="x")), ClipRequest(other)], overwrite=True)
    assert 0 not in jobs and settled[0].status == "failed" and "\n" not in settled[0].error
    assert settled[0].error_type in ("BadParameterError", "OutputExistsError")
    assert sorted(tmp_path.iterdir()) == before


def made_output(tmp_path: Path, clip: Path, options: ScoreOptions, side: SideOutputs = SideOutputs()):
    """Stand in for a finished run: an output file, its side files and the sidecar that records them."""
    [job], _ = plan_jobs([ClipRequest(clip, None, options)], model_name=MODEL, side=side)
    shutil.copy(MEDIA / CLIP, job.output)
    made = {}
    for name, path in job.side.items():
        path.write_bytes(b"side file " + name.encode())
        made[name] = path
    write_sidecar(sidecar_path(job.output), sidecar_record(job, made))
    return job


def test_resume_skips_only_what_is_really_done(tmp_path):
    clip = copy(CLIP, tmp_path / "clip.mp4")
    options = ScoreOptions(style="calm")
    job = made_output(tmp_path, clip, options, SideOutputs(stems=True))
    jobs, settled = plan([ClipRequest(clip, None, options)], side=SideOutputs(stems=True))
    assert not jobs and settled[0].status == "skipped"
    assert settled[0].duration_s == pytest.approx(job.info.duration_s) and set(settled[0].side) == {"music", "music-dry"}
    # a side file asked for now but not made before: only it is made
    jobs, _ = plan([ClipRequest(clip, None, options)], side=SideOutputs(stems=True, plot=True))
    assert jobs[0].make == ("plot",)
    # a side file deleted since: only it is made again
    job.side["music"].unlink()
    jobs, _ = plan([ClipRequest(clip, None, options)], side=SideOutputs(stems=True))
    assert jobs[0].make == ("music",)


def test_resume_redoes_a_reexported_input(tmp_path):
    clip = copy(CLIP, tmp_path / "clip.mp4")
    options = ScoreOptions(style="calm")
    made_output(tmp_path, clip, options)
    shutil.copy(MEDIA / "his_girl_friday_dialogue.mp4", clip)  # same name, new content
    jobs, settled = plan([ClipRequest(clip, None, options)])
    assert not settled and "output" in jobs[0].make


@pytest.mark.parametrize("case", ["another input's output", "other settings", "edited output", "no record"])
def test_an_output_that_is_not_this_jobs_is_never_taken_as_done(case, tmp_path):
    clip = copy(CLIP, tmp_path / "clip.mp4")
    options = ScoreOptions(style="calm")
    job = made_output(tmp_path, clip, options)
    request = ClipRequest(clip, None, options)
    if case == "another input's output":
        other = copy(CLIP, tmp_path / "other.mp4")
        request = ClipRequest(other, job.output, options)
    elif case == "other settings":
        request = ClipRequest(clip, None, ScoreOptions(style="calm", generation=GenerationOptions(seed=5)))
    elif case == "edited output":
        with job.output.open("ab") as handle:
            handle.write(b"\0" * 10)
    else:
        sidecar_path(job.output).unlink()
    jobs, settled = plan([request])
    assert not jobs and settled[0].status == "failed" and "already exists" in settled[0].error
    assert settled[0].error_type == "OutputExistsError"
    jobs, settled = plan([request], overwrite=True)
    assert "output" in jobs[0].make


def test_sidecar_records_content_not_just_settings(tmp_path):
    clip = copy(CLIP, tmp_path / "clip.mp4")
    job = made_output(tmp_path, clip, ScoreOptions(style="calm"), SideOutputs(stems=True))
    record = read_sidecar(job.output)
    assert record["input"]["size"] == os.path.getsize(clip) and len(record["input"]["sha256_ends"]) == 64
    assert record["output"]["size"] == os.path.getsize(job.output)
    assert set(record["side"]) == {"music", "music-dry"}
