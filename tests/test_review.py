"""The review page in a real browser (Debian's chromium, driven by Playwright), and ``scoretrack pick``.

One batch of real clips with speech is scored once for the module: two clips with two takes (one with
a picture cut, found with --follow-cuts), an audio-only clip, and one whose name has spaces and
non-ASCII letters. Tests that pick work on copies of its output folder.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.parse
from pathlib import Path

import opentimelineio as otio
import pytest

from conftest import MEDIA, sha256
from scoretrack import cli, review
from test_cli import run

CHROMIUM = shutil.which("chromium")
ODD_NAME = "Café scène 1.mp4"
SCORE_ARGS = ["--seed", "3", "--stems", "--timeline", "otio", "--out-dir"]
RUN_1 = ["--window", "4", "--stride", "2.5", "--plot"]  # 6 s: seams
RUN_2 = ["cut.mp4", "--style", "drums", "--takes", "2", "--follow-cuts", "--window", "17", "--stride", "9"]


def ffmpeg(*args):
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *map(str, args)], check=True)


def score_batch(src: Path, out: Path, model) -> list:
    """Score the batch (two runs: the manifest, then the clip with a cut) into ``out``; both JSON reports."""
    reports = []
    for args in (["--manifest", src / "clips.csv", *RUN_1], [src / RUN_2[0], *RUN_2[1:]]):
        done = run(*args, "--model", model, *SCORE_ARGS, out, "--review", "--json")
        assert done.returncode == 0, done.stderr
        reports += json.loads(done.stdout)
    return reports


@pytest.fixture(scope="module")
def batch(tmp_path_factory, tiny_model_dir):
    src = tmp_path_factory.mktemp("review-src")
    h264 = ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"]
    shutil.copy(MEDIA / "his_girl_friday_dialogue.mp4", src / "dialogue.mp4")
    ffmpeg("-i", MEDIA / "speech_jfk.wav", "-t", "3", src / "voice.wav")
    ffmpeg("-ss", "1", "-i", MEDIA / "ipad_IMG_0034_rot180.MOV", "-t", "1.6", *h264, src / ODD_NAME)
    # a hard cut at 2.5 s: the dialogue scene, then the talking head
    ffmpeg("-i", MEDIA / "his_girl_friday_dialogue.mp4", "-i", MEDIA / "grid_bbaf2n_speech.mpg", "-filter_complex",
           "[0:v]trim=0:2.5,setpts=PTS-STARTPTS,fps=25,format=yuv420p[a];"
           "[1:v]trim=0:2.5,setpts=PTS-STARTPTS,scale=640:480,fps=25,format=yuv420p[b];"
           "[0:a]atrim=0:2.5,asetpts=PTS-STARTPTS,aresample=44100[c];[1:a]atrim=0:2.5,asetpts=PTS-STARTPTS[d];"
           "[a][c][b][d]concat=n=2:v=1:a=1[v][s]", "-map", "[v]", "-map", "[s]", *h264, src / "cut.mp4")
    (src / "clips.csv").write_text(f"path,style,takes\ndialogue.mp4,calm piano,2\nvoice.wav,warm ambient,1\n"
                                   f"{ODD_NAME},jazz,1\n", encoding="utf-8")
    out = src.parent / "review-out"
    out.mkdir()
    reports = score_batch(src, out, tiny_model_dir)
    return {"src": src, "out": out, "model": tiny_model_dir, "reports": reports}


def copy_batch(batch, target: Path) -> Path:
    """The batch's outputs in a folder of their own (the sidecars name the inputs by absolute path)."""
    shutil.copytree(batch["out"], target)
    return target


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (scripts/test.sh installs it)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--autoplay-policy=no-user-gesture-required"])
        yield chromium
        chromium.close()


class Page:
    """A review page open in the browser, with every console message, page error and request kept."""

    def __init__(self, browser, folder: Path):
        self.context = browser.new_context(accept_downloads=True, viewport={"width": 1000, "height": 900})
        self.page = self.context.new_page()
        self.errors, self.requests = [], []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto((folder / review.PAGE_NAME).as_uri())
        self.page.wait_for_function("window.review && window.review.players.length > 0")

    def js(self, script: str, arg=None):
        return self.page.evaluate(script, arg)

    def close(self):
        self.context.close()


@pytest.fixture
def page(browser, batch):
    opened = Page(browser, batch["out"])
    yield opened
    opened.close()


def clip_index(page: Page, main: str) -> int:
    return page.js("name => review.players.findIndex(p => p.clip.main === name)", main)


