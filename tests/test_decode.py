"""scoretrack's decode loop against transformers' own forward (teacher-forced), and its sampler, on the tiny
model of every family (melody and text only, mono and stereo)."""

import numpy as np
import pytest
import torch

from scoretrack import decode, generate, sampling
from scoretrack.generate import GenerationOptions, MusicRequest
from scoretrack.model import load_model
from scoretrack.options import SAMPLER
from scoretrack.testing import FAMILIES, write_tiny_model

STYLES = ["calm piano", "dark synth"]  # equal token counts: rows of one call


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("decode")
    return {family: load_model(str(write_tiny_model(root / family, family=family)), device="cpu") for family in FAMILIES}


def _oracle_logits(mm, ids, chromas, guided):
    """transformers' own forward over the whole sequence, with the conditioning its generate() builds:
    ``(batch, codebooks, positions, codes)`` for the decoder's code positions."""
    from transformers import GenerationConfig

    model = mm.model
    text = mm.tokenizer(STYLES, return_tensors="pt")
    config = GenerationConfig(guidance_scale=3.0 if guided else None)
    flat = ids.reshape(-1, ids.shape[-1])
    if mm.takes_melody:
        kwargs = model._prepare_encoder_hidden_states_kwargs_for_generation(
            text.input_ids, {"attention_mask": text.attention_mask, "input_features": chromas}, "input_ids", config)
        out = model(encoder_hidden_states=kwargs["encoder_hidden_states"], decoder_input_ids=flat).logits
    else:
        kwargs = model._prepare_text_encoder_kwargs_for_generation(
            text.input_ids, {"attention_mask": text.attention_mask}, "input_ids", config)
        out = model(encoder_outputs=kwargs["encoder_outputs"], attention_mask=kwargs["attention_mask"],
                    decoder_input_ids=flat).logits
    out = out.reshape(ids.shape[0], mm.num_codebooks, -1, out.shape[-1])
    return out[:, :, -ids.shape[-1]:]


def _teacher_forced(mm, prompt_frames, guided, *, static=False, frames=12):
    """Our loop's logits at the prefill and every step, fed a fixed random sequence, and the oracle's."""
    rng = torch.Generator().manual_seed(3)
    rows, k, vocab = len(STYLES), mm.num_codebooks, mm.model.decoder.config.vocab_size
    prompt = torch.randint(0, vocab, (rows, k, prompt_frames), generator=rng) if prompt_frames else None
    delay = decode.delays(mm)
    seq, free = decode.delayed_sequence(prompt, rows=rows, frames=frames, delay=delay, start=decode.start_token(mm.model))
    seq = torch.where(free, torch.randint(0, vocab, seq.shape, generator=rng), seq)
    chromas = torch.rand((rows, 235, 12), generator=rng) if mm.takes_melody else None
    double = (lambda x: torch.cat([x, x])) if guided else (lambda x: x)
    with torch.inference_mode():
        cond = decode.conditioning(mm, STYLES, None if chromas is None else list(chromas.numpy()), guided=guided)
        first, positions = 1 + prompt_frames, seq.shape[2]
        cache = decode.StaticCache(mm, rows * (2 if guided else 1), cond.length + positions - 1)
        ours = [decode.prefill(mm, double(seq[:, :, :first]), cond, cache)]
        for t in range(first, positions - 1):
            filled = None if static else cond.length + t + 1
            ours.append(decode.decode_one_token(mm, double(seq[:, :, t : t + 1]), cond, cache, torch.tensor(t), filled))
        theirs = _oracle_logits(mm, double(seq[:, :, : positions - 1]), chromas, guided)
    return torch.stack(ours, dim=2), theirs[:, :, first - 1 :]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("prompt_frames", [0, 5])
@pytest.mark.parametrize("guided", [True, False])
def test_the_loop_gives_transformers_logits_at_the_prefill_and_every_step(models, family, prompt_frames, guided):
    mm = models[family]
    ours, theirs = _teacher_forced(mm, prompt_frames, guided)
    steps = decode.decode_steps(12, prompt_frames, codebooks=mm.num_codebooks, audio_channels=mm.audio_channels)
    assert ours.shape == theirs.shape and ours.shape[2] == steps
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["melody", "stereo-text"])
def test_the_static_step_a_cuda_graph_replays_gives_the_same_logits(models, family):
    ours, theirs = _teacher_forced(models[family], 5, True, static=True)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_codes_are_generate_own_for_every_family(models, family):
    # top_k=1 makes the draw greedy: the codes must be transformers' generate()'s greedy ones with guidance
    mm = models[family]
    chroma = np.random.default_rng(0).random((100, 12)).astype(np.float32) if mm.takes_melody else None
    request = MusicRequest("jazz piano", 2.0, None)
    options = GenerationOptions(window_s=4.0, stride_s=2.5, guidance_scale=3.0, top_k=1)
    plan = generate.plan_music(mm, [request], options)[0]
    plan = generate.MusicPlan(plan.windows, plan.styles, plan.tokens, plan.seeds, plan.duration_s, [chroma])
    traces = []
    generate.generate_music(mm, [plan], options, traces=traces)
    text = mm.tokenizer(["jazz piano"], return_tensors="pt")
    extra = {"input_features": torch.as_tensor(chroma)[None]} if mm.takes_melody else {}
    with torch.inference_mode():
        theirs = mm.model.generate(**text, **extra, do_sample=False, guidance_scale=3.0,
                                   max_new_tokens=decode.decode_steps(100, 0, codebooks=mm.num_codebooks,
                                                                     audio_channels=mm.audio_channels))
    # generate() returns audio; its codes are the sequences before the delay pattern is undone, so compare the audio
    ours = generate._decode(mm, traces[0].codes[0])
    np.testing.assert_array_equal(ours, theirs[0, :, : ours.shape[1]].numpy())


