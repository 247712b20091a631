"""Window plans, continuation, melody slices and exact lengths, on the real model class with tiny weights."""

import gc
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from conftest import MEDIA
from scoretrack import generate, media, melody, model
from scoretrack.errors import BadParameterError, ModelUnavailableError
from scoretrack.generate import GenerationOptions, MusicRequest, plan_windows

DURATIONS = [0.02, 0.5, 1.0, 29.9, 30.0, 30.02, 31.0, 48.0, 95.0, 600.0, 3600.0]


@pytest.mark.parametrize("duration", DURATIONS)
@pytest.mark.parametrize("continuation", [True, False])
def test_plan_covers_exactly_in_windows_of_at_most_30_s(duration, continuation):
    plan = plan_windows(duration, window_s=30, stride_s=18, frame_rate=50, sample_rate=32000, continuation=continuation)
    total = math.ceil(round(duration * 32000) / 640)
    assert plan[0].start == 0 and plan[-1].end == total
    for before, after in zip(plan, plan[1:]):
        assert after.start == before.start + 900
        assert after.prompt == (before.end - after.start if continuation else 0)
        assert 0 < after.frames - after.prompt
    assert all(w.frames <= 1500 and melody.chroma_frame_count(w.frames * 640) <= 235 for w in plan)


def test_options_are_checked():
    for bad in [dict(window_s=31), dict(stride_s=0), dict(stride_s=30), dict(guidance_scale=0.5),
                dict(temperature=0), dict(top_k=0), dict(batch_size=0)]:
        with pytest.raises(BadParameterError):
            GenerationOptions(**bad).validate()


@pytest.fixture(scope="module")
def tos_melody():
    return media.read_audio(MEDIA / "tos_battle_clip_70s.webm", sample_rate=32000)


FAST = GenerationOptions(window_s=4.0, stride_s=2.5)  # short windows keep the tiny model's runs quick


@pytest.mark.parametrize("duration", [0.5, 3.99, 4.0, 4.5, 11.3])
def test_exact_length(music_model, tos_melody, duration):
    out = generate.generate_music(music_model, [MusicRequest("calm piano", duration, tos_melody)], FAST)[0]
    assert out.shape == (1, round(duration * 32000)) and np.isfinite(out).all()


@pytest.mark.slow
@pytest.mark.parametrize("duration", [29.9, 30.0, 31.0, 95.0])
def test_exact_length_with_the_default_windows(music_model, tos_melody, duration):
    out = generate.generate_music(music_model, [MusicRequest("epic", duration, tos_melody)], GenerationOptions())[0]
    assert out.shape == (1, round(duration * 32000))


def test_each_window_gets_its_own_melody_slice_and_continues_the_last(music_model, tos_melody):
    traces = []
    generate.generate_music(music_model, [MusicRequest("dark synth", 11.0, tos_melody)], FAST, traces=traces)
    trace = traces[0]
    assert len(trace.windows) == 4
    for window, chroma, prompt, codes in zip(trace.windows, trace.chroma, trace.prompts, trace.codes):
        span = tos_melody[0, window.start * 640 : window.end * 640]
        np.testing.assert_array_equal(chroma, melody.chroma(span))
        assert codes.shape == (4, window.frames)
        if window.index:
            previous = trace.codes[window.index - 1]
            np.testing.assert_array_equal(prompt, previous[:, -window.prompt :])
            np.testing.assert_array_equal(codes[:, : window.prompt], prompt)  # the window continues them
    assert not np.array_equal(trace.chroma[0], trace.chroma[2])  # not the first 30 s again


def test_model_receives_the_window_chroma_and_the_style(music_model, tos_melody):
    seen = []
    proj = music_model.model.audio_enc_to_dec_proj.register_forward_hook(lambda m, i, o: seen.append(("chroma", i[0].clone())))
    ids = []
    text = music_model.model.text_encoder.register_forward_pre_hook(
        lambda m, args, kwargs: ids.append(kwargs["input_ids"].clone()), with_kwargs=True)
    try:
        traces = []
        generate.generate_music(music_model, [MusicRequest("jazz piano", 6.0, tos_melody)], FAST, traces=traces)
    finally:
        proj.remove(), text.remove()
    given = [tensor for kind, tensor in seen if kind == "chroma"]
    assert len(given) == len(traces[0].windows)
    for tensor, chroma in zip(given, traces[0].chroma):
        cond = tensor[0, : chroma.shape[0]].numpy()  # row 0 is the conditional half of guidance
        np.testing.assert_array_equal(cond, chroma)
        assert not tensor[1].numpy()[:, 1:].any()  # the unconditional half gets the 'no melody' input
    expected = music_model.tokenizer("jazz piano").input_ids
    assert ids[0][0].tolist() == expected