def test_every_clip_plays_and_nothing_is_asked_from_outside_the_folder(page, batch):
    mains = page.js("review.players.map(p => p.clip.main)")
    assert mains == sorted(["Café scène 1.scored.mp4", "cut.scored.mp4", "dialogue.scored.mp4", "voice.scored.wav"])
    takes = page.js("review.players.map(p => p.clip.takes.map(t => [t.number, t.main]))")
    assert takes == [[[1, True]], [[1, True], [2, False]], [[1, True], [2, False]], [[1, True]]]
    for i, main in enumerate(mains):
        page.js("i => review.players[i].root.scrollIntoView()", i)
        page.page.wait_for_function("i => review.players[i].loaded", arg=i)  # in view: its media has its source
        page.js("i => review.players[i].play()", i)
        page.page.wait_for_function("i => review.players[i].position > 0.3", arg=i)
        if not main.endswith(".wav"):  # the picture plays along
            page.page.wait_for_function("i => review.players[i].picture.currentTime > 0.3", arg=i)
        page.js("i => review.players[i].pause()", i)
    folder = batch["out"].as_uri() + "/"
    assert all(url.startswith(folder) for url in page.requests), page.requests
    assert folder + urllib.parse.quote("Café scène 1.scored.mp4") in page.requests
    assert not page.errors


@pytest.mark.parametrize("playing", [False, True])
def test_switching_takes_keeps_the_position(page, playing):
    i = clip_index(page, "dialogue.scored.mp4")
    page.js("i => review.players[i].play()", i)
    page.page.wait_for_function("i => review.players[i].position > 1.0", arg=i)
    if not playing:
        page.js("i => review.players[i].pause()", i)
    before, after = page.js("""async i => {
        const p = review.players[i], t = p.position, next = p.audios[1];
        const ready = new Promise(r => next.addEventListener(p.audio.paused ? "seeked" : "playing", r, {once: true}));
        p.select(1);
        await ready;
        return [t, next.currentTime];
    }""", i)
    assert abs(after - before) < 0.05
    assert page.js("i => [review.players[i].active, review.players[i].audios[1].paused]", i) == [1, not playing]
    # the keys drive the clip played last: 1 back to take 1 where take 2 is, arrows seek, space plays/pauses
    page.js("i => review.players[i].pause()", i)
    page.page.keyboard.press("1")
    active, one, two = page.js("i => { const p = review.players[i]; return [p.active, p.audios[0].currentTime, p.audios[1].currentTime]; }", i)
    assert active == 0 and abs(one - two) < 0.05
    page.page.keyboard.press("ArrowLeft")
    assert page.js("i => review.players[i].position", i) == 0
    page.page.keyboard.press(" ")
    page.page.wait_for_function("i => !review.players[i].audio.paused", arg=i)
    page.page.keyboard.press(" ")
    assert page.js("i => review.players[i].audio.paused", i)
    assert not page.errors


def test_the_scrub_bar_marks_sit_at_the_seams_and_cuts(page, batch):
    reports = {Path(r["output"]).name: r for r in batch["reports"]}
    assert reports["dialogue.scored.mp4"]["seams_s"] and reports["cut.scored.mp4"]["cuts_s"]  # something to mark
    for main, report in reports.items():
        i = clip_index(page, main)
        marks = page.js("""i => { const p = review.players[i], bar = p.bar.getBoundingClientRect();
            return Array.from(p.bar.querySelectorAll(".mark")).map(m => [m.classList[1],
                (m.getBoundingClientRect().left - bar.left) / bar.width * p.clip.duration_s]); }""", i)
        record = json.loads((batch["out"] / f"{main}.scoretrack.json").read_text(encoding="utf-8"))["review"]
        for kind, times in (("seam", record["seams_s"]), ("cut", record["cuts_s"])):
            drawn = sorted(t for k, t in marks if k == kind)
            assert drawn == pytest.approx(sorted(times), abs=0.02), (main, kind)
        assert record["seams_s"] == pytest.approx(report["seams_s"], abs=1e-3)
        assert record["cuts_s"] == pytest.approx(report["cuts_s"], abs=1e-3)
    # the playhead follows playback
    i = clip_index(page, "cut.scored.mp4")
    page.js("i => review.players[i].play()", i)
    page.page.wait_for_function("i => parseFloat(review.players[i].head.style.left) > 10", arg=i)
    page.js("i => review.players[i].pause()", i)


