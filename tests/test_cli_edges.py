"""The command at the edges: hostile options, wrong models, collisions, signals, resume, missing extras."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MEDIA
from test_cli import FAST, interrupted_run, run

CLIP = "realshort_1s.mp4"


def one_line(done) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


@pytest.mark.parametrize("flag,value,names", [
    ("--duck-depth", "nan", "--duck-depth nan"), ("--music-level", "nan", "--music-level nan"),
    ("--music-level", "inf", "--music-level inf"), ("--music-level", "10000", "--music-level 10000"),
    ("--fade-in", "nan", "--fade-in nan"), ("--temperature", "nan", "--temperature nan"),
    ("--seed", str(2**70), f"--seed {2**70}"), ("--seed", "-1", "--seed -1"), ("--loudness", "-inf", "--loudness -inf"),
    ("--window", "45", "--window 45"), ("--top-k", "0", "--top-k 0"), ("--style-at", "1:xx=jazz", "1:xx"),
    ("--style-at", "5", "TIME=STYLE"),
])
def test_bad_option_values_fail_at_once_naming_the_option(flag, value, names, tmp_path):
    shutil.copy(MEDIA / CLIP, tmp_path / "a.mp4")
    done = run(tmp_path / "a.mp4", "--model", tmp_path / "no-model-needed", f"{flag}={value}")
    assert done.returncode == 2 and names in one_line(done)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]


def test_a_device_that_is_not_there(tmp_path, tiny_model_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = run(MEDIA / CLIP, "--model", tiny_model_dir, "--device", "cuda", "-o", tmp_path / "o.mp4")
    assert done.returncode == 2 and "cuda" in one_line(done)


def gpt2(folder: Path) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=100)).save_pretrained(folder)
    return folder


def truncated(folder: Path, tiny: Path) -> Path:
    shutil.copytree(tiny, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return folder


@pytest.mark.parametrize("case,expected", [("gpt2", "is not MusicGen"),
                                           ("truncated weights", "safetensors"), ("missing folder", "does not exist")])
def test_wrong_models_are_refused_with_one_line(case, expected, tmp_path, tiny_model_dir):
    folder = tmp_path / "model"
    if case == "gpt2":  # a text-only MusicGen loads (tests/test_families.py); other models do not
        gpt2(folder)
    elif case == "truncated weights":
        truncated(folder, tiny_model_dir)
    done = run(MEDIA / CLIP, "--model", f"./{folder.relative_to(tmp_path)}" if case == "missing folder" else folder,
               "-o", tmp_path / "o.mp4", cwd=tmp_path)
    assert done.returncode == 2 and expected in one_line(done)
    assert not (tmp_path / "o.mp4").exists()


def test_bad_input_errors_are_printed_once(tmp_path, tiny_model_dir):
    (tmp_path / "notes.mp4").write_text("not a video")
    done = run(tmp_path / "notes.mp4", "--model", tiny_model_dir)
    assert done.returncode == 2 and "notes.mp4" in one_line(done)


@pytest.mark.parametrize("case", ["still image", "out-dir and -o", "missing out folder", "output is a folder",
                                  "output is the input"])
def test_refusals_before_any_model_work(case, tmp_path, tiny_model_dir):
    clip = tmp_path / "a.mp4"
    shutil.copy(MEDIA / CLIP, clip)
    args = {"still image": [tmp_path / "still.jpg"],
            "out-dir and -o": [clip, "-o", tmp_path / "x.mp4", "--out-dir", tmp_path],
            "missing out folder": [clip, "-o", tmp_path / "nowhere" / "x.mp4"],
            "output is a folder": [clip, "-o", tmp_path],
            "output is the input": [clip, "-o", clip, "--force"]}[case]
    if case == "still image":
        import av

        with av.open(str(MEDIA / CLIP)) as source:
            next(source.decode(video=0)).to_image().save(tmp_path / "still.jpg")
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    done = run(*args, "--model", tiny_model_dir)
    assert done.returncode == 2
    one_line(done)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_batch_collisions_fail_up_front_and_the_rest_is_scored(tmp_path, tiny_model_dir):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(MEDIA / CLIP, tmp_path / folder / "clip.mp4")
    out = tmp_path / "out"
    out.mkdir()
    done = run(tmp_path / "a" / "clip.mp4", tmp_path / "b" / "clip.mp4", "--out-dir", out, "--model", tiny_model_dir,
               "--json", *FAST)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert [r["status"] for r in report] == ["ok", "failed"] and "also written by" in report[1]["error"]
    assert report[1]["error_type"] == "BadParameterError" and "clip" in done.stderr  # the summary is printed


def test_manifest_with_a_byte_order_mark(tmp_path, tiny_model_dir):
    shutil.copy(MEDIA / CLIP, tmp_path / "a.mp4")
    (tmp_path / "clips.csv").write_text("\ufeffpath,style,seed\na.mp4,calm piano,4\n", encoding="utf-8")
    done = run("--manifest", tmp_path / "clips.csv", "--model", tiny_model_dir, "--json", *FAST)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["seed"] == 4


@pytest.mark.parametrize("flag,module,needs", [("--plot", "matplotlib", "scoretrack[plot]"),
                                               ("--timeline=otio", "opentimelineio", "scoretrack[timeline]")])
def test_missing_extra_fails_at_once_with_the_pip_command(flag, module, needs, tmp_path, tiny_model_dir):
    shutil.copy(MEDIA / CLIP, tmp_path / "a.mp4")
    code = ("import sys; sys.modules[sys.argv[1]] = None; from scoretrack.cli import main; "
            "sys.exit(main(sys.argv[2:]))")
    done = subprocess.run([sys.executable, "-c", code, module, str(tmp_path / "a.mp4"), "--model", str(tiny_model_dir),
                           flag], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and needs in one_line(done) and "pip install" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_termination_signals_leave_nothing_behind(signum, code, tmp_path, tiny_model_dir):
    process = interrupted_run(tmp_path, tiny_model_dir, signum, "--stems")
    assert process.returncode == code and "stopped" in process.stderr_text and "Traceback" not in process.stderr_text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.webm"]


# The signal is sent from a garbage-collector callback in the main thread, once scoretrack's handler is
# installed: the handler's exception is raised inside the callback, where Python can only print it.
SIGNAL_IN_GC_CALLBACK = """
import gc, os, signal, sys, threading
from scoretrack import cli

