"""scoretrack's decode loop over a loaded MusicGen: conditioning once, one prefill, one step per frame.

The loop is gpt-fast's: a KV cache preallocated for the whole window and written in place at each
position, a ``prefill`` of the conditioning prefix and the continuation prompt, then
``decode_one_token`` per frame, the draw (:mod:`scoretrack.sampling`) and the delay pattern applied
in the loop. Only the loop, the cache and the sampling are scoretrack's: the layers and weights are
transformers' own modules (embeddings per codebook, attention projections, layer norms, feed-forward,
``lm_heads``), called as they are, so quantized or hooked layers work unchanged.

Every family runs it. MusicGen-melody prefixes the decoder's input with its conditioning (the
projected chroma, then the projected text) and counts positions from the start of that prefix; the
text-only MusicGen cross-attends to the projected text, whose keys and values are computed once per
window. Guidance runs the conditional and unconditional halves as one batch of ``2 * rows``. Stereo
models predict 8 codebooks, the two channels' interleaved, codebooks ``2c`` and ``2c + 1`` delayed by
``c`` frames; mono ones delay codebook ``c`` by ``c`` frames.

On CUDA the step (decoder, draw, delay pattern) is captured as a CUDA graph once per decode call (one
batch shape: its rows, conditioning and window length) and replayed for every step, the position a
device tensor the graph advances itself; on the CPU and MPS the same step runs eagerly, attending only
over the filled part of the cache. The CUDA path is written but has not run on a GPU yet
(``bench/gpu.sh`` checks it); on the CPU its static-shape step is tested equal to transformers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import sampling
from .model import MusicModel
from .options import GenerationOptions


def start_token(model: torch.nn.Module) -> int:
    """The decoder's start (and delay-pattern padding) token: the generation config's
    ``decoder_start_token_id``, else the decoder config's ``bos_token_id`` or ``pad_token_id`` (a model
    saved without Meta's ``generation_config.json`` has only these)."""
    decoder = model.config.decoder
    for value in (model.generation_config.decoder_start_token_id, decoder.bos_token_id, decoder.pad_token_id):
        if value is not None:
            return int(value)
    raise ValueError("the model names no decoder start, bos or pad token")


def delays(mm: MusicModel) -> torch.Tensor:
    """Each codebook's delay in frames, ``(codebooks,)``: ``c`` mono, ``c // 2`` stereo (interleaved)."""
    return torch.arange(mm.num_codebooks) // mm.audio_channels


def decode_steps(frames: int, prompt_frames: int, *, codebooks: int, audio_channels: int) -> int:
    """Decode steps for ``frames`` frames after a prompt: the delay pattern costs the largest delay more."""
    return frames - prompt_frames + codebooks // audio_channels - 1