def otio_music(path: Path) -> list[tuple[bool, str]]:
    """(enabled, file name) of each music track of an OTIO timeline."""
    read = otio.adapters.read_from_file(str(path))
    return [(track.enabled, Path(urllib.parse.unquote(urllib.parse.urlparse(track[0].media_reference.target_url).path)).name)
            for track in read.audio_tracks() if "take" in track.name.lower()]


def rerun(batch, out: Path, *, timelines_stale: bool = False) -> list:
    """The batch's commands again: every clip is skipped (or, after a pick that left its timelines out
    of date, only those are remade): no take is generated."""
    reports = score_batch(batch["src"], out, batch["model"])
    for r in reports:
        assert r["status"] in (("skipped", "ok") if timelines_stale else ("skipped",)), r
        assert all(t["status"] == "skipped" or (timelines_stale and t["loudness_lufs"] is None) for t in r["takes"]), r
    return reports


def test_picks_saved_from_the_page_are_what_pick_takes(browser, batch, tmp_path):
    out = copy_batch(batch, tmp_path / "picked")
    music = {n: sha256(out / f"dialogue.scored{s}.mp4") for n, s in ((1, ""), (2, ".take2"))}
    dry = {n: sha256(out / f"dialogue.scored{s}.music-dry.wav") for n, s in ((1, ""), (2, ".take2"))}
    page = Page(browser, out)
    try:
        i = clip_index(page, "dialogue.scored.mp4")
        page.page.locator(f"#clip-{i} .take").nth(1).locator("button.keep").click()
        odd = clip_index(page, "Café scène 1.scored.mp4")
        page.page.locator(f"#clip-{odd} .take").nth(0).locator("button.keep").click()
        assert "scoretrack pick" in page.page.locator("#command").text_content()
        with page.page.expect_download() as download:
            page.page.locator("#save").click()
        saved = tmp_path / "picks.json"
        download.value.save_as(saved)
        assert not page.errors
    finally:
        page.close()
    assert json.loads(saved.read_text(encoding="utf-8")) == {
        "scoretrack": "picks", "folder": str(out), "picks": {"dialogue.scored.mp4": 2, "Café scène 1.scored.mp4": 1}}
    done = run("pick", saved, "--json")
    assert done.returncode == 0, done.stderr
    assert {Path(r["output"]).name: (r["take"], r["was"]) for r in json.loads(done.stdout)} == {
        "dialogue.scored.mp4": (2, 1), "Café scène 1.scored.mp4": (1, 1)}
    # take 2 is the main output, take 1 has take 2's old name, and their side files went with them
    assert sha256(out / "dialogue.scored.mp4") == music[2] and sha256(out / "dialogue.scored.take2.mp4") == music[1]
    assert sha256(out / "dialogue.scored.music-dry.wav") == dry[2]
    assert sha256(out / "dialogue.scored.take2.music-dry.wav") == dry[1]
    record = json.loads((out / "dialogue.scored.mp4.scoretrack.json").read_text(encoding="utf-8"))
    assert record["take"] == 2 and record["side"]["otio"]["takes"] == [2, 1]
    # the timeline plays take 2 (its dry stem, now under the main name), take 1 muted
    assert otio_music(out / "dialogue.scored.otio") == [(True, "dialogue.scored.music-dry.wav"),
                                                         (False, "dialogue.scored.take2.music-dry.wav")]
    # the page says so
    data = review.page_data(out)
    [clip] = [c for c in data["clips"] if c["main"] == "dialogue.scored.mp4"]
    assert [(t["number"], t["main"], t["file"]) for t in clip["takes"]] == [
        (1, False, "dialogue.scored.take2.mp4"), (2, True, "dialogue.scored.mp4")]
    assert json.dumps(data, ensure_ascii=True).replace("</", "<\\/") in (out / "review.html").read_text(encoding="utf-8")
    # a rerun generates nothing; the main output is still take 2's, and --take N names the same music
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    reports = rerun(batch, out)
    assert [t["number"] for t in reports[0]["takes"]] == [2, 1] and reports[0]["output"] == str(out / "dialogue.scored.mp4")
    for number, name in ((2, "dialogue.scored.mp4"), (1, "dialogue.scored.take2.mp4")):
        done = run(batch["src"] / "dialogue.mp4", "--style", "calm piano", "--take", number, "--model", batch["model"],
                   *RUN_1, "--seed", "3", "--stems", "--out-dir", out, "--json")
        assert done.returncode == 0, done.stderr
        [report] = json.loads(done.stdout)
        assert report["status"] == "skipped" and report["output"] == str(out / name)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name in stamps} == stamps | {
        "review.html": (out / "review.html").stat().st_mtime_ns}
    # picking take 1 again puts every file back
    done = run("pick", f"{out / 'dialogue.scored.mp4'}=1")
    assert done.returncode == 0, done.stderr
    assert sha256(out / "dialogue.scored.mp4") == music[1] and sha256(out / "dialogue.scored.take2.mp4") == music[2]
    assert otio_music(out / "dialogue.scored.otio")[0] == (True, "dialogue.scored.music-dry.wav")


