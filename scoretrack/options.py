"""Every setting that decides a clip's result, one frozen dataclass per stage, gathered in ScoreOptions.

This module imports nothing heavy, so the command line can parse and check its arguments (and answer
``--help``) before torch, transformers or the mixing libraries are loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import ClassVar

from .errors import BadParameterError

# the draw that makes the music (sampling.py): part of every fingerprint, since a take made by another
# draw is other music for the same seed, and recorded in each take's sidecar
SAMPLER = "gumbel-max/splitmix64 v1"

MAX_WINDOW_S = 30.0  # the melody conditioner sees at most 235 chroma frames = 30 s at 32 kHz
MAX_SEED = 2**63 - 1
MAX_TAKES = 16  # takes per clip (--takes)
MIX_MODES = ("mix", "replace", "music")
MELODY_SOURCES = ("auto", "video", "harmonic", "file", "none")
OUTPUT_LAYOUTS = ("keep", "stereo")
AUDIO_CODEC_NAMES = ("auto", "aac", "opus", "mp3", "pcm", "flac", "alac")  # --audio-codec (media.audio_encoding)
LOSSY_AUDIO_CODECS = ("aac", "opus", "mp3")  # the ones that take a bit rate
AUDIO_BITRATES = (32_000, 512_000)  # bits per second per channel pair, --audio-codec aac:256k
QUANTIZATIONS = ("int8",)  # load_model(quantize=...): int8 decoder weights, CPU only
# Window seams (scenes.place_seams): where --follow-cuts and --style-at may put them.
MIN_PROMPT_S = 8.0  # shortest continuation prompt that keeps the music continuous (place_seams, Notes)
FRESH_S = 1.0  # new music each window must add beyond its prompt, and before the next window's prompt
CUT_REACH_S = 4.0  # farthest a seam moves to land on a picture cut
# smallest top-p above 0 that keeps a code: the sampler compares float32 probabilities with it, and a smaller p
# is 0 (or subnormal, flushed to 0 on GPUs) there, so no code, not even the likeliest, would rank below it
TOP_P_MIN = 1.1754943508222875e-38  # the smallest normal float32 (numpy.finfo(numpy.float32).tiny)
CODEC_FRAME_RATE = 50  # codec frames per second of every MusicGen (EnCodec at 32 kHz, hop 640): the plan's seams


def check_number(name: str, value, low: float, high: float, unit: str = "") -> None:
    """Raise :class:`BadParameterError` (for field ``name``) unless ``value`` is a finite number in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise BadParameterError.of(name, value, f"must be a finite number in [{low:g}, {high:g}]{' ' + unit if unit else ''}")


def check_integer(name: str, value, low: int, high: int) -> None:
    """Raise :class:`BadParameterError` (for field ``name``) unless ``value`` is an integer in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadParameterError.of(name, value, f"must be an integer in [{low}, {high}]")


@dataclass(frozen=True)
class MelodyOptions:
    """Where the melody reference comes from."""

    # auto (video for a melody model, none for a text-only one), video, harmonic (video's harmonic part),
    # file, or none (text only)
    source: str = "auto"
    file: str | None = None  # audio file when source is "file"

    def resolved(self, takes_melody: bool) -> "MelodyOptions":
        """These options for a model that takes a melody or not: ``auto`` made ``video`` or ``none``.

        Raises
        ------
        BadParameterError
            A melody source other than none or auto for a text-only model.
        """
        if self.source == "auto":
            return dataclasses.replace(self, source="video" if takes_melody else "none")
        if not takes_melody and self.source != "none":
            what = f"--melody-file {self.file}" if self.source == "file" else f"--melody {self.source}"
            raise BadParameterError(f"{what}: the model is text only (MusicGen without melody input); leave the "
                                    "melody out, or use a melody model such as facebook/musicgen-melody")
        return self

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`BadParameterError` naming the bad field (done once, when the options are made)."""
        if self.source not in MELODY_SOURCES:
            raise BadParameterError.of("source", self.source, f"must be one of {', '.join(MELODY_SOURCES)}")
        if self.source == "file" and not self.file:
            raise BadParameterError.of("file", self.file, "must name a melody file for melody source 'file'")


