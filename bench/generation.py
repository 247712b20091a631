"""Generation speed of the full-size musicgen-melody architecture, each row against plain
``model.generate()`` on the same model, inputs and settings in the same run (random weights: the real
model's speed and memory, not its music).

Rows (best of --repeats, the two sides interleaved, since the machine's load varies):
1. scoretrack's windowed path (``generate_music`` on a clip) against plain ``generate()`` with the same
   text, chroma, guidance, sampling settings and decode steps: wall time and median decode step. On
   CUDA: one clip (real-time factor) and a batch of --batch clips (throughput).
2. CPU: each int8 route against float32, plain ``generate()`` after a short continuation prompt, the
   decoder's linear layers swapped in and out of the one model (one full-size model per process):
   median s/step, ratio, and the floor of reading the decoder's weight bytes at the READ bandwidth
   (a large tensor sum) measured in the same run.
3. CPU: top-1 agreement and KL(float32 || int8) of teacher-forced next-token distributions (guided),
   real style text and chroma of a real recording, seeded random codes.
4. CUDA with --compile: plain ``generate()`` with a static KV cache (transformers compiles the forward).

``--peak-rss`` instead loads the model (--model, or the full-size architecture built from its config)
in fresh subprocesses, float32 alone and float32 + ``quantize_int8``, reporting each one's peak RSS.

Usage: python bench/generation.py [--device auto] [--model DIR] [--routes ...] [--sections ...] [--peak-rss]
"""

import argparse
import copy
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from scoretrack import decode, generate, media, melody, sampling
from scoretrack.generate import GenerationOptions, MusicRequest
from scoretrack.model import MusicModel, load_model, pick_device, pick_dtype
from scoretrack.options import MAX_WINDOW_S
from scoretrack.quantize import Int8Linear, decoder_linears, next_token_log_probs, quantize_int8
from scoretrack.testing import full_size_config, random_model, tiny_tokenizer

MEDIA = Path(os.environ.get("SCORETRACK_MEDIA", Path(__file__).resolve().parents[2] / "shared" / "media"))
STYLE = "cinematic strings"
RECORDING = "music_brahms_hungarian5.ogg"


def read_bandwidth(device: torch.device) -> float:
    """Bytes per second of summing a 1 GiB float32 tensor (bytes read only; a copy also writes)."""
    data = torch.ones(2**28, dtype=torch.float32, device=device)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        data.sum().item()
        best = min(best, time.perf_counter() - start)
    return data.numel() * 4 / best


class StepClock:
    """A generate() streamer that stamps each put: the prompt first, then one per decode step."""

    def __init__(self):
        self.stamps = []

    def put(self, _value):
        self.stamps.append(time.perf_counter())

    def end(self):
        pass

    def step_median(self) -> float:
        return float(np.median(np.diff(self.stamps[1:])))


def plain_generate(mm: MusicModel, styles, chroma: np.ndarray, *, steps: int, guidance: float, prompt=None,
                   **extra) -> tuple[float, float]:
    """Plain model.generate() with scoretrack's default sampling: (wall s, median s per decode step)."""
    text = mm.tokenizer(list(styles), padding=True, return_tensors="pt").to(mm.device)
    features = torch.as_tensor(np.stack([chroma] * len(styles)), dtype=mm.dtype, device=mm.device)
    if prompt is not None:
        extra["decoder_input_ids"] = torch.as_tensor(prompt, device=mm.device).reshape(-1, prompt.shape[-1])
    clock = StepClock()
    torch.manual_seed(0)
    start = time.perf_counter()
    with torch.inference_mode():
        mm.model.generate(**text, input_features=features, do_sample=True, top_k=250, temperature=1.0,
                          guidance_scale=guidance if guidance > 1 else None, max_new_tokens=steps, streamer=clock,
                          **extra)
    return time.perf_counter() - start, clock.step_median()


def windowed(mm: MusicModel, requests, options: GenerationOptions) -> tuple[float, float]:
    """scoretrack's generate_music: (wall s, median s per decode step)."""
    clock = StepClock()
    clock.put(None)
    start = time.perf_counter()
    generate.generate_music(mm, requests, options, on_step=lambda _: clock.put(None))
    return time.perf_counter() - start, clock.step_median()