def test_two_melodies_give_different_music(music_model):
    # kept as a guard against transformers releases that ignored the melody in generate() (issue 45647)
    t = np.arange(6 * 32000) / 32000
    low = np.sin(2 * np.pi * 110 * t).astype(np.float32)[None]
    high = np.sin(2 * np.pi * 370 * t).astype(np.float32)[None]
    a, b = (generate.generate_music(music_model, [MusicRequest("calm", 6.0, m)], FAST)[0] for m in (low, high))
    assert not np.array_equal(a, b)


def test_same_seed_same_music_other_seed_other_music(music_model, tos_melody):
    run = lambda seed: generate.generate_music(music_model, [MusicRequest("warm", 5.0, tos_melody, seed=seed)], FAST)[0]
    first = run(7)
    np.testing.assert_array_equal(first, run(7))
    assert not np.array_equal(first, run(8))


def test_seams_do_not_click(music_model, tos_melody):
    traces = []
    out = generate.generate_music(music_model, [MusicRequest("strings", 11.0, tos_melody)], FAST, traces=traces)[0][0]
    jumps = np.abs(np.diff(out))
    typical = np.percentile(jumps, 99.9)
    for window in traces[0].windows[1:]:
        seam = window.start * 640
        overlap = slice(seam - 640, seam + window.prompt * 640 + 640)
        assert jumps[overlap].max() <= 1.5 * typical


def test_batch_of_clips_and_independent_windows(music_model, tos_melody):
    requests = [MusicRequest("epic", 3.0, tos_melody), MusicRequest("calm", 7.3, None), MusicRequest("jazz", 5.1, tos_melody)]
    for options in (FAST, GenerationOptions(window_s=4.0, stride_s=3.0, independent_windows=True, batch_size=8)):
        outs = generate.generate_music(music_model, requests, options)
        assert [o.shape[1] for o in outs] == [round(r.duration_s * 32000) for r in requests]


def test_each_window_is_decoded_alone_and_only_once(music_model, tos_melody):
    # generate() would decode its whole batch with EnCodec at the end; scoretrack decodes each row alone
    batches = []
    hook = music_model.model.audio_encoder.decoder.register_forward_pre_hook(lambda m, i: batches.append(i[0].shape[0]))
    try:
        options = GenerationOptions(window_s=4.0, stride_s=3.0, independent_windows=True, batch_size=8)
        traces = []
        generate.generate_music(music_model, [MusicRequest("epic", 10.0, tos_melody)], options, traces=traces)
    finally:
        hook.remove()
    assert len(traces[0].windows) > 1
    assert batches == [1] * len(traces[0].windows)


def test_plans_hold_no_audio_and_give_the_same_music(music_model, tos_melody):
    requests = [MusicRequest("epic", 7.0, tos_melody, seed=3), MusicRequest("calm", 3.3, None, seed=4)]
    plans = generate.plan_music(music_model, requests, FAST)
    for plan in plans:  # nothing in a plan refers to the melody audio
        assert all(c is None or (c.shape[1] == 12 and not np.shares_memory(c, tos_melody)) for c in plan.chromas)
        assert not any(isinstance(v, np.ndarray) and v.size >= tos_melody.size for v in vars(plan).values())
    assert plans[1].chromas == [None] * len(plans[1].windows)
    for from_plans, from_requests in zip(generate.generate_music(music_model, plans, FAST),
                                         generate.generate_music(music_model, requests, FAST)):
        np.testing.assert_array_equal(from_plans, from_requests)


def test_disk_audio_reads_and_writes_spans_and_leaves_no_file(tmp_path):
    audio = generate.DiskAudio(2, 1000, folder=tmp_path)
    assert list(tmp_path.iterdir()) == []  # the file has no name from the start
    reference = np.zeros((2, 1000), np.float32)
    np.testing.assert_array_equal(audio[:, :], reference)  # silence until written
    rng = np.random.default_rng(0)
    for start, stop in [(0, 10), (990, 1000), (300, 700), (500, 501), (650, 2000)]:
        block = rng.standard_normal((2, min(stop, 1000) - start)).astype(np.float32)
        audio[:, start:stop] = block
        reference[:, start:stop] = block
    audio[:, 100:200] = np.float32(0.5)  # broadcast, as arrays take it
    reference[:, 100:200] = 0.5
    for start, stop in [(0, 1000), (95, 205), (999, 1000), (640, 660), (1000, 1000)]:
        np.testing.assert_array_equal(audio[:, start:stop], reference[:, start:stop])
    np.testing.assert_array_equal(np.asarray(audio), reference)
    with pytest.raises(TypeError):
        audio[0, :10]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del audio
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]  # its file is closed with it


