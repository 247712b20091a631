"""Drawing the next codes of every row at once, on the device, from a counter-based hash.

Guidance, temperature, top-k and top-p are batched tensor ops over ``(rows, codebooks, codes)``
scores; the draw is Gumbel-max: ``argmax(scores + g)`` with ``g = -log(-log(u))``, which picks code
``i`` with probability ``softmax(scores)[i]`` (codes filtered out have score ``-inf``). The uniform
``u`` of each (row, step, codebook, code) is a splitmix64 hash, in int64 tensor ops, of the row's key
(its seed and window) and a counter, so a row's draws depend on nothing else: not on the rows beside
it, the batch it runs in, the executor or the device (up to the rounding of the logits). No random
generator state, no per-row Python loop, no copy to the host.
"""

from __future__ import annotations

import math

import torch


def _signed(value: int) -> int:
    """A 64-bit constant as the int64 with the same bits."""
    return value - (1 << 64) if value >= 1 << 63 else value


GOLDEN = _signed(0x9E3779B97F4A7C15)  # splitmix64's increment
MIX1, MIX2 = _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB)
UNIFORM_BITS = 23  # float32 holds (m + 0.5) exactly for m < 2**23: u never rounds to 0 or 1


def _shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 bits (torch's ``>>`` keeps the sign)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def mix64(x: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser on int64 tensors (products wrap modulo 2**64, as in C)."""
    x = (x ^ _shift_right(x, 30)) * MIX1
    x = (x ^ _shift_right(x, 27)) * MIX2
    return x ^ _shift_right(x, 31)


def row_keys(seeds: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """One int64 key per row from its seed and window index, ``(rows,)``."""
    return mix64(mix64(seeds + GOLDEN) ^ windows)


def lanes(codebooks: int, codes: int, device: torch.device) -> torch.Tensor:
    """The per-draw counters of one step, ``(codebooks, codes)`` int64 (made once per window)."""
    return (torch.arange(codebooks * codes, device=device, dtype=torch.int64) + 1).reshape(codebooks, codes) * GOLDEN


def uniforms(keys: torch.Tensor, step: torch.Tensor | int, lane: torch.Tensor) -> torch.Tensor:
    """Uniforms in (0, 1), float32 ``(rows, codebooks, codes)``, for draw ``step`` of each row key.

    Parameters
    ----------
    keys : torch.Tensor
        ``(rows,)`` int64 from :func:`row_keys`.
    step : torch.Tensor or int
        The decode step in the window, >= 0 (a 0-d int64 tensor inside a CUDA graph).
    lane : torch.Tensor
        From :func:`lanes`.
    """
    step_keys = mix64(keys ^ mix64(torch.as_tensor(step, dtype=torch.int64, device=keys.device) * GOLDEN + GOLDEN))
    bits = _shift_right(mix64(step_keys[:, None, None] + lane), 64 - UNIFORM_BITS)
    return (bits.float() + 0.5) / (1 << UNIFORM_BITS)


def nucleus_mask(scores: torch.Tensor, p: float) -> torch.Tensor:
    """Keep, along the last axis, the fewest likeliest codes whose probability reaches ``p``.

    The likeliest code is always kept; equal probabilities rank by code (a stable sort).

    Parameters
    ----------
    scores : torch.Tensor
        ``(..., codes)`` logits (``-inf`` for codes already filtered out).
    p : float
        In (0, 1].

    Returns
    -------
    torch.Tensor
        Boolean, the same shape: True for the codes kept.
    """
    probs = torch.softmax(scores, dim=-1)
    ranked, order = probs.sort(dim=-1, descending=True, stable=True)
    above = ranked.cumsum(dim=-1) - ranked  # probability of the codes ranked before each
    return torch.zeros_like(probs, dtype=torch.bool).scatter_(-1, order, above < p)


def filtered_scores(logits: torch.Tensor, *, guidance_scale: float, temperature: float, top_k: int,
                    top_p: float) -> torch.Tensor:
    """Scores to draw from: guidance, temperature, then top-k and top-p (as transformers orders them).

    Parameters
    ----------
    logits : torch.Tensor
        ``(rows, codebooks, codes)``, or ``(2 * rows, ...)`` with guidance: the conditional rows, then
        the unconditional ones.
    guidance_scale : float
        > 1 combines the halves as ``u + (c - u) * guidance_scale``; 1 takes the logits as they are.

    Returns
    -------
    torch.Tensor
        float32 ``(rows, codebooks, codes)``, ``-inf`` for the codes filtered out.
    """
    scores = logits.float()
    if guidance_scale > 1:
        cond, uncond = scores.chunk(2)
        scores = uncond + (cond - uncond) * guidance_scale
    scores = scores / temperature
    if top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, -math.inf)
    if top_p > 0:
        scores = scores.masked_fill(~nucleus_mask(scores, top_p), -math.inf)
    return scores


def draw(scores: torch.Tensor, keys: torch.Tensor, step: torch.Tensor | int, lane: torch.Tensor) -> torch.Tensor:
    """Gumbel-max: one code per (row, codebook), ``(rows, codebooks)`` int64, drawn from ``softmax(scores)``."""
    return (scores - torch.log(-torch.log(uniforms(keys, step, lane)))).argmax(dim=-1)