# --- the sampler ---

KEYS = sampling.row_keys(torch.tensor([7, 7, 8]), torch.tensor([0, 1, 0]))


def test_the_noise_depends_only_on_the_row_key_step_codebook_and_code():
    lane = sampling.lanes(4, 64, torch.device("cpu"))
    u = sampling.uniforms(KEYS, 3, lane)
    assert u.shape == (3, 4, 64) and (u > 0).all() and (u < 1).all()
    np.testing.assert_array_equal(u[1:2], sampling.uniforms(KEYS[1:2], 3, lane))  # alone equals in a batch
    np.testing.assert_array_equal(u[[2, 0]], sampling.uniforms(KEYS[[2, 0]], 3, lane))
    assert not torch.equal(u[0], u[1]) and not torch.equal(u[0], u[2])  # other window, other seed
    assert not torch.equal(u, sampling.uniforms(KEYS, 4, lane))  # other step
    assert not torch.equal(u[:, 0], u[:, 1])  # other codebook
    flat = u.flatten().numpy()
    assert abs(flat.mean() - 0.5) < 0.02 and abs(np.corrcoef(flat[:-1], flat[1:])[0, 1]) < 0.05


def test_seeds_near_the_largest_and_windows_never_share_a_stream():
    seeds = torch.tensor([0, 1, 2**63 - 1, 2**63 - 2, 5, 6])
    keys = sampling.row_keys(seeds, torch.tensor([0, 0, 0, 0, 1, 0]))
    assert len(set(keys.tolist())) == 6  # seed 5 window 1 is not seed 6 window 0 (the old seed + window)


def _frequencies(probs, draws=20000, **settings):
    logits = torch.log(torch.tensor(probs, dtype=torch.float32))[None, None].expand(draws, 1, -1)
    keys = sampling.row_keys(torch.arange(draws), torch.zeros(draws, dtype=torch.long))
    scores = sampling.filtered_scores(logits, **{"guidance_scale": 1.0, "temperature": 1.0, "top_k": len(probs),
                                                 "top_p": 0.0, **settings})
    codes = sampling.draw(scores, keys, 0, sampling.lanes(1, len(probs), torch.device("cpu")))
    return np.bincount(codes[:, 0].numpy(), minlength=len(probs))


def test_the_draw_frequencies_match_the_probabilities_chi_square():
    from scipy.stats import chisquare

    probs = np.array([0.4, 0.25, 0.15, 0.1, 0.05, 0.03, 0.015, 0.005])
    counts = _frequencies(probs)
    assert chisquare(counts, probs * counts.sum()).pvalue > 1e-3
    flat = _frequencies(np.full(8, 1 / 8))
    assert chisquare(flat).pvalue > 1e-3


def test_the_chi_square_test_would_see_a_wrong_draw():
    from scipy.stats import chisquare

    probs = np.array([0.4, 0.25, 0.15, 0.1, 0.05, 0.03, 0.015, 0.005])
    counts = _frequencies(probs ** 1.1 / (probs ** 1.1).sum())  # a 10 % too sharp distribution
    assert chisquare(counts, probs * counts.sum()).pvalue < 1e-3


@pytest.mark.parametrize("probs, k, kept", [
    ([0.1, 0.4, 0.3, 0.2], 1, [1]), ([0.1, 0.4, 0.3, 0.2], 2, [1, 2]), ([0.1, 0.4, 0.3, 0.2], 4, [0, 1, 2, 3]),
    ([0.25, 0.25, 0.25, 0.25], 2, [0, 1, 2, 3]),  # ties at the k-th score are kept, as transformers keeps them
])
def test_top_k_keeps_the_k_likeliest(probs, k, kept):
    logits = torch.log(torch.tensor([[probs]]))
    scores = sampling.filtered_scores(logits, guidance_scale=1.0, temperature=1.0, top_k=k, top_p=0.0)
    assert sorted(np.flatnonzero(np.isfinite(scores[0, 0].numpy()))) == kept


