"""Every MusicGen family (melody or text only, mono or stereo), takes as rows, top-p, out-of-memory recovery,
the memory check before a CPU load and a quiet load: on the real model classes with tiny weights."""

import json
import logging
import shutil

import numpy as np
import pytest
import soundfile
import torch

from conftest import MEDIA
from scoretrack import cli, generate, media, model
from scoretrack.errors import BadParameterError, DeviceMemoryError
from scoretrack.generate import GenerationOptions, MusicRequest
from scoretrack.options import MelodyOptions, ScoreOptions
from scoretrack.pipeline import Scorer
from scoretrack.testing import FAMILIES, write_tiny_model

SPEECH_CLIP = MEDIA / "his_girl_friday_dialogue.mp4"  # 6.2 s of dialogue
SHORT_CLIP = MEDIA / "grid_bbaf2n_speech.mpg"  # 3 s, one sentence
FAST = GenerationOptions(window_s=3.0, stride_s=2.0)  # 6.2 s: three windows, two seams


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {family: write_tiny_model(root / family, family=family) for family in FAMILIES}


@pytest.fixture(scope="module")
def scorers(family_dirs):
    return {family: Scorer(str(folder), device="cpu") for family, folder in family_dirs.items()}


@pytest.fixture(scope="module")
def speech_melody():
    return media.read_audio(SPEECH_CLIP, sample_rate=32000)


def test_each_family_is_read_from_its_config_without_loading(family_dirs):
    expected = {"melody": ("musicgen_melody", 1), "stereo-melody": ("musicgen_melody", 2),
                "text": ("musicgen", 1), "stereo-text": ("musicgen", 2)}
    for family, folder in family_dirs.items():
        found = model.model_family(str(folder))
        assert (found.model_type, found.audio_channels) == expected[family]
        assert found.takes_melody == family.endswith("melody")
        assert model.check_model_source(str(folder)) == found
    assert model.model_family("facebook/musicgen-stereo-small") == model.STEREO_TEXT  # from the table, offline
    assert model.model_family("facebook/musicgen-melody-large") == model.MELODY


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_scores_a_real_clip_end_to_end(scorers, family, tmp_path):
    scorer = scorers[family]
    assert scorer.music_model.family == model.model_family(str(scorer.model_name))
    clip = tmp_path / SPEECH_CLIP.name
    shutil.copy(SPEECH_CLIP, clip)
    options = ScoreOptions(style="calm piano", generation=FAST)
    result = scorer.score(clip, options=options, stems=True)
    assert result.status == "ok" and result.windows == 3 and len(result.seams_s) == 2
    assert result.melody == ("video" if family.endswith("melody") else "none")
    stem, rate = soundfile.read(result.side["music-dry"], always_2d=True)
    channels = 2 if family.startswith("stereo") else 1
    assert stem.shape == (round(media.probe(clip).duration_s * rate), channels)
    if channels == 2:  # two different channels, not one copied
        assert np.abs(stem[:, 0] - stem[:, 1]).max() > 0.01 * np.abs(stem).max()
    out = media.probe(result.output)
    assert out.audio and abs(out.duration_s - media.probe(clip).duration_s) < 0.05


@pytest.mark.parametrize("family", ["stereo-melody", "melody"])
def test_stereo_music_stays_a_stereo_pair_on_the_front_of_a_surround_mix(scorers, family):
    # a 5.1 original whose front left and right are the same: only stereo music can set them apart
    speech = media.read_audio(SPEECH_CLIP, sample_rate=48000)[0][: 4 * 48000]
    surround = np.stack([speech, speech, speech, speech * 0.1, speech * 0.5, speech * 0.5]) * 0.5
    names = ("FL", "FR", "FC", "LFE", "BL", "BR")
    options = ScoreOptions(style="calm piano", generation=FAST)
    track = scorers[family].soundtrack(surround, 48000, options=options, channel_names=names)
    assert track.mix.shape[0] == 6 and track.channel_names == names
    apart = np.abs(track.mix[0] - track.mix[1]).max()
    if family == "stereo-melody":
        assert apart > 1e-3 and track.music.shape[0] == 2
    else:
        assert apart == 0


def _codes(mm, requests, index, **settings):
    traces = []
    generate.generate_music(mm, requests, GenerationOptions(window_s=3.0, stride_s=2.0, **settings), traces=traces)
    return traces[index].codes


@pytest.mark.parametrize("family", FAMILIES)
def test_a_clip_gives_the_same_codes_alone_and_batched_in_every_family(scorers, family, speech_melody):
    mm = scorers[family].music_model
    melody = speech_melody if mm.takes_melody else None
    other = None if melody is None else np.roll(melody, 32000)
    clip = MusicRequest("calm piano", 5.0, melody, seed=3)
    alone = _codes(mm, [clip], 0)
    batched = _codes(mm, [MusicRequest("warm jazz", 4.0, other, seed=8), clip], 1, batch_size=4)
    assert len(alone) == 2 and all(w.shape[0] == mm.num_codebooks for w in alone)
    for a, b in zip(alone, batched):
        np.testing.assert_array_equal(a, b)


