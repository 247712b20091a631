"""The review page: ``review.html`` beside a batch's outputs, to audition each clip's takes against its picture.

A writer over the sidecars: each take's sidecar keeps what the page shows of it (:func:`sidecar_facts`:
its seed, loudness, true peak, the clip's speech, ducking, seams, cuts and the settings it was made
with), so the page is remade from the folder alone, by a run with ``--review`` or by ``scoretrack pick``.
The page is one static file (inline CSS and JavaScript, the data as JSON in it) that loads nothing but
the outputs beside it, by relative URL, and only when a clip comes into view.
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
from pathlib import Path

import numpy as np

from .media import atomic_output
from .mix import ENVELOPE_HOP_S

PAGE_NAME = "review.html"
SIDECAR_SUFFIX = ".scoretrack.json"
CURVE_POINTS = 600  # points of the ducking curve and of an audio clip's waveform, whatever its length
TAKE_NAME = re.compile(r"\.take\d+(?=\.[^.]+$)")  # NAME.takeN.EXT: a take beside the main output NAME.EXT


def main_name(output_name: str) -> str:
    """The clip's main output name for any of its takes' output names (``a.scored.take2.mp4`` -> ``a.scored.mp4``)."""
    return TAKE_NAME.sub("", output_name, count=1)


def settings_record(job, *, model_name: str) -> dict:
    """The settings a clip was made with, as its sidecar keeps them: enough to plan it again
    (:func:`scoretrack.pick.options_from_settings`)."""
    return {"model": model_name, "options": dataclasses.asdict(job.options), "stem_format": job.stem_format,
            "timeline_rate": str(job.timeline_rate)}


def _curve(values: np.ndarray, points: int) -> np.ndarray:
    """The lowest value of each of ``points`` equal spans of ``values`` (a dip stays visible)."""
    if values.size <= points:
        return values
    edges = np.linspace(0, values.size, points + 1).astype(int)
    return np.minimum.reduceat(values, edges[:-1])


def take_facts(job, track) -> dict:
    """What the page shows of one take made now (a :class:`scoretrack.pipeline.Soundtrack`): times in
    seconds, the ducking gain in dB, and for an audio input the waveform of its mix."""
    gain_db = 20 * np.log10(np.maximum(_curve(np.asarray(track.envelope, np.float64), CURVE_POINTS), 1e-6))
    facts = {"duration_s": job.info.duration_s, "video": job.info.is_video, "windows": track.windows,
             "seams_s": [round(t, 3) for t in track.seams], "cuts_s": [round(t, 3) for t in track.cuts],
             "speech_s": [[round(a, 3), round(b, 3)] for a, b in track.speech],
             "gain_db": [round(float(v), 2) for v in gain_db],
             "gain_span_s": len(track.envelope) * ENVELOPE_HOP_S,
             "loudness_lufs": round(float(track.loudness_lufs), 2), "true_peak_dbtp": round(float(track.true_peak_dbtp), 2)}
    if not job.info.is_video:
        from .writers import waveform_peaks

        low, high = waveform_peaks((mix for mix, _, _ in track.blocks()), track.mixed.samples, points=CURVE_POINTS)
        facts["waveform"] = [[round(float(a), 3) for a in low], [round(float(b), 3) for b in high]]
    return facts


def sidecar_facts(job, track, earlier: dict | None, *, model_name: str) -> dict:
    """The entries a take's sidecar adds for the page: its settings, and the facts of ``track`` (the
    take's Soundtrack when made now) or, when only side files were remade, those the sidecar had."""
    facts = take_facts(job, track) if track is not None else (earlier or {}).get("review")
    return {"settings": settings_record(job, model_name=model_name), **({"review": facts} if facts else {})}


