"""Build unusual media files for tests from the real clips in ../shared/media, with imageio-ffmpeg's ffmpeg.

Every builder writes one short file (1-3 s, small frames) to the path it is given and returns that path.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg

from conftest import MEDIA

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
DIALOGUE = MEDIA / "his_girl_friday_dialogue.mp4"  # speech, stereo 44.1 kHz, 640x480 h264
MUSIC = MEDIA / "music_vibe_ace.ogg"  # jazz, stereo 44.1 kHz (plus a cover-art picture)
FOOTAGE = MEDIA / "tos_battle_clip_70s.webm"  # score + effects, 800x332 vp8

# Channel names of the layouts the tests build, in ffmpeg's order.
LAYOUTS = {
    "5.1": ("FL", "FR", "FC", "LFE", "BL", "BR"),
    "5.1(side)": ("FL", "FR", "FC", "LFE", "SL", "SR"),
    "7.1": ("FL", "FR", "FC", "LFE", "BL", "BR", "SL", "SR"),
}


def ffmpeg(*args: str | Path) -> None:
    """Run ffmpeg quietly; raise with its message when it fails."""
    command = [FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"ffmpeg failed: {' '.join(command)}\n{result.stderr}")


def surround(path: Path, *, layout: str, audio_codec: str, duration_s: float = 2.0) -> Path:
    """A small h264 clip whose audio has ``layout``: the dialogue (mono) on FC, the music's left and right
    on every other channel, alternating (so each channel differs from the dialogue)."""
    names = LAYOUTS[layout]
    inputs = "".join(f"[m{i}]" if name != "FC" else "[d]" for i, name in enumerate(names))
    music = [i for i, name in enumerate(names) if name != "FC"]
    mapping = "|".join(f"{i}.{0 if name == 'FC' else i % 2}-{name}" for i, name in enumerate(names))
    graph = (f"[0:a]pan=mono|c0=0.5*c0+0.5*c1[d];[1:a]asplit={len(music)}{''.join(f'[m{i}]' for i in music)};"
             f"{inputs}join=inputs={len(names)}:channel_layout={layout}:map={mapping}[a]")
    ffmpeg("-i", DIALOGUE, "-i", MUSIC, "-filter_complex", graph, "-map", "0:v", "-map", "[a]", "-t", duration_s,
           "-vf", "scale=160:120", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", audio_codec, path)
    return path


def video(path: Path, *video_args: str, source: Path = DIALOGUE, duration_s: float = 1.0, size: str = "160x120",
          audio: tuple[str, ...] = ("-c:a", "aac")) -> Path:
    """``source``'s first ``duration_s`` seconds re-encoded with ``video_args`` (codec, tags, colour...)."""
    ffmpeg("-i", source, "-t", duration_s, "-s", size, *video_args, *audio, path)
    return path


def audio_file(path: Path, *audio_args: str, source: Path = DIALOGUE, duration_s: float = 2.0) -> Path:
    """``source``'s sound alone (no picture), encoded by ``audio_args`` into ``path``'s container."""
    ffmpeg("-i", source, "-t", duration_s, "-vn", *audio_args, path)
    return path


def still_image(path: Path) -> Path:
    """One frame of the dialogue clip as an image (.jpg, .png, .gif)."""
    ffmpeg("-i", DIALOGUE, "-frames:v", "1", "-s", "160x120", path)
    return path