@pytest.mark.parametrize("probs, p, kept", [
    ([0.5, 0.25, 0.125, 0.125], 0.5, [0]),  # the top code alone reaches p
    ([0.5, 0.25, 0.125, 0.125], 0.75, [0, 1]),
    ([0.5, 0.25, 0.125, 0.125], 0.76, [0, 1, 2]),
    ([0.125, 0.5, 0.125, 0.25], 0.8, [1, 3, 0]),  # by probability, not position
    ([0.25, 0.25, 0.25, 0.25], 0.5, [0, 1]),  # ties rank by code
    ([0.25, 0.25, 0.25, 0.25], 1.0, [0, 1, 2, 3]),  # p = 1 keeps everything
    ([0.4, 0.3, 0.3, 0.0], 1.0, [0, 1, 2]),  # ... that top-k kept
    ([0.4, 0.3, 0.3, 0.0], 1e-6, [0]),  # a tiny p keeps the top code
])
def test_top_p_keeps_the_fewest_likeliest_codes_reaching_p(probs, p, kept):
    scores = torch.log(torch.tensor([probs], dtype=torch.float64))
    assert sorted(np.flatnonzero(sampling.nucleus_mask(scores, p)[0].numpy())) == sorted(kept)
    counts = _frequencies(probs, top_p=p) if 0.0 not in probs else None
    if counts is not None:  # the draws come from the kept codes only, in their renormalised proportions
        assert sorted(np.flatnonzero(counts)) == sorted(kept)


def test_guidance_and_temperature_are_applied_before_the_draw():
    cond, uncond = torch.tensor([[[2.0, 0.0, 1.0]]]), torch.tensor([[[0.0, 1.0, 1.0]]])
    scores = sampling.filtered_scores(torch.cat([cond, uncond]), guidance_scale=3.0, temperature=2.0, top_k=3, top_p=0.0)
    torch.testing.assert_close(scores, (uncond + (cond - uncond) * 3.0) / 2.0)


# --- the one generation path ---

def _refuse_generate(monkeypatch):
    from transformers import MusicgenForConditionalGeneration, MusicgenMelodyForConditionalGeneration

    def refuse(*args, **kwargs):
        raise AssertionError("generate() called on a scoring path")

    for cls in (MusicgenForConditionalGeneration, MusicgenMelodyForConditionalGeneration):
        monkeypatch.setattr(cls, "generate", refuse)


@pytest.mark.parametrize("family", FAMILIES)
def test_no_generation_path_calls_generate(models, family, monkeypatch):
    _refuse_generate(monkeypatch)
    mm = models[family]
    melody = np.random.default_rng(2).standard_normal((1, 5 * 32000)).astype(np.float32) * 0.1 if mm.takes_melody else None
    requests = [MusicRequest("calm piano", 5.0, melody, take_seeds=(1, 2)), MusicRequest("jazz", 2.0, None)]
    outs = generate.generate_music(mm, requests, GenerationOptions(window_s=3.0, stride_s=2.0, top_p=0.9))
    assert [o.shape for o in outs] == [(mm.audio_channels, 5 * 32000)] * 2 + [(mm.audio_channels, 2 * 32000)]


def test_scoring_a_file_never_calls_generate_and_records_the_sampler(scorer, tmp_path, monkeypatch):
    import json
    import shutil

    from conftest import MEDIA
    from scoretrack.options import ScoreOptions
    from scoretrack.plan import sidecar_path

    _refuse_generate(monkeypatch)
    clip = tmp_path / "grid_bbaf2n_speech.mpg"
    shutil.copy(MEDIA / clip.name, clip)
    result = scorer.score(clip, options=ScoreOptions(style="calm piano", generation=GenerationOptions(window_s=2.0,
                                                                                                     stride_s=1.5)))
    record = json.loads(sidecar_path(result.output).read_text())
    assert result.status == "ok" and record["sampler"] == SAMPLER


def test_a_model_saved_without_a_generation_config_starts_from_its_decoder_config(tmp_path):
    # issue 23 item 11: no generation_config.json, so no decoder_start_token_id
    folder = write_tiny_model(tmp_path / "bare")
    (folder / "generation_config.json").unlink()
    mm = load_model(str(folder), device="cpu")
    assert mm.model.generation_config.decoder_start_token_id is None
    assert decode.start_token(mm.model) == mm.model.config.decoder.bos_token_id == 64
    out = generate.generate_music(mm, [MusicRequest("calm", 3.0, None, seed=1)], GenerationOptions(window_s=2.0,
                                                                                                 stride_s=1.5))[0]
    assert out.shape == (1, 3 * 32000) and np.isfinite(out).all()


@pytest.mark.parametrize("family", ["melody", "stereo-text"])
def test_same_seed_same_codes_other_seed_other_codes(models, family):
    mm = models[family]
    options = GenerationOptions(window_s=3.0, stride_s=2.0)

    def codes(seed):
        traces = []
        generate.generate_music(mm, [MusicRequest("calm piano", 4.0, None, seed=seed)], options, traces=traces)
        return traces[0].codes

    first = codes(5)
    assert all(np.array_equal(a, b) for a, b in zip(first, codes(5)))
    assert not np.array_equal(first[0], codes(6)[0])
