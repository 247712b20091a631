"""Precision and recall of speech detection on the real recordings in ../shared/media.

Reference regions: the speech recordings hold only speech and pauses, so a 30 ms frame is speech in
the reference when it lies within a non-silent run of librosa.effects.split(top_db=35), the measure
MANIFEST.md uses for pauses. On the music recordings every detection is a false one.
Compares Silero VAD (used) with WebRTC VAD (pip install webrtcvad-wheels). Usage: python bench/speech_detection.py
"""

import sys
from pathlib import Path

import librosa
import numpy as np

from scoretrack import media, mix

MEDIA = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared/media")
RATE, FRAME = 16000, 480


def reference(audio):
    flags = np.zeros(audio.shape[1] // FRAME, dtype=bool)
    for start, end in librosa.effects.split(audio[0], top_db=35, frame_length=1024, hop_length=256):
        flags[start // FRAME : end // FRAME + 1] = True
    return flags


def webrtc(audio, aggressiveness):
    import webrtcvad

    vad = webrtcvad.Vad(aggressiveness)
    pcm = (np.clip(audio[0], -1, 1) * 32767).astype("<i2")
    return np.array([vad.is_speech(pcm[i : i + FRAME].tobytes(), RATE) for i in range(0, len(pcm) - FRAME + 1, FRAME)])


def main():
    detectors = {"silero (0.5)": lambda a: mix.detect_speech(a, sample_rate=RATE)}
    try:
        import webrtcvad  # noqa: F401

        detectors.update({f"webrtc ({k})": (lambda a, k=k: webrtc(a, k)) for k in (1, 3)})
    except ImportError:
        pass
    files = sorted(MEDIA.glob("speech_*")) + sorted(MEDIA.glob("music_*"))
    print("| detector | " + " | ".join(f.stem for f in files) + " |")
    print("|---" * (len(files) + 1) + "|")
    for name, detect in detectors.items():
        cells = []
        for path in files:
            audio = media.read_audio(path, sample_rate=RATE, duration_s=_duration(path))
            found = detect(audio)
            truth = reference(audio)[: len(found)]
            found = found[: len(truth)]
            if path.name.startswith("speech_"):
                precision = (found & truth).sum() / max(found.sum(), 1)
                recall = (found & truth).sum() / max(truth.sum(), 1)
                cells.append(f"P {precision:.2f} R {recall:.2f}")
            else:
                cells.append(f"false {found.mean():.1%}")
        print(f"| {name} | " + " | ".join(cells) + " |")


def _duration(path):
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        end = 0.0
        for packet in container.demux(stream):
            if packet.pts is not None and packet.size:
                end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
    return end


if __name__ == "__main__":
    main()