@dataclass(frozen=True)
class GenerationOptions:
    """How music is generated. Defaults follow audiocraft's MusicGen."""

    window_s: float = 30.0  # length of one generate() window, at most 30 s
    stride_s: float = 18.0  # advance between windows; window_s - stride_s seconds are continued
    guidance_scale: float = 3.0  # classifier-free guidance; 1 turns it off (half the compute)
    temperature: float = 1.0  # sampling temperature, > 0
    top_k: int = 250  # sample among the k likeliest codes
    top_p: float = 0.0  # then among the fewest of those whose probability reaches p; 0 turns it off
    seed: int = 0  # same seed and settings give the same music
    crossfade_s: float = 2.0  # equal-gain crossfade length inside each overlap (continuation)
    independent_windows: bool = False  # all windows in one batch, no continuation, equal-power joins
    batch_size: int = 4  # rows per generate() call (clips, or windows when independent)
    # inclusive ranges, checked by validate() and printed by --help (stride_s is also at most window_s)
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "window_s": (0.1, MAX_WINDOW_S), "stride_s": (0.1, MAX_WINDOW_S), "guidance_scale": (1.0, 20.0),
        "temperature": (0.01, 10.0), "top_k": (1, 2048), "top_p": (0.0, 1.0), "seed": (0, MAX_SEED), "crossfade_s": (0.0, MAX_WINDOW_S),
        "batch_size": (1, 1024),
    }

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`BadParameterError` naming the first bad field (done once, when the options are made)."""
        ranges = self.RANGES
        check_number("window_s", self.window_s, *ranges["window_s"], "seconds")
        check_number("stride_s", self.stride_s, *ranges["stride_s"], "seconds")
        if self.stride_s > self.window_s or (not self.independent_windows and self.stride_s == self.window_s):
            below = "at most" if self.independent_windows else "below"
            raise BadParameterError.of("stride_s", self.stride_s, f"must be {below} {{window_s}} ({self.window_s:g} s)"
                                       + ("" if self.independent_windows else " to continue windows"))
        check_number("guidance_scale", self.guidance_scale, *ranges["guidance_scale"])
        check_number("temperature", self.temperature, *ranges["temperature"])
        check_integer("top_k", self.top_k, *ranges["top_k"])
        check_number("top_p", self.top_p, *ranges["top_p"])
        if 0 < self.top_p < TOP_P_MIN:
            raise BadParameterError.of("top_p", self.top_p, f"keeps no code: give 0 (off) or a value from "
                                       f"{TOP_P_MIN:.3g} to 1 (smaller ones are 0 in float32 sampling)")
        check_integer("seed", self.seed, *ranges["seed"])
        check_number("crossfade_s", self.crossfade_s, *ranges["crossfade_s"], "seconds")
        check_integer("batch_size", self.batch_size, *ranges["batch_size"])


@dataclass(frozen=True)
class MixOptions:
    """How the music meets the original audio."""

    mode: str = "mix"  # mix: original + ducked music; replace: music alone; music: ducked music alone
    depth_db: float = -12.0  # music gain under speech
    attack_ms: float = 100.0  # time to go down the full depth
    release_ms: float = 500.0  # time to come back up from the full depth
    hold_ms: float = 300.0  # stay ducked this long after speech; bridges short pauses
    lookahead_ms: float = 100.0  # start ducking this early, so a word never starts over full music
    vad_threshold: float = 0.5  # Silero speech probability above which a frame is speech
    music_level_db: float = -6.0  # music loudness relative to the original audio's, in mix mode
    target_lufs: float = -14.0  # integrated loudness of the result (-23 for broadcast)
    true_peak_dbtp: float = -1.0  # ceiling for the oversampled peak
    # the most the peak limiter takes off: beyond it the whole mix is turned down instead (under target_lufs), so
    # the delivered mix stays one gain times the original plus the ducked music (stems, timelines) within it
    max_limiting_db: float = 0.5
    fade_in_s: float = 1.0
    fade_out_s: float = 2.0
    output_layout: str = "keep"  # keep the source's channel layout (music on front left/right), or fold to stereo
    # inclusive ranges, checked by validate() and printed by --help
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "depth_db": (-60.0, 0.0), "attack_ms": (0.0, 5000.0), "release_ms": (0.0, 5000.0), "hold_ms": (0.0, 5000.0),
        "lookahead_ms": (0.0, 5000.0), "vad_threshold": (0.01, 0.99), "music_level_db": (-60.0, 20.0),
        "target_lufs": (-70.0, -5.0), "true_peak_dbtp": (-20.0, 0.0), "max_limiting_db": (0.0, 30.0),
        "fade_in_s": (0.0, 60.0), "fade_out_s": (0.0, 60.0),
    }
    UNITS: ClassVar[dict[str, str]] = {"depth_db": "dB", "music_level_db": "dB", "target_lufs": "LUFS",
                                       "true_peak_dbtp": "dBTP", "max_limiting_db": "dB", "fade_in_s": "seconds",
                                       "fade_out_s": "seconds",
                                       "attack_ms": "ms", "release_ms": "ms", "hold_ms": "ms", "lookahead_ms": "ms"}

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`BadParameterError` naming the first bad field (done once, when the options are made)."""
        if self.mode not in MIX_MODES:
            raise BadParameterError.of("mode", self.mode, f"must be one of {', '.join(MIX_MODES)}")
        if self.output_layout not in OUTPUT_LAYOUTS:
            raise BadParameterError.of("output_layout", self.output_layout, f"must be one of {', '.join(OUTPUT_LAYOUTS)}")
        for name, (low, high) in self.RANGES.items():
            check_number(name, getattr(self, name), low, high, self.UNITS.get(name, ""))


