"""The MusicGen model: which family a name holds, checking it, choosing device and dtype, loading it.

Every MusicGen Meta released loads: MusicGen-melody (``musicgen_melody``, conditioned on text and a
melody's chroma) and the text-only MusicGen (``musicgen``), each mono or stereo (two EnCodec codebook
sets interleaved, 8 codebooks). :func:`model_family` tells which a name holds without loading weights,
so the command line can refuse settings the model cannot take before the slow load.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from .errors import BadParameterError, DeviceMemoryError, ModelUnavailableError
from .options import QUANTIZATIONS

DEFAULT_MODEL = "facebook/musicgen-melody"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_PROBE_S = 5.0  # one request to the hub, no retries: huggingface_hub retries an unreachable hub for ~32 s
OFFLINE_HINT = ("point --model at a local folder holding the model (save_pretrained), or set HF_HOME to a cache "
                "that has it and HF_HUB_OFFLINE=1")
MODEL_TYPES = ("musicgen_melody", "musicgen")


@dataclass(frozen=True)
class ModelFamily:
    """What kind of MusicGen a model is: melody-conditioned or text only, mono or stereo."""

    model_type: str  # musicgen_melody or musicgen (text only)
    audio_channels: int  # 1, or 2 for the stereo models

    def __post_init__(self):
        if self.model_type not in MODEL_TYPES:
            raise ModelUnavailableError(f"a {self.model_type!r} model is not MusicGen (scoretrack needs a musicgen or "
                                        "musicgen_melody model, e.g. facebook/musicgen-melody)")
        if self.audio_channels not in (1, 2):
            raise ModelUnavailableError(f"audio_channels={self.audio_channels} must be 1 or 2")

    @property
    def takes_melody(self) -> bool:
        return self.model_type == "musicgen_melody"

    @classmethod
    def from_config(cls, config: dict) -> "ModelFamily":
        """From a model's ``config.json`` contents."""
        return cls(config.get("model_type"), int(config.get("decoder", {}).get("audio_channels", 1)))


MELODY, STEREO_MELODY = ModelFamily("musicgen_melody", 1), ModelFamily("musicgen_melody", 2)
TEXT, STEREO_TEXT = ModelFamily("musicgen", 1), ModelFamily("musicgen", 2)
RELEASED = {  # Meta's models on the hub, for hub ids not in the local cache
    "facebook/musicgen-melody": MELODY, "facebook/musicgen-melody-large": MELODY,
    "facebook/musicgen-stereo-melody": STEREO_MELODY, "facebook/musicgen-stereo-melody-large": STEREO_MELODY,
    "facebook/musicgen-small": TEXT, "facebook/musicgen-medium": TEXT, "facebook/musicgen-large": TEXT,
    "facebook/musicgen-stereo-small": STEREO_TEXT, "facebook/musicgen-stereo-medium": STEREO_TEXT,
    "facebook/musicgen-stereo-large": STEREO_TEXT,
}


@dataclass
class MusicModel:
    """A loaded MusicGen (melody or text only) with its tokenizer, ready to generate."""

    model: torch.nn.Module
    tokenizer: object
    name: str
    device: torch.device
    dtype: torch.dtype

    @property
    def family(self) -> ModelFamily:
        return ModelFamily(self.model.config.model_type, self.audio_channels)

    @property
    def takes_melody(self) -> bool:
        return self.family.takes_melody

    @property
    def audio_channels(self) -> int:
        return int(self.model.decoder.config.audio_channels)

    @property
    def sample_rate(self) -> int:
        return int(self.model.config.audio_encoder.sampling_rate)

    @property
    def frame_rate(self) -> int:
        return int(self.model.config.audio_encoder.frame_rate)

    @property
    def num_codebooks(self) -> int:
        return int(self.model.decoder.num_codebooks)


def _is_folder_name(name: str) -> bool:
    return Path(name).expanduser().exists() or not HUB_ID.match(name) or name.startswith(".")


def settings_name(name: str) -> str:
    """``name`` as a clip's settings record it: a local folder's absolute path however it was typed
    (``tiny``, ``./tiny/``, ``~/models/tiny``), so a run from another folder resumes; a hub id as it is."""
    return str(Path(name).expanduser().resolve()) if _is_folder_name(name) else name