def one_window_inputs(mm, audio, clip_s: float, rows: int, guidance: float, takes: int = 1):
    """A one-window clip as scoretrack requests it (``rows`` clips of ``takes`` takes), and the steps and
    chroma plain generate() needs for it."""
    options = GenerationOptions(guidance_scale=guidance, batch_size=rows)  # clips up to 30 s: one window
    requests = [MusicRequest(STYLE, clip_s, audio, take_seeds=tuple(range(takes)))] * rows
    steps = generate.total_steps(mm, requests, options)
    chroma = melody.chroma(audio[:, : media.sample_count(clip_s, mm.sample_rate)])[: melody.MAX_CHROMA_FRAMES]
    return options, requests, steps, chroma


def compare_with_plain(mm, audio, clip_s: float, rows: int, guidance: float, repeats: int, takes: int = 1) -> tuple:
    """Best (wall s, s/step) of generate_music and of plain generate() doing the same steps, interleaved."""
    options, requests, steps, chroma = one_window_inputs(mm, audio, clip_s, rows, guidance, takes)
    ours, plain = (np.inf, np.inf), (np.inf, np.inf)
    for _ in range(repeats):
        ours = np.minimum(ours, windowed(mm, requests, options))
        plain = np.minimum(plain, plain_generate(mm, [STYLE] * rows * takes, chroma, steps=steps, guidance=guidance))
    return ours, plain