def read_takes(folder: Path) -> dict[str, dict[int, tuple[str, dict]]]:
    """Every take in ``folder`` whose sidecar holds the page's facts: main output name -> take number ->
    (the take's output name, its sidecar record)."""
    clips: dict[str, dict[int, tuple[str, dict]]] = {}
    for sidecar in sorted(folder.glob(f"*{SIDECAR_SUFFIX}")):
        output = sidecar.name[:-len(SIDECAR_SUFFIX)]
        try:
            record = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if "review" in record and "pending" not in record and (folder / output).is_file():
            clips.setdefault(main_name(output), {})[record["take"]] = (output, record)
    return clips


def page_clip(main: str, takes: dict[int, tuple[str, dict]]) -> dict:
    """One clip as the page's script takes it: its takes in number order, the main output's marked."""
    first = takes.get(next((n for n, (name, _) in takes.items() if name == main), min(takes)))[1]
    facts, settings = first["review"], first.get("settings", {})
    rows = []
    for number in sorted(takes):
        name, record = takes[number]
        rows.append({"number": number, "seed": record.get("seed"), "file": name, "main": name == main,
                     "loudness_lufs": record["review"].get("loudness_lufs"),
                     "true_peak_dbtp": record["review"].get("true_peak_dbtp"),
                     "side": {kind: item["name"] for kind, item in record.get("side", {}).items()}})
    options = settings.get("options", {})
    return {"main": main, "input": first["input"]["path"], **facts, "takes": rows,
            "styles_at": options.get("styles_at", []), "settings": settings}


def page_data(folder: Path) -> dict:
    """The page's data: the folder (absolute, for the pick command) and every clip found in it, by name."""
    clips = [page_clip(main, takes) for main, takes in sorted(read_takes(folder).items())]
    return {"folder": str(folder.resolve()), "clips": clips}


def render_page(data: dict) -> str:
    """The page's HTML for :func:`page_data`'s ``data``."""
    payload = json.dumps(data, ensure_ascii=True).replace("</", "<\\/")
    return (PAGE_TEMPLATE.replace("@TITLE@", html.escape(f"scoretrack review: {Path(data['folder']).name}"))
            .replace("@DATA@", payload).replace("@SCRIPT@", PAGE_SCRIPT))


def write_review(folder: Path) -> Path:
    """Write ``review.html`` in ``folder`` over the takes its sidecars record, atomically; return its path."""
    path = Path(folder) / PAGE_NAME
    with atomic_output(path, overwrite=True) as temp:
        temp.write_text(render_page(page_data(Path(folder))), encoding="utf-8")
    return path


