"""Long-form MusicGen-melody generation: windows that continue each other, each conditioned on the
melody of its own time span, joined into music of an exact length.

The window plan (:func:`plan_windows`) is pure arithmetic on frames; :func:`generate_music` runs the
model over it. A window after the first starts with the previous window's last codes, passed to
``generate()`` as ``decoder_input_ids`` (un-delayed EnCodec codes, ``(batch * codebooks, frames)``),
so the model continues the music instead of starting anew (as audiocraft's long-form generation does).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import math
import os
import re
import tempfile
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from . import media, melody
from .errors import BadParameterError, ModelUnavailableError, ScoretrackError
from .mix import MonoDownmix, column_span, crossfade_join
from .options import QUANTIZATIONS, GenerationOptions

DEFAULT_MODEL = "facebook/musicgen-melody"


@dataclass(frozen=True)
class Window:
    """One generate() call's span, in codec frames of the clip's timeline."""

    index: int
    start: int  # first frame
    end: int  # one past the last frame
    prompt: int  # leading frames copied from the previous window (0 for the first, or independent)

    @property
    def frames(self) -> int:
        return self.end - self.start


def plan_windows(duration_s: float, *, window_s: float, stride_s: float, frame_rate: int, sample_rate: int,
                 continuation: bool = True, seams_s: Sequence[float] | None = None,
                 prompt_s: float | None = None) -> list[Window]:
    """Split a clip into windows of at most ``window_s``, every ``stride_s`` or on given seams.

    The windows cover ``ceil(round(duration_s * sample_rate) / (sample_rate / frame_rate))`` frames:
    enough codec frames for exactly ``round(duration_s * sample_rate)`` samples. Consecutive windows
    overlap by ``window_s - stride_s`` (or ``prompt_s``); the crossfade between them is centred in
    the overlap, at the times :func:`seam_times` returns.

    With ``seams_s``, window k starts ``prompt_s / 2`` before seam k, so every seam is a crossfade
    centre (within one codec frame), and there are no other seams. With ``P = prompt_s`` and
    ``W = window_s``, the seams must satisfy (each with one codec frame of tolerance)::

        P / 2 <= seams_s[0] <= W - P / 2                     (the first window fits, starting at 0)
        P <= seams_s[k+1] - seams_s[k] <= W - P              (each window makes >= P new seconds and fits)
        duration_s - W + P / 2 <= seams_s[-1] < duration_s - P / 2   (the last window fits, adds music)

    and with no seams, ``duration_s <= W``. So ``W >= 2 P`` is needed for two seams or more.

    Parameters
    ----------
    duration_s : float
        Clip length in seconds, > 0.
    window_s, stride_s : float
        Window length and advance in seconds.
    frame_rate : int
        Codec frames per second (50 for MusicGen).
    sample_rate : int
        Codec sample rate in Hz (32000 for MusicGen).
    continuation : bool
        Whether each window continues the previous one (sets ``prompt``).
    seams_s : sequence of float, optional
        Sorted crossfade centres in seconds; None places them every ``stride_s``.
    prompt_s : float, optional
        Overlap of consecutive windows with ``seams_s`` (the continuation prompt); default
        ``window_s - stride_s``.

    Returns
    -------
    list of Window

    Raises
    ------
    BadParameterError
        A non-positive duration, ``prompt_s`` without ``seams_s``, or seams outside the bounds above.
    """
    if duration_s <= 0:
        raise BadParameterError(f"duration_s={duration_s} must be positive")
    total = math.ceil(media.sample_count(duration_s, sample_rate) / (sample_rate // frame_rate))
    window = max(1, int(round(window_s * frame_rate)))
    if seams_s is None:
        if prompt_s is not None:
            raise BadParameterError(f"prompt_s={prompt_s} applies only with seams_s; set stride_s instead")
        return _stride_windows(total, window, max(1, int(round(stride_s * frame_rate))), continuation)
    overlap = int(round((window_s - stride_s if prompt_s is None else prompt_s) * frame_rate))
    if not 0 < overlap < window:
        raise BadParameterError(f"prompt_s={prompt_s} must be in (0, window_s={window_s}) seconds")
    starts = _seam_starts(seams_s, frame_rate=frame_rate, total=total, window=window, overlap=overlap)
    ends = [start + overlap for start in starts] + [total]
    return [Window(k, start, end, overlap if continuation and k else 0)
            for k, (start, end) in enumerate(zip([0] + starts, ends))]


def _stride_windows(total: int, window: int, stride: int, continuation: bool) -> list[Window]:
    windows = [Window(0, 0, min(window, total), 0)]
    while windows[-1].end < total:
        previous = windows[-1]
        start = previous.start + stride
        prompt = previous.end - start if continuation else 0
        windows.append(Window(previous.index + 1, start, min(start + window, total), prompt))
    return windows


def _seam_starts(seams_s: Sequence[float], *, frame_rate: int, total: int, window: int, overlap: int) -> list[int]:
    """Window starts (frames) that centre each overlap on a seam, within one frame.

    Each start is the rounded ideal, clamped into what the windows before it allow; a seam more
    than a frame outside that range is an error."""
    if len(seams_s) == 0 and total > window:
        raise BadParameterError(f"seams_s=() but the clip is {total / frame_rate:g} s, longer than one window "
                                f"({window / frame_rate:g} s): give seams")
    starts: list[int] = []
    for k, seam_s in enumerate(seams_s):
        ideal = seam_s * frame_rate - overlap / 2
        previous = starts[-1] if starts else 0
        lo, hi = previous + (overlap if starts else 0), previous + window - overlap
        if k == len(seams_s) - 1:
            lo, hi = max(lo, total - window), min(hi, total - overlap - 1)
        if lo > hi or not lo - 1 <= ideal <= hi + 1:
            raise BadParameterError(
                f"seams_s[{k}]={seam_s:g} s must lie in [{(lo + overlap / 2) / frame_rate:g}, "
                f"{(hi + overlap / 2) / frame_rate:g}] s for {window / frame_rate:g} s windows overlapping by "
                f"{overlap / frame_rate:g} s: move it (see plan_windows for the rules)")
        starts.append(min(max(int(round(ideal)), lo), hi))
    return starts


def seam_times(plan: Sequence[Window], *, frame_rate: int) -> list[float]:
    """Crossfade centres in seconds: the middle of each overlap between consecutive windows."""
    return [(window.start + previous.end) / 2 / frame_rate for previous, window in zip(plan, plan[1:])]


@dataclass
class MusicModel:
    """A loaded MusicGen-melody with its tokenizer, ready to generate."""

    model: torch.nn.Module
    tokenizer: object
    name: str
    device: torch.device
    dtype: torch.dtype

    @property
    def sample_rate(self) -> int:
        return int(self.model.config.audio_encoder.sampling_rate)

    @property
    def frame_rate(self) -> int:
        return int(self.model.config.audio_encoder.frame_rate)

    @property
    def num_codebooks(self) -> int:
        return int(self.model.decoder.num_codebooks)


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
MODEL_TYPE = "musicgen_melody"


def check_model_source(name: str) -> None:
    """Check cheaply, before the slow load, that ``name`` can be a MusicGen-melody model.

    A local folder (an existing path, or a name that can only be a path) must exist, hold a
    ``config.json`` of model type ``musicgen_melody`` and complete safetensors weights. Hub ids are
    checked when they load.

    Raises
    ------
    ModelUnavailableError
        Naming the folder and what is wrong with it.
    """
    path = Path(name).expanduser()
    if not path.exists():
        if HUB_ID.match(name) and not name.startswith("."):
            return
        raise ModelUnavailableError(f"model folder {name} does not exist: point --model at a local folder written by "
                                    "save_pretrained, or a hub id such as facebook/musicgen-melody (offline: set "
                                    "HF_HOME to a cache that has it and HF_HUB_OFFLINE=1)")
    config = path / "config.json"
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError) as error:
        raise ModelUnavailableError(f"model folder {name}: no readable config.json ({error})") from error
    if model_type != MODEL_TYPE:
        raise ModelUnavailableError(f"model folder {name} holds a {model_type!r} model, not MusicGen-melody "
                                    "(scoretrack needs a musicgen-melody model, e.g. facebook/musicgen-melody)")
    shards = _weight_files(path)
    if not shards:
        raise ModelUnavailableError(f"model folder {name} has no safetensors weights (scoretrack loads only safetensors)")
    for shard in shards:
        _check_safetensors(shard)


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.exists():
        try:
            names = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError) as error:
            raise ModelUnavailableError(f"{index}: unreadable weight index ({error})") from error
        return [folder / n for n in sorted(names)]
    single = folder / "model.safetensors"
    return [single] if single.exists() else []


def _check_safetensors(path: Path) -> None:
    """A safetensors file is whole: its header parses and the file holds every tensor it lists."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            if header_len <= 0 or 8 + header_len > size:
                raise ValueError("header longer than the file")
            header = json.loads(handle.read(header_len))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelUnavailableError(f"{path}: damaged safetensors file ({error}); download or save the model again") from error
    if 8 + header_len + end > size:
        raise ModelUnavailableError(f"{path}: truncated safetensors file ({size} of {8 + header_len + end} bytes); "
                                    "download or save the model again")


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; a named device must exist on this machine.

    Raises
    ------
    BadParameterError
        Not a torch device, or one this machine does not have (e.g. ``cuda`` without a GPU).
    """
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError as error:
        raise BadParameterError(f"device={device!r} is not a torch device (try auto, cpu, cuda, mps)") from error
    if chosen.type == "cuda" and (not torch.cuda.is_available() or (chosen.index or 0) >= torch.cuda.device_count()):
        found = f"{torch.cuda.device_count()} CUDA GPUs" if torch.cuda.is_available() else "no CUDA GPU"
        raise BadParameterError(f"device={device!r} is not available: torch sees {found} here (use auto or cpu)")
    if chosen.type == "mps" and not _mps_available():
        raise BadParameterError(f"device={device!r} is not available: this machine has no Apple GPU (use auto or cpu)")
    if chosen.type not in ("cpu", "cuda", "mps"):
        raise BadParameterError(f"device={device!r} is not supported (use auto, cpu, cuda or mps)")
    return chosen


def pick_dtype(device: torch.device, dtype: str = "auto") -> torch.dtype:
    """float32 on CPU; bfloat16 on GPUs that support it, else float16; or the named dtype."""
    names = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype != "auto":
        if dtype not in names:
            raise BadParameterError(f"dtype={dtype!r} must be auto, float32, float16 or bfloat16")
        return names[dtype]
    if device.type == "cpu":
        return torch.float32
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def load_model(name: str = DEFAULT_MODEL, *, device: str = "auto", dtype: str = "auto",
               quantize: str | None = None, on_status: Callable[[str], None] | None = None) -> MusicModel:
    """Load MusicGen-melody from a hub id or a local folder (safetensors only, no remote code).

    Parameters
    ----------
    name : str
        Hub id or folder.
    device, dtype : str
        See :func:`pick_device` and :func:`pick_dtype`.
    quantize : {None, "int8"}
        ``"int8"``: int8 weights for the decoder's linear layers (:func:`scoretrack.quantize.quantize_int8`),
        CPU only: a decode step measured 0.23x the float32 one on the full-size model (BENCHMARKS.md).
    on_status : callable, optional
        Called with a line saying what is being loaded, before the load starts.

    Raises
    ------
    BadParameterError
        An unknown ``quantize``, or int8 on a device other than the CPU (checked before loading).
    ModelUnavailableError
        The weights are neither cached nor reachable, or the folder holds no such model.
    """
    from transformers import AutoTokenizer, MusicgenMelodyForConditionalGeneration

    if quantize not in (None, *QUANTIZATIONS):
        raise BadParameterError(f"quantize={quantize!r} must be None or one of {', '.join(QUANTIZATIONS)}")
    check_model_source(name)
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(torch_device, dtype)
    if quantize and torch_device.type != "cpu":
        raise BadParameterError(f"--quantize {quantize} runs on the CPU only, not on {torch_device.type}: add "
                                "--device cpu, or leave quantization off (GPUs run bfloat16)")
    if on_status is not None:
        weights = ", int8 decoder weights" if quantize else ""
        on_status(f"loading {name} on {torch_device.type} ({str(torch_dtype).removeprefix('torch.')}{weights})...")
    try:
        model, loading = MusicgenMelodyForConditionalGeneration.from_pretrained(
            name, use_safetensors=True, dtype=torch_dtype, trust_remote_code=False, output_loading_info=True
        )
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=False)
    except (OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelUnavailableError(
            f"cannot load model {name!r} ({first_line}); without internet, point --model at a local folder "
            "holding the model (save_pretrained), or set HF_HOME to a cache that has it and HF_HUB_OFFLINE=1"
        ) from error
    if loading["missing_keys"]:
        missing = sorted(loading["missing_keys"])
        raise ModelUnavailableError(f"model {name!r} lacks {len(missing)} weights ({', '.join(missing[:3])}...): "
                                    "it is not a complete MusicGen-melody checkpoint")
    model.to(torch_device).eval()
    if quantize == "int8":
        from .quantize import quantize_int8

        quantize_int8(model)  # layer by layer: never two full copies of the decoder's weights
    return MusicModel(model=model, tokenizer=tokenizer, name=str(name), device=torch_device, dtype=torch_dtype)


@dataclass(frozen=True)
class MusicRequest:
    """One clip to score: its style text, melody reference on its timeline, and exact length."""

    style: str
    duration_s: float
    # mono float32 at 32 kHz, (1, n) or (n,), or a MonoDownmix (made per window, never whole); None: text only
    melody_audio: np.ndarray | MonoDownmix | None = None
    seed: int | None = None  # overrides GenerationOptions.seed for this clip
    styles: tuple[tuple[float, str], ...] = ()  # (time_s, text): the style from time_s on; each time must be a seam
    seams_s: tuple[float, ...] | None = None  # crossfade centres in seconds (see plan_windows); None: every stride_s
    prompt_s: float | None = None  # continuation prompt with seams_s; None: window_s - stride_s


@dataclass
class GenerationTrace:
    """What the model was given and produced for each window, for tests and reports."""

    windows: list[Window] = field(default_factory=list)
    styles: list[str] = field(default_factory=list)  # per window, the style text it was conditioned on
    chroma: list[np.ndarray | None] = field(default_factory=list)  # per window, (frames, 12) or None
    prompts: list[np.ndarray | None] = field(default_factory=list)  # per window, (codebooks, prompt) codes
    codes: list[np.ndarray] = field(default_factory=list)  # per window, (codebooks, frames) codes


def window_styles(request: MusicRequest, plan: Sequence[Window], *, frame_rate: int) -> list[str]:
    """The style of each window: the one in force at its seam (at 0 for the first window).

    Raises
    ------
    BadParameterError
        A style change that is not on a seam of ``plan`` (within one codec frame).
    """
    times = [0.0] + seam_times(plan, frame_rate=frame_rate)
    tolerance = 1 / frame_rate + 1e-9  # seam_times lie within a frame of the seams asked for
    changes = sorted(request.styles)
    for time_s, _ in changes:
        if time_s < 0 or (time_s > tolerance and not any(abs(time_s - t) <= tolerance for t in times[1:])):
            raise BadParameterError(f"style change at {time_s:g} s is not on a window seam "
                                    f"(seams at {', '.join(f'{t:g}' for t in times[1:]) or 'none'} s): put a seam there")
    return [next((text for t, text in reversed(changes) if t <= time + tolerance), request.style) for time in times]


def window_chroma(melody_audio: np.ndarray | MonoDownmix | None, window: Window, *,
                  samples_per_frame: int) -> np.ndarray | None:
    """Chroma of the melody over the window's own time span (zero-padded past the clip's end)."""
    if melody_audio is None:
        return None
    if isinstance(melody_audio, np.ndarray):
        melody_audio = melody_audio.reshape(1, -1)
    lo, hi = window.start * samples_per_frame, window.end * samples_per_frame
    span = np.zeros(hi - lo, dtype=np.float32)
    piece = np.asarray(melody_audio[:, lo:hi], dtype=np.float32)[0]
    span[: piece.size] = piece
    return melody.chroma(span)[: melody.MAX_CHROMA_FRAMES]


def _tile_chroma(features: np.ndarray | None, num_chroma: int) -> np.ndarray:
    """Tile to 235 frames exactly as the model does for one clip, so batched rows equal solo ones.
    A row without melody gets the model's own 'no melody' input (a one-hot on bin 0)."""
    if features is None:
        features = np.zeros((1, num_chroma), dtype=np.float32)
        features[:, 0] = 1
    repeats = math.ceil(melody.MAX_CHROMA_FRAMES / features.shape[0])
    return np.tile(features, (repeats, 1))[: melody.MAX_CHROMA_FRAMES]


