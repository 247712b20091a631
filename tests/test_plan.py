"""Planning before work: every output and side file named, unique, writable, and resume decided by content."""

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from conftest import MEDIA, sha256
from scoretrack.errors import BadParameterError
from scoretrack.options import GenerationOptions, ScoreOptions, take_seed
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
    for take in job.takes:
        shutil.copy(MEDIA / CLIP, take.output)
        made = {}
        for name, path in take.side.items():
            path.write_bytes(b"side file " + name.encode() + str(take.number).encode())
            made[name] = path
        write_sidecar(sidecar_path(take.output), sidecar_record(job, take, made))
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
    assert jobs[0].takes[0].make == ("plot",)
    # a side file deleted since: only it is made again
    job.takes[0].side["music"].unlink()
    jobs, _ = plan([ClipRequest(clip, None, options)], side=SideOutputs(stems=True))
    assert jobs[0].takes[0].make == ("music",)


def test_resume_redoes_a_reexported_input(tmp_path):
    clip = copy(CLIP, tmp_path / "clip.mp4")
    options = ScoreOptions(style="calm")
    made_output(tmp_path, clip, options)
    shutil.copy(MEDIA / "his_girl_friday_dialogue.mp4", clip)  # same name, new content
    jobs, settled = plan([ClipRequest(clip, None, options)])
    assert not settled and "output" in jobs[0].takes[0].make


@pytest.mark.parametrize("case", ["another input's output", "other settings", "edited output", "no record"])
def test_an_output_that_is_not_this_jobs_is_never_taken_as_done(case, tmp_path):
    clip = copy(CLIP, tmp_path / "clip.mp4")
    options = ScoreOptions(style="calm")
    job = made_output(tmp_path, clip, options)
    request = ClipRequest(clip, None, options)
    if case == "another input's output":
        other = copy("his_girl_friday_dialogue.mp4", tmp_path / "other.mp4")  # other bytes: another input
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
    assert "output" in jobs[0].takes[0].make


def test_sidecar_records_content_not_just_settings(tmp_path):
    clip = copy(CLIP, tmp_path / "clip.mp4")
    job = made_output(tmp_path, clip, ScoreOptions(style="calm"), SideOutputs(stems=True))
    record = read_sidecar(job.output)
    assert record["input"]["size"] == os.path.getsize(clip) and record["input"]["sha256"] == sha256(clip)
    assert record["output"]["size"] == os.path.getsize(job.output)
    assert set(record["side"]) == {"music", "music-dry"}


def test_takes_are_named_seeded_and_resumed_one_by_one(tmp_path):
    clip = copy(CLIP, tmp_path / "clip.mp4")
    two = ScoreOptions(style="calm", takes=2, generation=GenerationOptions(seed=7))
    side = SideOutputs(stems=True, plot=True, timelines=("fcp7",))
    job = made_output(tmp_path, clip, two, side)
    first, second = job.takes
    assert (first.output.name, second.output.name) == ("clip.scored.mp4", "clip.scored.take2.mp4")
    assert second.side == {"music": tmp_path / "clip.scored.take2.music.wav",
                           "music-dry": tmp_path / "clip.scored.take2.music-dry.wav",
                           "plot": tmp_path / "clip.scored.take2.png"}  # the timelines are the first take's
    assert set(first.side) == {"music", "music-dry", "plot", "fcp7"}
    assert first.seed == 7 and second.seed == take_seed(7, 2) != 7
    # take 1's fingerprint is a run's without takes; take 2's differs (its music does)
    assert first.fingerprint == ScoreOptions(style="calm", generation=GenerationOptions(seed=7)).fingerprint(MODEL)
    assert second.fingerprint != first.fingerprint
    jobs, settled = plan([ClipRequest(clip, None, two)], side=side)
    assert not jobs and [t.status for t in settled[0].takes] == ["skipped", "skipped"]
    # a third take: only it is generated, and take 1's timeline is remade to hold all three
    jobs, _ = plan([ClipRequest(clip, None, dataclasses.replace(two, takes=3))], side=side)
    assert [(t.number, t.make) for t in jobs[0].to_generate()] == [
        (1, ("fcp7",)), (3, ("output", "music", "music-dry", "plot"))]
    # without timelines, a third take makes only take 3
    job = made_output(tmp_path, copy(CLIP, tmp_path / "other.mp4"), two, SideOutputs(stems=True))
    jobs, _ = plan([ClipRequest(job.path, None, dataclasses.replace(two, takes=3))], side=SideOutputs(stems=True))
    assert [t.number for t in jobs[0].to_generate()] == [3]
    # --take 2 alone is take 2 of the two-take run: already done
    jobs, settled = plan([ClipRequest(job.path, None, dataclasses.replace(two, takes=1, take=2))],
                         side=SideOutputs(stems=True))
    assert not jobs and settled[0].takes[0].output.name == "other.scored.take2.mp4"


@pytest.mark.parametrize("case", ["user's own file", "edited timeline"])
def test_a_side_file_that_is_not_scoretracks_own_is_never_replaced(case, tmp_path):
    clip = copy(CLIP, tmp_path / "clip.mp4")
    options = ScoreOptions(style="calm")
    if case == "user's own file":  # a fresh run, but clip.scored.fcpxml is already there
        (tmp_path / "clip.scored.fcpxml").write_text("<fcpxml>the editor's own</fcpxml>")
    else:  # a done run whose timeline the editor has changed since
        made_output(tmp_path, clip, options, SideOutputs(timelines=("fcpxml",)))
        (tmp_path / "clip.scored.fcpxml").write_text("<fcpxml>edited</fcpxml>")
    jobs, settled = plan([ClipRequest(clip, None, options)], side=SideOutputs(timelines=("fcpxml",)))
    assert not jobs and settled[0].error_type == "OutputExistsError"
    assert "clip.scored.fcpxml: already exists" in settled[0].error and "--force" in settled[0].error
    jobs, _ = plan([ClipRequest(clip, None, options)], side=SideOutputs(timelines=("fcpxml",)), overwrite=True)
    assert "fcpxml" in jobs[0].takes[0].make


def test_take_seeds_are_far_apart_and_stable():
    seeds = [take_seed(0, t) for t in range(1, 17)]
    assert seeds[0] == 0 and len(set(seeds)) == 16
    assert all(0 <= s < 2**62 for s in seeds) and min(abs(a - b) for a in seeds for b in seeds if a != b) > 10**6
    assert take_seed(0, 2) == take_seed(0, 2) != take_seed(1, 2)
    with pytest.raises(BadParameterError, match="takes=17"):
        ScoreOptions(takes=17).validate()
    with pytest.raises(BadParameterError, match="take=0"):
        ScoreOptions(take=0).validate()


def test_fcpxml_with_flac_stems_is_refused_before_any_work():
    with pytest.raises(BadParameterError, match="Final Cut Pro does not import FLAC"):
        SideOutputs(timelines=("fcpxml",), stem_format="flac").validate()
    SideOutputs(timelines=("kdenlive",), stem_format="flac").validate()  # MLT reads FLAC
