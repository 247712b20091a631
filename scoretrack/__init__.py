"""scoretrack: score videos with MusicGen-melody.

>>> import scoretrack
>>> result = scoretrack.score("clip.mp4", style="cinematic strings")   # doctest: +SKIP
>>> scorer = scoretrack.Scorer("facebook/musicgen-melody")             # doctest: +SKIP
>>> [scorer.score(p) for p in paths]                                   # doctest: +SKIP
"""

from .errors import BadParameterError, ModelUnavailableError, OutputExistsError, ScoretrackError, UnreadableMediaError
from .generate import GenerationOptions
from .media import probe, read_audio, mux
from .mix import MixOptions
from .pipeline import MelodyOptions, ScoreOptions, ScoreResult, Scorer, score

__all__ = [
    "BadParameterError", "GenerationOptions", "MelodyOptions", "MixOptions", "ModelUnavailableError",
    "OutputExistsError", "ScoreOptions", "ScoreResult", "Scorer", "ScoretrackError", "UnreadableMediaError",
    "mux", "probe", "read_audio", "score",
]
