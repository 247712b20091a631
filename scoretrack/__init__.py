"""scoretrack: score videos with MusicGen (melody, stereo and text-only models), in takes to choose from.

>>> import scoretrack
>>> result = scoretrack.score("clip.mp4", style="cinematic strings")   # doctest: +SKIP
>>> scorer = scoretrack.Scorer("facebook/musicgen-melody")             # doctest: +SKIP
>>> track = scorer.soundtrack(audio, 48000)                            # doctest: +SKIP

Names are imported on first use, so ``import scoretrack`` (and the command's ``--help``) stays instant.
"""

import importlib

__version__ = "0.2.0"

_WHERE = {
    "BadParameterError": "errors", "ModelUnavailableError": "errors", "OutputExistsError": "errors",
    "ScoretrackError": "errors", "UnreadableMediaError": "errors",
    "GenerationOptions": "options", "MelodyOptions": "options", "MixOptions": "options", "ScoreOptions": "options",
    "ClipRequest": "plan", "SideOutputs": "plan", "ScoreResult": "results", "TakeResult": "results",
    "Scorer": "pipeline", "Soundtrack": "pipeline", "score": "pipeline", "score_many": "pipeline",
    "probe": "media", "read_audio": "media", "mux": "media",
}
__all__ = sorted(_WHERE)


def __dir__():
    return sorted({*globals(), *_WHERE})


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'scoretrack' has no attribute {name!r}")