class _CodeCollector:
    """A transformers streamer that keeps every token generate() emits and reports each step."""

    def __init__(self, on_step: Callable[[int], None] | None):
        self.parts: list[torch.Tensor] = []
        self.on_step = on_step

    def put(self, value: torch.Tensor) -> None:
        self.parts.append(value.reshape(value.shape[0], -1) if value.dim() > 1 else value[:, None])
        if len(self.parts) > 1 and self.on_step is not None:
            self.on_step(1)

    def end(self) -> None:
        raise _SamplingDone  # skip generate()'s own EnCodec decode of the whole batch (see _run_generate)


class _SamplingDone(Exception):
    """Raised by :class:`_CodeCollector` when generate() has sampled its last step."""


class _RowSampler:
    """A logits processor that draws each clip's codes from the clip's own generator.

    generate() then decodes greedily: the scores returned are 0 at the drawn code and the lowest
    float elsewhere, so its argmax is the draw. A clip's draws thus depend on its own seed and
    logits only, not on which rows share its batch (one global stream would interleave them).

    Order: MusicGen's generate() appends its classifier-free guidance processor after the caller's
    processors, and greedy decoding adds no temperature or top-k warpers. So this processor sees
    the doubled (conditional, unconditional) scores, applies guidance, temperature and top-k itself,
    as transformers' sampling does and in the same order, and returns the draw in both halves,
    which the guidance step after it maps to itself (``u + (c - u) * g == u`` when ``c == u``).
    """

    def __init__(self, generators: Sequence[torch.Generator], *, codebooks: int, guidance_scale: float,
                 temperature: float, top_k: int):
        self.generators, self.codebooks = list(generators), codebooks
        self.guidance_scale, self.temperature, self.top_k = guidance_scale, temperature, top_k

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        rows = len(self.generators) * self.codebooks
        doubled = scores.shape[0] == 2 * rows  # guidance not yet applied
        if doubled:
            cond, uncond = scores.split(rows)
            scores = uncond + (cond - uncond) * self.guidance_scale
        scores = scores / self.temperature
        kth = torch.topk(scores, min(self.top_k, scores.shape[-1])).values[..., -1:]
        probs = torch.softmax(scores.masked_fill(scores < kth, -math.inf), dim=-1)
        # all codebooks of a clip from its generator, codebook 0 first; one draw per row and step
        picks = torch.cat([torch.multinomial(p, 1, generator=g)
                           for p, g in zip(probs.split(self.codebooks), self.generators)])
        chosen = torch.full_like(scores, torch.finfo(scores.dtype).min).scatter_(1, picks, 0.0)
        return torch.cat([chosen, chosen]) if doubled else chosen