@dataclass
class Conditioning:
    """What a window's decoder attends to besides its own codes, for the guided batch of rows."""

    prefix: torch.Tensor | None  # melody models: (batch, prefix, hidden), the decoder input's first positions
    cross: list[tuple[torch.Tensor, torch.Tensor]] | None  # text-only: per layer, keys and values (batch, heads, T, d)

    @property
    def length(self) -> int:
        return 0 if self.prefix is None else self.prefix.shape[1]


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(batch, positions, hidden) to (batch, heads, positions, head_dim)."""
    return x.view(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)


def conditioning(mm: MusicModel, styles: Sequence[str], chromas: Sequence[np.ndarray] | None, *,
                 guided: bool) -> Conditioning:
    """The conditioning of a batch of rows, as generate() builds it, computed once per window.

    Parameters
    ----------
    styles : sequence of str
        One style text per row, all of one token count (no padding).
    chromas : sequence of np.ndarray, optional
        Melody models: per row, chroma ``(235, num_chroma)`` already tiled; None for a text-only model.
    guided : bool
        Append the unconditional rows (no text, and the 'no melody' chroma).
    """
    model = mm.model
    text = mm.tokenizer(list(styles), return_tensors="pt").to(mm.device)
    states = model.text_encoder(input_ids=text.input_ids, attention_mask=text.attention_mask).last_hidden_state
    mask = text.attention_mask
    if guided:
        states, mask = torch.cat([states, torch.zeros_like(states)]), torch.cat([mask, torch.zeros_like(mask)])
    project = model.text_encoder.config.hidden_size != model.decoder.config.hidden_size
    if not mm.takes_melody:
        if project and model.decoder.config.cross_attention_hidden_size is None:
            states = model.enc_to_dec_proj(states)
        states = states * mask[..., None]
        heads = model.decoder.config.num_attention_heads
        return Conditioning(None, [(_heads(layer.encoder_attn.k_proj(states), heads),
                                    _heads(layer.encoder_attn.v_proj(states), heads)) for layer in _layers(mm)])
    if project:
        states = model.enc_to_dec_proj(states)
    states = states * mask[..., None]
    features = torch.as_tensor(np.stack(chromas), dtype=mm.dtype, device=mm.device)
    if guided:
        null = torch.zeros_like(features)
        null[:, :, 0] = 1
        features = torch.cat([features, null])
    if model.config.num_chroma != model.decoder.config.hidden_size:
        features = model.audio_enc_to_dec_proj(features)
    length = model.config.chroma_length
    features = features.repeat(1, math.ceil(length / features.shape[1]), 1)[:, :length]
    return Conditioning(torch.cat([features, states], dim=1), None)


def _layers(mm: MusicModel) -> torch.nn.ModuleList:
    return mm.model.decoder.model.decoder.layers


class StaticCache:
    """Keys and values of every decoder layer, preallocated for a window: ``(layers, batch, heads,
    positions, head_dim)`` each, written in place at the positions fed."""

    def __init__(self, mm: MusicModel, batch: int, positions: int):
        config = mm.model.decoder.config
        heads = config.num_attention_heads
        shape = (config.num_hidden_layers, batch, heads, positions, config.hidden_size // heads)
        self.keys = torch.zeros(shape, dtype=mm.dtype, device=mm.device)
        self.values = torch.zeros(shape, dtype=mm.dtype, device=mm.device)


def _self_attention(attn: torch.nn.Module, x: torch.Tensor, cache: StaticCache, layer: int, start: torch.Tensor,
                    filled: int | None, prefill: bool) -> torch.Tensor:
    """Attention of ``x`` (positions ``start`` onward) over the cache, after writing its keys and values.

    The prefill starts at position 0 and attends causally over itself. A step attends over the
    ``filled`` positions as a slice (eager), or, with ``filled=None``, over the whole cache with a
    mask (static shapes, for CUDA graphs)."""
    heads = cache.keys.shape[2]
    q, k, v = (_heads(proj(x), heads) for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
    index = start + torch.arange(x.shape[1], device=x.device)
    cache.keys[layer].index_copy_(2, index, k)
    cache.values[layer].index_copy_(2, index, v)
    if prefill:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=attn.scaling)
    elif filled is not None:
        out = F.scaled_dot_product_attention(q, cache.keys[layer, :, :, :filled], cache.values[layer, :, :, :filled],
                                             scale=attn.scaling)
    else:
        seen = (torch.arange(cache.keys.shape[3], device=x.device) <= start)[None]  # (1, positions)
        out = F.scaled_dot_product_attention(q, cache.keys[layer], cache.values[layer], attn_mask=seen,
                                             scale=attn.scaling)
    return attn.out_proj(out.transpose(1, 2).reshape(x.shape))


def _cross_attention(attn: torch.nn.Module, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Attention to the text. No mask: the conditional rows have no padding, and the unconditional
    rows' keys and values are zero (zero text, projections without bias), so they add zero, as in
    transformers, where all their text positions are masked."""
    q = _heads(attn.q_proj(x), keys.shape[1])
    out = F.scaled_dot_product_attention(q, keys, values, scale=attn.scaling)
    return attn.out_proj(out.transpose(1, 2).reshape(x.shape))


def _decoder(mm: MusicModel, x: torch.Tensor, cond: Conditioning, cache: StaticCache, start: torch.Tensor,
             filled: int | None, prefill: bool) -> torch.Tensor:
    """The decoder layers over embeddings ``x`` at positions ``start ...``: logits at the last
    position, ``(batch, codebooks, codes)``."""
    decoder = mm.model.decoder.model.decoder
    positions = start + torch.arange(x.shape[1], device=x.device)
    x = x + decoder.embed_positions.weights.index_select(0, positions).to(x.dtype)
    for index, layer in enumerate(decoder.layers):
        x = x + _self_attention(layer.self_attn, layer.self_attn_layer_norm(x), cache, index, start, filled, prefill)
        if cond.cross is not None:
            x = x + _cross_attention(layer.encoder_attn, layer.encoder_attn_layer_norm(x), *cond.cross[index])
        x = x + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(x))))
    x = decoder.layer_norm(x[:, -1])
    return torch.stack([head(x) for head in mm.model.decoder.lm_heads], dim=1)