def test_a_text_only_model_refuses_a_melody():
    for source, file in [("video", None), ("harmonic", None), ("file", "melody.wav")]:
        with pytest.raises(BadParameterError, match="text only"):
            MelodyOptions(source=source, file=file).resolved(takes_melody=False)
    assert MelodyOptions().resolved(takes_melody=False).source == "none"
    assert MelodyOptions().resolved(takes_melody=True).source == "video"


def test_the_text_only_refusal_comes_before_the_model_loads(family_dirs, tmp_path, capsys):
    # a folder with the config alone: loading would fail, so the melody refusal must come first
    folder = tmp_path / "config-only"
    folder.mkdir()
    shutil.copy(family_dirs["text"] / "config.json", folder)
    clip = tmp_path / SHORT_CLIP.name
    shutil.copy(SHORT_CLIP, clip)
    for flags in [["--melody", "video"], ["--melody-file", str(clip)]]:
        assert cli.main([str(clip), "--model", str(folder), *flags]) == cli.EXIT_USAGE
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "text only" in err[0] and "safetensors" not in err[0], err
    assert cli.main([str(clip), "--model", str(folder)]) == cli.EXIT_USAGE  # auto: no refusal, the load's error
    assert "safetensors" in capsys.readouterr().err


# --- takes: rows of the same generate() calls ---

def test_takes_are_rows_of_one_call_each_equal_to_its_seed_alone(music_model, speech_melody):
    request = MusicRequest("calm piano", 5.0, speech_melody, take_seeds=(10, 20, 30))
    traces = []
    options = GenerationOptions(window_s=3.0, stride_s=2.0, seed=10)
    out = generate.generate_music(music_model, [request, MusicRequest("jazz", 3.0, None)], options, traces=traces)
    assert len(out) == len(traces) == 4  # three takes, then the other clip's one
    for take, seed in enumerate((10, 20, 30)):
        alone = _codes(music_model, [MusicRequest("calm piano", 5.0, speech_melody, seed=seed)], 0)
        for a, b in zip(alone, traces[take].codes):
            np.testing.assert_array_equal(a, b)
    plain = generate.generate_music(music_model, [MusicRequest("calm piano", 5.0, speech_melody)], options)[0]
    np.testing.assert_array_equal(plain, out[0])  # take 1 is the plain run
    assert not np.array_equal(traces[0].codes[0], traces[1].codes[0])
    assert not np.array_equal(traces[1].codes[0], traces[2].codes[0])


def test_takes_share_the_steps_of_one_take(music_model):
    steps = []
    requests = [MusicRequest("calm piano", 5.0, None, take_seeds=(1, 2, 3))]
    generate.generate_music(music_model, requests, FAST, on_step=steps.append)
    assert len(steps) == generate.total_steps(music_model, [MusicRequest("calm piano", 5.0, None)], FAST)


# --- top-p ---

def test_top_p_is_an_option_that_narrows_the_draws_and_repeats(music_model):
    request = [MusicRequest("calm piano", 3.0, None, seed=4)]
    with pytest.raises(BadParameterError, match="top_p"):
        GenerationOptions(top_p=1.5).validate()
    narrow = _codes(music_model, request, 0, top_p=0.2)
    np.testing.assert_array_equal(narrow[0], _codes(music_model, request, 0, top_p=0.2)[0])
    wide = _codes(music_model, request, 0)
    assert not np.array_equal(narrow[0], wide[0])
    assert len(np.unique(narrow[0])) < len(np.unique(wide[0]))  # fewer codes drawn from
    assert ScoreOptions().fingerprint("m") != ScoreOptions(generation=GenerationOptions(top_p=0.9)).fingerprint("m")


# --- out of memory: retried in halves; only a row that fails alone fails its clip ---

class OutOfMemoryHook:
    """Raises the real torch.OutOfMemoryError from a forward pre-hook on the decoder's first codebook
    embedding (which sees every prefill and step): the real error cannot be caused on these machines (CPU
    only, ample memory), so the hook stands in for the device running out."""

    def __init__(self, mm, *, max_rows=None, continuations=False):
        self.mm, self.max_rows, self.continuations = mm, max_rows, continuations
        self.raised = 0

    def __call__(self, module, args):
        ids = args[0]  # (rows, positions) codes of codebook 0
        rows = ids.shape[0] // 2  # guidance doubles the rows
        if (self.max_rows is not None and rows > self.max_rows) or (self.continuations and ids.shape[1] > 1):
            self.raised += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (stand-in)")

    def __enter__(self):
        self.handle = self.mm.model.decoder.model.decoder.embed_tokens[0].register_forward_pre_hook(self)
        return self

    def __exit__(self, *_):
        self.handle.remove()


