"""Shared fixtures: the real media folder and a tiny MusicGen-melody saved and loaded like the hub model."""

import hashlib
import os
from pathlib import Path

import pytest

# One torch thread per test process (the runs the tests start inherit it): the tiny model's operations are
# far too small to gain from intra-op threads, and with a worker per core (scripts/test.sh) two threads each
# only contend; measured, a tiny-model generation takes a third to a half of the time on one thread.
# Set before anything imports torch; an OMP_NUM_THREADS given by the caller is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")

MEDIA = Path(os.environ.get("SCORETRACK_MEDIA", Path(__file__).resolve().parents[2] / "shared" / "media"))
REFERENCE = Path(os.environ.get("SCORETRACK_REFERENCE", MEDIA.parent / "reference" / "chroma"))
VIDEO_EXTENSIONS = {".mp4", ".mov", ".webm", ".mpg", ".mkv"}
VIDEOS = sorted(p.name for p in MEDIA.glob("*") if p.suffix.lower() in VIDEO_EXTENSIONS) if MEDIA.is_dir() else []
SPEECH = sorted(p.name for p in MEDIA.glob("speech_*")) if MEDIA.is_dir() else []
MUSIC = sorted(p.name for p in MEDIA.glob("music_*")) if MEDIA.is_dir() else []


def pytest_collection_modifyitems(config, items):
    if not MEDIA.is_dir():
        raise pytest.UsageError(f"real test media not found at {MEDIA}; set SCORETRACK_MEDIA")


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from scoretrack.testing import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny-musicgen-melody")


@pytest.fixture(scope="session")
def scorer(tiny_model_dir):
    from scoretrack import Scorer

    return Scorer(str(tiny_model_dir))


@pytest.fixture(scope="session")
def music_model(scorer):
    return scorer.music_model