def _embed(mm: MusicModel, ids: torch.Tensor) -> torch.Tensor:
    """Codes ``(batch, codebooks, n)`` to the sum of their codebooks' embeddings ``(batch, n, hidden)``."""
    return sum(embed(ids[:, c]) for c, embed in enumerate(mm.model.decoder.model.decoder.embed_tokens))


def prefill(mm: MusicModel, ids: torch.Tensor, cond: Conditioning, cache: StaticCache) -> torch.Tensor:
    """The conditioning prefix and codes ``ids`` ``(batch, codebooks, n)`` (the start token, then the
    prompt, in the delay pattern) from position 0: the logits of the next codes."""
    x = _embed(mm, ids)
    if cond.prefix is not None:
        x = torch.cat([cond.prefix, x], dim=1)
    return _decoder(mm, x, cond, cache, torch.zeros((), dtype=torch.long, device=x.device), None, True)


def decode_one_token(mm: MusicModel, ids: torch.Tensor, cond: Conditioning, cache: StaticCache, t: torch.Tensor,
                     filled: int | None = None) -> torch.Tensor:
    """The codes ``ids`` ``(batch, codebooks, 1)`` at sequence position ``t`` (a 0-d tensor; the start
    token is at 0): the logits of the next codes.

    ``filled``: ``cond.length + t + 1`` when eager (attend over that slice of the cache); None for
    static shapes (a mask over the whole cache)."""
    return _decoder(mm, _embed(mm, ids), cond, cache, t + cond.length, filled, False)