def test_a_batch_that_runs_out_of_memory_is_retried_in_halves_with_the_same_codes(music_model, speech_melody):
    requests = [MusicRequest("calm piano", 4.0, np.roll(speech_melody, 8000 * i), seed=i) for i in range(4)]
    alone = [_codes(music_model, [r], 0) for r in requests]
    steps = []
    with OutOfMemoryHook(music_model, max_rows=1) as hook:
        traces = []
        out = generate.generate_music(music_model, requests, GenerationOptions(window_s=3.0, stride_s=2.0, batch_size=4),
                                      traces=traces, on_step=steps.append)
    assert hook.raised >= 3 and all(isinstance(o, np.ndarray) for o in out)  # 4 rows, then 2 + 2, then 1 each
    for codes, trace in zip(alone, traces):
        for a, b in zip(codes, trace.codes):
            np.testing.assert_array_equal(a, b)
    assert len(steps) == generate.total_steps(music_model, requests, GenerationOptions(window_s=3.0, stride_s=2.0,
                                                                                       batch_size=4))


def test_a_row_that_does_not_fit_alone_fails_only_its_clip(music_model, speech_melody):
    short = MusicRequest("calm piano", 2.5, speech_melody, seed=1)  # one window: no continuation
    long = MusicRequest("calm piano", 5.0, speech_melody, seed=2)  # its second window fails alone
    with OutOfMemoryHook(music_model, continuations=True):
        out = generate.generate_music(music_model, [long, short], FAST)
    assert isinstance(out[0], DeviceMemoryError)
    message = str(out[0])
    assert "\n" not in message and "GB for its weights" in message and "KV cache" in message
    assert "--batch-size" in message and "--dtype" in message and "--device cpu" in message
    np.testing.assert_array_equal(out[1], generate.generate_music(music_model, [short], FAST)[0])


def test_a_clip_out_of_memory_fails_alone_in_a_batch_of_files(scorer, tmp_path):
    clips = []
    for source in (SPEECH_CLIP, SHORT_CLIP):
        clips.append(tmp_path / source.name)
        shutil.copy(source, clips[-1])
    options = ScoreOptions(style="calm piano", generation=FAST)
    with OutOfMemoryHook(scorer.music_model, continuations=True):
        results = scorer.score_many([(clip, None, options) for clip in clips])
    assert [r.status for r in results] == ["failed", "ok"]
    assert results[0].error_type == "DeviceMemoryError" and "KV cache" in results[0].error
    assert not any(p.name.startswith(SPEECH_CLIP.stem + ".scored") for p in tmp_path.iterdir())


# --- before and during the load ---

def test_weights_larger_than_memory_are_refused_before_loading(tiny_model_dir, tmp_path):
    folder = tmp_path / "huge"
    folder.mkdir()
    shutil.copy(tiny_model_dir / "config.json", folder)
    elements = 1 << 40  # 4 TiB of float32 claimed by the header; the file is sparse, so it costs no disk
    header = json.dumps({"weight": {"dtype": "F32", "shape": [elements], "data_offsets": [0, 4 * elements]}}).encode()
    with (folder / "model.safetensors").open("wb") as handle:
        handle.write(len(header).to_bytes(8, "little") + header)
        handle.truncate(8 + len(header) + 4 * elements)
    assert model.weights_bytes(model.weight_files(folder), torch.float32) == 4 * elements
    assert model.weights_bytes(model.weight_files(folder), torch.bfloat16) == 2 * elements
    with pytest.raises(DeviceMemoryError, match=r"needs 4398\.0 GB .* GB of memory is available"):
        model.load_model(str(folder), device="cpu")


def test_loading_hides_only_the_known_harmless_messages(tiny_model_dir, capfd, caplog):
    # the tiny configs put pad and bos at vocab_size, as the real ones do; transformers warns once per process
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["decoder"]["pad_token_id"] == config["decoder"]["vocab_size"]
    for debug in (False, True):
        logging.Logger.warning_once.cache_clear()
        scoretrack_logger = logging.getLogger("scoretrack")
        scoretrack_logger.setLevel(logging.DEBUG if debug else logging.NOTSET)
        try:
            capfd.readouterr()
            caplog.clear()
            model.load_model(str(tiny_model_dir), device="cpu")
            err = capfd.readouterr().err  # the progress bar's
        finally:
            scoretrack_logger.setLevel(logging.NOTSET)
        logged = [r.getMessage() for r in caplog.records if r.name.startswith("transformers")]
        assert any("within the vocabulary" in m for m in logged) == debug, logged
        assert ("Loading weights" in err) == debug, err
    assert not any(isinstance(f, model._KnownHarmless) for name in logging.root.manager.loggerDict
                   for f in getattr(logging.root.manager.loggerDict[name], "filters", []))