def _generators(seeds: Sequence[int], device: torch.device) -> list[torch.Generator]:
    return [torch.Generator(device=device).manual_seed(seed) for seed in seeds]


def _run_generate(mm: MusicModel, styles: Sequence[str], chromas: Sequence[np.ndarray | None], prompt: np.ndarray | None,
                  frames: int, options: GenerationOptions, seeds: Sequence[int],
                  on_step: Callable[[int], None] | None) -> np.ndarray:
    """One generate() call over a batch of rows, row i drawn from ``seeds[i]``.

    The styles must have equal token counts (see :func:`_jobs`): padding would change the
    conditioning, since MusicGen-melody prefixes the decoder with every text position, padded or not,
    and counts positions from the start of that prefix.

    Returns codes ``(rows, codebooks, frames)``; generate()'s own audio is not used (see :func:`_decode`).
    """
    from transformers import LogitsProcessorList

    model, k = mm.model, mm.num_codebooks
    rows = len(styles)
    text = mm.tokenizer(list(styles), return_tensors="pt").to(mm.device)
    features = np.stack([_tile_chroma(c, model.config.num_chroma) for c in chromas])
    prompt_frames = 0 if prompt is None else prompt.shape[-1]
    kwargs = {}
    if prompt is not None:
        kwargs["decoder_input_ids"] = torch.as_tensor(prompt, dtype=torch.long, device=mm.device).reshape(rows * k, -1)
    max_new_tokens = _decode_steps(frames, prompt_frames, k)
    collector = _CodeCollector(on_step)
    guidance = options.guidance_scale if options.guidance_scale > 1 else None
    sampler = _RowSampler(_generators(seeds, mm.device), codebooks=k, guidance_scale=options.guidance_scale,
                          temperature=options.temperature, top_k=options.top_k)
    # generate() ends by decoding every row with EnCodec in one batch, which scoretrack never uses (rows
    # are decoded alone, see _decode): on an hour of 30 s windows in batches of 64 it cost 8.5 GB and
    # 164 s (tiny model). The streamer's end(), called once sampling is over, stops generate() before it.
    with torch.inference_mode(), contextlib.suppress(_SamplingDone):
        model.generate(
            **text,
            input_features=torch.as_tensor(features, dtype=mm.dtype, device=mm.device),
            do_sample=False, temperature=None, top_k=None, top_p=None,  # _RowSampler samples
            logits_processor=LogitsProcessorList([sampler]),
            guidance_scale=guidance,
            max_new_tokens=max_new_tokens,
            streamer=collector,
            **kwargs,
        )
    return _undelay(mm, collector.parts, prompt, max_new_tokens, rows)