def delayed_sequence(prompt: torch.Tensor | None, *, rows: int, frames: int, delay: torch.Tensor,
                     start: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A window's codes in the delay pattern, before decoding: ``(seq, free)``.

    ``seq`` ``(rows, codebooks, frames + max delay + 1)`` holds at position ``t`` of codebook ``c`` frame
    ``t - 1 - delay[c]``: the start token before frame 0 and after the last, the prompt's codes
    ``prompt[:, c, f]`` for its frames; ``free`` ``(codebooks, positions)`` marks the positions to draw."""
    prompt_frames = 0 if prompt is None else prompt.shape[-1]
    frame = torch.arange(frames + int(delay.max()) + 1, device=delay.device)[None] - 1 - delay[:, None]
    seq = torch.full((rows, *frame.shape), start, dtype=torch.long, device=delay.device)
    if prompt is not None:
        given = (frame >= 0) & (frame < prompt_frames)
        seq[:, given] = prompt.gather(2, frame.clamp(0, prompt_frames - 1).expand(rows, -1, -1))[:, given]
    return seq, (frame >= prompt_frames) & (frame < frames)


def undelay(seq: torch.Tensor, delay: torch.Tensor, frames: int) -> torch.Tensor:
    """The codes ``(rows, codebooks, frames)`` of a sequence in the delay pattern."""
    index = (1 + delay[:, None] + torch.arange(frames, device=seq.device)[None]).expand(seq.shape[0], -1, -1)
    return seq.gather(2, index)


@dataclass
class WindowState:
    """Everything one decode step reads and writes, on the device (static buffers for a CUDA graph)."""

    seq: torch.Tensor  # (rows, codebooks, positions) codes in the delay pattern, filled as drawn
    free: torch.Tensor  # (codebooks, positions) positions to draw
    keys: torch.Tensor  # (rows,) sampling keys (seed, window)
    lane: torch.Tensor  # sampling.lanes
    cond: Conditioning
    cache: StaticCache
    first: int  # the first position drawn (1 + prompt frames)


def _doubled(ids: torch.Tensor, guided: bool) -> torch.Tensor:
    return torch.cat([ids, ids]) if guided else ids


def _write_draw(state: WindowState, logits: torch.Tensor, t: torch.Tensor,
                options: GenerationOptions) -> None:
    """Draw the codes of position ``t`` (decode step ``t - first``) and write the free ones into ``seq``."""
    scores = sampling.filtered_scores(logits, guidance_scale=options.guidance_scale, temperature=options.temperature,
                                      top_k=options.top_k, top_p=options.top_p)
    code = sampling.draw(scores, state.keys, t - state.first, state.lane)
    at = t.reshape(1)
    column = torch.where(state.free.index_select(1, at)[None], code[..., None], state.seq.index_select(2, at))
    state.seq.index_copy_(2, at, column)


def advance(mm: MusicModel, state: WindowState, t: torch.Tensor, options: GenerationOptions,
            filled: int | None = None) -> None:
    """One decode step: feed position ``t``'s codes, draw position ``t + 1``'s.

    Eager with ``filled = cond.length + t + 1`` (an int); with ``filled=None`` every shape is static and
    ``t`` a device tensor, as a CUDA graph needs."""
    ids = _doubled(state.seq.index_select(2, t.reshape(1)), options.guidance_scale > 1)
    logits = decode_one_token(mm, ids, state.cond, state.cache, t, filled)
    _write_draw(state, logits, t + 1, options)


def _graph_steps(mm: MusicModel, state: WindowState, t: int, steps: int, options: GenerationOptions,
                 on_step: Callable[[int], None] | None) -> None:
    """Run ``steps`` steps from position ``t`` as replays of one CUDA graph of the step (the first
    runs eagerly on a side stream as the warm-up capture needs); the position is a device tensor the
    graph advances itself, so the host only launches replays."""
    position = torch.tensor(t, device=mm.device)

    def step() -> None:
        advance(mm, state, position, options)
        position.add_(1)

    side = torch.cuda.Stream(device=mm.device)
    side.wait_stream(torch.cuda.current_stream(mm.device))
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream(mm.device).wait_stream(side)
    if on_step is not None:
        on_step(1)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()  # recorded, not run
    for _ in range(steps - 1):
        graph.replay()
        if on_step is not None:
            on_step(1)


def generate_window(mm: MusicModel, cond: Conditioning, prompt: np.ndarray | None, frames: int,
                    options: GenerationOptions, keys: torch.Tensor, *,
                    on_step: Callable[[int], None] | None = None, graphs: bool | None = None) -> np.ndarray:
    """Decode one window for a batch of rows: prefill, then one step per frame.

    Parameters
    ----------
    cond : Conditioning
        From :func:`conditioning` (guided when ``options.guidance_scale > 1``).
    prompt : np.ndarray, optional
        ``(rows, codebooks, prompt_frames)`` codes the window continues.
    frames : int
        Frames to return per row, the prompt's included.
    keys : torch.Tensor
        ``(rows,)`` sampling keys (:func:`scoretrack.sampling.row_keys`).
    on_step : callable, optional
        Called with 1 after each decode step (no device sync).
    graphs : bool, optional
        Replay the step as a CUDA graph; default: on CUDA.

    Returns
    -------
    np.ndarray
        Codes ``(rows, codebooks, frames)``.
    """
    delay = delays(mm).to(mm.device)
    rows, guided = keys.shape[0], options.guidance_scale > 1
    given = None if prompt is None else torch.as_tensor(prompt, dtype=torch.long, device=mm.device)
    seq, free = delayed_sequence(given, rows=rows, frames=frames, delay=delay, start=start_token(mm.model))
    first = 1 if prompt is None else 1 + prompt.shape[-1]
    positions = cond.length + seq.shape[2] - 1  # the last position is drawn, never fed
    embed_positions = mm.model.decoder.model.decoder.embed_positions
    if embed_positions.weights.shape[0] < positions:
        embed_positions.make_weights(positions, embed_positions.embedding_dim)
    state = WindowState(seq, free, keys, sampling.lanes(mm.num_codebooks, mm.model.decoder.config.vocab_size, mm.device),
                        cond, StaticCache(mm, rows * (2 if guided else 1), positions), first)
    steps = decode_steps(frames, first - 1, codebooks=mm.num_codebooks, audio_channels=mm.audio_channels)
    logits = prefill(mm, _doubled(seq[:, :, :first], guided), cond, state.cache)
    _write_draw(state, logits, torch.tensor(first, device=mm.device), options)
    if on_step is not None:
        on_step(1)
    if (mm.device.type == "cuda" if graphs is None else graphs) and steps > 1:
        _graph_steps(mm, state, first, steps - 1, options, on_step)
    else:
        for t in range(first, first + steps - 1):
            advance(mm, state, torch.tensor(t, device=mm.device), options, cond.length + t + 1)
            if on_step is not None:
                on_step(1)
    return undelay(seq, delay, frames).cpu().numpy()
