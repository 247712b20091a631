"""Media in and out: probe a video, read its audio on the video's timeline, mux a new soundtrack.

Everything goes through PyAV, which decodes exactly and copies video packets untouched. Audio arrays
are float32 of shape ``(channels, samples)`` with the sample rate passed alongside.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from .errors import BadParameterError, OutputExistsError, UnreadableMediaError

# Output container per file extension, and the audio codec written into it.
CONTAINER_FORMATS = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
}
# MPEG program streams (.mpg) are not written: their muxer shifts timestamps and drops a frame.
FALLBACK_EXTENSION = ".mkv"
AUDIO_CODECS = {"mp4": "aac", "mov": "aac", "matroska": "libopus", "webm": "libopus"}
# Rates each encoder accepts; other rates are resampled to the first.
ENCODER_RATES = {"aac": (48000, 44100, 32000), "libopus": (48000,)}
AUDIO_BITRATE = 192_000


@dataclass(frozen=True)
class VideoStreamInfo:
    """The first real video stream (attached pictures and cover art are not video)."""

    index: int
    codec: str
    width: int
    height: int
    frame_rate: float  # average frames per second; variable-rate streams vary around it
    frame_count: int  # number of video packets, counted while measuring the end time
    rotation: float  # display rotation in degrees, counter-clockwise (0 when none)
    start_s: float  # presentation time of the first frame
    end_s: float  # presentation end of the last frame


@dataclass(frozen=True)
class AudioStreamInfo:
    """One audio stream of the file."""

    index: int
    codec: str
    sample_rate: int
    channels: int
    start_s: float  # presentation time of the first sample (0 when unknown)


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` found in a file."""

    path: Path
    container: str  # demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    duration_s: float  # end time of the first real video stream
    video: VideoStreamInfo
    audio: tuple[AudioStreamInfo, ...]  # empty when the file has no audio

    @property
    def has_audio(self) -> bool:
        return bool(self.audio)


