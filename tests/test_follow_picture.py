"""A score that follows the picture, end to end: seams on the cuts of an edited clip, a style per scene."""

import json

import pytest

from scoretrack.options import GenerationOptions, ScoreOptions
from test_cli import run
from test_scenes import make_edited_clip

WINDOWS = GenerationOptions(window_s=24.0, stride_s=14.0, seed=1)  # 27 s clip: one seam, regularly at 19 s


@pytest.fixture(scope="module")
def edited_clip(tmp_path_factory):
    """Three real shots of 9 s from three sources: cuts at 9 s and 18 s."""
    return make_edited_clip(tmp_path_factory.mktemp("edited") / "edited.mp4", shot_s=9.0)


def test_seams_land_on_the_cuts(scorer, edited_clip, tmp_path):
    result = scorer.score(edited_clip, output=tmp_path / "cuts.mp4", options=ScoreOptions(follow_cuts=True, generation=WINDOWS))
    for join in (9.0, 18.0):  # the two joins are found (Big Buck Bunny's shot holds a cut of its own)
        assert any(abs(cut - join) <= 1 / 24 for cut in result.cuts_s), result.cuts_s
    for seam in result.seams_s:  # every seam with a cut within reach (4 s) lies on it
        nearest = min(result.cuts_s, key=lambda cut: abs(cut - seam))
        assert abs(seam - nearest) <= 0.25 or abs(seam - nearest) > 4
    assert result.seams_s == pytest.approx([18.0], abs=0.25)  # moved from 19 s onto the cut
    plain = scorer.score(edited_clip, output=tmp_path / "plain.mp4", options=ScoreOptions(generation=WINDOWS))
    assert not plain.cuts_s and plain.seams_s == pytest.approx([19.0], abs=0.02)


def test_a_cut_the_regular_seam_cannot_reach_gets_an_extra_seam(scorer, edited_clip, tmp_path):
    # 20 s windows, 8 s prompt: the one regular seam (16 s) may not move to the cut at 18 s, but
    # two seams, on both joins, fit
    windows = GenerationOptions(window_s=20.0, stride_s=12.0, seed=1)
    result = scorer.score(edited_clip, output=tmp_path / "extra.mp4", options=ScoreOptions(follow_cuts=True, generation=windows))
    assert result.seams_s == pytest.approx([9.0, 18.0], abs=0.25)


def test_style_changes_are_seams_and_reach_the_json(tiny_model_dir, edited_clip, tmp_path):
    done = run(edited_clip, "--model", tiny_model_dir, "-o", tmp_path / "styled.mp4", "--window", "20", "--stride", "12",
               "--style", "calm piano", "--style-at", "0:09=dark synth", "--style-at", "18=jazz brass", "--json")
    assert done.returncode == 0, done.stderr
    [report] = json.loads(done.stdout)
    assert report["styles"] == ["calm piano", "dark synth", "jazz brass"]
    assert report["seams_s"] == pytest.approx([9.0, 18.0], abs=0.02)
