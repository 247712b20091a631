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
from scoretrack.options import TOP_P_MIN, GenerationOptions, MelodyOptions, MixOptions, ScoreOptions
from scoretrack.sampling import nucleus_mask

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
    (["--true-peak", "1"], "--true-peak 1 must be a finite number in [-20, 0] dBTP"),
    (["--max-limiting", "-1"], "--max-limiting -1 must be a finite number in [0, 30] dB"),
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
    """1e-46 is 0 in float32: no code, not even the likeliest, ranks below it, so none would be kept to
    draw from. The smallest value allowed keeps the likeliest code."""
    scores = torch.randn(3, 64, generator=torch.Generator().manual_seed(0))
    assert not nucleus_mask(scores, 1e-46).any()  # why it is refused
    kept = nucleus_mask(scores, TOP_P_MIN)
    assert kept.sum() == 3 and torch.equal(kept.int().argmax(-1), scores.argmax(-1))
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


# --- the hub, offline ---
@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE=1", "no network"])
def test_an_uncached_hub_model_offline_is_refused_at_once(how, tmp_path):
    """It once loaded for 32 s of huggingface_hub's retries (5 of them, "Retrying in 8s") before the clear error."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env["HF_HOME"] = str(tmp_path / "empty-cache")
    env.update({"HF_HUB_OFFLINE": "1"} if how == "HF_HUB_OFFLINE=1" else {"HF_ENDPOINT": "http://127.0.0.1:9"})
    shutil.copy(MEDIA / "realshort_1s.mp4", tmp_path / "a.mp4")
    done = subprocess.run([sys.executable, "-m", "scoretrack.cli", str(tmp_path / "a.mp4"), "--model",
                           "facebook/musicgen-melody"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 2, done.stderr
    assert "not in the hub cache" in done.stderr and "cannot be reached" in done.stderr
    assert "Retrying" not in done.stderr and "loading" not in done.stderr  # refused before the load, no retries


# --- the README's examples on a fresh checkout ---
def test_the_readme_batch_example_makes_its_out_dir_and_names_what_it_wrote(tmp_path, tiny_model_dir):
    shutil.copy(MEDIA / "realshort_1s.mp4", tmp_path / "clip.mp4")
    done = run("clip.mp4", "--style", "ambient", "--out-dir", "scored/", "--stems", "--plot", "--model", tiny_model_dir,
               *FAST, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "scored").iterdir() if not p.name.endswith(".json")) == [
        "clip.scored.mp4", "clip.scored.music-dry.wav", "clip.scored.music.wav", "clip.scored.png"]
    assert "also: clip.scored.music.wav, clip.scored.music-dry.wav, clip.scored.png" in done.stderr


def test_the_readme_set_up_installs_the_extras_its_examples_need():
    from pathlib import Path

    root = Path(__file__).parent.parent
    demo = (root / "scripts" / "demo.sh").read_text()
    readme = (root / "README.md").read_text()
    setup = next(line for line in demo.splitlines() if "scripts/setup.sh" in line)
    own = next(line for line in readme.splitlines() if "pip install -e" in line)
    for extra in ("plot", "timeline", "moviepy"):  # --plot, --timeline otio, scoretrack.integrations
        assert extra in setup and extra in own, (setup, own)


# --- small things an editor sees ---
def test_a_cjk_name_is_drawn_and_the_music_panel_shows_the_musics_loudness(scorer, recwarn):
    import io

    import matplotlib.pyplot as plt

    from scoretrack import media, writers

    audio = media.read_audio(MEDIA / "speech_jfk.wav", sample_rate=48000, channels=2, duration_s=3.0)
    track = scorer.soundtrack(audio, 48000, options=ScoreOptions(generation=GenerationOptions(window_s=4, stride_s=2.5)))
    fig = writers.plot_figure(audio, [track], sample_rate=48000, title="映画の場面.scored.mp4", depth_db=-12,
                              styles_at=())
    fig.savefig(io.BytesIO(), format="png")
    plt.close(fig)
    assert not [w for w in recwarn if "missing" in str(w.message).lower()]
    [music_axis] = fig.axes[2:]
    label = music_axis.get_ylabel()
    assert f"{writers.music_loudness(track):.1f} LUFS" in label and f"{track.loudness_lufs:.1f}" not in label
    families, [shown] = writers.plot_text(["映画\U0010fffd"])  # a character no font has is escaped, not a box
    assert shown.endswith("\\U0010fffd") and shown.startswith("映画" if len(families) > 1 else "\\u6620")


def test_the_summary_table_stays_a_table_for_wide_and_odd_names(capsys):
    from pathlib import Path

    from scoretrack.results import ScoreResult

    results = [ScoreResult(input=Path(name), output=Path("out.mp4"), status="ok", duration_s=1.0, loudness_lufs=-14.0,
                           melody=melody)
               for name, melody in [("映画の場面.mp4", "video"), ("two\nlines.mp4", "none"), ("plain.mp4", "none")]]
    cli.print_summary(results)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 5 and "two\\nlines.mp4" in lines[2]
    columns = {cli.text_width(line.split("  ok")[0]) for line in lines[1:4]}
    assert len(columns) == 1 and cli.text_width(lines[0].split("  status")[0]) in columns
    assert lines[4] == "melody reference: the input's own sound"


def test_a_clip_without_sound_followed_no_melody(tmp_path):
    from scoretrack.pipeline import melody_used
    from scoretrack.plan import ClipRequest, plan_jobs

    shutil.copy(MEDIA / "noaudio_bug_video_640.mp4", tmp_path / "silent.mp4")
    [job], _ = plan_jobs([ClipRequest(tmp_path / "silent.mp4")], model_name="facebook/musicgen-melody")
    assert melody_used(job, takes_melody=True) == "none"


@pytest.mark.parametrize("text", ["0:99", "1:60:00", "0:60"])
def test_minutes_and_seconds_after_a_colon_stay_below_60(text):
    from scoretrack.options import parse_time

    with pytest.raises(BadParameterError, match="below 60"):
        parse_time(text)
    assert parse_time("1:59") == 119 and parse_time("99") == 99


def test_an_output_that_is_a_folder_is_called_a_folder(tmp_path):
    from scoretrack import media

    (tmp_path / "somefolder").mkdir()
    with pytest.raises(BadParameterError, match="is a folder"):
        media.check_output(media.probe(MEDIA / "realshort_1s.mp4"), tmp_path / "somefolder")


def test_help_calls_fcp7_final_cut_pro_7():
    text = " ".join(cli.build_parser().format_help().split())
    assert "fcp7 (NAME.scored.xml: Final Cut Pro 7 XML" in text and "Premiere Pro or Final Cut Pro 7" in text
    assert "Final Cut Pro X and later" in text
