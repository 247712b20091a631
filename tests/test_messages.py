"""What a demanding newcomer met (issue 23): manifests, option names in messages, top-p, options checked once."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import MEDIA
from scoretrack import cli
from scoretrack.errors import BadParameterError
from scoretrack.generate import nucleus
from scoretrack.options import TOP_P_MIN, GenerationOptions, MelodyOptions, MixOptions, ScoreOptions

FAST = ["--window", "4", "--stride", "2.5"]


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "scoretrack.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def options_error(*argv) -> str:
    with pytest.raises(BadParameterError) as caught:
        cli.options_from_args(cli.build_parser().parse_args(["x.mp4", *argv]))
    return str(caught.value)


# every message names the option as typed, with the value as typed
@pytest.mark.parametrize("argv, says", [
    (["--duck-depth", "5"], "--duck-depth 5 must be a finite number in [-60, 0] dB"),
    (["--loudness", "-3"], "--loudness -3 must be"),
    (["--guidance", "0.5"], "--guidance 0.5 must be"),
    (["--fade-in", "61"], "--fade-in 61 must be"),
    (["--take", "0"], "--take 0 must be an integer in [1, 16]"),
    (["--takes", "17"], "--takes 17 must be"),
    (["--top-k", "0"], "--top-k 0 must be"),
    (["--window", "10", "--stride", "12"], "--stride 12 must be below --window (10 s)"),
    (["--window", "31"], "--window 31 must be"),
    (["--top-p", "1e-46"], "--top-p 1e-46 keeps no code"),
])
def test_messages_name_the_option_as_typed(argv, says):
    message = options_error(*argv)
    assert says in message
    assert not any(name in message for name in ("depth_db", "target_lufs", "guidance_scale", "fade_in_s", "take=",
                                                "stride_s", "window_s", "top_p", "top_k"))


def test_stride_not_given_follows_a_short_window():
    """--follow-cuts --window 16 once said "stride_s=18.0 must be ... (at most window_s)" though --stride was never
    given; a short window alone now gets a stride that fits it, and the follow-cuts rule speaks of --window."""
    args = cli.build_parser().parse_args(["x.mp4", "--window", "12"])
    assert cli.options_from_args(args).generation.stride_s == pytest.approx(7.2)
    message = options_error("--follow-cuts", "--window", "16")
    assert "--window of at least 17 s" in message and "stride" not in message


def test_the_api_keeps_field_names():
    with pytest.raises(BadParameterError, match=r"^depth_db=5\.0 must be"):
        MixOptions(depth_db=5.0)


# --- top-p ---
def test_a_top_p_too_small_for_float32_is_refused_at_parse_time(tmp_path):
    """1e-46 is 0 in float32: no code, not even the likeliest, ranks below it and the draw's probabilities were
    0/0. The smallest value allowed keeps the likeliest code."""
    probs = torch.softmax(torch.randn(3, 64, generator=torch.Generator().manual_seed(0)), dim=-1)
    assert torch.isnan(nucleus(probs, 1e-46)).all()  # why it is refused
    kept = nucleus(probs, TOP_P_MIN)
    assert torch.isfinite(kept).all() and torch.equal(kept.argmax(-1), probs.argmax(-1)) and (kept > 0).sum() == 3
    GenerationOptions(top_p=TOP_P_MIN)
    with pytest.raises(BadParameterError, match="top_p"):
        GenerationOptions(top_p=1e-46)
    done = run(tmp_path / "none.mp4", "--top-p", "1e-46", "--model", tmp_path / "no-model")  # before any model or file
    assert done.returncode == 2 and "--top-p 1e-46 keeps no code" in done.stderr, done.stderr


# --- options validated once, where they are made ---
@pytest.mark.parametrize("make", [
    lambda: GenerationOptions(top_k=0), lambda: MixOptions(mode="loud"), lambda: MelodyOptions(source="tune"),
    lambda: ScoreOptions(takes=0), lambda: ScoreOptions(style=" "),
])
def test_bad_options_cannot_be_made(make):
    with pytest.raises(BadParameterError):
        make()


def test_the_stages_trust_the_options(scorer, monkeypatch):
    """Scorer.soundtrack once validated the generation options seven times; the stages now trust options that
    were checked when they were made (options they derive are checked as they are made)."""
    options = ScoreOptions(generation=GenerationOptions(window_s=4, stride_s=2.5))
    calls = []
    for kind in (ScoreOptions, GenerationOptions, MixOptions, MelodyOptions):
        original = kind.validate
        monkeypatch.setattr(kind, "validate", lambda self, original=original: calls.append(self) or original(self))
    audio = np.random.default_rng(0).normal(0, 0.1, (1, 16000)).astype(np.float32)
    scorer.soundtrack(audio, 16000, options=options)
    given = (options, options.generation, options.mix, options.melody)
    assert not [made for made in calls if any(made is checked for checked in given)]


# --- manifests ---
def test_a_manifest_reports_every_bad_row_and_scores_the_good_ones(tmp_path, tiny_model_dir):
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(MEDIA / "realshort_1s.mp4", tmp_path / name)
    (tmp_path / "clips.csv").write_text(
        "path,style,seed,takes\n"
        "a.mp4,warm, ambient,1,\n"  # an unquoted comma in the first row
        "b.mp4,calm,abc,0\n"  # two bad cells
        ",jazz,3,\n"  # no path
        'b.mp4,"lush, wide",4,\n')  # quoted as a spreadsheet writes it
    done = run("--manifest", tmp_path / "clips.csv", "--model", tiny_model_dir, "--json", *FAST)
    assert done.returncode == 1 and "internal error" not in done.stderr, done.stderr
    rows = json.loads(done.stdout)
    assert [r["status"] for r in rows] == ["failed", "failed", "failed", "ok"]
    assert "row 2: 5 fields for the 4 columns path,style,seed,takes: quote a style" in rows[0]["error"]
    assert "row 3: seed 'abc' must be an integer" in rows[1]["error"] and "takes 0 must be" in rows[1]["error"]
    assert "row 4: no path" in rows[2]["error"]
    assert rows[3]["seed"] == 4 and rows[3]["styles"] == ["lush, wide"]
    assert sorted(p.name for p in tmp_path.glob("*.scored*.mp4")) == ["b.scored.mp4"]


def test_manifest_takes_follow_the_command_line_rules(tmp_path):
    (tmp_path / "clips.csv").write_text("path,style,takes\na.mp4,calm,2\nb.mp4,calm,\n")
    base = cli.options_from_args(cli.build_parser().parse_args(["--take", "3"]))
    first, second = cli.read_manifest(tmp_path / "clips.csv", base)
    assert "takes 2 and --take 3: give one of them" in str(first.refused)
    assert second.refused is None and second.options.take_numbers == (3,)
