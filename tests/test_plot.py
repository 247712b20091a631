"""The plot side file, read as an editor reads it: which clip, its sound and speech, the ducking on its
whole range, the music of every take, and the seams, cuts and style changes, named in a legend."""

import numpy as np
import pytest

from conftest import MEDIA
from scoretrack import media, writers
from scoretrack import mix as mixing
from scoretrack.pipeline import Soundtrack

RATE = 48000
SECONDS = 4
DIALOGUE = media.read_audio(MEDIA / "his_girl_friday_dialogue.mp4", sample_rate=RATE, channels=2, duration_s=SECONDS)
SCORE = media.read_audio(MEDIA / "music_brahms_hungarian5.ogg", sample_rate=32000, channels=1, duration_s=2 * SECONDS)


def take(original: np.ndarray | None, number: int) -> Soundtrack:
    """A soundtrack mixed by the real mixer from a stretch of real music (take n: the n-th 4 s of it)."""
    music = SCORE[:, (number - 1) * SECONDS * 32000 : number * SECONDS * 32000]
    mixed = mixing.mix(music, original, music_rate=32000, sample_rate=RATE, samples=SECONDS * RATE)
    return Soundtrack(mixed=mixed, seams=[1.5, 2.8], windows=3, styles=["calm", "calm", "tense"], cuts=[2.0])


def filled_peak(axis) -> float:
    """The largest magnitude an axis' filled waveforms reach."""
    return max(np.abs(path.vertices[:, 1]).max() for patch in axis.collections for path in patch.get_paths())


@pytest.mark.parametrize("takes,original", [(1, DIALOGUE), (1, np.zeros_like(DIALOGUE)), (1, None),
                                            (2, DIALOGUE)])
def test_the_plot_shows_the_music_and_what_shaped_it(takes, original):
    # the old plot had no music, no clip name, no legend and no style labels; without speech its gain
    # axis ran from -0.04 to +0.04 dB
    tracks = [take(original, n) for n in range(1, takes + 1)]
    fig = writers.plot_figure(original, tracks, sample_rate=RATE, title="friday.mp4", depth_db=-12,
                              styles_at=[(2.8, "tense strings")])
    sound, gain, *music = fig.axes
    assert len(music) == takes and "friday.mp4" in fig._suptitle.get_text()
    low, high = gain.get_ylim()
    assert low < -12 and 0 < high and high - low < 15  # the duck depth to 0 dB, speech or not
    assert bool(tracks[0].speech) == (original is DIALOGUE)
    top = [text.get_text() for text in sound.get_legend().get_texts()]
    assert {"window seam", "picture cut", "style change"} <= set(top)
    assert ("speech (music ducks)" in top) == bool(tracks[0].speech)
    assert "tense strings" in [text.get_text() for text in sound.texts]
    for axis, track in zip(music, tracks):  # each take's own music, drawn at its level
        assert filled_peak(axis) == pytest.approx(np.abs(track.music).max(), rel=1e-3)
        assert {t.get_text() for t in axis.get_legend().get_texts()} == {"music before ducking", "music as mixed"}
    assert all(axis.get_legend() is not None for axis in fig.axes)
    assert all(sound.get_shared_x_axes().joined(sound, axis) for axis in fig.axes)
    assert music[-1].get_xlim() == (0, SECONDS)
    if takes == 2:
        assert filled_peak(music[0]) != filled_peak(music[1])


def test_waveform_peaks_are_the_same_whatever_the_blocks():
    signal = DIALOGUE[:, : 3 * RATE + 17]
    whole = writers.waveform_peaks([signal], signal.shape[1], points=500)
    blocks = writers.waveform_peaks((signal[:, i : i + 4099] for i in range(0, signal.shape[1], 4099)),
                                    signal.shape[1], points=500)
    np.testing.assert_array_equal(whole, blocks)
    column = np.arange(signal.shape[1]) * 500 // signal.shape[1]
    expected = [(signal[:, column == c].min(), signal[:, column == c].max()) for c in range(500)]
    np.testing.assert_array_equal(np.array(whole).T, expected)