def _decode(mm: MusicModel, codes: np.ndarray) -> np.ndarray:
    """One row's codes ``(codebooks, frames)`` to audio ``(channels, frames * samples_per_frame)``.

    Decoded alone, over the row's own frames: EnCodec rounds differently in a batch, and its
    convolutions look ahead, so audio decoded with other rows or past the window would depend on them."""
    ids = torch.as_tensor(codes, dtype=torch.long, device=mm.device)[None, None]
    parts = [ids] if mm.model.decoder.config.audio_channels == 1 else [ids[:, :, ::2], ids[:, :, 1::2]]
    with torch.inference_mode():
        audio = torch.cat([mm.model.audio_encoder.decode(p, [None]).audio_values for p in parts], dim=1)
    return audio[0].float().cpu().numpy()


def _undelay(mm: MusicModel, parts: list[torch.Tensor], prompt: np.ndarray | None, max_new_tokens: int, rows: int) -> np.ndarray:
    """Undo the delay pattern on the streamed tokens, as generate() does before decoding."""
    decoder = mm.model.decoder
    start = mm.model.generation_config.decoder_start_token_id
    pad = mm.model.generation_config.pad_token_id
    sequence = torch.cat(parts, dim=-1)
    seed_ids = torch.full((rows * mm.num_codebooks, 1), start, dtype=torch.long)
    if prompt is not None:
        seed_ids = torch.cat([seed_ids, torch.as_tensor(prompt, dtype=torch.long).reshape(rows * mm.num_codebooks, -1)], dim=1)
    _, pattern = decoder.build_delay_pattern_mask(seed_ids, pad_token_id=start, max_length=seed_ids.shape[1] + max_new_tokens)
    sequence = decoder.apply_delay_pattern_mask(sequence, pattern)
    return sequence[sequence != pad].reshape(rows, mm.num_codebooks, -1).numpy()


