"""Cut detection: precision and recall on the hand-listed cuts of tests/test_scenes.py, and seconds per
minute of video against decoding alone, measured in the same run (best of N, interleaved).

Compares scoretrack.scenes.detect_cuts (PyAV, every frame, 64x36 YUV) with PySceneDetect 0.7's
ContentDetector (defaults: threshold 27, min_scene_len 15, OpenCV backend), each against a loop that
only decodes with the same reader. PySceneDetect is optional: install it apart from the project, e.g.
  python -m pip install --target /tmp/scn --no-deps scenedetect opencv-python-headless click platformdirs
  PYTHONPATH=.:/tmp/scn python bench/cut_detection.py [MEDIA_DIR] [REPEATS]
"""

import sys
import time
from pathlib import Path

import av

from scoretrack import media, scenes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_scenes import FPS, HAND_CUTS_FRAMES, precision_recall  # noqa: E402

MEDIA = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared/media")
REPEATS = int(sys.argv[2]) if len(sys.argv) > 2 else 3


def pyav_decode(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # as detect_cuts decodes
        for _ in container.decode(stream):
            pass


def scoretrack_detect(path, infos={}):
    info = infos.setdefault(path, media.probe(path))  # probed once, as the pipeline passes its probe result
    return scenes.detect_cuts(path, info=info)


def opencv_decode(path):
    from scenedetect import open_video

    video = open_video(str(path), backend="opencv")
    while video.read() is not False:
        pass


def scenedetect_detect(path):
    from scenedetect import ContentDetector, detect

    found = detect(str(path), ContentDetector())
    return [scene[0].seconds for scene in found[1:]]


def main():
    detectors = {"scoretrack (PyAV 64x36 YUV)": (scoretrack_detect, pyav_decode)}
    try:
        import scenedetect

        detectors[f"PySceneDetect {scenedetect.__version__} ContentDetector"] = (scenedetect_detect, opencv_decode)
    except ImportError:
        print("PySceneDetect not importable: measuring scoretrack's detector only")
    names = sorted(HAND_CUTS_FRAMES)
    durations = {name: media.probe(MEDIA / name).duration_s for name in names}
    best = {}  # (detector, name, "detect" | "decode") -> (wall seconds, CPU seconds of all threads)
    found = {}
    for _ in range(REPEATS):
        for label, (detect, decode) in detectors.items():
            for name in names:
                for kind, run in (("decode", decode), ("detect", detect)):
                    start, start_cpu = time.perf_counter(), time.process_time()
                    result = run(MEDIA / name)
                    elapsed = (time.perf_counter() - start, time.process_time() - start_cpu)
                    key = (label, name, kind)
                    best[key] = tuple(map(min, best.get(key, elapsed), elapsed))
                    if kind == "detect":
                        found[(label, name)] = result
    print(f"best of {REPEATS}; s/min = seconds per minute of video, wall (CPU time of all threads)\n")
    print("| detector | clip | precision | recall | detect s/min | decode alone s/min | detect / decode |")
    print("|---|---|---|---|---|---|---|")
    for label in detectors:
        for name in names:
            truth = [frame / FPS for frame in HAND_CUTS_FRAMES[name]]
            precision, recall = precision_recall(found[(label, name)], truth, tolerance_s=2 / FPS)
            per_min = 60 / durations[name]
            (detect_s, detect_cpu), (decode_s, decode_cpu) = best[(label, name, "detect")], best[(label, name, "decode")]
            print(f"| {label} | {name} ({len(truth)} cuts) | {precision:.2f} | {recall:.2f} | "
                  f"{detect_s * per_min:.2f} ({detect_cpu * per_min:.2f}) | {decode_s * per_min:.2f} "
                  f"({decode_cpu * per_min:.2f}) | {detect_s / decode_s:.2f} ({detect_cpu / decode_cpu:.2f}) |")


if __name__ == "__main__":
    main()
