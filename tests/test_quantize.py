"""int8 decoder weights on the real model class with tiny weights: the layers are swapped, guided
generation still works, and the int8 model predicts the next code as the float model does."""

import numpy as np
import pytest
import torch

from conftest import MEDIA
from test_cli import run
from scoretrack import generate, media, melody, model
from scoretrack.errors import BadParameterError
from scoretrack.generate import GenerationOptions, MusicRequest
from scoretrack.quantize import Int8Linear, decoder_linears, next_token_log_probs, quantize_int8

FRAMES = 300  # teacher-forced steps per codebook


@pytest.fixture(scope="module")
def brahms():
    return media.read_audio(MEDIA / "music_brahms_hungarian5.ogg", sample_rate=32000, duration_s=8.0)


@pytest.fixture()
def float_and_int8(tiny_model_dir):
    """A float model and an int8 one, both freshly loaded, the int8 one as --quantize int8 loads it."""
    reference = model.load_model(str(tiny_model_dir), device="cpu")
    lines = []
    quantized = model.load_model(str(tiny_model_dir), device="cpu", quantize="int8", on_status=lines.append)
    assert lines == [f"loading {tiny_model_dir} on cpu (float32, int8 decoder weights)..."]
    return reference, quantized


def test_quantize_int8_is_the_same_as_quantizing_a_loaded_model(tiny_model_dir, float_and_int8):
    by_hand = quantize_int8(model.load_model(str(tiny_model_dir), device="cpu").model)
    loaded = float_and_int8[1].model
    for (name, mine), (_, theirs) in zip(by_hand.decoder.named_buffers(), loaded.decoder.named_buffers()):
        assert torch.equal(mine, theirs), name


@pytest.mark.parametrize("settings", [{"quantize": "int4"}, {"quantize": "INT8"}, {"quantize": ""}])
def test_an_unknown_quantization_is_refused_before_loading(tmp_path, settings):
    # the folder holds no model: an error about the setting shows it was checked first
    with pytest.raises(BadParameterError):
        model.load_model(str(tmp_path), **settings)


def test_command_line_scores_with_int8_weights(tiny_model_dir, tmp_path):
    done = run(MEDIA / "realshort_1s.mp4", "--model", tiny_model_dir, "--quantize", "int8", "--device", "cpu",
               "-o", tmp_path / "int8.mp4", "--json")
    assert done.returncode == 0, done.stderr
    assert "int8 decoder weights" in done.stderr
    assert media.probe(tmp_path / "int8.mp4").duration_s == pytest.approx(media.probe(MEDIA / "realshort_1s.mp4").duration_s)
    assert run(MEDIA / "realshort_1s.mp4", "--quantize", "int4").returncode == 2


def test_decoder_linears_become_int8(float_and_int8):
    reference, quantized = float_and_int8
    before = {n: m for n, m in reference.model.decoder.named_modules() if isinstance(m, torch.nn.Linear)}
    after = dict(quantized.model.decoder.named_modules())
    int8 = {n for n, m in after.items() if isinstance(m, Int8Linear)}
    assert len(int8) == 2 * 6  # 2 layers of q, k, v, out, fc1, fc2; the 4 output heads stay float
    assert decoder_linears(quantized.model) == [] and int8 | {f"lm_heads.{i}" for i in range(4)} == set(before)
    for name in int8:
        layer = after[name]
        assert layer.weight.dtype == torch.int8 and layer.weight.shape == before[name].weight.shape
        error = (layer.weight.float() * layer.scale[:, None] - before[name].weight).abs()
        assert (error <= layer.scale[:, None] / 2 + 1e-7).all()


def test_guided_generation_still_makes_audio_of_the_right_length(float_and_int8, brahms):
    _, quantized = float_and_int8
    options = GenerationOptions(window_s=2.0, stride_s=1.2, guidance_scale=3.0)
    out = generate.generate_music(quantized, [MusicRequest("calm piano", 3.3, brahms)], options)[0]
    assert out.shape == (1, round(3.3 * 32000)) and np.isfinite(out).all() and np.abs(out).max() > 0


def test_int8_predicts_the_next_code_as_float_does(float_and_int8, brahms):
    reference, quantized = float_and_int8
    text = reference.tokenizer(["cinematic strings"], return_tensors="pt")
    chroma = melody.chroma(brahms[:, : FRAMES * 640])[: melody.MAX_CHROMA_FRAMES]
    # random codes: the tiny EnCodec maps real audio to one constant code per codebook
    codes = np.random.default_rng(0).integers(0, 64, size=(4, FRAMES))
    exact = next_token_log_probs(reference.model, text, chroma, codes, guidance_scale=3.0)
    approx = next_token_log_probs(quantized.model, text, chroma, codes, guidance_scale=3.0)
    agreement = (exact.argmax(-1) == approx.argmax(-1)).float().mean().item()
    kl = (exact.exp() * (exact - approx)).sum(-1).mean().item()
    # the same distributions at shuffled positions: what agreement by chance looks like
    shuffled = exact[:, torch.randperm(FRAMES, generator=torch.Generator().manual_seed(0))]
    chance = (exact.argmax(-1) == shuffled.argmax(-1)).float().mean().item()
    assert agreement >= 0.95 and kl < 0.01, (agreement, kl)
    assert chance < 0.5, chance


def test_score_passes_the_quantization_to_its_scorer(tiny_model_dir, tmp_path):
    from scoretrack import score

    with pytest.raises(BadParameterError, match="quantize='int4'"):
        score(MEDIA / "realshort_1s.mp4", model=str(tiny_model_dir), quantize="int4", output=tmp_path / "o.mp4")
    assert not (tmp_path / "o.mp4").exists()