def _cached_folder(name: str) -> Path | None:
    """The hub cache's snapshot folder of a hub id, when its config.json is cached."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(name, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def _read_config(folder: Path, name: str) -> dict:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelUnavailableError(f"model folder {name}: no readable config.json ({error})") from error


def model_family(name: str) -> ModelFamily | None:
    """The family of the model ``name`` holds, read without loading weights.

    From a local folder's ``config.json``, from the hub cache for a hub id, else from the table of
    Meta's released models; None for a hub id that is none of these (known once it loads).

    Raises
    ------
    ModelUnavailableError
        A folder that does not exist, has no readable config.json, or holds no MusicGen.
    """
    if _is_folder_name(name):
        folder = Path(name).expanduser()
        if not folder.exists():
            raise ModelUnavailableError(f"model folder {name} does not exist: point --model at a local folder written "
                                        "by save_pretrained, or a hub id such as facebook/musicgen-melody (offline: set "
                                        "HF_HOME to a cache that has it and HF_HUB_OFFLINE=1)")
        return ModelFamily.from_config(_read_config(folder, name))
    cached = _cached_folder(name)
    if cached is not None:
        return ModelFamily.from_config(_read_config(cached, name))
    return RELEASED.get(name)


def hub_reachable() -> bool:
    """Whether the hub answers one request within ``HUB_PROBE_S`` (False at once with ``HF_HUB_OFFLINE=1``)."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        return False
    try:
        get_session().head(constants.ENDPOINT, timeout=HUB_PROBE_S)
    except Exception:  # any transport failure (no route, DNS, refused, proxy, timeout) means unreachable
        return False
    return True


def check_model_source(name: str) -> ModelFamily | None:
    """Check cheaply, before the slow load, that ``name`` can be a MusicGen model; return its family.

    A local folder (an existing path, or a name that can only be a path) must exist, hold a
    ``config.json`` of model type ``musicgen_melody`` or ``musicgen`` and complete safetensors
    weights. A hub id must be in the hub cache or the hub reachable (the rest is checked when it loads).

    Raises
    ------
    ModelUnavailableError
        Naming the folder and what is wrong with it.
    """
    family = model_family(name)
    if _is_folder_name(name):
        shards = weight_files(Path(name).expanduser())
        if not shards:
            raise ModelUnavailableError(f"model folder {name} has no safetensors weights (scoretrack loads only "
                                        "safetensors)")
        for shard in shards:
            _check_safetensors(shard)
    elif _cached_folder(name) is None and not hub_reachable():
        from huggingface_hub import constants

        raise ModelUnavailableError(f"model {name} is not in the hub cache ({constants.HF_HUB_CACHE}) and the hub "
                                    f"cannot be reached: {OFFLINE_HINT}")
    return family


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a saved model: its index's shards, or ``model.safetensors``."""
    index = folder / "model.safetensors.index.json"
    if index.exists():
        try:
            names = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError) as error:
            raise ModelUnavailableError(f"{index}: unreadable weight index ({error})") from error
        return [folder / n for n in sorted(names)]
    single = folder / "model.safetensors"
    return [single] if single.exists() else []


def _safetensors_header(path: Path) -> tuple[int, dict]:
    """The header length and header of a safetensors file (the tensors are not read)."""
    with path.open("rb") as handle:
        header_len = int.from_bytes(handle.read(8), "little")
        if header_len <= 0 or 8 + header_len > path.stat().st_size:
            raise ValueError("header longer than the file")
        return header_len, json.loads(handle.read(header_len))


def _check_safetensors(path: Path) -> None:
    """A safetensors file is whole: its header parses and the file holds every tensor it lists."""
    try:
        size = path.stat().st_size
        header_len, header = _safetensors_header(path)
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelUnavailableError(f"{path}: damaged safetensors file ({error}); download or save the model again") from error
    if 8 + header_len + end > size:
        raise ModelUnavailableError(f"{path}: truncated safetensors file ({size} of {8 + header_len + end} bytes); "
                                    "download or save the model again")


FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}