def send(phase, info):
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGHUP) is cli._raise_interrupted:
        gc.callbacks.remove(send)
        os.kill(os.getpid(), signal.SIGHUP)

gc.callbacks.append(send)
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_signal_whose_exception_python_swallows_still_stops_the_run(tmp_path, tiny_model_dir):
    shutil.copy(MEDIA / "tos_battle_clip_70s.webm", tmp_path / "long.webm")
    done = subprocess.run([sys.executable, "-c", SIGNAL_IN_GC_CALLBACK, "long.webm", "--model", str(tiny_model_dir),
                           "--stems"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 129, done.stderr
    assert "stopped by SIGHUP" in done.stderr and "Traceback" not in done.stderr and "ignored" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.webm"]


def test_stale_temp_files_of_dead_runs_are_removed(tmp_path, tiny_model_dir):
    shutil.copy(MEDIA / CLIP, tmp_path / "a.mp4")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".scoretrack-{dead.pid}-deadbeef.mp4"
    stale.write_bytes(b"half a file")
    mine = tmp_path / f".scoretrack-{os.getpid()}-alive000.mp4"  # a live process's temp file stays
    mine.write_bytes(b"being written")
    done = run(tmp_path / "a.mp4", "--model", tiny_model_dir, *FAST)
    assert done.returncode == 0, done.stderr
    assert not stale.exists() and mine.exists()


def test_a_deleted_stem_is_made_again_without_touching_the_output(tmp_path, tiny_model_dir):
    shutil.copy(MEDIA / "his_girl_friday_dialogue.mp4", tmp_path / "a.mp4")
    assert run(tmp_path / "a.mp4", "--model", tiny_model_dir, "--stems", *FAST).returncode == 0
    output, stem = tmp_path / "a.scored.mp4", tmp_path / "a.scored.music.wav"
    stamp, content = output.stat().st_mtime_ns, stem.read_bytes()
    stem.unlink()  # as if killed after the output was renamed, before the stems were written
    done = run(tmp_path / "a.mp4", "--model", tiny_model_dir, "--stems", "--json", *FAST)
    assert done.returncode == 0 and json.loads(done.stdout)[0]["status"] == "ok"
    assert output.stat().st_mtime_ns == stamp and stem.read_bytes() == content
    again = run(tmp_path / "a.mp4", "--model", tiny_model_dir, "--stems", "--json", *FAST)
    assert json.loads(again.stdout)[0]["status"] == "skipped"


def test_a_reexported_input_is_scored_again(tmp_path, tiny_model_dir):
    clip = tmp_path / "a.mp4"
    shutil.copy(MEDIA / CLIP, clip)
    assert run(clip, "--model", tiny_model_dir, *FAST).returncode == 0
    shutil.copy(MEDIA / "his_girl_friday_dialogue.mp4", clip)
    done = run(clip, "--model", tiny_model_dir, "--json", *FAST)
    assert done.returncode == 0 and json.loads(done.stdout)[0]["status"] == "ok"
    from scoretrack import media

    assert media.probe(tmp_path / "a.scored.mp4").duration_s == pytest.approx(media.probe(clip).duration_s, abs=0.01)


def test_help_and_version_do_not_load_torch():
    code = "import sys; from scoretrack.cli import main\ntry: main(['--version'])\nexcept SystemExit: pass\nprint('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "False" and "scoretrack" in done.stdout


def test_help_states_every_default_range_limit_example_and_exit_code():
    # the old --help lacked the defaults of --melody, --mix, --output-layout and --device, the ranges of
    # --guidance, --temperature and --top-k, the limits of --follow-cuts and --style-at, examples and exit codes
    import argparse

    from scoretrack import scenes
    import shlex

    from scoretrack.cli import build_parser, options_from_args
    from scoretrack.errors import BadParameterError
    from scoretrack.options import GenerationOptions

    parser = build_parser()
    helps = {action.option_strings[-1] if action.option_strings else action.dest:
             " ".join((action.help % {**vars(action), "prog": parser.prog}).split())
             for action in parser._actions if action.help and action.help != argparse.SUPPRESS}
    for action in parser._actions:
        if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS):
            assert "(default: " in helps[action.option_strings[-1]], action.option_strings
    for flag in ("--melody", "--mix", "--output-layout", "--device"):
        assert "(default: " in helps[flag]
    for flag, name, step in [("--guidance", "guidance_scale", 0.01), ("--temperature", "temperature", 0.001),
                             ("--top-k", "top_k", 1)]:
        low, high = GenerationOptions.RANGES[name]
        assert f"{low:g} to {high:g}" in helps[flag]
        for value, good in [(low, True), (high, True), (low - step, False), (high + step, False)]:
            if good:
                GenerationOptions(**{name: value})
            else:
                with pytest.raises(BadParameterError):
                    GenerationOptions(**{name: value})
    # the limits the help states are the ones the seam planner keeps
    assert "cut within 4 s" in helps["--follow-cuts"] and "--window must be at least 17 s" in helps["--follow-cuts"]
    scenes.place_seams(60, window_s=17, stride_s=9, prompt_s=8)
    with pytest.raises(BadParameterError):
        scenes.place_seams(60, window_s=16.9, stride_s=8.9, prompt_s=8)
    assert "changes from 7 s in, 13 s apart" in helps["--style-at"]
    for changes, good in [([7, 20], True), ([6.9], False), ([7, 19.9], False), ([60 - 7], True), ([60 - 6.9], False)]:
        if good:
            assert set(changes) <= set(scenes.place_seams(60, style_changes_s=changes))
        else:
            with pytest.raises(BadParameterError):
                scenes.place_seams(60, style_changes_s=changes)
    epilog = parser.epilog.splitlines()
    examples = epilog[epilog.index("examples:") + 1 : epilog.index("exit codes:")]
    commands = [shlex.split(line.split(">")[0])[1:] for line in examples if line.startswith("  scoretrack ")]
    assert len(commands) == 4
    for command in commands:  # each example is a valid command line
        options_from_args(parser.parse_args(command))
    codes = [line.split()[0] for line in epilog[epilog.index("exit codes:") + 1 :] if line.strip()]
    assert codes == ["0", "1", "2", "130"]
