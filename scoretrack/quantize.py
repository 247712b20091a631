"""int8 weights for MusicGen-melody's decoder on CPU: a quarter of the bytes read per decode step.

On CPU a decode step reads every decoder weight once (5.5 GB in float32 for musicgen-melody), so
its time is bound by memory bandwidth. :func:`quantize_int8` swaps each linear layer of the
decoder's transformer for an :class:`Int8Linear`: int8 weights with one float32 scale per output
channel (symmetric), multiplied by PyTorch's own int8 weight-only kernel
(``aten._weight_int8pack_mm``), which reads the int8 bytes and never builds a float copy of the
weight. The kernel is vectorised for bfloat16 activations only (with float32 ones it runs scalar
code, several times slower than the float32 GEMM), so each layer's input is rounded to bfloat16 and
its output returned in the model's dtype, scaled in float32. Everything else (attention, norms,
heads) stays float32, and classifier-free guidance (the batch doubled) works unchanged.
The output heads stay float32 (under 1% of the bytes). :func:`next_token_log_probs` gives the
teacher-forced next-token distributions that compare a quantized model with the float one.
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import BadParameterError

# Above this many rows (a prompt's prefill, not a decode step) the weight is dequantized once per call
# and multiplied by the float kernel: the int8 kernel's advantage is in reading bytes, and a prefill
# of hundreds of rows is compute-bound, where the float GEMM is faster.
KERNEL_MAX_ROWS = 64


class Int8Linear(torch.nn.Module):
    """A linear layer with int8 weights and one float32 scale per output channel.

    ``y = (x @ weight.T) * scale + bias``, where ``weight * scale[:, None]`` approximates the float
    weight to within half a step (``scale = max|w_row| / 127``).
    """

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", weight)
        self.register_buffer("scale", scale)
        # the kernel's own scale argument (bfloat16, like its input) is left at 1: scaling the output in
        # float32 keeps the scales exact
        self.register_buffer("unit", torch.ones(self.out_features, dtype=torch.bfloat16), persistent=False)
        self.bias = None if bias is None else torch.nn.Parameter(bias, requires_grad=False)

    @classmethod
    def from_float(cls, linear: torch.nn.Linear) -> Int8Linear:
        """Quantize one float linear layer (its weights are left untouched)."""
        with torch.no_grad():
            weight = linear.weight.float()
            scale = weight.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny) / 127
            int8 = torch.round(weight / scale[:, None]).clamp_(-127, 127).to(torch.int8)
        bias = None if linear.bias is None else linear.bias.detach().clone()
        return cls(int8, scale, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        if rows.shape[0] <= KERNEL_MAX_ROWS:
            out = torch.ops.aten._weight_int8pack_mm(rows.to(torch.bfloat16).contiguous(), self.weight, self.unit)
            out = out.to(x.dtype) * self.scale.to(x.dtype)
        else:
            out = torch.nn.functional.linear(rows, self.weight.to(x.dtype)) * self.scale.to(x.dtype)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def decoder_linears(model: torch.nn.Module) -> list[tuple[torch.nn.Module, str]]:
    """``(parent, attribute)`` of every linear layer in the decoder's transformer layers (not the layers
    themselves, so that a caller replacing them holds no reference to the float weights)."""
    return [(parent, name) for parent in model.decoder.model.decoder.layers.modules()
            for name, child in parent.named_children() if isinstance(child, torch.nn.Linear)]


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Give a MusicGen-melody model's decoder int8 weights, in place, one layer at a time.

    Each float layer is dropped as soon as its int8 twin exists, so memory never holds more than
    the float model plus one layer's int8 copy; afterwards the decoder's linear weights take a quarter
    of their float32 bytes. CPU only.

    Parameters
    ----------
    model : MusicgenMelodyForConditionalGeneration
        On the CPU, float32 or bfloat16.

    Returns
    -------
    The same model object.

    Raises
    ------
    BadParameterError
        The model is not on the CPU.

    Examples
    --------
    >>> mm = model.load_model("facebook/musicgen-melody", device="cpu")  # doctest: +SKIP
    >>> quantize_int8(mm.model)  # doctest: +SKIP
    """
    device = next(model.decoder.parameters()).device
    if device.type != "cpu":
        raise BadParameterError(f"int8 quantization runs on the CPU only, not on {device}; use --device cpu "
                                "or leave quantization off (GPUs run bfloat16)")
    for parent, name in decoder_linears(model):
        layer = getattr(parent, name)
        setattr(parent, name, Int8Linear.from_float(layer))
        del layer  # the last reference: the float weight is freed before the next layer is quantized
    return model


def next_token_log_probs(model: torch.nn.Module, text: dict, chroma: np.ndarray, codes: np.ndarray, *,
                         guidance_scale: float) -> torch.Tensor:
    """Teacher-forced next-token log-probabilities of each codebook, as generate() samples them.

    One forward pass over the delayed codes (BOS first), conditioned as ``generate()`` conditions
    (text and chroma, plus the null condition when guidance is on, the guided logits being
    ``uncond + guidance_scale * (cond - uncond)``).

    Parameters
    ----------
    model : MusicgenMelodyForConditionalGeneration
    text : dict
        The tokenizer's output for one style text (``input_ids``, ``attention_mask``), batch 1.
    chroma : np.ndarray
        float32 ``(frames, 12)`` melody chroma, at most 235 frames.
    codes : np.ndarray
        int ``(codebooks, frames)`` un-delayed codes.
    guidance_scale : float
        >= 1; 1 gives the conditional distribution alone.

    Returns
    -------
    torch.Tensor
        float32 ``(codebooks, frames, vocabulary)``: entry ``[k, t]`` is the distribution of code ``t`` of
        codebook ``k`` given everything before it in the delay pattern.
    """
    from transformers import GenerationConfig

    decoder = model.decoder
    k, frames = codes.shape
    bos = model.generation_config.decoder_start_token_id
    ids = torch.cat([torch.full((k, 1), bos), torch.as_tensor(codes, dtype=torch.long)], dim=1)
    _, delayed = decoder.build_delay_pattern_mask(ids, pad_token_id=model.generation_config.pad_token_id,
                                                  max_length=frames + k)
    config = GenerationConfig(guidance_scale=guidance_scale if guidance_scale > 1 else None)
    dtype = next(model.parameters()).dtype
    conditioning = model._prepare_encoder_hidden_states_kwargs_for_generation(
        text["input_ids"], {"attention_mask": text["attention_mask"],
                            "input_features": torch.as_tensor(chroma[None], dtype=dtype)}, "input_ids", config)
    rows = 2 if guidance_scale > 1 else 1
    inputs = delayed[:, :-1]
    with torch.inference_mode():
        logits = decoder(input_ids=inputs.repeat(rows, 1),
                         encoder_hidden_states=conditioning["encoder_hidden_states"]).logits.float()
    # the conditioning is prepended to the sequence: keep the positions of the codes only
    logits = logits.reshape(rows, k, -1, logits.shape[-1])[:, :, -inputs.shape[1] :]
    if rows == 2:
        logits = logits[1] + guidance_scale * (logits[0] - logits[1])
    else:
        logits = logits[0]
    # codebook q's code t sits at delayed position t + 1 + q: it is predicted from position t + q
    picked = torch.stack([logits[q, q : q + frames] for q in range(k)])
    return torch.log_softmax(picked, dim=-1)