_TIME = re.compile(r"^(?:(\d+):)?(\d+(?:\.\d+)?)$")


def parse_time(text: str) -> float:
    """Seconds from ``SS``, ``SS.s``, ``M:SS`` or ``H:MM:SS``."""
    parts = text.strip().split(":")
    try:
        if not 1 <= len(parts) <= 3 or any(p == "" for p in parts):
            raise ValueError
        values = [float(p) for p in parts]
    except ValueError:
        raise BadParameterError(f"time {text!r} must be seconds, m:ss or h:mm:ss") from None
    if any(value >= 60 for value in values[1:]):
        raise BadParameterError(f"time {text!r}: minutes and seconds after a ':' must be below 60 "
                                f"(m:ss or h:mm:ss; or give seconds alone, e.g. {text.strip().split(':')[-1]})")
    seconds = 0.0
    for value in values:
        seconds = seconds * 60 + value
    if not math.isfinite(seconds) or seconds < 0 or text.strip().startswith("-"):
        raise BadParameterError(f"time {text!r} must be a finite, non-negative time")
    return seconds


@dataclass(frozen=True)
class ScoreOptions:
    """Everything that decides a clip's result; the CLI, the API and the tests all build this."""

    style: str = "cinematic orchestral score"
    styles_at: tuple[tuple[float, str], ...] = ()  # (time_s, style) changes of the text from that time on
    follow_cuts: bool = False  # move window seams onto the picture's cuts (decodes the picture)
    melody: MelodyOptions = field(default_factory=MelodyOptions)
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    mix: MixOptions = field(default_factory=MixOptions)
    keep_original_audio: bool = False  # also copy the original audio tracks, as tracks that do not play by default
    takes: int = 1  # takes 1..takes of every clip, each with its own seed (take_seed)
    take: int | None = None  # this take alone (its codes as in a run of several takes), instead of 1..takes
    audio_codec: str = "auto"  # the output's sound: auto (lossless stays lossless) or one of AUDIO_CODEC_NAMES
    audio_bitrate: int | None = None  # bits per second per channel pair of a lossy codec; None: 192k

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`BadParameterError` naming the first bad field (done once, when the options are made;
        the stages' own options were checked when they were made)."""
        if not isinstance(self.style, str) or not self.style.strip():
            raise BadParameterError.of("style", self.style, "must be a non-empty text")
        check_integer("takes", self.takes, 1, MAX_TAKES)
        if self.take is not None:
            check_integer("take", self.take, 1, MAX_TAKES)
        for time_s, text in self.styles_at:
            check_number("styles_at", time_s, 0.0, 1e7, "seconds")
            if not isinstance(text, str) or not text.strip():
                raise BadParameterError(f"style change at {time_s:g} s needs a non-empty text")
        times = [time_s for time_s, _ in self.styles_at]
        if len(set(times)) != len(times):
            twice = sorted({t for t in times if times.count(t) > 1})
            raise BadParameterError(f"--style-at gives {', '.join(f'{t:g} s' for t in twice)} twice: one style per time")
        check_audio_codec(self.audio_codec, self.audio_bitrate)
        self._check_seam_settings()

    def _check_seam_settings(self) -> None:
        """Refuse window settings that no clip's seams could follow (style changes, cuts), whatever the clip."""
        gen = self.generation
        if not (self.styles_at or self.follow_cuts):
            return
        asked = " and ".join(flag for flag, on in (("--style-at", self.styles_at), ("--follow-cuts", self.follow_cuts)) if on)
        if gen.independent_windows:
            raise BadParameterError(f"{asked} cannot go with --independent-windows: seams need continued windows")
        least = 2 * MIN_PROMPT_S + FRESH_S
        if gen.window_s < least:
            raise BadParameterError(f"{asked} need{'' if ' and ' in asked else 's'} --window of at least {least:g} s (continuation prompts of "
                                    f"{MIN_PROMPT_S:g} s or more, and {FRESH_S:g} s of new music between them): "
                                    f"got --window {gen.window_s:g}")
        if self.follow_cuts:
            return  # its prompts are MIN_PROMPT_S whatever the stride
        prompt_s, longest = gen.window_s - gen.stride_s, (gen.window_s - FRESH_S) / 2
        if not MIN_PROMPT_S <= prompt_s <= longest:
            raise BadParameterError(
                f"--style-at with --window {gen.window_s:g} needs --stride from {gen.window_s - longest:g} to "
                f"{gen.window_s - MIN_PROMPT_S:g} s (a continuation prompt, --window minus --stride, of "
                f"{MIN_PROMPT_S:g} to {longest:g} s): got --stride {gen.stride_s:g}")

    def for_model(self, takes_melody: bool) -> "ScoreOptions":
        """These options for a model that takes a melody or not (see :meth:`MelodyOptions.resolved`)."""
        return dataclasses.replace(self, melody=self.melody.resolved(takes_melody))

    @property
    def take_numbers(self) -> tuple[int, ...]:
        """The takes a run makes: ``take`` alone, or 1 to ``takes``."""
        return (self.take,) if self.take is not None else tuple(range(1, self.takes + 1))

    def fingerprint(self, model_name: str, take: int = 1) -> str:
        """A short hash of every setting, the model and the take: equal fingerprints mean an equal result.

        How many takes a run makes is not part of it (take 2 of a 2-take run is take 2 of a 3-take
        run), and take 1's is the fingerprint of a run without takes."""
        settings = {name: value for name, value in dataclasses.asdict(self).items() if name not in ("takes", "take")
                    # the sound's codec counts when chosen: earlier runs' fingerprints hold without it
                    and not (name in ("audio_codec", "audio_bitrate") and value == getattr(ScoreOptions, name))}
        text = json.dumps({"model": model_name, "sampler": SAMPLER, **settings,
                           **({"take_number": take} if take != 1 else {})},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_audio_codec(text: str) -> tuple[str, int | None]:
    """``--audio-codec`` text to (codec, bit rate): ``flac`` -> ("flac", None), ``aac:256k`` -> ("aac", 256000).

    Raises
    ------
    BadParameterError
        A bit rate that is not a number of bits per second (``256k``, ``96000``), or a bad codec or rate
        (:func:`check_audio_codec`).
    """
    name, sep, rate = text.strip().lower().partition(":")
    bit_rate = None
    if sep:
        match = re.fullmatch(r"(\d+(?:\.\d+)?)(k?)", rate.strip())
        if not match:
            raise BadParameterError(f"--audio-codec {text}: the bit rate must be bits per second, e.g. {name}:256k")
        bit_rate = round(float(match.group(1)) * (1000 if match.group(2) else 1))
    check_audio_codec(name, bit_rate, given=text)
    return name, bit_rate


def check_audio_codec(codec: str, bit_rate: int | None, *, given: str | None = None) -> None:
    """Raise :class:`BadParameterError` unless ``codec`` is an ``--audio-codec`` name and ``bit_rate``
    (None, or bits per second per channel pair) fits it: lossy codecs only, within :data:`AUDIO_BITRATES`."""
    given = given or (codec if bit_rate is None else f"{codec}:{bit_rate}")
    if codec not in AUDIO_CODEC_NAMES:
        raise BadParameterError(f"--audio-codec {given}: must be one of {', '.join(AUDIO_CODEC_NAMES)} "
                                f"(a lossy one with a bit rate, e.g. aac:256k)")
    if bit_rate is None:
        return
    if codec not in LOSSY_AUDIO_CODECS:
        raise BadParameterError(f"--audio-codec {given}: only {', '.join(LOSSY_AUDIO_CODECS)} take a bit rate; "
                                f"give {codec} alone")
    low, high = AUDIO_BITRATES
    if isinstance(bit_rate, bool) or not isinstance(bit_rate, int) or not low <= bit_rate <= high:
        raise BadParameterError(f"--audio-codec {given}: the bit rate must be {low // 1000}k to {high // 1000}k "
                                "per channel pair")


def take_seed(seed: int, take: int) -> int:
    """The seed of a clip's take: ``seed`` itself for take 1, for the others a hash of (seed, take).

    Hashed rather than ``seed + take``: window k of a take draws from ``take_seed + k``, so
    neighbouring seeds would make one take's windows replay another's random streams."""
    if take == 1:
        return seed
    digest = hashlib.sha256(f"scoretrack take {seed} {take}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 2  # < 2**62: seed + window index stays within MAX_SEED