@dataclass(frozen=True)
class MusicPlan:
    """A request made ready to generate: its windows, the style, token count (the batching key) and
    melody chroma of each, its seed and length. Holds no audio: made by :func:`plan_music`, so a
    caller can let the melody reference go before generation starts."""

    windows: list[Window]
    styles: list[str]
    tokens: list[int]
    seed: int
    duration_s: float
    chromas: list[np.ndarray | None] = field(default_factory=list)  # per window; empty until plan_music


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to give back this way
        return None


def give_back_freed_memory() -> None:
    """Return the freed parts of the heap to the system (glibc's ``malloc_trim``).

    Each window's chroma and each generate() call leave tens of MB of freed temporaries that the
    allocator keeps but does not reuse well: over an hour's 129 windows the process grew by 0.8 GB
    (chroma) and 0.8 GB (generation) without it, measured in ``bench/long_clip.py``."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _plan(mm: MusicModel, request: MusicRequest, options: GenerationOptions) -> MusicPlan:
    windows = plan_windows(request.duration_s, window_s=options.window_s, stride_s=options.stride_s,
                           frame_rate=mm.frame_rate, sample_rate=mm.sample_rate,
                           continuation=not options.independent_windows, seams_s=request.seams_s,
                           prompt_s=request.prompt_s)
    styles = window_styles(request, windows, frame_rate=mm.frame_rate)
    tokens = {style: len(mm.tokenizer(style).input_ids) for style in set(styles)}
    seed = request.seed if request.seed is not None else options.seed
    return MusicPlan(windows, styles, [tokens[s] for s in styles], seed, request.duration_s)


def plan_music(mm: MusicModel, requests: Sequence[MusicRequest],
               options: GenerationOptions = GenerationOptions()) -> list[MusicPlan]:
    """Plan each request's windows and compute each window's melody chroma (the only use of the
    melody audio), checking every setting before any generation.

    Raises
    ------
    BadParameterError
        Bad options, seams or style change times.
    """
    options.validate()
    per_frame = mm.sample_rate // mm.frame_rate
    plans = []
    for request in requests:
        plan = _plan(mm, request, options)
        chromas = []
        for window in plan.windows:
            chromas.append(window_chroma(request.melody_audio, window, samples_per_frame=per_frame))
            give_back_freed_memory()
        plans.append(replace(plan, chromas=chromas))
    return plans


def total_steps(mm: MusicModel, requests: Sequence[MusicRequest], options: GenerationOptions) -> int:
    """Decode steps :func:`generate_music` will run (for progress bars)."""
    plans = [_plan(mm, r, options) for r in requests]
    return sum(_decode_steps(_job_frames(plans, job), plans[job[0][0]].windows[job[0][1]].prompt, mm.num_codebooks)
               for job in _jobs(plans, options))


def _decode_steps(frames: int, prompt_frames: int, codebooks: int) -> int:
    """generate() steps (max_new_tokens) for ``frames`` frames after a prompt: the delay pattern
    costs ``codebooks - 1`` steps more."""
    return frames - prompt_frames + codebooks - 1


def _job_frames(plans: list[MusicPlan], job: list[tuple[int, int]]) -> int:
    """Frames one generate() call produces: its longest window's (shorter rows are cut after)."""
    return max(plans[i].windows[w].frames for i, w in job)