def check_input_file(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path after checking it names a non-empty regular file.

    Raises
    ------
    UnreadableMediaError
        Missing, a directory, or zero bytes long.
    """
    path = Path(path)
    if not path.exists():
        raise UnreadableMediaError(f"{path}: no such file")
    if path.is_dir():
        raise UnreadableMediaError(f"{path}: is a directory, not a media file")
    if path.stat().st_size == 0:
        raise UnreadableMediaError(f"{path}: file is empty (0 bytes)")
    return path


@contextlib.contextmanager
def open_input(path: str | os.PathLike) -> Iterator[av.container.InputContainer]:
    """Open a media file for reading, turning every PyAV failure into :class:`UnreadableMediaError`."""
    path = check_input_file(path)
    try:
        container = av.open(str(path), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as error:
        raise UnreadableMediaError(f"{path}: not a readable media file ({error})") from error
    try:
        yield container
    except av.error.FFmpegError as error:
        raise UnreadableMediaError(f"{path}: damaged or truncated media ({error})") from error
    finally:
        container.close()


def _first_video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def _video_extent(container, stream) -> tuple[float, float, int]:
    """Start, end (seconds) and packet count of a video stream, by demuxing packets (no decoding).

    Raises :class:`UnreadableMediaError` when the file holds less than its header declares
    (a truncated download or copy)."""
    start = end = None
    count = 0
    previous_pts: dict[int, int] = {}
    any_end = 0.0  # end of the latest packet of any stream
    for packet in container.demux():
        if packet.pts is None or packet.size == 0:
            continue
        index = packet.stream.index
        duration = packet.duration
        if not duration and index in previous_pts:
            duration = packet.pts - previous_pts[index]  # last-frame duration missing: reuse the previous gap
        previous_pts[index] = packet.pts
        packet_end = float((packet.pts + (duration or 0)) * packet.time_base)
        any_end = max(any_end, packet_end)
        if index != stream.index:
            continue
        count += 1
        packet_start = float(packet.pts * packet.time_base)
        start = packet_start if start is None else min(start, packet_start)
        end = packet_end if end is None else max(end, packet_end)
    declared_s = container.duration / av.time_base if container.duration else None
    if count == 0 or (stream.frames and count < stream.frames) or (declared_s and any_end < declared_s - 0.5):
        raise UnreadableMediaError(f"{container.name}: truncated or damaged: the file holds {count} video frames "
                                   f"ending at {end or 0:.2f} s, less than its header declares")
    return start, end, count


def _rotation(container, stream) -> float:
    """Display rotation of a stream, read from its first decoded frame (seeks the container)."""
    container.seek(0)
    for frame in container.decode(stream):
        return float(frame.rotation or 0)
    return 0.0


def probe(path: str | os.PathLike) -> MediaInfo:
    """Describe a video file: its container, first real video stream, audio streams and exact duration.

    The duration is the end time of the first real video stream, measured by demuxing its packets,
    so it works without a container duration and whatever order the streams come in.

    Parameters
    ----------
    path : str or PathLike
        The video file.

    Returns
    -------
    MediaInfo

    Raises
    ------
    UnreadableMediaError
        The file is missing, empty, not media, truncated, or has no video stream.
    """
    path = check_input_file(path)
    with open_input(path) as container:
        stream = _first_video_stream(container)
        if stream is None:
            raise UnreadableMediaError(f"{path}: has no video stream (an audio-only file cannot be scored)")
        start_s, end_s, count = _video_extent(container, stream)
        codec = stream.codec_context
        video = VideoStreamInfo(
            index=stream.index,
            codec=codec.name,
            width=codec.width,
            height=codec.height,
            frame_rate=float(stream.average_rate or stream.guessed_rate or 0),
            frame_count=count,
            rotation=_rotation(container, stream),
            start_s=start_s,
            end_s=end_s,
        )
        audio = tuple(
            AudioStreamInfo(
                index=s.index,
                codec=s.codec_context.name,
                sample_rate=s.codec_context.sample_rate,
                channels=s.codec_context.channels,
                start_s=float(s.start_time * s.time_base) if s.start_time is not None else 0.0,
            )
            for s in container.streams.audio
        )
        return MediaInfo(path=path, container=container.format.name, duration_s=end_s, video=video, audio=audio)


def sample_count(duration_s: float, sample_rate: int) -> int:
    """Number of samples that span ``duration_s`` seconds at ``sample_rate``: ``round(duration_s * sample_rate)``."""
    return int(round(duration_s * sample_rate))


def _to_channels(block: np.ndarray, channels: int) -> np.ndarray:
    """Mix a (source_channels, n) block to ``channels``: mono is the mean, stereo duplicates mono."""
    if block.shape[0] == channels:
        return block
    if channels == 1:
        return block.mean(axis=0, keepdims=True)
    if block.shape[0] == 1:
        return np.repeat(block, channels, axis=0)
    raise BadParameterError(f"channels={channels}: cannot remix {block.shape[0]} channels (use 1, or keep the source's)")


def read_audio(
    path: str | os.PathLike,
    *,
    sample_rate: int,
    channels: int = 1,
    duration_s: float | None = None,
    stream_index: int | None = None,
) -> np.ndarray:
    """Decode a file's audio onto the video's timeline.

    The result has exactly ``round(duration_s * sample_rate)`` samples: audio that starts late or ends
    early is padded with silence, audio running past the end is cut. Memory grows with the audio
    only; video packets are skipped, never decoded.

    Parameters
    ----------
    path : str or PathLike
        A video (or audio) file.
    sample_rate : int
        Output rate in Hz, > 0.
    channels : int
        1 (mean of the source channels) or 2 (a mono source is duplicated), or the source's own count.
    duration_s : float, optional
        Timeline length in seconds; defaults to :func:`probe`'s duration (the video end).
    stream_index : int, optional
        Which audio stream; defaults to the first.

    Returns
    -------
    np.ndarray
        float32, shape ``(channels, round(duration_s * sample_rate))``; silence when there is no audio.
    """
    if sample_rate <= 0:
        raise BadParameterError(f"sample_rate={sample_rate} must be a positive number of Hz")
    if channels <= 0:
        raise BadParameterError(f"channels={channels} must be a positive integer")
    if duration_s is None:
        duration_s = probe(path).duration_s
    total = sample_count(duration_s, sample_rate)
    out = np.zeros((channels, total), dtype=np.float32)
    with open_input(path) as container:
        if not container.streams.audio:
            return out
        streams = {s.index: s for s in container.streams.audio}
        stream = streams[stream_index] if stream_index is not None else container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", rate=sample_rate)
        position = None  # next output index
        for frame in _decoded_frames(container, stream):
            if position is None:
                start_s = float(frame.pts * frame.time_base) if frame.pts is not None else 0.0
                position = int(round(start_s * sample_rate))
            for resampled in resampler.resample(frame):
                position = _place(out, _to_channels(resampled.to_ndarray(), channels), position)
        if position is not None:
            for resampled in resampler.resample(None):
                position = _place(out, _to_channels(resampled.to_ndarray(), channels), position)
    return out


def _decoded_frames(container, stream):
    """Every frame of one stream; the demuxer's final empty packet flushes the decoder."""
    for packet in container.demux(stream):
        yield from packet.decode()


def _place(out: np.ndarray, block: np.ndarray, position: int) -> int:
    """Copy ``block`` into ``out`` at ``position``, clipping to the array; return the next position."""
    end = position + block.shape[1]
    lo, hi = max(position, 0), min(end, out.shape[1])
    if hi > lo:
        out[:, lo:hi] = block[:, lo - position : hi - position]
    return end


@contextlib.contextmanager
def atomic_output(output: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``output``; rename it into place only if the block succeeds.

    Raises
    ------
    OutputExistsError
        ``output`` exists and ``overwrite`` is false.
    """
    output = Path(output)
    if output.exists() and not overwrite:
        raise OutputExistsError(f"{output}: already exists (pass overwrite/--force to replace it)")
    if not output.parent.is_dir():
        raise BadParameterError(f"{output}: folder {output.parent} does not exist")
    handle, temp_name = tempfile.mkstemp(prefix=".scoretrack-", suffix=output.suffix, dir=output.parent)
    os.close(handle)
    temp = Path(temp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield temp
        os.replace(temp, output)
    finally:
        temp.unlink(missing_ok=True)


def default_output_extension(video_path: str | os.PathLike) -> str:
    """The input's own extension when scoretrack can write it, else ``.mkv`` (which holds any codec)."""
    suffix = Path(video_path).suffix
    return suffix if suffix.lower() in CONTAINER_FORMATS else FALLBACK_EXTENSION


def output_format(output: str | os.PathLike) -> str:
    """The container format written for an output file name, from its extension."""
    suffix = Path(output).suffix.lower()
    if suffix not in CONTAINER_FORMATS:
        names = ", ".join(sorted(CONTAINER_FORMATS))
        raise BadParameterError(f"{output}: unsupported output extension {suffix or '(none)'!r}; use one of {names}")
    return CONTAINER_FORMATS[suffix]


def _check_codec_fits(out: av.container.OutputContainer, codec: str, output: Path) -> None:
    if codec not in out.supported_codecs:
        fits = [ext for ext, fmt in CONTAINER_FORMATS.items() if codec in _supported_codecs(fmt)]
        hint = f"; write {', '.join(fits)} instead" if fits else ""
        raise BadParameterError(f"{output}: a {out.format.name} file cannot hold {codec} video{hint}")


def _supported_codecs(fmt: str) -> set[str]:
    with av.open(os.devnull, "w", format=fmt) as probe_container:
        return set(probe_container.supported_codecs)


def _add_audio_stream(out, audio: np.ndarray, sample_rate: int, codec: str, *, default: bool):
    """Add an audio stream for ``audio`` to ``out``, played by default or not."""
    rate = sample_rate if sample_rate in ENCODER_RATES[codec] else ENCODER_RATES[codec][0]
    layout = "mono" if audio.shape[0] == 1 else "stereo"
    stream = out.add_stream(codec, rate=rate, layout=layout)
    stream.bit_rate = AUDIO_BITRATE
    stream.disposition = av.stream.Disposition.default if default else 0
    return stream


def _audio_packets(stream, audio: np.ndarray, sample_rate: int) -> Iterator[av.Packet]:
    """Encode ``audio`` into ``stream``'s codec, lazily, packet by packet."""
    layout = "mono" if audio.shape[0] == 1 else "stereo"
    resampler = av.AudioResampler(format=stream.codec_context.format.name, layout=layout, rate=stream.codec_context.sample_rate)
    block = 4096
    data = np.ascontiguousarray(audio, dtype=np.float32)
    for start in range(0, data.shape[1], block):
        frame = av.AudioFrame.from_ndarray(data[:, start : start + block], format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = start
        frame.time_base = Fraction(1, sample_rate)
        for resampled in resampler.resample(frame):
            yield from stream.encode(resampled)
    for resampled in resampler.resample(None):
        yield from stream.encode(resampled)
    yield from stream.encode(None)


def _make_dts_increase(packet: av.Packet, last_dts: dict[int, int]) -> None:
    """Nudge a repeated decode time one tick up: MPEG program streams repeat the first GOP's dts,
    and muxers drop such packets. The packet's bytes are untouched."""
    index = packet.stream.index
    if packet.dts is not None:
        if index in last_dts and packet.dts <= last_dts[index]:
            packet.dts = last_dts[index] + 1
        last_dts[index] = packet.dts


def _packet_time(packet: av.Packet) -> float:
    """Decode time in seconds (Matroska leaves some dts unset: use the pts)."""
    stamp = packet.dts if packet.dts is not None else packet.pts
    return float((stamp or 0) * packet.time_base)


def mux(
    video_path: str | os.PathLike,
    audio: np.ndarray,
    *,
    sample_rate: int,
    output: str | os.PathLike,
    original_audio: np.ndarray | None = None,
    overwrite: bool = False,
    info: MediaInfo | None = None,
) -> Path:
    """Write ``video_path``'s picture with ``audio`` as its soundtrack into ``output``.

    Video packets are copied bit for bit (no re-encode); rotation and subtitle streams are kept
    where the container allows. The audio is encoded as AAC (mp4/mov) or Opus (mkv/webm).
    The file is written under a temporary name and renamed into place; the input is never written.

    Parameters
    ----------
    video_path : str or PathLike
        The source video.
    audio : np.ndarray
        float32 ``(channels, samples)``, 1 or 2 channels, normally the video's exact length.
    sample_rate : int
        Rate of ``audio`` in Hz.
    output : str or PathLike
        Destination; its extension picks the container.
    original_audio : np.ndarray, optional
        Same shape convention; written as a second audio track that is not played by default.
    overwrite : bool
        Replace an existing ``output``.
    info : MediaInfo, optional
        :func:`probe`'s result for ``video_path``, when the caller has it (saves a demux pass).

    Returns
    -------
    Path
        ``output``.

    Raises
    ------
    BadParameterError, OutputExistsError, UnreadableMediaError
    """
    output = Path(output)
    video_path = check_input_file(video_path)
    if output.exists() and output.resolve() == video_path.resolve():
        raise BadParameterError(f"{output}: output would overwrite the input video")
    if audio.ndim != 2 or audio.shape[0] not in (1, 2):
        raise BadParameterError(f"audio shape {audio.shape} must be (1 or 2 channels, samples)")
    if not np.all(np.isfinite(audio)):
        raise BadParameterError("audio holds NaN or infinite samples")
    fmt = output_format(output)
    codec = AUDIO_CODECS[fmt]
    info = info or probe(video_path)
    with atomic_output(output, overwrite=overwrite) as temp, open_input(video_path) as source:
        video = source.streams[info.video.index]
        with av.open(str(temp), mode="w", format=fmt) as out:
            _check_codec_fits(out, video.codec_context.name, output)
            copies = {video.index: out.add_stream_from_template(video)}
            if info.video.rotation:
                copies[video.index].set_display_rotation(info.video.rotation)
            for sub in source.streams.subtitles:
                if sub.codec_context.name in out.supported_codecs:
                    # a mux-only stream: subtitle packets are copied, no subtitle encoder is opened
                    copies[sub.index] = out.add_mux_stream(sub.codec_context.name, time_base=sub.time_base)
                    copies[sub.index].metadata.update(sub.metadata)
            tracks = [(_add_audio_stream(out, audio, sample_rate, codec, default=True), audio)]
            if original_audio is not None:
                tracks.append((_add_audio_stream(out, original_audio, sample_rate, codec, default=False), original_audio))
            encoded = heapq.merge(*[_audio_packets(s, a, sample_rate) for s, a in tracks], key=_packet_time)
            pending = next(encoded, None)
            last_dts: dict[int, int] = {}
            # Interleave by time. Copied packets are muxed at once, never held: a demuxer's parser
            # may reuse a packet's buffer for the next one (MPEG program streams do).
            for packet in source.demux(*[source.streams[i] for i in copies]):
                if packet.size == 0:
                    continue  # demuxer flush packet
                while pending is not None and _packet_time(pending) <= _packet_time(packet):
                    out.mux(pending)
                    pending = next(encoded, None)
                _make_dts_increase(packet, last_dts)
                packet.stream = copies[packet.stream.index]
                out.mux(packet)
            for packet in itertools.chain([pending] if pending is not None else [], encoded):
                out.mux(packet)
    return output