def _random_kv(mm: MusicModel, batch: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    config = mm.model.decoder.config
    heads = config.num_attention_heads
    shape = (batch, heads, length, config.hidden_size // heads)
    return (torch.randn(shape, dtype=mm.dtype, device=mm.device), torch.randn(shape, dtype=mm.dtype, device=mm.device))


def _sync(mm: MusicModel) -> None:
    if mm.device.type == "cuda":
        torch.cuda.synchronize(mm.device)


def ours_step(mm: MusicModel, cond, position: int, options: GenerationOptions, steps: int) -> float:
    """Median s of scoretrack's decode step (decoder, draw, delay pattern) at ``position``, its cache filled
    with random keys and values up to there (the step's time does not depend on what they hold)."""
    rows, frames = 1, max(position + steps + 8, 1500)
    delay = decode.delays(mm).to(mm.device)
    seq, free = decode.delayed_sequence(None, rows=rows, frames=frames, delay=delay, start=decode.start_token(mm.model))
    cache = decode.StaticCache(mm, 2 * rows if options.guidance_scale > 1 else rows, cond.length + seq.shape[2])
    for layer in range(cache.keys.shape[0]):
        cache.keys[layer], cache.values[layer] = _random_kv(mm, cache.keys.shape[1], cache.keys.shape[3])
    lane = sampling.lanes(mm.num_codebooks, mm.model.decoder.config.vocab_size, mm.device)
    keys = sampling.row_keys(torch.tensor([0], device=mm.device), torch.tensor([0], device=mm.device))
    state = decode.WindowState(seq, free, keys, lane, cond, cache, 1)
    decode.advance(mm, state, torch.tensor(position - 1, device=mm.device), options, cond.length + position)  # warm-up
    times = []
    for t in range(position, position + steps):
        start = time.perf_counter()
        decode.advance(mm, state, torch.tensor(t, device=mm.device), options, cond.length + t + 1)
        _sync(mm)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def plain_step(mm: MusicModel, cond, position: int, guidance: float, steps: int) -> float:
    """Median s of transformers' own decode step at ``position``: the decoder's forward with its DynamicCache
    holding random keys and values up to there, then generate()'s guidance and top-k sampling."""
    from transformers import DynamicCache, EncoderDecoderCache

    batch = 2 if guidance > 1 else 1
    cache = EncoderDecoderCache(DynamicCache(config=mm.model.decoder.config), DynamicCache(config=mm.model.decoder.config))
    for layer in range(mm.model.decoder.config.num_hidden_layers):
        cache.self_attention_cache.update(*_random_kv(mm, batch, cond.length + position), layer)
    ids = torch.zeros((batch * mm.num_codebooks, 1), dtype=torch.long, device=mm.device)
    times = []
    for _ in range(steps + 1):  # the first is a warm-up
        start = time.perf_counter()
        logits = mm.model.decoder(input_ids=ids, cache=cache, use_cache=True).logits[:, -1]
        if batch == 2:
            cond_logits, uncond = logits.split(mm.num_codebooks)
            logits = uncond + (cond_logits - uncond) * guidance
        kth = torch.topk(logits, min(250, logits.shape[-1])).values[..., -1:]
        ids = torch.multinomial(torch.softmax(logits.masked_fill(logits < kth, -np.inf), -1), 1).repeat(batch, 1)
        _sync(mm)
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def step_at_positions(mm: MusicModel, positions: list[int], *, steps: int, guidance: float, repeats: int) -> None:
    """scoretrack's decode step against transformers' at each window position, one clip, interleaved."""
    options = GenerationOptions(guidance_scale=guidance)
    chroma = [np.eye(12, dtype=np.float32)[np.arange(melody.MAX_CHROMA_FRAMES) % 12]]
    with torch.inference_mode():
        cond = decode.conditioning(mm, [STYLE], chroma if mm.takes_melody else None, guided=guidance > 1)
        print(f"\ndecode step at a window position, one clip, guidance {guidance}, {steps} steps x {repeats} (median, "
              f"best of repeats); prefix of {cond.length} conditioning positions")
        print("| position | scoretrack s/step | transformers s/step | ratio |\n|---|---|---|---|")
        for position in positions:
            ours, plain = np.inf, np.inf
            for _ in range(repeats):
                ours = min(ours, ours_step(mm, cond, position, options, steps))
                plain = min(plain, plain_step(mm, cond, position, guidance, steps))
            print(f"| {position} | {ours:.4f} | {plain:.4f} | {ours / plain:.2f} |", flush=True)


def route_builders() -> dict:
    """Ways to turn one float Linear into an int8 module (the first is scoretrack's)."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

    def torchao(config):
        def build(layer):
            holder = torch.nn.Sequential(copy.deepcopy(layer))
            quantize_(holder, config)
            return holder[0]
        return build

    def torch_ao_dynamic(layer):
        return torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(copy.deepcopy(layer)), {torch.nn.Linear},
                                                      dtype=torch.qint8)[0]

    return {
        "int8pack": Int8Linear.from_float,
        "torchao-weight-only": torchao(Int8WeightOnlyConfig()),
        "torchao-dynamic": torchao(Int8DynamicActivationInt8WeightConfig()),
        "torch.ao-dynamic": torch_ao_dynamic,
    }


ROUTE_NAMES = {
    "int8pack": "int8 weights, bf16 activations, aten._weight_int8pack_mm (quantize_int8)",
    "torchao-weight-only": "torchao 0.18 Int8WeightOnlyConfig, eager",
    "torchao-dynamic": "torchao 0.18 Int8DynamicActivationInt8WeightConfig, eager",
    "torch.ao-dynamic": "torch.ao dynamic int8 (fbgemm; deprecated)",
}


def random_codes(mm, frames: int) -> np.ndarray:
    """Seeded random codes ``(codebooks, frames)``: a random EnCodec maps real audio to a few constant codes."""
    vocabulary = mm.model.config.decoder.vocab_size
    return np.random.default_rng(0).integers(0, vocabulary, size=(mm.num_codebooks, frames))


def int8_routes(mm, routes, *, prompt_s: float, steps: int, guidance: float, repeats: int, bandwidth: float):
    """Per route: median s/step of float32 and of the route, interleaved, on the same model."""
    slots = decoder_linears(mm.model)
    originals = [getattr(parent, name) for parent, name in slots]
    float_bytes = sum(p.numel() * p.element_size() for p in mm.model.decoder.parameters())
    linear_bytes = sum(layer.weight.numel() * layer.weight.element_size() for layer in originals)
    prompt_frames = int(round(prompt_s * mm.frame_rate))
    prompt = random_codes(mm, prompt_frames)[None]
    chroma = np.eye(12, dtype=np.float32)[np.arange(melody.MAX_CHROMA_FRAMES) % 12]  # any melody: speed only
    builders = route_builders()
    print(f"\nfloat32 decoder {float_bytes / 1e9:.2f} GB/step, floor {float_bytes / bandwidth:.3f} s at the read "
          f"bandwidth; {prompt_frames}-frame prompt, {steps} timed steps, guidance {guidance}")
    print("| route | float32 s/step | int8 s/step | int8 / float32 | int8 floor s | bytes/step GB |")
    print("|---|---|---|---|---|---|")
    for route in routes:
        shadow = [builders[route](layer) for layer in originals]
        best = [np.inf, np.inf]
        for _ in range(repeats):
            for side, modules in enumerate((originals, shadow)):
                for (parent, name), module in zip(slots, modules):
                    setattr(parent, name, module)
                _, step = plain_generate(mm, [STYLE], chroma, steps=steps + 1, guidance=guidance, prompt=prompt)
                best[side] = min(best[side], step)
        for (parent, name), layer in zip(slots, originals):
            setattr(parent, name, layer)
        step_bytes = float_bytes - linear_bytes * 3 / 4
        print(f"| {ROUTE_NAMES[route]} | {best[0]:.3f} | {best[1]:.3f} | {best[1] / best[0]:.2f} | "
              f"{step_bytes / bandwidth:.3f} | {step_bytes / 1e9:.2f} |", flush=True)
        del shadow


def agreement(mm, audio, *, frames: int, guidance: float):
    """Quantize the model in place and compare its next-token distributions with float32's."""
    text = mm.tokenizer([STYLE], return_tensors="pt")
    chroma = melody.chroma(audio[:, : frames * 640])[: melody.MAX_CHROMA_FRAMES]
    codes = random_codes(mm, frames)
    exact = next_token_log_probs(mm.model, text, chroma, codes, guidance_scale=guidance)
    quantize_int8(mm.model)
    approx = next_token_log_probs(mm.model, text, chroma, codes, guidance_scale=guidance)
    top1 = (exact.argmax(-1) == approx.argmax(-1)).float().mean(-1)
    kl = (exact.exp() * (exact - approx)).sum(-1).mean(-1)
    print(f"\nteacher-forced agreement, {frames} steps per codebook, guidance {guidance} "
          "(random weights are a weak proxy for real ones)")
    print("| codebook | top-1 agreement | mean KL(float32 || int8) nats |")
    print("|---|---|---|")
    for k in range(len(codes)):
        print(f"| {k} | {top1[k]:.3f} | {kl[k]:.2e} |")
    print(f"| all | {top1.mean():.3f} | {kl.mean():.2e} |")


def load(model_dir: str | None, device: torch.device, dtype: torch.dtype) -> MusicModel:
    if model_dir:
        return load_model(model_dir, device=str(device), dtype=str(dtype).removeprefix("torch."))
    model = random_model(full_size_config()).to(device=device, dtype=dtype)
    return MusicModel(model=model, tokenizer=tiny_tokenizer(), name="full-size random", device=device, dtype=dtype)


def rss_gb() -> tuple[float, float]:
    """(peak, current) resident memory of this process in GB."""
    with open("/proc/self/statm") as statm:
        current = int(statm.read().split()[1]) * resource.getpagesize()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, current / 1e9


def peak_rss(folder: str) -> None:
    """Peak RSS of loading the model in fresh processes, float32 alone and with quantize_int8."""
    print("| load | peak RSS GB | RSS after GB |\n|---|---|---|")
    for extra in ([], ["--quantize"]):
        out = subprocess.run([sys.executable, __file__, "--load-only", "--model", folder, *extra], check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
        print(out, flush=True)


def load_only(folder: str, quantize: bool) -> None:
    mm = load(folder or None, torch.device("cpu"), torch.float32)
    if quantize:
        quantize_int8(mm.model)
    peak, now = rss_gb()
    print(f"| {folder or 'full-size random'}, float32{' + quantize_int8' if quantize else ''} | {peak:.2f} | {now:.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--model", help="a saved model folder (default: the full-size architecture, random weights)")
    parser.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions; the best is kept")
    parser.add_argument("--clip-s", type=float, help="clip length for the scoretrack/plain rows (cpu 0.2, cuda 10)")
    parser.add_argument("--batch", type=int, default=16, help="clips per batch for the CUDA throughput row")
    parser.add_argument("--rows", type=int, nargs="+", help="clips per batch of the plain rows (default: cuda 1 and "
                        "--batch, cpu 1)")
    parser.add_argument("--takes", type=int, default=1, help="takes per clip in the plain rows")
    parser.add_argument("--positions", type=int, nargs="+", default=[50, 1450],
                        help="positions section: window positions (frames) whose decode step is timed")
    parser.add_argument("--routes", nargs="*", choices=list(ROUTE_NAMES), default=["int8pack"],
                        help="int8 routes timed against float32 (CPU)")
    parser.add_argument("--prompt-s", type=float, default=1.0, help="continuation prompt before the int8 steps")
    parser.add_argument("--steps", type=int, default=8, help="decode steps timed per int8 row")
    parser.add_argument("--agreement-frames", type=int, default=300, help="teacher-forced steps per codebook")
    parser.add_argument("--sections", nargs="+", choices=["plain", "positions", "int8", "agreement"],
                        default=["plain", "int8", "agreement"],
                        help="which parts to run (int8 and agreement: CPU; positions: the step early and late)")
    parser.add_argument("--compile", action="store_true", help="CUDA: add plain generate() with a static KV cache")
    parser.add_argument("--peak-rss", action="store_true", help="only measure the peak RSS of loading --model")
    parser.add_argument("--load-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quantize", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_only:
        return load_only(args.model or "", args.quantize)
    if args.peak_rss:
        return peak_rss(args.model or "")
    device = pick_device(args.device)
    dtype = pick_dtype(device)
    bandwidth = read_bandwidth(device)
    print(f"device {device} ({dtype}); read bandwidth {bandwidth / 1e9:.1f} GB/s (1 GiB tensor sum)")
    mm = load(args.model, device, dtype)
    audio = media.read_audio(MEDIA / RECORDING, sample_rate=mm.sample_rate, duration_s=30.0)
    clip_s = min(args.clip_s or (10.0 if device.type == "cuda" else 0.2), MAX_WINDOW_S)
    batches = args.rows or ([1, args.batch] if device.type == "cuda" else [1])
    if "plain" in args.sections:
        compare_rows(mm, audio, clip_s, batches, args)
    if "positions" in args.sections:
        step_at_positions(mm, args.positions, steps=args.steps, guidance=args.guidance, repeats=args.repeats)
    if device.type == "cpu" and "int8" in args.sections:
        int8_routes(mm, args.routes, prompt_s=args.prompt_s, steps=args.steps, guidance=args.guidance,
                    repeats=args.repeats, bandwidth=bandwidth)
    if device.type == "cpu" and "agreement" in args.sections:
        agreement(mm, audio, frames=args.agreement_frames, guidance=args.guidance)


def compare_rows(mm, audio, clip_s: float, batches: list[int], args) -> None:
    print(f"\nscoretrack generate_music against plain generate(), {clip_s} s clip, guidance {args.guidance}")
    print("| clips x takes | scoretrack wall s | plain wall s | wall ratio | scoretrack s/step | plain s/step | step ratio "
          "| scoretrack audio s per wall s | plain audio s per wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for rows in batches:
        (wall, step), (plain_wall, plain_step) = compare_with_plain(mm, audio, clip_s, rows, args.guidance, args.repeats,
                                                                    args.takes)
        audio_s = rows * args.takes * clip_s
        print(f"| {rows} x {args.takes} | {wall:.2f} | {plain_wall:.2f} | {wall / plain_wall:.2f} | {step:.4f} | "
              f"{plain_step:.4f} | {step / plain_step:.2f} | {audio_s / wall:.2f} | {audio_s / plain_wall:.2f} |",
              flush=True)
    if args.compile and mm.device.type == "cuda":
        for rows in batches:
            _, _, steps, chroma = one_window_inputs(mm, audio, clip_s, rows, args.guidance)
            try:
                runs = [plain_generate(mm, [STYLE] * rows, chroma, steps=steps, guidance=args.guidance,
                                       cache_implementation="static") for _ in range(args.repeats + 1)]
                wall, step = np.min(runs[1:], axis=0)  # the first run compiles
                print(f"static cache + compile, {rows} rows: wall {wall:.2f} s, {step:.4f} s/step "
                      f"(first run, compiling: {runs[0][0]:.1f} s)")
            except Exception as error:  # an experiment: report why it does not run, keep the other rows
                print(f"static cache + compile, {rows} rows: failed ({type(error).__name__}: {str(error)[:200]})")


if __name__ == "__main__":
    main()