def generate_music(mm: MusicModel, requests: Sequence[MusicRequest | MusicPlan],
                   options: GenerationOptions = GenerationOptions(), *, on_step: Callable[[int], None] | None = None,
                   traces: list[GenerationTrace] | None = None, on_disk: bool = False) -> list[np.ndarray | DiskAudio]:
    """Generate music of each request's exact length, batching clips into shared generate() calls.

    Continuation mode (default): window k of every clip is generated in one call, each row prompted
    with its own window k-1's last codes; windows are joined with an equal-gain crossfade inside the
    overlap, where both windows hold the same codes. Independent mode: all windows of a clip are rows
    of one call, joined by equal-power crossfades over the whole overlap. A window whose style
    differs from the one before still continues its codes, so the music turns rather than restarts.

    A clip's music depends only on its request and the options, not on its batch: window k draws
    from its own generator seeded ``seed + k``, and rows share a call only when their style texts
    have the same token count (no padding).

    Memory: a call holds ``batch_size`` rows (doubled with guidance); each row's KV cache is about
    ``2 * layers * hidden * 1750 * bytes`` (1 GB for musicgen-melody in float32), on top of the weights.

    Parameters
    ----------
    mm : MusicModel
    requests : sequence of MusicRequest or MusicPlan
        Plans from :func:`plan_music` (made with the same options) hold no melody audio, so a long
        clip's reference need not stay in memory while its music is generated.
    options : GenerationOptions
    on_step : callable, optional
        Called with 1 after every decode step.
    traces : list, optional
        When given, one :class:`GenerationTrace` per request is appended.
    on_disk : bool
        Keep each clip's music in a :class:`DiskAudio` (a temporary file) instead of memory: an
        hour is 0.46 GB at 32 kHz mono.

    Returns
    -------
    list of np.ndarray or DiskAudio
        float32 ``(channels, round(duration_s * sample_rate))`` per request.

    Raises
    ------
    BadParameterError
        Bad options, seams or style change times (checked before any generation).
    """
    options.validate()
    plans = [r if isinstance(r, MusicPlan) else plan_music(mm, [r], options)[0] for r in requests]
    per_frame = mm.sample_rate // mm.frame_rate
    count = [len(p.windows) for p in plans]
    run_traces = [GenerationTrace(windows=list(p.windows), styles=[""] * n, chroma=[None] * n, prompts=[None] * n,
                                  codes=[None] * n) for p, n in zip(plans, count)]
    shapes = [(mm.model.decoder.config.audio_channels, media.sample_count(p.duration_s, mm.sample_rate)) for p in plans]
    joiners = [_Joiner(p.windows, per_frame, options, mm.sample_rate,
                       DiskAudio(*shape) if on_disk else np.zeros(shape, np.float32)) for p, shape in zip(plans, shapes)]
    for job in _jobs(plans, options):
        rows = [(i, plans[i].windows[w]) for i, w in job]
        prompt_frames = rows[0][1].prompt
        chromas = [plans[i].chromas[win.index] for i, win in rows]
        prompt = None
        if prompt_frames:
            prompt = np.stack([run_traces[i].codes[win.index - 1][:, -prompt_frames:] for i, win in rows])
        styles = [plans[i].styles[win.index] for i, win in rows]
        seeds = [plans[i].seed + win.index for i, win in rows]
        codes = _run_generate(mm, styles, chromas, prompt, _job_frames(plans, job), options, seeds, on_step)
        for row, (i, win) in enumerate(rows):
            trace = run_traces[i]
            trace.styles[win.index], trace.chroma[win.index] = styles[row], chromas[row]
            trace.prompts[win.index] = None if prompt is None else prompt[row]
            trace.codes[win.index] = codes[row, :, : win.frames]
            joiners[i].add(win, _decode(mm, codes[row, :, : win.frames]))
        give_back_freed_memory()
    if traces is not None:
        traces.extend(run_traces)
    return [joiner.music for joiner in joiners]