def clip_files(out: Path) -> dict[str, str]:
    return {p.name: sha256(p) for p in sorted(out.iterdir()) if p.name.startswith("dialogue.")}


def media_of(files: dict[str, str]) -> list[str]:
    """The hashes of the music, pictures and stems among ``files``: what a pick moves but never changes."""
    return sorted(h for name, h in files.items() if not name.endswith((".json", ".otio")))


@pytest.mark.parametrize("kill_after, then", [(3, "pick"), (14, "score")])
def test_a_pick_killed_between_renames_is_finished_by_the_next_run(batch, tmp_path, kill_after, then):
    out = copy_batch(batch, tmp_path / "killed")
    before = clip_files(out)
    music = sha256(out / "dialogue.scored.take2.mp4")
    killed = subprocess.run([sys.executable, "-m", "scoretrack.cli", "pick", f"{out / 'dialogue.scored.mp4'}=2"],
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "SCORETRACK_PICK_KILL_AFTER": str(kill_after)})
    assert killed.returncode == -signal.SIGKILL, killed.stderr  # killed in the middle of its renames
    assert (out / ".dialogue.scored.mp4.scoretrack-pick.json").is_file() and clip_files(out) != before
    if then == "pick":
        done = run("pick", f"{out / 'dialogue.scored.mp4'}=2")
        assert done.returncode == 0, done.stderr
    else:  # a scoring run finishes the pick first, then remakes the timeline alone
        rerun(batch, out, timelines_stale=True)
    assert not list(out.glob(".*scoretrack-pick*"))
    assert sha256(out / "dialogue.scored.mp4") == music and media_of(clip_files(out)) == media_of(before)
    assert otio_music(out / "dialogue.scored.otio")[0] == (True, "dialogue.scored.music-dry.wav")
    if then == "pick":
        rerun(batch, out)


@pytest.mark.parametrize("pick, message", [
    ("{out}/dialogue.scored.mp4=3", "has no take 3 (its takes: 1, 2)"),
    ("{out}/dialogue.scored.take2.mp4=1", "not a clip's main output"),
    ("{out}/dialogue.scored.mp4=x", "give CLIP=TAKE"),
    ("{out}/nothing.json", "cannot read"),
])
def test_a_bad_pick_changes_nothing(batch, pick, message, capsys):
    before = clip_files(batch["out"])
    assert cli.main(["pick", pick.format(out=batch["out"])]) == 2
    stderr = capsys.readouterr().err
    assert message in stderr and len(stderr.splitlines()) == 1, stderr
    assert clip_files(batch["out"]) == before


def test_a_clip_made_by_another_version_is_refused_before_any_rename(batch, tmp_path, capsys):
    """A take whose sidecar fingerprint these settings no longer give (an earlier scoretrack's: another
    limiter, another sampler) could not have its timelines remade: nothing is renamed."""
    out = copy_batch(batch, tmp_path / "out")
    sidecar = out / "dialogue.scored.take2.mp4.scoretrack.json"
    record = json.loads(sidecar.read_text(encoding="utf-8"))
    sidecar.write_text(json.dumps({**record, "fingerprint": "0123456789abcdef"}), encoding="utf-8")
    before = clip_files(out)
    assert cli.main(["pick", f"{out}/dialogue.scored.mp4=2"]) == 2
    stderr = capsys.readouterr().err
    assert "dialogue.scored.take2.mp4: made by another version of scoretrack" in stderr, stderr
    assert len(stderr.splitlines()) == 1 and clip_files(out) == before


def lose_a_stem(out: Path) -> None:
    (out / "dialogue.scored.take2.music-dry.wav").unlink()  # an editor threw a dry stem away


def save_the_timeline(out: Path) -> None:
    with open(out / "dialogue.scored.otio", "a", encoding="utf-8") as timeline:  # an editor saved it in place
        timeline.write("\n")