PAGE_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>@TITLE@</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 0 7em; background: #f4f4f4; color: #222; }
header { padding: .6em 1em; background: #222; color: #eee; }
header kbd { background: #444; border-radius: 3px; padding: 0 .3em; }
.clip { background: #fff; margin: 1em; padding: .8em 1em; border-radius: 6px; box-shadow: 0 1px 3px #0002; }
.clip.current { outline: 2px solid #36c; }
.clip h2 { font-size: 1.05em; margin: 0 0 .4em; overflow-wrap: anywhere; }
.picture { width: 100%; max-width: 640px; aspect-ratio: 16/9; background: #000; display: block; }
canvas.picture { background: #223; }
.bar { position: relative; height: 44px; max-width: 640px; background: #e8e8e8; margin: .4em 0; cursor: pointer; }
.bar svg { position: absolute; inset: 0; width: 100%; height: 100%; }
.speech { position: absolute; top: 0; height: 100%; background: #f90; opacity: .3; }
.mark { position: absolute; top: 0; height: 100%; width: 0; border-left: 2px dashed; }
.mark.seam { border-color: #c22; } .mark.cut { border-color: #292; border-left-style: dotted; }
.mark.style { border-color: #83c; border-left-style: solid; }
.head { position: absolute; top: -2px; height: calc(100% + 4px); width: 2px; background: #000; left: 0; }
.takes { display: flex; flex-wrap: wrap; gap: .5em; }
.take { border: 1px solid #bbb; border-radius: 5px; padding: .3em .6em; background: #fafafa; text-align: left; }
.take.playing { border-color: #36c; background: #e8f0ff; }
.take.chosen { box-shadow: 0 0 0 2px #292; }
.take small { display: block; color: #555; }
.controls { margin: .3em 0; } .controls button { margin-right: .4em; }
details { margin-top: .4em; } pre { white-space: pre-wrap; font-size: 12px; }
#picks { position: fixed; bottom: 0; left: 0; right: 0; background: #222; color: #eee; padding: .5em 1em; }
#picks code { color: #9cf; user-select: all; overflow-wrap: anywhere; }
#picks a { color: #9f9; }
</style></head>
<body>
<header><b>@TITLE@</b> &nbsp; keys: <kbd>1</kbd>-<kbd>9</kbd> take, <kbd>space</kbd> play/pause,
<kbd>&larr;</kbd>/<kbd>&rarr;</kbd> seek 5 s, <kbd>k</kbd> keep the take playing &nbsp;
<span style="color:#f90">speech</span> <span style="color:#f66">seams</span> <span style="color:#6c6">cuts</span>
<span style="color:#c8f">style changes</span>, the line: music gain (ducking)</header>
<main id="clips"></main>
<div id="picks"><span id="pick-count">No take chosen yet: play a take and press its "keep" button (or k).</span>
<a id="save" download="picks.json" hidden>Save picks.json</a>
<div>Then run: <code id="command"></code></div></div>
<script type="application/json" id="review-data">@DATA@</script>
<script>@SCRIPT@</script>
</body></html>
"""

PAGE_SCRIPT = r"""
"use strict";
const data = JSON.parse(document.getElementById("review-data").textContent);
const url = name => encodeURIComponent(name);  // every file sits beside the page
const folder = location.protocol === "file:" ? decodeURIComponent(location.pathname.replace(/\/[^/]*$/, "")) : data.folder;
const storeKey = "scoretrack-picks:" + folder;
const picks = {};  // main output name -> chosen take number
const players = [];
let current = null;

function el(tag, props, ...children) {
  const node = Object.assign(document.createElement(tag), props || {});
  for (const child of children) node.append(child);
  return node;
}

function fmt(x, unit) { return x === null || x === undefined ? "-" : x.toFixed(1) + " " + unit; }

class Player {
  constructor(clip, index) {
    this.clip = clip; this.index = index; this.loaded = false;
    this.active = Math.max(0, clip.takes.findIndex(t => t.main));
    this.root = el("section", {className: "clip", id: "clip-" + index});
    this.root.dataset.main = clip.main;
    this.root.addEventListener("pointerdown", () => this.focus());
    this.build();
  }
  build() {
    const c = this.clip, main = c.takes[this.active];
    this.root.append(el("h2", {textContent: c.main}));
    this.root.append(el("div", {className: "info", textContent:
      `input ${c.input} · ${c.duration_s.toFixed(2)} s · ${c.takes.length} take(s) · main output: take ${main.number}`}));
    this.picture = c.video ? el("video", {className: "picture", muted: true, preload: "none", playsInline: true})
                           : el("canvas", {className: "picture", width: 640, height: 160});
    this.picture.addEventListener("click", () => this.toggle());
    this.root.append(this.picture);
    this.bar = el("div", {className: "bar", title: "click to seek"});
    this.drawBar();
    this.root.append(this.bar);
    this.playButton = el("button", {textContent: "play", onclick: () => this.toggle()});
    this.time = el("span", {className: "time", textContent: "0.00 s"});
    this.root.append(el("div", {className: "controls"}, this.playButton, this.time));
    this.audios = c.takes.map(() => null);
    this.buttons = c.takes.map((take, i) => {
      const files = [take.file, ...Object.values(take.side)].map(name => {
        const a = el("a", {href: url(name), textContent: name}); return el("small", {}, a);
      });
      const keep = el("button", {className: "keep", textContent: "keep this take",
                                 onclick: event => { event.stopPropagation(); this.choose(i); }});
      const button = el("div", {className: "take"},
        el("button", {className: "listen", textContent: `${i + 1}: take ${take.number}` + (take.main ? " (main output)" : ""),
                      onclick: () => this.select(i)}), " ", keep,
        el("small", {textContent: `seed ${take.seed} · ${fmt(take.loudness_lufs, "LUFS")} · true peak ${fmt(take.true_peak_dbtp, "dBTP")}`}),
        ...files);
      button.dataset.take = take.number;
      return button;
    });
    this.root.append(el("div", {className: "takes"}, ...this.buttons));
    this.root.append(el("details", {}, el("summary", {textContent: "settings"}),
                        el("pre", {textContent: JSON.stringify(c.settings, null, 1)})));
    this.mark();
  }
  drawBar() {
    const c = this.clip, d = c.duration_s, pct = t => (100 * t / d) + "%";
    for (const [a, b] of c.speech_s) this.bar.append(el("div", {className: "speech", style: `left:${pct(a)};width:${pct(b - a)}`}));
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 1000 100"); svg.setAttribute("preserveAspectRatio", "none");
    const low = Math.min(-1, ...c.gain_db), n = c.gain_db.length;
    const points = c.gain_db.map((v, i) => `${(1000 * (i + 0.5) * c.gain_span_s / n / d).toFixed(1)},${(100 * v / low * 0.9 + 5).toFixed(1)}`);
    const line = document.createElementNS(svg.namespaceURI, "polyline");
    line.setAttribute("points", points.join(" ")); line.setAttribute("fill", "none");
    line.setAttribute("stroke", "#36c"); line.setAttribute("vector-effect", "non-scaling-stroke");
    svg.append(line); this.bar.append(svg);
    const marks = [["seam", c.seams_s], ["cut", c.cuts_s], ["style", c.styles_at.map(s => s[0])]];
    for (const [kind, times] of marks) for (const t of times) {
      const mark = el("div", {className: "mark " + kind, style: `left:${pct(t)}`, title: `${kind} at ${t.toFixed(2)} s`});
      mark.dataset.t = t; this.bar.append(mark);
    }
    this.head = el("div", {className: "head"}); this.bar.append(this.head);
    this.bar.addEventListener("click", event => {
      const box = this.bar.getBoundingClientRect();
      this.seek(d * (event.clientX - box.left) / box.width);
    });
  }
  load() {  // when the clip comes into view
    if (this.loaded) return;
    this.loaded = true;
    const main = this.clip.takes.find(t => t.main) || this.clip.takes[this.active];
    if (this.clip.video) this.picture.src = url(main.file);
    else this.drawWave();
    this.audios = this.clip.takes.map((take, i) => {
      const audio = el("audio", {preload: "none", src: url(take.file)});
      audio.addEventListener("timeupdate", () => { if (i === this.active) this.follow(); });
      audio.addEventListener("ended", () => { if (i === this.active) this.stopped(); });
      this.root.append(audio);
      return audio;
    });
  }
  drawWave() {
    const w = this.clip.waveform, g = this.picture.getContext("2d"), W = this.picture.width, H = this.picture.height;
    if (!w) return;
    g.fillStyle = "#8ab";
    w[0].forEach((lo, i) => { const x = W * i / w[0].length; g.fillRect(x, H / 2 - w[1][i] * H / 2, Math.max(1, W / w[0].length), (w[1][i] - lo) * H / 2 + 1); });
  }
  get audio() { this.load(); return this.audios[this.active]; }
  get position() { return this.audio.currentTime; }
  follow() {
    const t = this.position;
    this.head.style.left = (100 * t / this.clip.duration_s) + "%";
    this.time.textContent = t.toFixed(2) + " s";
    if (this.clip.video && !this.audio.paused && Math.abs(this.picture.currentTime - t) > 0.1) this.picture.currentTime = t;
  }
  focus() {
    if (current && current !== this) current.root.classList.remove("current");
    current = this; this.root.classList.add("current");
  }
  play() {
    this.focus();
    for (const p of players) if (p !== this && p.loaded && !p.audio.paused) p.pause();
    const audio = this.audio;
    if (this.clip.video) { this.picture.currentTime = audio.currentTime; this.picture.play().catch(() => {}); }
    this.playButton.textContent = "pause";
    return audio.play();
  }
  pause() {
    this.audio.pause();
    if (this.clip.video) this.picture.pause();
    this.stopped();
  }
  stopped() { this.playButton.textContent = "play"; }
  toggle() { return this.audio.paused ? this.play() : this.pause(); }
  seek(t) {
    t = Math.max(0, Math.min(this.clip.duration_s, t));
    this.audio.currentTime = t;
    if (this.clip.video) this.picture.currentTime = t;
    this.follow();
  }
  select(i) {  // another take's sound, from the same position
    this.focus();
    if (i === this.active || i >= this.audios.length) return;
    const old = this.audio, t = old.currentTime, playing = !old.paused;
    old.pause();
    this.active = i;
    const audio = this.audio;
    audio.preload = "auto";
    audio.currentTime = t;
    if (playing) audio.play();
    this.mark();
  }
  choose(i) {
    this.select(i);
    picks[this.clip.main] = this.clip.takes[i].number;
    try { localStorage.setItem(storeKey, JSON.stringify(picks)); } catch (e) {}  // kept over a reload
    this.mark(); showPicks();
  }
  mark() {
    this.buttons.forEach((b, i) => {
      b.classList.toggle("playing", i === this.active);
      b.classList.toggle("chosen", picks[this.clip.main] === this.clip.takes[i].number);
    });
  }
}

function quote(text) { return /^[\w./=-]+$/.test(text) ? text : "'" + text.replace(/'/g, "'\\''") + "'"; }

function showPicks() {
  const names = Object.keys(picks).sort();
  const body = JSON.stringify({scoretrack: "picks", folder: folder, picks: picks}, null, 1);
  const save = document.getElementById("save");
  if (save.href) URL.revokeObjectURL(save.href);
  save.href = URL.createObjectURL(new Blob([body], {type: "application/json"}));
  save.hidden = false;
  document.getElementById("pick-count").textContent = `${names.length} clip(s) with a chosen take.`;
  const pairs = names.map(name => quote(folder + "/" + name + "=" + picks[name]));
  document.getElementById("command").textContent = "scoretrack pick picks.json   (or: scoretrack pick " + pairs.join(" ") + ")";
}

const list = document.getElementById("clips");
const seen = new IntersectionObserver(entries => {
  for (const entry of entries) if (entry.isIntersecting) { players[+entry.target.id.slice(5)].load(); seen.unobserve(entry.target); }
}, {rootMargin: "200px"});
data.clips.forEach((clip, i) => { const p = new Player(clip, i); players.push(p); list.append(p.root); seen.observe(p.root); });
if (players.length) players[0].focus();
try {  // the choices made before a reload, of the clips still here
  const kept = JSON.parse(localStorage.getItem(storeKey) || "{}");
  for (const p of players) if (p.clip.takes.some(t => t.number === kept[p.clip.main])) picks[p.clip.main] = kept[p.clip.main];
  if (Object.keys(picks).length) { players.forEach(p => p.mark()); showPicks(); }
} catch (e) {}

document.addEventListener("keydown", event => {
  if (!current || event.ctrlKey || event.metaKey || event.altKey || /INPUT|TEXTAREA/.test(event.target.tagName)) return;
  if (/^[1-9]$/.test(event.key)) current.select(+event.key - 1);
  else if (event.key === " ") current.toggle();
  else if (event.key === "ArrowLeft") current.seek(current.position - 5);
  else if (event.key === "ArrowRight") current.seek(current.position + 5);
  else if (event.key === "k") current.choose(current.active);
  else return;
  event.preventDefault();
});
window.review = {players, picks};  // for scripts and tests driving the page
"""