def _jobs(plans: list[MusicPlan], options: GenerationOptions) -> list[list[tuple[int, int]]]:
    """Group (clip, window) pairs into generate() calls of at most batch_size rows.

    Rows share a call only with equal style token counts. Continuation: window k of several clips
    (they share the prompt length). Independent: windows of one clip, several clips mixed when they fit."""
    if options.independent_windows:
        steps = [[(i, w.index) for i, plan in enumerate(plans) for w in plan.windows]]
    else:
        steps = [[(i, k) for i, plan in enumerate(plans) if len(plan.windows) > k]
                 for k in range(max(len(p.windows) for p in plans))]
    jobs = []
    for pairs in steps:
        groups: dict[int, list[tuple[int, int]]] = {}
        for i, w in pairs:
            groups.setdefault(plans[i].tokens[w], []).append((i, w))
        for group in groups.values():
            jobs += [group[s : s + options.batch_size] for s in range(0, len(group), options.batch_size)]
    return jobs


class DiskAudio:
    """float32 audio ``(channels, samples)`` kept in a temporary file instead of memory.

    Read and written by spans, ``audio[:, a:b]``, as the mixer and the writers read music block by
    block (:func:`scoretrack.mix.mix` takes it in place of an array); ``np.asarray(audio)`` reads it
    whole. The file is removed from its folder as soon as it is made, so nothing is left behind, even
    by a killed process; its space is freed when the object is.
    """

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, channels: int, samples: int, *, folder: str | os.PathLike | None = None):
        self.shape = (channels, samples)
        self._file = tempfile.TemporaryFile(dir=folder, buffering=0)
        weakref.finalize(self, self._file.close)  # closed with this object, not left to the file's own finalizer
        size = channels * samples * self.dtype.itemsize
        try:  # claim the space now (where the system can), so a full disk fails before generation, not after
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(self._file.fileno(), 0, max(size, 1))
            self._file.truncate(size)  # reads as silence until written
        except OSError as error:
            self._file.close()
            where = folder or tempfile.gettempdir()
            raise ScoretrackError(f"cannot keep {size / 1e6:.0f} MB of music in a temporary file in {where}: "
                                  f"{media.write_cause(error, where)} (free space, raise the limit, or set TMPDIR "
                                  "to a folder with more room)") from None

    def _offset(self, channel: int, sample: int) -> int:
        return (channel * self.shape[1] + sample) * self.dtype.itemsize

    def __getitem__(self, key) -> np.ndarray:
        start, stop = column_span(key, self.shape[1])
        out = np.empty((self.shape[0], stop - start), self.dtype)
        for channel, row in enumerate(out):
            self._file.seek(self._offset(channel, start))
            if self._file.readinto(row.data.cast("B")) != row.nbytes:
                raise OSError(f"short read from the temporary music file at sample {start}")
        return out

    def __setitem__(self, key, value) -> None:
        start, stop = column_span(key, self.shape[1])
        rows = np.ascontiguousarray(np.broadcast_to(np.asarray(value, self.dtype), (self.shape[0], stop - start)))
        for channel, row in enumerate(rows):
            self._file.seek(self._offset(channel, start))
            if self._file.write(row.data) != row.nbytes:
                raise OSError(f"short write to the temporary music file at sample {start}")

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self[:, :]
        return whole if dtype is None else whole.astype(dtype, copy=False)