def block_a_name(out: Path) -> None:
    """Take 2's plot no longer its own (its record forgets it): a file where take 1's plot goes."""
    sidecar = out / "dialogue.scored.take2.mp4.scoretrack.json"
    record = json.loads(sidecar.read_text(encoding="utf-8"))
    plot = record["side"].pop("plot")["name"]
    sidecar.write_text(json.dumps(record), encoding="utf-8")
    assert (out / plot).is_file()


@pytest.mark.parametrize("spoil, says", [
    (lose_a_stem, "dialogue.scored.take2.music-dry.wav: missing"),
    (save_the_timeline, "dialogue.scored.otio: changed since scoretrack wrote it"),
    (block_a_name, "dialogue.scored.take2.png: is in the way"),
])
def test_a_pick_that_could_not_finish_is_refused_before_any_rename(batch, tmp_path, capsys, spoil, says):
    """What would stop a pick halfway (a take's file gone, a timeline it must remake edited, a file where a
    take's file goes) is found before anything moves; the folder then scores and picks as before."""
    out = copy_batch(batch, tmp_path / "out")
    spoil(out)
    before = clip_files(out)
    assert cli.main(["pick", f"{out}/dialogue.scored.mp4=2"]) == 2
    stderr = capsys.readouterr().err
    assert says in stderr and len(stderr.splitlines()) == 1, stderr
    assert clip_files(out) == before and not list(out.glob(".*scoretrack-pick*"))


def test_a_pick_whose_file_went_while_it_ran_is_undone(batch, tmp_path):
    """A journal whose file is gone before it was staged puts back what it staged and ends: the next run
    in the folder is not stopped by it."""
    from scoretrack import pick

    out = copy_batch(batch, tmp_path / "out")
    planned = pick.plan_pick(pick.Pick(out / "dialogue.scored.mp4", 2))
    before = clip_files(out)
    (out / planned.moves[-1][0]).rename(tmp_path / "away")
    with pytest.raises(pick.ScoretrackError, match="gone while the pick renamed"):
        pick.apply_pick(planned)
    (tmp_path / "away").rename(out / planned.moves[-1][0])
    assert clip_files(out) == before and not list(out.glob(".*scoretrack-pick*"))


@pytest.mark.parametrize("args", [["--", "pick"], ["./pick"]])
def test_a_file_named_pick_is_a_file_after_the_double_dash_or_as_a_path(tmp_path, monkeypatch, capsys, args,
                                                                         tiny_model_dir):
    (tmp_path / "pick").write_text("not media", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--model", str(tiny_model_dir), *args]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("scoretrack: error: pick: ") and len(stderr.splitlines()) == 1, stderr


def test_two_hundred_clips_load_their_media_only_in_view(browser, batch, tmp_path):
    """A batch of 200 clips (the batch's clips, repeated under other names) asks only for what is in view."""
    data = review.page_data(batch["out"])
    clips = [{**clip, "main": f"{n:03d} {clip['main']}"} for n in range(50) for clip in data["clips"]]
    folder = copy_batch(batch, tmp_path / "many")
    (folder / review.PAGE_NAME).write_text(review.render_page({**data, "clips": clips}), encoding="utf-8")
    page = Page(browser, folder)
    try:
        assert page.js("review.players.length") == 200
        loaded = page.js("review.players.filter(p => p.loaded).length")
        assert 1 <= loaded <= 6
        page.js("review.players[150].root.scrollIntoView()")
        page.page.wait_for_function("review.players[150].loaded")
        assert page.js("review.players.filter(p => p.loaded).length") <= 2 * loaded + 6
        assert not page.errors
    finally:
        page.close()


@pytest.mark.parametrize("number, picked, name", [
    (1, 1, "a.scored.mp4"), (2, 1, "a.scored.take2.mp4"), (3, 1, "a.scored.take3.mp4"),
    (2, 2, "a.scored.mp4"), (1, 2, "a.scored.take2.mp4"), (3, 2, "a.scored.take3.mp4"),  # 1 and 2 swap names
    (3, 3, "a.scored.mp4"), (1, 3, "a.scored.take3.mp4"), (2, 3, "a.scored.take2.mp4"),
])
def test_a_picked_take_and_take_1_swap_names_and_the_others_keep_theirs(number, picked, name):
    from scoretrack.plan import take_output

    assert take_output(Path("out/a.scored.mp4"), number, picked=picked) == Path("out", name)
    assert review.main_name(name) == "a.scored.mp4"
