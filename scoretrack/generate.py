"""Long-form MusicGen-melody generation: windows that continue each other, each conditioned on the
melody of its own time span, joined into music of an exact length.

The window plan (:func:`plan_windows`) is pure arithmetic on frames; :func:`generate_music` runs the
model over it. A window after the first starts with the previous window's last codes, passed to
``generate()`` as ``decoder_input_ids`` (un-delayed EnCodec codes, ``(batch * codebooks, frames)``),
so the model continues the music instead of starting anew (as audiocraft's long-form generation does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from . import media, melody
from .errors import BadParameterError, ModelUnavailableError
from .mix import crossfade_join

DEFAULT_MODEL = "facebook/musicgen-melody"
MAX_WINDOW_S = 30.0  # the melody conditioner sees at most 235 chroma frames = 30 s at 32 kHz


@dataclass(frozen=True)
class GenerationOptions:
    """How music is generated. Defaults follow audiocraft's MusicGen."""

    window_s: float = 30.0  # length of one generate() window, at most 30 s
    stride_s: float = 18.0  # advance between windows; window_s - stride_s seconds are continued
    guidance_scale: float = 3.0  # classifier-free guidance; 1 turns it off (half the compute)
    temperature: float = 1.0  # sampling temperature, > 0
    top_k: int = 250  # sample among the k likeliest codes
    seed: int = 0  # same seed and settings give the same music
    crossfade_s: float = 2.0  # equal-gain crossfade length inside each overlap (continuation)
    independent_windows: bool = False  # all windows in one batch, no continuation, equal-power joins
    batch_size: int = 4  # rows per generate() call (clips, or windows when independent)

    def validate(self) -> None:
        """Raise :class:`BadParameterError` naming the first bad value."""
        if not 0 < self.window_s <= MAX_WINDOW_S:
            raise BadParameterError(f"window_s={self.window_s} must be in (0, {MAX_WINDOW_S}] seconds")
        if not 0 < self.stride_s <= self.window_s:
            raise BadParameterError(f"stride_s={self.stride_s} must be in (0, window_s={self.window_s}]")
        if not self.independent_windows and self.stride_s >= self.window_s:
            raise BadParameterError(f"stride_s={self.stride_s} must be below window_s={self.window_s} to continue windows")
        if self.guidance_scale < 1:
            raise BadParameterError(f"guidance_scale={self.guidance_scale} must be >= 1")
        if self.temperature <= 0:
            raise BadParameterError(f"temperature={self.temperature} must be positive")
        if self.top_k < 1:
            raise BadParameterError(f"top_k={self.top_k} must be a positive integer")
        if self.crossfade_s < 0:
            raise BadParameterError(f"crossfade_s={self.crossfade_s} must be >= 0")
        if self.batch_size < 1:
            raise BadParameterError(f"batch_size={self.batch_size} must be a positive integer")


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
                 continuation: bool = True) -> list[Window]:
    """Split a clip into windows of at most ``window_s`` advancing by ``stride_s``.

    The windows cover ``ceil(round(duration_s * sample_rate) / (sample_rate / frame_rate))`` frames:
    enough codec frames for exactly ``round(duration_s * sample_rate)`` samples.

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

    Returns
    -------
    list of Window
    """
    if duration_s <= 0:
        raise BadParameterError(f"duration_s={duration_s} must be positive")
    samples_per_frame = sample_rate // frame_rate
    total = math.ceil(media.sample_count(duration_s, sample_rate) / samples_per_frame)
    window = max(1, int(round(window_s * frame_rate)))
    stride = max(1, int(round(stride_s * frame_rate)))
    windows = [Window(0, 0, min(window, total), 0)]
    while windows[-1].end < total:
        previous = windows[-1]
        start = previous.start + stride
        prompt = previous.end - start if continuation else 0
        windows.append(Window(previous.index + 1, start, min(start + window, total), prompt))
    return windows


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


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; anything else is passed to :class:`torch.device`."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise BadParameterError(f"device={device!r} is not a torch device (try auto, cpu, cuda, mps)") from error


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