class _Joiner:
    """A clip's music written into ``music`` (zeroed, ``(channels, samples)``: an array or a
    :class:`DiskAudio`) as its windows are decoded, in any order, each window crossfaded into the one
    before: linear in the clip's length, with no copy of the whole."""

    def __init__(self, windows: Sequence[Window], per_frame: int, options: GenerationOptions, sample_rate: int,
                 music: np.ndarray | DiskAudio):
        self.windows, self.per_frame, self.options, self.sample_rate = windows, per_frame, options, sample_rate
        self.music = music
        self.waiting: dict[int, np.ndarray] = {}
        self.placed = 0

    def add(self, window: Window, audio: np.ndarray) -> None:
        """Take ``window``'s decoded audio, ``(channels, window.frames * per_frame)``."""
        self.waiting[window.index] = audio
        while self.placed in self.waiting:
            self._place(self.windows[self.placed], self.waiting.pop(self.placed))
            self.placed += 1

    def _place(self, window: Window, audio: np.ndarray) -> None:
        start = window.start * self.per_frame
        if window.index == 0:
            self._write(start, audio)
            return
        overlap = (self.windows[window.index - 1].end - window.start) * self.per_frame
        if self.options.independent_windows:
            fade, curve = overlap, "equal_power"
        else:
            fade, curve = min(overlap, int(round(self.options.crossfade_s * self.sample_rate))), "equal_gain"
        # centre the fade in the overlap, where both windows have context on both sides (seam_times)
        lead = (overlap - fade) // 2
        faded = slice(start + lead, start + lead + fade)
        self._write(faded.start, crossfade_join(self.music[:, faded], audio[:, lead : lead + fade], fade_samples=fade,
                                                curve=curve))
        self._write(faded.stop, audio[:, lead + fade :])

    def _write(self, start: int, audio: np.ndarray) -> None:
        """Write ``audio`` from sample ``start``, cut at the clip's end (the last frame runs past it)."""
        stop = min(self.music.shape[1], start + audio.shape[1])
        if stop > start:
            self.music[:, start:stop] = audio[:, : stop - start]