def test_disk_audio_without_room_fails_when_made_with_one_line(tmp_path):
    # a file size limit stands in for a full disk: the space is claimed when the object is made
    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))\n"
            "from scoretrack.generate import DiskAudio\n"
            "from scoretrack.errors import ScoretrackError\n"
            "DiskAudio(1, 10_000, folder=sys.argv[1])\n"
            "try:\n"
            "    DiskAudio(1, 32000 * 60, folder=sys.argv[1])\n"
            "except ScoretrackError as error:\n"
            "    print(error)\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("cannot keep 8 MB of music in a temporary file in ")
    assert "file size limit (ulimit -f) of 1048576 bytes" in done.stdout and "TMPDIR" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_music_kept_on_disk_equals_music_in_memory(music_model, tos_melody):
    requests = [MusicRequest("epic", 7.0, tos_melody, seed=3), MusicRequest("calm", 3.3, None, seed=4)]
    for options in (FAST, GenerationOptions(window_s=4.0, stride_s=1.5, independent_windows=True, batch_size=8)):
        on_disk = generate.generate_music(music_model, requests, options, on_disk=True)
        in_memory = generate.generate_music(music_model, requests, options)
        assert all(isinstance(m, generate.DiskAudio) for m in on_disk)
        for disk, memory in zip(on_disk, in_memory):
            assert disk.shape == memory.shape and np.abs(memory).max() > 0
            np.testing.assert_array_equal(np.asarray(disk), memory)


def test_a_melody_read_window_by_window_gives_the_chroma_of_the_whole_downmix(music_model):
    from scoretrack import mix

    original = media.read_audio(MEDIA / "tos_battle_clip_70s.webm", sample_rate=48000)
    lazy = mix.MonoDownmix(original, sample_rate=48000, target_rate=32000)
    whole = mix.downmix(original, sample_rate=48000, target_rate=32000)
    options = GenerationOptions()  # 30 s windows every 18 s
    by_window, from_whole = generate.plan_music(music_model, [MusicRequest("x", 70.0, lazy), MusicRequest("x", 70.0, whole)],
                                                options)
    assert len(by_window.chromas) == 4 and all(c.any() for c in by_window.chromas)
    for a, b in zip(by_window.chromas, from_whole.chromas):
        np.testing.assert_array_equal(a, b)


def test_total_steps_matches_the_steps_run(music_model, tos_melody):
    requests = [MusicRequest("epic", 7.0, tos_melody), MusicRequest("calm", 3.3, None), MusicRequest("jazz", 2.0, None)]
    steps = []
    options = GenerationOptions(window_s=4.0, stride_s=2.5, batch_size=2)
    generate.generate_music(music_model, requests, options, on_step=steps.append)
    assert len(steps) == generate.total_steps(music_model, requests, options)


def test_missing_model_says_how_to_work_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="local folder.*HF_HUB_OFFLINE"):
        model.load_model(str(tmp_path / "no-such-model"))
    with pytest.raises(ModelUnavailableError):
        model.load_model("facebook/musicgen-melody")


def test_device_and_dtype_choice():
    assert model.pick_device("auto").type in ("cpu", "cuda", "mps")
    assert model.pick_dtype(torch.device("cpu")) == torch.float32
    with pytest.raises(BadParameterError):
        model.pick_dtype(torch.device("cpu"), "float8")


# --- same music anywhere: a clip's codes depend on its own seed, not on its batch (issue 10) ---

def _codes_and_audio(music_model, requests, index, **settings):
    traces = []
    options = GenerationOptions(window_s=4.0, stride_s=2.5, batch_size=4, **settings)
    out = generate.generate_music(music_model, requests, options, traces=traces)
    return traces[index].codes, out[index]


@pytest.mark.parametrize("settings", [dict(guidance_scale=3.0, temperature=1.0, top_k=250),
                                      dict(guidance_scale=1.0, temperature=1.0, top_k=20)])
def test_a_clip_sounds_the_same_alone_and_in_any_batch(music_model, tos_melody, settings):
    other = np.random.default_rng(1).standard_normal(tos_melody.shape).astype(np.float32) * 0.1
    clip = MusicRequest("calm piano", 6.0, tos_melody, seed=5)
    longer = MusicRequest("dark epic orchestral strings", 6.0, other, seed=9)  # more text tokens
    same_length = MusicRequest("warm jazz", 5.0, other, seed=5)  # shares generate() calls with the clip
    codes, audio = _codes_and_audio(music_model, [clip], 0, **settings)
    for requests, index in [([same_length, longer, clip], 2), ([clip, same_length], 0)]:
        batched_codes, batched_audio = _codes_and_audio(music_model, requests, index, **settings)
        for window, batched in zip(codes, batched_codes):
            np.testing.assert_array_equal(window, batched)
        np.testing.assert_array_equal(audio, batched_audio)