def load_model(name: str = DEFAULT_MODEL, *, device: str = "auto", dtype: str = "auto") -> MusicModel:
    """Load MusicGen-melody from a hub id or a local folder (safetensors only, no remote code).

    Raises
    ------
    ModelUnavailableError
        The weights are neither cached nor reachable, or the folder holds no such model.
    """
    from transformers import AutoTokenizer, MusicgenMelodyForConditionalGeneration

    torch_device = pick_device(device)
    torch_dtype = pick_dtype(torch_device, dtype)
    try:
        model = MusicgenMelodyForConditionalGeneration.from_pretrained(
            name, use_safetensors=True, dtype=torch_dtype, trust_remote_code=False
        )
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=False)
    except (OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelUnavailableError(
            f"cannot load model {name!r} ({first_line}); without internet, point --model at a local folder "
            "holding the model (save_pretrained), or set HF_HOME to a cache that has it and HF_HUB_OFFLINE=1"
        ) from error
    model.to(torch_device).eval()
    return MusicModel(model=model, tokenizer=tokenizer, name=str(name), device=torch_device, dtype=torch_dtype)


@dataclass(frozen=True)
class MusicRequest:
    """One clip to score: its style text, melody reference on its timeline, and exact length."""

    style: str
    duration_s: float
    melody_audio: np.ndarray | None = None  # mono float32 at 32 kHz, (1, n) or (n,); None: text only
    seed: int | None = None  # overrides GenerationOptions.seed for this clip


@dataclass
class GenerationTrace:
    """What the model was given and produced for each window, for tests and reports."""

    windows: list[Window] = field(default_factory=list)
    chroma: list[np.ndarray | None] = field(default_factory=list)  # per window, (frames, 12) or None
    prompts: list[np.ndarray | None] = field(default_factory=list)  # per window, (codebooks, prompt) codes
    codes: list[np.ndarray] = field(default_factory=list)  # per window, (codebooks, frames) codes


def window_chroma(melody_audio: np.ndarray | None, window: Window, *, samples_per_frame: int) -> np.ndarray | None:
    """Chroma of the melody over the window's own time span (zero-padded past the clip's end)."""
    if melody_audio is None:
        return None
    flat = np.asarray(melody_audio, dtype=np.float32).reshape(-1)
    lo, hi = window.start * samples_per_frame, window.end * samples_per_frame
    span = np.zeros(hi - lo, dtype=np.float32)
    piece = flat[lo:hi]
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
        pass


def _run_generate(mm: MusicModel, styles: Sequence[str], chromas: Sequence[np.ndarray | None], prompt: np.ndarray | None,
                  frames: int, options: GenerationOptions, seed: int,
                  on_step: Callable[[int], None] | None) -> tuple[np.ndarray, np.ndarray]:
    """One generate() call over a batch of rows.

    Returns audio ``(rows, channels, frames * samples_per_frame)`` and codes ``(rows, codebooks, frames)``.
    """
    model, k = mm.model, mm.num_codebooks
    rows = len(styles)
    text = mm.tokenizer(list(styles), padding=True, return_tensors="pt").to(mm.device)
    features = np.stack([_tile_chroma(c, model.config.num_chroma) for c in chromas])
    prompt_frames = 0 if prompt is None else prompt.shape[-1]
    kwargs = {}
    if prompt is not None:
        kwargs["decoder_input_ids"] = torch.as_tensor(prompt, dtype=torch.long, device=mm.device).reshape(rows * k, -1)
    max_new_tokens = _decode_steps(frames, prompt_frames, k)
    collector = _CodeCollector(on_step)
    torch.manual_seed(seed)
    with torch.inference_mode():
        audio = model.generate(
            **text,
            input_features=torch.as_tensor(features, dtype=mm.dtype, device=mm.device),
            do_sample=True,
            guidance_scale=options.guidance_scale if options.guidance_scale > 1 else None,
            temperature=options.temperature,
            top_k=options.top_k,
            max_new_tokens=max_new_tokens,
            streamer=collector,
            **kwargs,
        )
    codes = _undelay(mm, collector.parts, prompt, max_new_tokens, rows)
    return audio.float().cpu().numpy(), codes


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


def total_steps(mm: MusicModel, requests: Sequence[MusicRequest], options: GenerationOptions) -> int:
    """Decode steps :func:`generate_music` will run (for progress bars)."""
    plans = [_plan(mm, r, options) for r in requests]
    return sum(_decode_steps(_job_frames(plans, job), plans[job[0][0]][job[0][1]].prompt, mm.num_codebooks)
               for job in _jobs(plans, options))


def _decode_steps(frames: int, prompt_frames: int, codebooks: int) -> int:
    """generate() steps (max_new_tokens) for ``frames`` frames after a prompt: the delay pattern
    costs ``codebooks - 1`` steps more."""
    return frames - prompt_frames + codebooks - 1


def _job_frames(plans: list[list[Window]], job: list[tuple[int, int]]) -> int:
    """Frames one generate() call produces: its longest window's (shorter rows are cut after)."""
    return max(plans[i][w].frames for i, w in job)


def _plan(mm: MusicModel, request: MusicRequest, options: GenerationOptions) -> list[Window]:
    return plan_windows(request.duration_s, window_s=options.window_s, stride_s=options.stride_s,
                        frame_rate=mm.frame_rate, sample_rate=mm.sample_rate,
                        continuation=not options.independent_windows)


def generate_music(mm: MusicModel, requests: Sequence[MusicRequest], options: GenerationOptions = GenerationOptions(),
                   *, on_step: Callable[[int], None] | None = None,
                   traces: list[GenerationTrace] | None = None) -> list[np.ndarray]:
    """Generate music of each request's exact length, batching clips into shared generate() calls.

    Continuation mode (default): window k of every clip is generated in one call, each row prompted
    with its own window k-1's last codes; windows are joined with an equal-gain crossfade inside the
    overlap, where both windows hold the same codes. Independent mode: all windows of a clip are rows
    of one call, joined by equal-power crossfades over the whole overlap.

    Memory: a call holds ``batch_size`` rows (doubled with guidance); each row's KV cache is about
    ``2 * layers * hidden * 1750 * bytes`` (1 GB for musicgen-melody in float32), on top of the weights.

    Parameters
    ----------
    mm : MusicModel
    requests : sequence of MusicRequest
    options : GenerationOptions
    on_step : callable, optional
        Called with 1 after every decode step.
    traces : list, optional
        When given, one :class:`GenerationTrace` per request is appended.

    Returns
    -------
    list of np.ndarray
        float32 ``(channels, round(duration_s * sample_rate))`` per request.
    """
    options.validate()
    plans = [_plan(mm, r, options) for r in requests]
    per_frame = mm.sample_rate // mm.frame_rate
    run_traces = [GenerationTrace(windows=list(p)) for p in plans]
    pieces: list[list[np.ndarray]] = [[] for _ in requests]
    for job in _jobs(plans, options):
        rows = [(i, plans[i][w]) for i, w in job]
        frames = _job_frames(plans, job)
        prompt_frames = rows[0][1].prompt
        chromas = [window_chroma(requests[i].melody_audio, win, samples_per_frame=per_frame) for i, win in rows]
        prompt = None
        if prompt_frames:
            prompt = np.stack([run_traces[i].codes[win.index - 1][:, -prompt_frames:] for i, win in rows])
        first = requests[rows[0][0]]
        seed = (first.seed if first.seed is not None else options.seed) + rows[0][1].index
        audio, codes = _run_generate(mm, [requests[i].style for i, _ in rows], chromas, prompt, frames, options, seed, on_step)
        for row, (i, win) in enumerate(rows):
            run_traces[i].chroma.append(chromas[row])
            run_traces[i].prompts.append(None if prompt is None else prompt[row])
            run_traces[i].codes.append(codes[row, :, : win.frames])
            pieces[i].append(audio[row, :, : win.frames * per_frame])
    results = []
    for i, request in enumerate(requests):
        total = media.sample_count(request.duration_s, mm.sample_rate)
        results.append(_join(pieces[i], plans[i], per_frame, options, mm.sample_rate)[:, :total])
    if traces is not None:
        traces.extend(run_traces)
    return results


def _jobs(plans: list[list[Window]], options: GenerationOptions) -> list[list[tuple[int, int]]]:
    """Group (clip, window) pairs into generate() calls of at most batch_size rows.

    Continuation: window k of several clips (they share the prompt length). Independent: the windows
    of one clip, several clips mixed when they fit."""
    if options.independent_windows:
        pairs = [(i, w.index) for i, plan in enumerate(plans) for w in plan]
        return [pairs[s : s + options.batch_size] for s in range(0, len(pairs), options.batch_size)]
    jobs = []
    for k in range(max(len(p) for p in plans)):
        clips = [i for i, plan in enumerate(plans) if len(plan) > k]
        jobs += [[(i, k) for i in clips[s : s + options.batch_size]] for s in range(0, len(clips), options.batch_size)]
    return jobs


def _join(pieces: list[np.ndarray], plan: list[Window], per_frame: int, options: GenerationOptions, sample_rate: int) -> np.ndarray:
    out = pieces[0]
    for piece, window in zip(pieces[1:], plan[1:]):
        overlap = (plan[window.index - 1].end - window.start) * per_frame
        if options.independent_windows:
            fade, curve = overlap, "equal_power"
        else:
            fade, curve = min(overlap, int(round(options.crossfade_s * sample_rate))), "equal_gain"
        # centre the fade in the overlap, where both windows have context on both sides
        lead = (overlap - fade) // 2
        out = crossfade_join(out[:, : out.shape[1] - (overlap - lead - fade)], piece[:, lead:],
                             fade_samples=fade, curve=curve)
    return out