def weights_bytes(files: list[Path], dtype: torch.dtype) -> int:
    """Bytes the weights take once loaded in ``dtype`` (floating tensors converted), from the headers."""
    target = torch.finfo(dtype).bits // 8
    total = 0
    for path in files:
        _, header = _safetensors_header(path)
        for key, tensor in header.items():
            if key == "__metadata__":
                continue
            begin, end = tensor["data_offsets"]
            total += math.prod(tensor["shape"]) * target if tensor["dtype"] in FLOAT_DTYPES else end - begin
    return total


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now (Linux's MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory_for(name: str, dtype: torch.dtype) -> None:
    """Refuse to load on the CPU weights larger than the memory available (read from the headers only).

    Raises
    ------
    DeviceMemoryError
        Naming both sizes and what to change.
    """
    folder = Path(name).expanduser() if _is_folder_name(name) else _cached_folder(name)
    files = weight_files(folder) if folder is not None else []
    if not files or not all(f.exists() for f in files):
        return
    needed, available = weights_bytes(files, dtype), available_memory()
    if available is not None and needed > available:
        raise DeviceMemoryError(f"model {name} needs {needed / 1e9:.1f} GB for its weights in "
                                f"{str(dtype).removeprefix('torch.')}, but {available / 1e9:.1f} GB of memory is "
                                "available: close other programs, or use a smaller model (e.g. facebook/musicgen-small)")


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


# MusicGen's own configs put pad, bos and decoder-start ids at vocab_size (the embeddings have one row
# more), so transformers warns on every load that they lie outside the vocabulary: harmless here.
HARMLESS_LOAD_MESSAGES = re.compile(r"_token_id must be `None` or an integer within the vocabulary")


class _KnownHarmless(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not HARMLESS_LOAD_MESSAGES.search(record.getMessage())


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide transformers' known-harmless load messages and its "Loading weights" bar, restored after.

    Everything shows when the ``scoretrack`` logger is at DEBUG (the command's ``--debug``)."""
    if logging.getLogger("scoretrack").isEnabledFor(logging.DEBUG):
        yield
        return
    from transformers.utils import logging as hf_logging

    def no_loading_bar(factory, args, kwargs):
        if kwargs.get("desc") == "Loading weights":
            return hf_logging.EmptyTqdm(*args, **kwargs)
        return previous(factory, args, kwargs) if previous is not None else factory(*args, **kwargs)

    harmless = _KnownHarmless()
    # a logger's filter sees only the records logged on it, so every transformers logger gets one
    loggers = [logging.getLogger(n) for n in list(logging.root.manager.loggerDict) if n.split(".")[0] == "transformers"]
    for logger in loggers:
        logger.addFilter(harmless)
    previous = hf_logging.set_tqdm_hook(no_loading_bar)
    try:
        yield
    finally:
        hf_logging.set_tqdm_hook(previous)
        for logger in loggers:
            logger.removeFilter(harmless)


def _model_class(family: ModelFamily):
    from transformers import MusicgenForConditionalGeneration, MusicgenMelodyForConditionalGeneration

    return MusicgenMelodyForConditionalGeneration if family.takes_melody else MusicgenForConditionalGeneration


def load_model(name: str = DEFAULT_MODEL, *, device: str = "auto", dtype: str = "auto",
               quantize: str | None = None, on_status: Callable[[str], None] | None = None) -> MusicModel:
    """Load a MusicGen (melody or text only, mono or stereo) from a hub id or a local folder
    (safetensors only, no remote code).

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
    DeviceMemoryError
        On the CPU, weights larger than the memory available (checked before loading).
    ModelUnavailableError
        The weights are neither cached nor reachable, or the folder holds no such model.
    """
    from transformers import AutoConfig, AutoTokenizer

    if quantize not in (None, *QUANTIZATIONS):
        raise BadParameterError(f"quantize={quantize!r} must be None or one of {', '.join(QUANTIZATIONS)}")
    family = check_model_source(name)
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(torch_device, dtype)
    if quantize and torch_device.type != "cpu":
        raise BadParameterError(f"--quantize {quantize} runs on the CPU only, not on {torch_device.type}: add "
                                "--device cpu, or leave quantization off (GPUs run bfloat16)")
    if torch_device.type == "cpu":
        check_memory_for(name, torch_dtype)
    if on_status is not None:
        weights = ", int8 decoder weights" if quantize else ""
        on_status(f"loading {name} on {torch_device.type} ({str(torch_dtype).removeprefix('torch.')}{weights})...")
    # a cached hub model loads from the cache alone when the hub is unreachable (no update checks, no retries)
    local = _is_folder_name(name) or not hub_reachable()
    try:
        with quiet_loading():
            family = family or ModelFamily.from_config(AutoConfig.from_pretrained(name, local_files_only=local).to_dict())
            model, loading = _model_class(family).from_pretrained(
                name, use_safetensors=True, dtype=torch_dtype, trust_remote_code=False, output_loading_info=True,
                local_files_only=local)
            tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=False, local_files_only=local)
    except (OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelUnavailableError(f"cannot load model {name!r} ({first_line}); without internet, {OFFLINE_HINT}"
                                    ) from error
    if loading["missing_keys"]:
        missing = sorted(loading["missing_keys"])
        raise ModelUnavailableError(f"model {name!r} lacks {len(missing)} weights ({', '.join(missing[:3])}...): "
                                    f"it is not a complete {model.config.model_type} checkpoint")
    model.to(torch_device).eval()
    if quantize == "int8":
        from .quantize import quantize_int8

        quantize_int8(model)  # layer by layer: never two full copies of the decoder's weights
    return MusicModel(model=model, tokenizer=tokenizer, name=settings_name(str(name)), device=torch_device,
                      dtype=torch_dtype)