# --- windows on given seams, a style per window (issue 12) ---

SEAMED = dict(window_s=30, stride_s=18, frame_rate=50, sample_rate=32000)  # prompts of 12 s


def _check_seamed_plan(plan, duration, seams):
    total = math.ceil(round(duration * 32000) / 640)
    assert plan[0].start == 0 and plan[-1].end == total
    assert all(w.frames <= 1500 for w in plan)
    for before, after in zip(plan, plan[1:]):
        assert after.prompt == before.end - after.start == 600
        assert after.frames > after.prompt
    centres = generate.seam_times(plan, frame_rate=50)
    assert len(centres) == len(seams)
    np.testing.assert_allclose(centres, seams, atol=1 / 50)


@pytest.mark.parametrize("duration, seams", [
    (25.0, []), (30.0, []),  # no seams: one window
    (40.0, [20.0]), (60.0, [14.0, 30.0, 45.0]),
    (100.0, [6.0 + 15 * k for k in range(6)]),  # many, the first at its earliest (prompt / 2)
    (50.0, [24.0, 42.0]),  # first seam at its latest, spacing at its largest (window - prompt)
    (37.0, [13.0, 25.0]),  # spacing at its smallest (the prompt)
    (40.0, [20.0, 33.98]),  # last seam just before its latest (duration - prompt / 2)
    (44.0, [20.02, 35.99]),  # seams off the frame grid
])
def test_plan_on_seams_puts_each_crossfade_centre_on_its_seam(duration, seams):
    plan = plan_windows(duration, seams_s=seams, **SEAMED)
    _check_seamed_plan(plan, duration, seams)


@pytest.mark.parametrize("duration, seams, why", [
    (40.0, [], "longer than one window"),
    (60.0, [14.0, 20.0], "closer than the prompt"),
    (60.0, [14.0, 33.0], "farther apart than window - prompt"),
    (40.0, [0.0], "at the very start"), (40.0, [5.9], "first window's prompt would start before 0"),
    (40.0, [24.1], "first window longer than 30 s"),
    (40.0, [40.0], "at the very end"), (40.0, [34.5], "last window adds no music"),
    (80.0, [20.0], "last window longer than 30 s"),
    (60.0, [30.0, 14.0], "not sorted"),
])
def test_plan_refuses_seams_the_windows_cannot_meet(duration, seams, why):
    with pytest.raises(BadParameterError, match="seams"):
        plan_windows(duration, seams_s=seams, **SEAMED)


def test_plan_on_random_seams_follows_them():
    rng = np.random.default_rng(12)
    for _ in range(300):
        prompt = rng.uniform(8.0, 14.5)  # the seam picker's spacing, [prompt + 1, window - prompt], not empty
        window = 30.0
        seams = [rng.uniform(prompt / 2, window - prompt / 2)]
        while len(seams) < rng.integers(1, 12):
            seams.append(seams[-1] + rng.uniform(prompt + 1, window - prompt))
        duration = seams[-1] + rng.uniform(prompt / 2 + 0.05, window - prompt / 2)
        plan = plan_windows(duration, window_s=window, stride_s=window - prompt, frame_rate=50, sample_rate=32000,
                            seams_s=seams)
        total = math.ceil(round(duration * 32000) / 640)
        assert plan[0].start == 0 and plan[-1].end == total and all(w.frames <= 1500 for w in plan)
        assert all(b.prompt == a.end - b.start == round(prompt * 50) for a, b in zip(plan, plan[1:]))
        np.testing.assert_allclose(generate.seam_times(plan, frame_rate=50), seams, atol=1 / 50)


def test_plan_prompt_and_independent_windows_on_seams():
    plan = plan_windows(60.0, seams_s=[10.0, 30.0, 48.0], prompt_s=8.0, **SEAMED)
    assert [w.prompt for w in plan] == [0, 400, 400, 400]
    independent = plan_windows(60.0, seams_s=[10.0, 30.0, 48.0], prompt_s=8.0, continuation=False, **SEAMED)
    assert [(w.start, w.end) for w in independent] == [(w.start, w.end) for w in plan]
    assert all(w.prompt == 0 for w in independent)
    with pytest.raises(BadParameterError, match="prompt_s"):
        plan_windows(60.0, prompt_s=8.0, **SEAMED)


@pytest.mark.parametrize("duration", [29.0, 31.0, 95.0, 600.0])
def test_without_seams_the_crossfades_centre_in_the_overlaps(duration):
    plan = plan_windows(duration, **SEAMED)
    assert generate.seam_times(plan, frame_rate=50) == [(w.start + 300) / 50 for w in plan[1:]]


@pytest.mark.parametrize("independent", [False, True])
def test_the_joined_audio_crossfades_at_the_seam_times(independent, tmp_path):
    plan = plan_windows(50.0, seams_s=[21.0, 37.5], continuation=not independent, **SEAMED)
    pieces = [np.full((1, w.frames * 640), float(w.index % 2), dtype=np.float32) for w in plan]  # 0, 1, 0
    joined = []
    for music in (np.zeros((1, 50 * 32000), np.float32), generate.DiskAudio(1, 50 * 32000, folder=tmp_path)):
        joiner = generate._Joiner(plan, 640, GenerationOptions(independent_windows=independent), 32000, music)
        for window in (plan[2], plan[0], plan[1]):  # decoded in any order
            joiner.add(window, pieces[window.index])
        joined.append(np.asarray(joiner.music))
    np.testing.assert_array_equal(joined[0], joined[1])
    out = joined[0][0]
    half_way = np.sqrt(0.5) if independent else 0.5  # both gains equal there: equal power, equal gain
    for k, seam in enumerate(generate.seam_times(plan, frame_rate=50)):
        lo = round((seam - 8) * 32000)
        segment = out[lo : lo + 16 * 32000]
        crossed = segment >= half_way if k % 2 == 0 else segment <= half_way  # 0 to 1, then 1 to 0
        assert abs(lo + np.argmax(crossed) - seam * 32000) <= 1


def test_a_style_change_turns_the_music_at_its_seam(music_model, tos_melody):
    request = MusicRequest("calm piano", 8.0, tos_melody, seams_s=(2.5, 4.5, 6.5), styles=((4.5, "dark synth"),))
    ids, decoder_inputs = [], []
    text = music_model.model.text_encoder.register_forward_pre_hook(
        lambda m, args, kwargs: ids.append(kwargs["input_ids"][0].tolist()), with_kwargs=True)
    # the prefill's codes of codebook 0 (undelayed): the start token, then the prompt
    prefill = music_model.model.decoder.model.decoder.embed_tokens[0].register_forward_pre_hook(
        lambda m, args: decoder_inputs.append(args[0][0, 1:].tolist()) if args[0].shape[1] > 1 or not decoder_inputs
        else None)
    try:
        traces = []
        generate.generate_music(music_model, [request], FAST, traces=traces)
    finally:
        text.remove(), prefill.remove()
    trace = traces[0]
    calm, dark = (music_model.tokenizer(s).input_ids for s in ("calm piano", "dark synth"))
    assert ids == [calm, calm, dark, dark]  # the change lands on the window after the seam at 4.5 s
    assert trace.styles == ["calm piano", "calm piano", "dark synth", "dark synth"]
    np.testing.assert_allclose(generate.seam_times(trace.windows, frame_rate=50), [2.5, 4.5, 6.5], atol=0.02)
    for window in trace.windows[1:]:  # every window, the turning one too, continues the previous codes
        previous = trace.codes[window.index - 1][:, -window.prompt :]
        assert decoder_inputs[window.index] == previous[0].tolist()
        np.testing.assert_array_equal(trace.codes[window.index][:, : window.prompt], previous)


@pytest.mark.parametrize("styles", [((3.7, "dark synth"),), ((-1.0, "dark synth"),), ((9.0, "jazz"),)])
def test_a_style_change_off_the_seams_is_refused_before_any_work(music_model, styles):
    request = MusicRequest("calm piano", 8.0, None, seams_s=(2.5, 4.5, 6.5), styles=styles)
    with pytest.raises(BadParameterError, match="style change"):
        generate.total_steps(music_model, [request], FAST)


def test_window_styles_follow_the_changes_in_force_at_each_seam():
    plan = plan_windows(60.0, seams_s=[14.0, 30.0, 45.0], **SEAMED)
    request = MusicRequest("calm", 60.0, styles=((45.0, "jazz"), (0.0, "warm"), (30.0, "epic")))
    assert generate.window_styles(request, plan, frame_rate=50) == ["warm", "warm", "epic", "jazz"]
    assert generate.window_styles(MusicRequest("calm", 60.0), plan, frame_rate=50) == ["calm"] * 4
