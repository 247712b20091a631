"""Media in and out: probe a file, read its audio on the picture's timeline, mux a new soundtrack.

Everything goes through PyAV, which decodes exactly and copies video packets untouched. Audio arrays
are float32 of shape ``(channels, samples)`` with the sample rate passed alongside. The timeline of a
video runs from its first frame's start to its last frame's end; an audio-only file's timeline is its
first audio stream's extent.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import io
import itertools
import os
import re
import resource
import secrets
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import numpy as np

from .errors import BadParameterError, OutputExistsError, ScoretrackError, UnreadableMediaError

# Output container per file extension.
CONTAINER_FORMATS = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
    ".ts": "mpegts",
    ".avi": "avi",
}
FORMAT_NAMES = {"mp4": "an MP4", "mov": "a QuickTime (.mov)", "matroska": "a Matroska (.mkv)", "webm": "a WebM",
                "mpegts": "an MPEG-TS", "avi": "an AVI"}  # for messages: "an MP4 file cannot hold ..."
# The soundtrack of an audio-only input, per extension: (muxer, encoder). An input in one of these
# is scored into its own format; .ogg gets Opus (FFmpeg's own Vorbis encoder is experimental and
# pads the end), which every Ogg player decodes.
AUDIO_OUTPUTS = {
    ".wav": ("wav", "pcm_s24le"),
    ".flac": ("flac", "flac"),
    ".mp3": ("mp3", "libmp3lame"),
    ".m4a": ("ipod", "aac"),
    ".opus": ("ogg", "libopus"),
    ".ogg": ("ogg", "libopus"),
}
AUDIO_FALLBACK_EXTENSION = ".wav"  # for audio inputs in other formats (AIFF, WMA, AC-3...)
# MPEG program streams (.mpg) are not written: their muxer shifts timestamps and drops a frame.
FALLBACK_EXTENSION = ".mkv"
# Audio codec written into each container: AVI gets 16-bit PCM (any layout, no encoder delay).
AUDIO_CODECS = {"mp4": "aac", "mov": "aac", "matroska": "libopus", "webm": "libopus", "mpegts": "aac", "avi": "pcm_s16le"}
# Rates each encoder accepts; other rates are resampled to the first (PCM and FLAC take any).
ENCODER_RATES = {"aac": (48000, 44100, 32000), "libopus": (48000,), "libmp3lame": (48000, 44100, 32000)}
# Sample formats asked of an encoder instead of its first one: 24-bit FLAC, not 16-bit.
ENCODER_FORMATS = {"flac": "s32"}
# --audio-codec names: the lossy ones with their encoders, then the lossless ones.
LOSSY_ENCODERS = {"aac": "aac", "opus": "libopus", "mp3": "libmp3lame"}
LOSSLESS_CODECS = ("pcm", "flac", "alac")
# The --audio-codec names each muxer is written with (what players take there); the first lossless one
# it holds is what a source with lossless sound of another kind gets.
FORMAT_AUDIO_CODECS = {
    "mp4": ("aac", "alac", "opus"), "mov": ("aac", "pcm", "alac"), "matroska": ("opus", "aac", "pcm", "flac", "alac"),
    "webm": ("opus",), "mpegts": ("aac", "opus"), "avi": ("pcm",),
    "wav": ("pcm",), "flac": ("flac",), "mp3": ("mp3",), "ipod": ("aac", "alac"), "ogg": ("opus",),
}
# Encoders of lossless sound for a bit depth of at most 16, 24 and 32 (PCM: integer; float PCM stays float).
LOSSLESS_ENCODINGS = {
    "pcm": {16: ("pcm_s16le", None), 24: ("pcm_s24le", None), 32: ("pcm_s32le", None)},
    "flac": {16: ("flac", "s16"), 24: ("flac", "s32"), 32: ("flac", "s32")},
    "alac": {16: ("alac", "s16p"), 24: ("alac", "s32p"), 32: ("alac", "s32p")},
}
# Channel layouts each encoder writes faithfully (read back with the same layout); PCM and FLAC take
# any (WAV and FLAC record the channel mask).
ENCODER_LAYOUTS = {
    "aac": ("mono", "stereo", "2.1", "3.0", "4.0", "quad", "5.0", "5.1", "7.1"),
    "libopus": ("mono", "stereo", "3.0", "quad", "5.0", "5.1", "6.1", "7.1"),
    "libmp3lame": ("mono", "stereo"),
    "alac": ("mono", "stereo", "3.0", "4.0", "5.0", "5.1"),
}
# Side-surround layouts the encoders lack are written as their back-surround twins (SL->BL, SR->BR).
LAYOUT_SUBSTITUTES = {"5.1(side)": "5.1", "5.0(side)": "5.0"}
# The layout assumed for a channel count when a file or an array names none.
DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
AUDIO_BITRATE = 192_000  # per stereo pair; scaled by the channel count
# Audio files a lossy soundtrack is encoded into to hear it as delivered: each trims the encoder's delay
# and padding, so the file decodes to exactly the samples given (see encoded_blocks).
TRIAL_EXTENSIONS = {"aac": ".m4a", "libopus": ".opus", "libmp3lame": ".mp3"}
# avformat_query_codec cannot answer for MPEG-TS: the codecs its muxer carries.
MPEGTS_CODECS = {"mpeg1video", "mpeg2video", "h264", "hevc", "aac", "ac3", "eac3", "mp2", "mp3", "opus"}
# Demuxers whose H.264/HEVC is framed with start codes (Annex B), as AVI needs; MPEG-TS re-frames
# other H.264 itself (the packets then differ from the source's).
ANNEXB_CONTAINERS = {"avi", "mpegts", "mpeg", "h264", "hevc"}
# Demuxers whose codec tags (fourccs such as apch, hvc1) mean the same in these muxers.
TAG_FAMILIES = {"mov,mp4,m4a,3gp,3g2,mj2": {"mp4", "mov"}, "avi": {"avi"}}
# Containers that hold a start timecode for the picture (a QuickTime tmcd track).
TIMECODE_FORMATS = ("mov", "mp4")
# Codecs that hold still pictures; one frame of these is an image, not a video.
IMAGE_CODECS = {"mjpeg", "png", "gif", "bmp", "webp", "tiff", "jpeg2000", "jpegls", "qoi", "ppm", "pgm", "pam"}
ENCODE_BLOCK = 4096  # samples per frame handed to the encoder
DECODED_BLOCK = 1 << 16  # samples per block encoded_blocks hands on
GAP_S = 0.05  # a jump in audio timestamps larger than this is a gap, filled with silence (Vorbis jitters ~10 ms)
TEMP_PREFIX = ".scoretrack-"
FULL_DISK_BYTES = 1 << 16  # less free than this after a failed write: the disk is full
TEMP_NAME = re.compile(r"\.scoretrack-(\d+)-[0-9a-f]+(\.[^/]*)?$")


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
    timecode: str | None = None  # start timecode, e.g. "01:00:00:00" (QuickTime tmcd, MXF); None when none


@dataclass(frozen=True)
class AudioStreamInfo:
    """One audio stream of the file."""

    index: int
    codec: str
    sample_rate: int
    channels: int
    layout: str  # ffmpeg layout name, e.g. "mono", "stereo", "5.1(side)", "7.1" (unnamed ones get the default)
    channel_names: tuple[str, ...]  # e.g. ("FL", "FR", "FC", "LFE", "SL", "SR")
    start_s: float  # presentation time of the first sample (0 when unknown)
    bit_depth: int | None = None  # of lossless sound (PCM, FLAC, ALAC: 8 to 32); None for lossy sound

    @property
    def lossless_kind(self) -> str | None:
        """``pcm``, ``flac`` or ``alac`` for sound in those codecs, else None."""
        if self.codec.startswith("pcm_"):
            return "pcm"
        return self.codec if self.codec in LOSSLESS_CODECS else None


@dataclass(frozen=True)
class AudioEncoding:
    """How a new soundtrack is encoded (see :func:`audio_encoding`)."""

    codec: str  # FFmpeg encoder: aac, libopus, libmp3lame, pcm_s16le, pcm_s24le, pcm_s32le, pcm_f32le, flac, alac
    sample_format: str | None = None  # asked of the encoder (s16, s32, s16p, s32p); None: its first
    bit_rate: int | None = None  # bits per second per channel pair, lossy codecs only; None: AUDIO_BITRATE

    @property
    def lossless(self) -> bool:
        return self.codec in ("flac", "alac") or self.codec.startswith("pcm_")


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` found in a file."""

    path: Path
    container: str  # demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    start_s: float  # timeline start: the first video frame's start (audio-only: the first audio sample's)
    duration_s: float  # timeline length: last frame's end minus first frame's start
    video: VideoStreamInfo | None  # None for an audio-only file
    audio: tuple[AudioStreamInfo, ...]  # empty when the file has no audio

    @property
    def has_audio(self) -> bool:
        return bool(self.audio)

    @property
    def is_video(self) -> bool:
        return self.video is not None


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
    """Open a media file for reading, turning every PyAV failure into :class:`UnreadableMediaError`.

    Only errors of PyAV are taken for damaged input; code that writes inside the block must turn
    its own write errors into another error first (see :func:`_writing`)."""
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


def write_cause(error: BaseException | None, folder: str | os.PathLike) -> str:
    """Why a write into ``folder`` failed, in facts: the file size limit (``ulimit -f``) with its value,
    a full disk with what is free, else the system's own words. ``error`` may carry no errno (libsndfile's
    "System error."): then a full disk or a file that reached the limit is looked for."""
    number = getattr(error, "errno", None)
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if number == errno.EFBIG or (number is None and limit != resource.RLIM_INFINITY and _reached(folder, limit)):
        return f"a file reached this process's file size limit (ulimit -f) of {limit} bytes"
    if number in (errno.ENOSPC, errno.EDQUOT) or (number is None and free is not None and free < FULL_DISK_BYTES):
        return f"no space left on the device of {folder} ({(free or 0) / 1e6:.1f} MB free)"
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return re.sub(r"\.scoretrack-\d+-[0-9a-f]+[^\s'\"]*", "its temporary file", text)


def _reached(folder, limit: int) -> bool:
    """Whether a temporary file of ours in ``folder`` has reached ``limit`` bytes."""
    try:
        return any(p.stat().st_size >= limit - FULL_DISK_BYTES for p in Path(folder).glob(f"{TEMP_PREFIX}{os.getpid()}-*"))
    except OSError:
        return False


@contextlib.contextmanager
def _writing(output: Path) -> Iterator[None]:
    """Report a failed write (full disk, file size limit, removed folder) as such, naming ``output``,
    so that :func:`open_input` does not take it for damaged input."""
    try:
        yield
    except OSError as error:  # an errno, PyAV's errors included: ENOSPC, EFBIG, EIO, EACCES...
        raise ScoretrackError(f"{output}: cannot write the output ({write_cause(error, output.parent)})") from error
    except av.error.FFmpegError as error:  # its text names the temporary file: keep the cause alone
        raise ScoretrackError(f"{output}: the muxer refused the data ({error.strerror or type(error).__name__})") from error


def _first_video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def _is_image_format(container: av.container.InputContainer) -> bool:
    """An image demuxer: image2 (.jpg, .bmp...), png_pipe and the other *_pipe, gif, apng."""
    name = container.format.name
    return name in ("image2", "gif", "apng") or name.endswith("_pipe")


def _opus_samples(data: bytes) -> int:
    """Samples (48 kHz) an Opus packet decodes to, from its table of contents (RFC 6716, section 3.1)."""
    config, code = data[0] >> 3, data[0] & 3
    if config < 12:
        frame = (480, 960, 1920, 2880)[config % 4]  # SILK: 10, 20, 40, 60 ms
    elif config < 16:
        frame = (480, 960)[config % 2]  # hybrid: 10, 20 ms
    else:
        frame = (120, 240, 480, 960)[config % 4]  # CELT: 2.5, 5, 10, 20 ms
    return frame * (1 if code == 0 else 2 if code < 3 else data[1] & 0x3F)


def _decoded_end(packet: av.Packet, stream) -> float | None:
    """Where the decoder's output of an audio packet ends (seconds) when the packet declares encoder
    padding to drop (AV_PKT_DATA_SKIP_SAMPLES side data: MP3's LAME header, Matroska's DiscardPadding,
    Ogg's last granule). Whether the packet's own duration already leaves that padding out differs
    between demuxers, so the end is counted from the samples the packet holds. None when there is no
    padding, or when only decoding would tell the samples (Vorbis, whose Ogg durations are exact)."""
    if not packet.has_sidedata("skip_samples"):
        return None
    discard = int.from_bytes(bytes(packet.get_sidedata("skip_samples"))[4:8], "little")
    codec = stream.codec_context
    held = _opus_samples(bytes(packet)) if codec.codec.canonical_name == "opus" else codec.frame_size
    if not discard or not held:
        return None
    return float(packet.pts * packet.time_base) + (held - discard) / codec.sample_rate


def _extent(container, stream) -> tuple[float, float, int]:
    """Start, end (seconds) and packet count of one stream, by demuxing packets (no decoding).

    An audio stream ends where its decoder's output does: the encoder padding its last packet
    declares is not part of it. Raises :class:`UnreadableMediaError` when the file holds less than its header declares (a
    truncated download or copy); one packet fewer than the header counts is normal (AVI, MP3)."""
    decoded_end = None  # where the decoder's output ends, when the latest packet declares padding
    count = 0
    previous_pts: dict[int, int] = {}
    first_pts: int | None = None
    last_ends: dict[int, int] = {}  # per stream, the latest packet end in its time base (integers: no Fractions per packet)
    for packet in container.demux():
        pts = packet.pts
        if pts is None or packet.size == 0:
            continue
        index = packet.stream.index
        duration = packet.duration
        if not duration and index in previous_pts:
            duration = pts - previous_pts[index]  # last-frame duration missing: reuse the previous gap
        previous_pts[index] = pts
        last_ends[index] = max(last_ends.get(index, pts), pts + (duration or 0))
        if index == stream.index:
            count += 1
            first_pts = pts if first_pts is None else min(first_pts, pts)
            if stream.type == "audio" and pts + (duration or 0) == last_ends[index]:
                decoded_end = _decoded_end(packet, stream)
    ends = {i: float(end * container.streams[i].time_base) for i, end in last_ends.items()}
    any_end = max(ends.values(), default=0.0)  # end of the latest packet of any stream
    start = float(first_pts * stream.time_base) if first_pts is not None else None
    end = ends.get(stream.index) if decoded_end is None else decoded_end
    declared_s = container.duration / av.time_base if container.duration else None
    # AIFF and CAF headers count PCM sample frames, not packets: only the declared duration is compared
    declared_packets = 0 if stream.codec_context.codec.canonical_name.startswith("pcm_") else stream.frames
    if count == 0 or (declared_packets and count < declared_packets - 1) or (declared_s and any_end < declared_s - 0.5):
        raise UnreadableMediaError(f"{container.name}: truncated or damaged: the file holds {count} {stream.type} packets "
                                   f"ending at {end or 0:.2f} s, less than its header declares")
    return start, end, count


class _SideData(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("size", ctypes.c_size_t), ("type", ctypes.c_int)]


class _CodecParameters(ctypes.Structure):  # the leading fields of FFmpeg 7/8's AVCodecParameters
    _fields_ = [("codec_type", ctypes.c_int), ("codec_id", ctypes.c_int), ("codec_tag", ctypes.c_uint32),
                ("extradata", ctypes.c_void_p), ("extradata_size", ctypes.c_int),
                ("coded_side_data", ctypes.POINTER(_SideData)), ("nb_coded_side_data", ctypes.c_int)]


class _Stream(ctypes.Structure):  # the leading fields of AVStream
    _fields_ = [("av_class", ctypes.c_void_p), ("index", ctypes.c_int), ("id", ctypes.c_int),
                ("codecpar", ctypes.POINTER(_CodecParameters))]


class _FormatContext(ctypes.Structure):  # the leading fields of AVFormatContext
    _fields_ = [("av_class", ctypes.c_void_p), ("iformat", ctypes.c_void_p), ("oformat", ctypes.c_void_p),
                ("priv_data", ctypes.c_void_p), ("pb", ctypes.c_void_p), ("ctx_flags", ctypes.c_int),
                ("nb_streams", ctypes.c_uint), ("streams", ctypes.POINTER(ctypes.POINTER(_Stream)))]


_DISPLAY_MATRIX = 5  # AV_PKT_DATA_DISPLAYMATRIX
_MEDIA_TYPES = {"video": 0, "audio": 1, "data": 2, "subtitle": 3, "attachment": 4}  # AVMediaType


@functools.cache
def _libav() -> tuple[ctypes.CDLL, ctypes.CDLL]:
    """PyAV's own libavformat and libavutil (already loaded by ``import av``), for what PyAV does not expose."""
    loaded = {Path(line.split()[-1]) for line in Path("/proc/self/maps").read_text().splitlines() if "/libav" in line}
    def find(name: str) -> ctypes.CDLL:
        return ctypes.CDLL(str(next(p for p in loaded if p.name.startswith(name))))
    avformat, avutil = find("libavformat"), find("libavutil")
    avformat.avformat_open_input.argtypes = [ctypes.POINTER(ctypes.POINTER(_FormatContext)), ctypes.c_char_p,
                                             ctypes.c_void_p, ctypes.c_void_p]
    avformat.avformat_close_input.argtypes = [ctypes.POINTER(ctypes.POINTER(_FormatContext))]
    avutil.av_display_rotation_get.restype = ctypes.c_double
    avutil.av_display_rotation_get.argtypes = [ctypes.c_void_p]
    return avformat, avutil


def _display_rotations(path: Path, container: av.container.InputContainer) -> dict[int, float] | None:
    """Display rotation (degrees, counter-clockwise) per stream index, from the streams' display-matrix
    side data, read from the header alone: no decoder is needed (PyAV 18 has no reader for stream side
    data, so this asks PyAV's own libavformat). None when that library does not look as expected."""
    try:
        avformat, avutil = _libav()
    except (OSError, StopIteration, AttributeError):
        return None
    context = ctypes.POINTER(_FormatContext)()
    if avformat.avformat_open_input(ctypes.byref(context), os.fsencode(path), None, None) < 0:
        return None
    try:
        found = {}
        # streams found later, while PyAV probed packets (MPEG-PS, TS), carry no header side data
        if context.contents.nb_streams > len(container.streams):
            return None
        for i in range(context.contents.nb_streams):
            ours, stream = container.streams[i], context.contents.streams[i].contents
            parameters = stream.codecpar.contents
            if (stream.index != ours.index or parameters.codec_type != _MEDIA_TYPES.get(ours.type)
                    or not 0 <= parameters.nb_coded_side_data < 64):
                return None  # not the struct layout this code was written for
            for k in range(parameters.nb_coded_side_data):
                side = parameters.coded_side_data[k]
                if side.type == _DISPLAY_MATRIX and side.size == 36:
                    found[i] = round(avutil.av_display_rotation_get(side.data), 3) + 0.0  # -0.0 -> 0.0
        return found
    finally:
        avformat.avformat_close_input(ctypes.byref(context))


def _timecode(container, stream) -> str | None:
    """The picture's start timecode: the video stream's own, a QuickTime tmcd track's, or the file's (MXF)."""
    for holder in (stream, *container.streams.data, container):
        if holder.metadata.get("timecode"):
            return holder.metadata["timecode"]
    return None


def _rotation(path: Path, container, stream) -> float:
    """Display rotation of a video stream, from its side data; decoding its first frame (which seeks the
    container) only where the side data cannot be read."""
    rotations = _display_rotations(path, container)
    if rotations is not None:
        return rotations.get(stream.index, 0.0)
    container.seek(0)
    for frame in container.decode(stream):
        return float(frame.rotation or 0)
    return 0.0


def channel_layout_name(layout: av.AudioLayout) -> str:
    """The layout's ffmpeg name; an unnamed order ("6 channels") gets the default layout of its count."""
    if any(channel.name == "NONE" for channel in layout.channels):
        return DEFAULT_LAYOUTS.get(layout.nb_channels, layout.name)
    return layout.name


def channel_names(layout: str) -> tuple[str, ...]:
    """Channel names of an ffmpeg layout name, in order: ``channel_names("5.1(side)")`` is
    ``("FL", "FR", "FC", "LFE", "SL", "SR")``.

    Raises
    ------
    BadParameterError
        ``layout`` is not a layout name ffmpeg knows.
    """
    try:
        return tuple(channel.name for channel in av.AudioLayout(layout).channels)
    except (ValueError, TypeError, av.error.FFmpegError) as error:
        raise BadParameterError(f"layout={layout!r} is not a channel layout (use e.g. mono, stereo, 5.1, 7.1)") from error


def _audio_info(stream) -> AudioStreamInfo:
    codec = stream.codec_context
    layout = channel_layout_name(codec.layout)
    return AudioStreamInfo(
        index=stream.index,
        codec=codec.codec.canonical_name,
        sample_rate=codec.sample_rate,
        channels=codec.channels,
        layout=layout,
        channel_names=channel_names(layout),
        start_s=float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0,
        bit_depth=_bit_depth(codec.codec.canonical_name, codec.format.bits if codec.format else 0),
    )


def _bit_depth(codec: str, format_bits: int) -> int | None:
    """Bits per sample of lossless sound: PCM's from its name (pcm_s24le: 24), FLAC's and ALAC's from
    the decoded format (s16: 16; s32 holds their 24-bit sound); None for lossy sound."""
    if codec.startswith("pcm_"):
        digits = re.search(r"(\d+)", codec)
        return int(digits.group(1)) if digits else None
    if codec in ("flac", "alac"):
        return 16 if format_bits <= 16 else 24
    return None


def probe(path: str | os.PathLike) -> MediaInfo:
    """Describe a media file: its container, first real video stream, audio streams and exact timeline.

    One demux pass, no decoding. For a video the timeline runs from the first frame's start to the
    last frame's end, measured on the packets, so it works without a container duration, whatever
    order the streams come in and whatever the start time. A file without a real video stream (an
    attached cover picture is not one) is audio-only: its timeline is the first audio stream's extent.

    Parameters
    ----------
    path : str or PathLike
        A video or audio file.

    Returns
    -------
    MediaInfo

    Raises
    ------
    UnreadableMediaError
        The file is missing, empty, not media, truncated, a still image, or has neither video nor audio.
    """
    path = check_input_file(path)
    with open_input(path) as container:
        stream = _first_video_stream(container)
        audio = tuple(_audio_info(s) for s in container.streams.audio)
        if stream is None:
            if not audio:
                raise UnreadableMediaError(f"{path}: has neither a video nor an audio stream")
            first = container.streams.audio[0]
            start_s, end_s, _ = _extent(container, first)
            if first.start_time is not None:  # encoder priming (AAC, MP3) starts before the first sample played
                start_s = max(start_s, float(first.start_time * first.time_base))
            return MediaInfo(path=path, container=container.format.name, start_s=start_s, duration_s=end_s - start_s,
                             video=None, audio=audio)
        if _is_image_format(container):
            raise UnreadableMediaError(f"{path}: is a still image, not a video")
        start_s, end_s, count = _extent(container, stream)
        if count == 1 and stream.codec_context.codec.canonical_name in IMAGE_CODECS:
            raise UnreadableMediaError(f"{path}: is a still image, not a video")
        rotation = _rotation(path, container, stream)
        codec = stream.codec_context
        video = VideoStreamInfo(
            index=stream.index,
            codec=codec.codec.canonical_name,
            width=codec.width,
            height=codec.height,
            frame_rate=float(stream.average_rate or stream.guessed_rate or 0),
            frame_count=count,
            rotation=rotation,
            start_s=start_s,
            end_s=end_s,
            timecode=_timecode(container, stream),
        )
        return MediaInfo(path=path, container=container.format.name, start_s=start_s, duration_s=end_s - start_s,
                         video=video, audio=audio)


def sample_count(duration_s: float, sample_rate: int) -> int:
    """Number of samples that span ``duration_s`` seconds at ``sample_rate``: ``round(duration_s * sample_rate)``."""
    return int(round(duration_s * sample_rate))


def _packed_to_planar(frame: av.AudioFrame) -> np.ndarray:
    """(channels, samples) float32 from a packed "flt" frame.

    Packed frames have one plane. PyAV 18 counts the planes of a planar frame by scanning for a NULL
    pointer past ``AV_NUM_DATA_POINTERS``, which with exactly 8 channels (7.1) reads garbage and
    crashes (exit 139) in ``to_ndarray``; so audio crosses into numpy packed, never planar."""
    return frame.to_ndarray().reshape(frame.samples, -1).T


def read_audio(
    path: str | os.PathLike,
    *,
    sample_rate: int,
    channels: int | None = 1,
    duration_s: float | None = None,
    start_s: float | None = None,
    stream_index: int | None = None,
) -> np.ndarray:
    """Decode a file's audio onto its timeline (the picture's, for a video).

    Sample 0 of the result is the audio at ``start_s`` (the first video frame's start); the result has
    exactly ``round(duration_s * sample_rate)`` samples: audio before the start or after the end is
    cut, audio that starts late, ends early or has gaps is padded with silence. Memory grows with the
    audio only; video packets are skipped, never decoded.

    Parameters
    ----------
    path : str or PathLike
        A video or audio file.
    sample_rate : int
        Output rate in Hz, > 0.
    channels : int or None
        1 (mono) or 2 (stereo), down- or up-mixed with libswresample's standard matrix whatever the
        source layout (mono to 7.1); None keeps the source's own channels and layout.
    duration_s : float, optional
        Timeline length in seconds; defaults to :func:`probe`'s ``duration_s``.
    start_s : float, optional
        Timeline start in the file's own time, seconds; defaults to :func:`probe`'s ``start_s``.
    stream_index : int, optional
        Which audio stream (its index in the file); defaults to the first.

    Returns
    -------
    np.ndarray
        float32, shape ``(channels, round(duration_s * sample_rate))``; silence when there is no audio
        (one channel when ``channels`` is None).

    Raises
    ------
    BadParameterError, UnreadableMediaError
    """
    if sample_rate <= 0:
        raise BadParameterError(f"sample_rate={sample_rate} must be a positive number of Hz")
    if channels not in (1, 2, None):
        raise BadParameterError(f"channels={channels} must be 1, 2 or None (keep the source's channels)")
    if duration_s is None or start_s is None:
        info = probe(path)
        duration_s = info.duration_s if duration_s is None else duration_s
        start_s = info.start_s if start_s is None else start_s
    total = sample_count(duration_s, sample_rate)
    with open_input(path) as container:
        if not container.streams.audio:
            return np.zeros((channels or 1, total), dtype=np.float32)
        streams = {s.index: s for s in container.streams.audio}
        if stream_index is not None and stream_index not in streams:
            raise BadParameterError(f"stream_index={stream_index}: {path} has audio streams {sorted(streams)}")
        stream = streams[stream_index] if stream_index is not None else container.streams.audio[0]
        layout = DEFAULT_LAYOUTS[channels] if channels else channel_layout_name(stream.codec_context.layout)
        out = np.zeros((av.AudioLayout(layout).nb_channels, total), dtype=np.float32)
        resampler = av.AudioResampler(format="flt", layout=layout, rate=sample_rate)
        position = 0  # next output index
        expected_s = None  # where the next decoded frame starts if there is no gap
        base = stream.time_base  # of the decoded frames' pts; as a ratio of ints, no Fraction per frame
        for frame in _decoded_frames(container, stream):
            time_s = frame.pts * base.numerator / base.denominator if frame.pts is not None else expected_s or 0.0
            if expected_s is None:
                position = sample_count(time_s - start_s, sample_rate)
            elif time_s - expected_s > GAP_S:
                position += sample_count(time_s - expected_s, sample_rate)  # a gap: leave silence
            expected_s = time_s + frame.samples / frame.sample_rate
            for resampled in resampler.resample(frame):
                position = _place(out, _packed_to_planar(resampled), position)
        for resampled in resampler.resample(None):
            position = _place(out, _packed_to_planar(resampled), position)
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

    The temporary file is named ``.scoretrack-<pid>-<random><suffix>`` so that a later run can tell
    a stale one (its process is gone) from one being written: see :func:`remove_stale_temp_files`.

    Raises
    ------
    OutputExistsError
        ``output`` exists and ``overwrite`` is false.
    BadParameterError
        The folder of ``output`` does not exist.
    ScoretrackError
        The folder cannot be written.
    """
    output = Path(output)
    if output.exists() and not overwrite:
        raise OutputExistsError(f"{output}: already exists (pass overwrite/--force to replace it)")
    if not output.parent.is_dir():
        raise BadParameterError(f"{output}: folder {output.parent} does not exist")
    temp = output.parent / f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}{output.suffix}"
    with _writing(output):
        umask = os.umask(0)
        os.umask(umask)
        os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 & ~umask))
    try:
        yield temp
        os.replace(temp, output)
    finally:
        temp.unlink(missing_ok=True)


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files :func:`atomic_output` left in ``folder`` for processes no longer alive
    (killed with SIGKILL, or a machine that lost power); return the paths removed.

    Files of running processes (this one included) and every other file are left alone.
    """
    removed = []
    if not Path(folder).is_dir():
        return removed
    for path in Path(folder).iterdir():
        match = TEMP_NAME.fullmatch(path.name)
        if match and path.is_file() and not _process_alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return sorted(removed)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def format_name(fmt: str) -> str:
    """A container format as a message names it, with its article: ``an MP4``, ``a Matroska (.mkv)``."""
    return FORMAT_NAMES.get(fmt, f"a {fmt}")


def output_format(output: str | os.PathLike) -> str:
    """The container format written for an output file name, from its extension."""
    suffix = Path(output).suffix.lower()
    if suffix not in CONTAINER_FORMATS:
        names = ", ".join(sorted(CONTAINER_FORMATS))
        raise BadParameterError(f"{output}: unsupported output extension {suffix or '(none)'!r}; use one of {names}")
    return CONTAINER_FORMATS[suffix]


@functools.cache
def _supported_codecs(fmt: str) -> frozenset[str]:
    if fmt == "mpegts":
        return frozenset(MPEGTS_CODECS)
    with av.open(os.devnull, "w", format=fmt) as probe_container:
        return frozenset(probe_container.supported_codecs)


def _extensions_holding(codec: str, info: MediaInfo | None = None) -> list[str]:
    """Extensions whose container lists ``codec`` (and, given the clip, takes its picture's header)."""
    return [ext for ext, fmt in CONTAINER_FORMATS.items()
            if codec in _supported_codecs(fmt) and (info is None or _header_accepts(info, fmt))]


_HEADER_TRIALS: dict[tuple[str, str, str], bool] = {}


def _header_accepts(info: MediaInfo, fmt: str) -> bool:
    """Whether ``fmt``'s muxer writes a header for a copy of ``info``'s picture, tried in memory: a codec
    may be listed and still refused (VP8, VP9 and AV1 in .mov), which only writing the header shows."""
    key = (info.video.codec, info.container, fmt)
    if key not in _HEADER_TRIALS and fmt != "mpegts":  # the MPEG-TS muxer is checked by codec alone
        with open_input(info.path) as source:
            try:  # caught here: open_input would take a muxer's refusal for damaged input
                with av.open(io.BytesIO(), "w", format=fmt) as out:
                    out.add_stream_from_template(source.streams[info.video.index], opaque=True)
                    out.start_encoding()
                _HEADER_TRIALS[key] = True
            except (av.error.FFmpegError, ValueError):
                _HEADER_TRIALS[key] = False
    return _HEADER_TRIALS.get(key, True)


def default_output_extension(info: MediaInfo) -> str:
    """The output extension that holds ``info``'s picture unchanged, by codec and source container.

    Audio-only: the input's own extension when it is one of :data:`AUDIO_OUTPUTS` (``.mp3``,
    ``.m4a``, ``.opus``, ``.ogg``, ``.flac``, ``.wav``), else ``.wav``. DNxHD/DNxHR, ProRes and any MXF: ``.mov``.
    MPEG-TS: ``.ts`` (H.264 kept in Annex B framing). AVI: ``.avi`` when AVI holds the codec (the
    picture is copied bit for bit; the new sound is PCM). Otherwise the input's own extension when
    scoretrack writes it and it holds the codec, else ``.mkv``, else ``.mov``.
    """
    if info.video is None:
        return info.path.suffix if info.path.suffix.lower() in AUDIO_OUTPUTS else AUDIO_FALLBACK_EXTENSION
    codec, container = info.video.codec, info.container
    if codec in ("dnxhd", "prores") or container == "mxf":
        return ".mov"
    own = {"mpegts": ".ts", "avi": ".avi"}.get(container, info.path.suffix)  # keeps the input's case (.MOV)
    for suffix in (own, FALLBACK_EXTENSION, ".mov"):
        fmt = CONTAINER_FORMATS.get(suffix.lower())
        if fmt is not None and codec in _supported_codecs(fmt):
            return suffix
    return FALLBACK_EXTENSION


def check_output(info: MediaInfo, output: str | os.PathLike, *, layout: str | None = None,
                 encoding: AudioEncoding | None = None) -> None:
    """Check, without writing anything, that ``output`` can hold ``info``'s picture and a new soundtrack
    (for an audio-only input: that ``output`` is an audio format scoretrack writes, holding ``layout``).

    Parameters
    ----------
    info : MediaInfo
        :func:`probe`'s result for the input.
    output : str or PathLike
        The planned output file; its extension picks the container.
    layout : str, optional
        Channel layout of the new soundtrack (e.g. "stereo", "5.1(side)"); checked against the
        audio codec when given.
    encoding : AudioEncoding, optional
        The new soundtrack's encoding (:func:`audio_encoding`); None: the container's default codec.

    Raises
    ------
    BadParameterError
        The extension is not one scoretrack writes, the container cannot hold the video codec (the
        message names the extensions that can), or the audio codec cannot hold ``layout``.
    """
    output = Path(output)
    if output.is_dir():
        raise BadParameterError(f"{output}: is a folder; give the output a file name (or use --out-dir for a folder)")
    if info.video is None:
        codec = audio_output_codec(output)
        if layout is not None:
            _encoder_layout(encoding.codec if encoding else codec, layout, output)
        return
    fmt = output_format(output)
    if info.video.codec not in _supported_codecs(fmt) or not _header_accepts(info, fmt):
        fits = _extensions_holding(info.video.codec, info)
        hint = f"; write {', '.join(fits)} instead" if fits else ""
        raise BadParameterError(f"{output}: {format_name(fmt)} file cannot hold {info.video.codec} video{hint}")
    if fmt == "avi" and info.video.codec in ("h264", "hevc") and info.container not in ANNEXB_CONTAINERS:
        raise BadParameterError(f"{output}: {info.video.codec} from a {info.container} file needs re-framing "
                                f"(mp4toannexb) to go into AVI; write {default_output_extension(info)} instead")
    if layout is not None:
        _encoder_layout(encoding.codec if encoding else AUDIO_CODECS[fmt], layout, output)


def audio_output_codec(output: str | os.PathLike) -> str:
    """The encoder of an audio-only output, from its extension (see :data:`AUDIO_OUTPUTS`).

    Raises
    ------
    BadParameterError
        An extension scoretrack does not write audio into (a video container, say).
    """
    suffix = Path(output).suffix.lower()
    if suffix not in AUDIO_OUTPUTS:
        raise BadParameterError(f"{output}: the input has no picture; write one of {', '.join(AUDIO_OUTPUTS)}")
    return AUDIO_OUTPUTS[suffix][1]


def _audio_muxer(info: MediaInfo, output: Path) -> str:
    """The muxer of ``output``: its container's, or for an audio-only input its audio format's."""
    if info.video is None:
        audio_output_codec(output)  # an extension scoretrack writes audio into
        return AUDIO_OUTPUTS[output.suffix.lower()][0]
    return output_format(output)


def audio_encoding(info: MediaInfo, output: str | os.PathLike, *, codec: str = "auto",
                   bit_rate: int | None = None) -> AudioEncoding:
    """The encoding of ``output``'s new soundtrack, from ``--audio-codec`` (``codec``) and the container.

    ``auto`` keeps lossless sound lossless: a source with PCM, FLAC or ALAC sound gets its own codec
    where the container holds it (PCM in .mov, .mkv, .avi, .wav; FLAC in .mkv, .flac; ALAC in .mp4,
    .m4a, .mov, .mkv), else another lossless one it holds; any other source gets the container's
    default (:data:`AUDIO_CODECS`, :data:`AUDIO_OUTPUTS`). Lossless sound keeps the source's bit depth
    (16, 24 or 32 bits; float PCM stays float); from lossy sound it is 24-bit (16-bit PCM in AVI).

    Parameters
    ----------
    info : MediaInfo
        :func:`probe`'s result for the input.
    output : str or PathLike
        The output file; its extension picks the container.
    codec : str
        auto, or a name of :data:`LOSSY_ENCODERS` or :data:`LOSSLESS_CODECS`.
    bit_rate : int, optional
        Bits per second per channel pair of a lossy codec; None: :data:`AUDIO_BITRATE`.

    Raises
    ------
    BadParameterError
        The container cannot hold ``codec`` (the message names what it holds and the extensions that hold it).
    """
    output = Path(output)
    muxer = _audio_muxer(info, output)
    holds = FORMAT_AUDIO_CODECS[muxer]
    source = info.audio[0] if info.has_audio else None
    kind = source.lossless_kind if source is not None else None
    if codec == "auto":
        kinds = [name for name in (kind, *LOSSLESS_CODECS) if name in holds] if kind else []
        if not kinds:
            default = AUDIO_CODECS[muxer] if info.video is not None else AUDIO_OUTPUTS[output.suffix.lower()][1]
            return AudioEncoding(default, ENCODER_FORMATS.get(default), bit_rate)
        codec = kinds[0]
    elif codec not in holds:
        muxers = ({ext: muxer for ext, (muxer, _) in AUDIO_OUTPUTS.items()} if info.video is None
                  else CONTAINER_FORMATS)
        fits = [ext for ext, fmt in muxers.items() if codec in FORMAT_AUDIO_CODECS[fmt]]
        raise BadParameterError(f"{output}: --audio-codec {codec}: a {output.suffix or muxer} file cannot hold "
                                f"{codec} sound; use --audio-codec {', '.join(holds[:-1]) + ' or ' if holds[:-1] else ''}{holds[-1]}"
                                + (f", or write {', '.join(fits)}" if fits else ""))
    if codec in LOSSY_ENCODERS:
        return AudioEncoding(LOSSY_ENCODERS[codec], bit_rate=bit_rate)
    bits = source.bit_depth if kind and source.bit_depth else 16 if muxer == "avi" else 24
    if codec == "pcm" and source is not None and source.codec.startswith("pcm_f"):
        return AudioEncoding("pcm_f32le")
    encoder, sample_format = LOSSLESS_ENCODINGS[codec][16 if bits <= 16 else 24 if bits <= 24 else 32]
    return AudioEncoding(encoder, sample_format)


def output_notes(info: MediaInfo, output: str | os.PathLike) -> list[str]:
    """One line for each thing of the input that ``output``'s container drops: today, the picture's
    start timecode outside .mov and .mp4. Empty when everything is kept."""
    if info.video is None or not info.video.timecode or output_format(output) in TIMECODE_FORMATS:
        return []
    keep = [ext for ext in _extensions_holding(info.video.codec) if CONTAINER_FORMATS[ext] in TIMECODE_FORMATS]
    advice = f" (write {' or '.join(keep)} to keep it)" if keep else ""
    return [f"timecode {info.video.timecode} dropped: {format_name(output_format(output))} file cannot hold it{advice}"]


def _encoder_layout(codec: str, layout: str, output: Path) -> str:
    """The layout the encoder writes for ``layout``: itself, or its back-surround twin."""
    channel_names(layout)  # a layout ffmpeg knows
    if codec not in ENCODER_LAYOUTS or layout in ENCODER_LAYOUTS[codec]:
        return layout
    if LAYOUT_SUBSTITUTES.get(layout) in ENCODER_LAYOUTS[codec]:
        return LAYOUT_SUBSTITUTES[layout]
    if output.suffix.lower() in AUDIO_OUTPUTS:
        fits = [ext for ext, (_, other) in AUDIO_OUTPUTS.items() if other not in ENCODER_LAYOUTS]
    else:
        fits = [ext for ext, fmt in CONTAINER_FORMATS.items() if AUDIO_CODECS[fmt] not in ENCODER_LAYOUTS]
    raise BadParameterError(f"{output}: {codec} cannot hold {layout} audio ({len(channel_names(layout))} channels); "
                            f"use a layout among {', '.join(ENCODER_LAYOUTS[codec])} or write {', '.join(fits)}")


def _audio_blocks(audio: np.ndarray | Iterable[np.ndarray]) -> tuple[int, Iterator[np.ndarray]]:
    """Channel count and a lazy, checked iterator of float32 ``(channels, n)`` blocks: an array is cut
    into blocks, an iterable is consumed as it comes (only its first block is read here)."""
    if isinstance(audio, np.ndarray):
        _check_block(audio, audio.shape[0] if audio.ndim == 2 else 0)
        blocks = (audio[:, i : i + ENCODE_BLOCK] for i in range(0, audio.shape[1], ENCODE_BLOCK))
        return audio.shape[0], blocks
    blocks = iter(audio)
    first = next(blocks, None)
    if first is None:
        raise BadParameterError("audio: the block iterable is empty")
    first = np.asarray(first)
    channels = first.shape[0] if first.ndim == 2 else 0
    _check_block(first, channels)
    return channels, (_check_block(np.asarray(b), channels) for b in itertools.chain([first], blocks))


def _check_block(block: np.ndarray, channels: int) -> np.ndarray:
    if block.ndim != 2 or not 1 <= block.shape[0] <= 8 or block.shape[0] != channels:
        raise BadParameterError(f"audio block shape {block.shape} must be ({channels or '1 to 8'} channels, samples)")
    if not np.all(np.isfinite(block)):
        raise BadParameterError("audio holds NaN or infinite samples")
    return block


def _layout_of(layout: str | None, channels: int) -> str:
    """``layout``, checked against the audio's channel count; by default the count's standard layout."""
    layout = layout or DEFAULT_LAYOUTS[channels]
    if len(channel_names(layout)) != channels:
        raise BadParameterError(f"layout={layout!r} has {len(channel_names(layout))} channels, the audio {channels}")
    return layout


def encoded_rate(codec: str, sample_rate: int) -> int:
    """The rate ``codec``'s encoder writes audio of ``sample_rate`` Hz at (:data:`ENCODER_RATES`)."""
    rates = ENCODER_RATES.get(codec)
    return rates[0] if rates and sample_rate not in rates else sample_rate


def _add_audio_stream(out, encoding: AudioEncoding, layout: str, sample_rate: int):
    """Add the new soundtrack's stream, played by default."""
    stream = out.add_stream(encoding.codec, rate=encoded_rate(encoding.codec, sample_rate), layout=layout)
    if encoding.sample_format is not None:
        stream.codec_context.format = encoding.sample_format
    if not encoding.lossless:  # a lossless codec takes no bit rate
        stream.bit_rate = (encoding.bit_rate or AUDIO_BITRATE) * max(1, av.AudioLayout(layout).nb_channels // 2)
    stream.disposition = av.stream.Disposition.default
    return stream


def _audio_packets(stream, blocks: Iterator[np.ndarray], layout: str, sample_rate: int, start_s: float) -> Iterator[av.Packet]:
    """Encode the blocks into ``stream``'s codec, lazily, packet by packet; the first sample is at ``start_s``."""
    codec = stream.codec_context
    resampler = av.AudioResampler(format=codec.format.name, layout=codec.layout.name, rate=codec.sample_rate)
    position = sample_count(start_s, sample_rate)
    for block in blocks:
        if not block.shape[1]:
            continue
        packed = np.ascontiguousarray(block.T, dtype=np.float32).reshape(1, -1)  # see _packed_to_planar
        frame = av.AudioFrame.from_ndarray(packed, format="flt", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = position
        frame.time_base = Fraction(1, sample_rate)
        position += block.shape[1]
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


def _packet_time(packet: av.Packet, bases: dict[av.stream.Stream, tuple[int, int]]) -> float:
    """Decode time in seconds (Matroska leaves some dts unset: use the pts); ``bases`` caches each
    stream's time base as (numerator, denominator), which is much cheaper than a Fraction per packet."""
    stamp = packet.dts if packet.dts is not None else packet.pts
    stream = packet.stream
    if stream not in bases:
        base = packet.time_base  # an output stream's own time base is set only once the muxer starts
        bases[stream] = (base.numerator, base.denominator)
    numerator, denominator = bases[stream]
    return (stamp or 0) * numerator / denominator


def _copy_video_stream(out, source, video, info: VideoStreamInfo):
    """The output stream for a bit-exact copy of ``video``, keeping what the picture carries: codec tag
    (apch/apcn/ap4h, hvc1) where the muxer reads tags the same way, pixel aspect ratio, colour and field
    order (copied with the codec parameters), rotation and a QuickTime timecode."""
    # opaque: reuse the decoder's codec; no encoder of that name may exist (AV1 decoded by libdav1d)
    copy = out.add_stream_from_template(video, opaque=True)
    if out.format.name in TAG_FAMILIES.get(source.format.name, ()):
        copy.codec_context.codec_tag = video.codec_context.codec_tag
    if video.sample_aspect_ratio:
        copy.codec_context.sample_aspect_ratio = video.sample_aspect_ratio
    if info.rotation:
        copy.set_display_rotation(info.rotation)
    if info.timecode and out.format.name in TIMECODE_FORMATS:
        copy.metadata["timecode"] = info.timecode  # the muxer writes it as a tmcd track
        # ...counted at the stream's frame rate, which intra codecs (ProRes, DNxHR) leave unset
        copy.codec_context.framerate = video.average_rate or video.guessed_rate
    return copy


def _copy_audio_streams(out, source, output: Path) -> dict[int, av.stream.Stream]:
    """Non-default copies of every original audio stream the output can hold; the others are skipped
    with a warning."""
    copies = {}
    for stream in source.streams.audio:
        codec = stream.codec_context.codec.canonical_name
        if codec not in _supported_codecs(out.format.name):
            warnings.warn(f"{output}: original audio stream #{stream.index} ({codec}) skipped: "
                          f"{format_name(out.format.name)} file cannot hold it", stacklevel=3)
            continue
        copy = out.add_stream_from_template(stream, opaque=True)
        if out.format.name in TAG_FAMILIES.get(source.format.name, ()):
            copy.codec_context.codec_tag = stream.codec_context.codec_tag
        copy.metadata.update(stream.metadata)
        copy.disposition = 0
        copies[stream.index] = copy
    return copies


def _copy_subtitle_streams(out, source) -> dict[int, av.stream.Stream]:
    copies = {}
    for sub in source.streams.subtitles:
        if sub.codec_context.name in _supported_codecs(out.format.name):
            # a mux-only stream: subtitle packets are copied, no subtitle encoder is opened
            copies[sub.index] = out.add_mux_stream(sub.codec_context.name, time_base=sub.time_base)
            copies[sub.index].metadata.update(sub.metadata)
    return copies


def mux(
    video_path: str | os.PathLike,
    audio: np.ndarray | Iterable[np.ndarray],
    *,
    sample_rate: int,
    output: str | os.PathLike,
    layout: str | None = None,
    keep_original_audio: bool = False,
    overwrite: bool = False,
    info: MediaInfo | None = None,
    encoding: AudioEncoding | None = None,
) -> Path:
    """Write ``video_path``'s picture with ``audio`` as its soundtrack into ``output``.

    Video packets are copied bit for bit (no re-encode), with their codec tag, pixel aspect ratio,
    colour metadata, field order, rotation and QuickTime timecode (a tmcd track, in .mov and .mp4);
    subtitle streams are kept where the container allows. Matroska outputs lose a non-square pixel
    aspect ratio: its muxer reads it from a stream field PyAV 18 cannot set (the default output of a
    .mov source is .mov). The new audio starts with the first video frame and is encoded as AAC
    (mp4, mov, ts), Opus (mkv, webm) or 16-bit PCM (avi), unless the source's sound is lossless or
    ``encoding`` says otherwise (:func:`audio_encoding`). The file is written under a temporary name
    and renamed into place; the input is never written. Everything that can be checked is checked
    before anything is written.

    Parameters
    ----------
    video_path : str or PathLike
        The source video.
    audio : np.ndarray or iterable of np.ndarray
        float32 ``(channels, samples)``, 1 to 8 channels, normally the video's exact length; or an
        iterable of ``(channels, n)`` blocks, consumed one at a time (an hour-long mix need never be
        held whole).
    sample_rate : int
        Rate of ``audio`` in Hz.
    output : str or PathLike
        Destination; its extension picks the container (see :func:`check_output`).
    layout : str, optional
        Channel layout of ``audio`` ("mono", "stereo", "5.1(side)", "7.1"...); defaults to ffmpeg's
        standard layout for the channel count. AAC and Opus write side surrounds as back surrounds
        (5.1(side) as 5.1); a layout the codec cannot hold is a :class:`BadParameterError`.
    keep_original_audio : bool
        Also copy every original audio stream's packets, bit for bit, as non-default tracks after the
        new one. A stream whose codec the output container cannot hold is skipped with a warning
        (never re-encoded).
    overwrite : bool
        Replace an existing ``output``.
    info : MediaInfo, optional
        :func:`probe`'s result for ``video_path``, when the caller has it (saves a demux pass).
    encoding : AudioEncoding, optional
        How the new soundtrack is encoded; None: :func:`audio_encoding`'s ``auto`` (lossless sound
        stays lossless where the container holds it).

    Returns
    -------
    Path
        ``output``.

    Raises
    ------
    BadParameterError, OutputExistsError, UnreadableMediaError
    ScoretrackError
        The output could not be written (disk full, file too large).
    """
    output = Path(output)
    video_path = check_input_file(video_path)
    if output.exists() and output.resolve() == video_path.resolve():
        raise BadParameterError(f"{output}: output would overwrite the input video")
    channels, blocks = _audio_blocks(audio)
    layout = _layout_of(layout, channels)
    info = info or probe(video_path)
    if info.video is None:
        raise BadParameterError(f"{video_path}: has no picture to mux; write its soundtrack as an audio file")
    encoding = encoding or audio_encoding(info, output)
    check_output(info, output, layout=layout, encoding=encoding)
    fmt = output_format(output)
    with atomic_output(output, overwrite=overwrite) as temp, open_input(video_path) as source:
        with _writing(output):
            out = av.open(str(temp), mode="w", format=fmt)
        try:
            video = source.streams[info.video.index]
            copies = {video.index: _copy_video_stream(out, source, video, info.video)}
            with _writing(output):
                stream = _add_audio_stream(out, encoding, _encoder_layout(encoding.codec, layout, output), sample_rate)
            if keep_original_audio:
                copies.update(_copy_audio_streams(out, source, output))
            copies.update(_copy_subtitle_streams(out, source))
            encoded = _audio_packets(stream, blocks, layout, sample_rate, info.start_s)
            _interleave(out, source, copies, encoded, output)
        except BaseException:
            with contextlib.suppress(Exception):
                out.close()  # the first error is the one to report
            raise
        with _writing(output):
            out.close()
    return output


def write_audio(
    audio: np.ndarray | Iterable[np.ndarray],
    *,
    sample_rate: int,
    output: str | os.PathLike,
    layout: str | None = None,
    overwrite: bool = False,
    encoding: AudioEncoding | None = None,
) -> Path:
    """Write a soundtrack alone into an audio file whose extension picks the format (:data:`AUDIO_OUTPUTS`).

    WAV is 24-bit PCM and FLAC 24-bit, both recording the channel mask (a 5.1(side) file reads back
    as 5.1(side)); MP3, AAC (.m4a) and Opus (.opus, .ogg) are 192 kb/s per channel pair and declare
    their encoder delay and padding, so the file decodes to exactly the samples given. Written under
    a temporary name and renamed into place.

    Parameters
    ----------
    audio : np.ndarray or iterable of np.ndarray
        float32 ``(channels, samples)``, 1 to 8 channels, or an iterable of ``(channels, n)`` blocks.
    sample_rate : int
        Rate of ``audio`` in Hz; Opus files are 48 kHz, MP3 and AAC resample rates they lack to 48 kHz.
    output : str or PathLike
        Destination: .wav, .flac, .mp3, .m4a, .opus or .ogg.
    layout : str, optional
        Channel layout of ``audio``; defaults to ffmpeg's standard layout for the channel count.
    overwrite : bool
        Replace an existing ``output``.
    encoding : AudioEncoding, optional
        How it is encoded (:func:`audio_encoding`); None: the extension's own (above).

    Returns
    -------
    Path
        ``output``.

    Raises
    ------
    BadParameterError
        Another extension, or a layout the codec cannot hold (MP3 holds mono and stereo).
    OutputExistsError
    ScoretrackError
        The output could not be written (disk full, file too large).
    """
    output = Path(output)
    codec = audio_output_codec(output)
    encoding = encoding or AudioEncoding(codec, ENCODER_FORMATS.get(codec))
    channels, blocks = _audio_blocks(audio)
    layout = _layout_of(layout, channels)
    written = _encoder_layout(encoding.codec, layout, output)
    with atomic_output(output, overwrite=overwrite) as temp, _writing(output):
        out = av.open(str(temp), mode="w", format=AUDIO_OUTPUTS[output.suffix.lower()][0])
        try:
            stream = _add_audio_stream(out, encoding, written, sample_rate)
            for packet in _audio_packets(stream, blocks, layout, sample_rate, 0.0):
                out.mux(packet)
        except BaseException:
            with contextlib.suppress(Exception):
                out.close()  # the first error is the one to report
            raise
        out.close()
    return output


def encoded_blocks(audio: np.ndarray | Iterable[np.ndarray], *, sample_rate: int, layout: str | None,
                   encoding: AudioEncoding) -> Iterator[np.ndarray]:
    """``audio`` as a file in the lossy ``encoding`` plays it: encoded into a temporary file (see
    :data:`TRIAL_EXTENSIONS`), then decoded, float32 ``(channels, n)`` blocks in order at
    :func:`encoded_rate`. The same encoder with the same settings makes the same packets in any
    container, so this is the sound of an output written with ``encoding``."""
    with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX) as folder:
        trial = Path(folder) / f"trial{TRIAL_EXTENSIONS[encoding.codec]}"
        write_audio(audio, sample_rate=sample_rate, output=trial, layout=layout, encoding=encoding)
        with open_input(trial) as container:
            stream = container.streams.audio[0]
            codec = stream.codec_context
            resampler = av.AudioResampler(format="flt", layout=codec.layout.name, rate=codec.sample_rate)
            held, count = [], 0  # decoded frames are short (Opus: 20 ms): handed on in blocks of DECODED_BLOCK
            for frame in itertools.chain(_decoded_frames(container, stream), [None]):
                for packed in resampler.resample(frame):
                    held.append(_packed_to_planar(packed))
                    count += packed.samples
                if held and (count >= DECODED_BLOCK or frame is None):
                    yield np.concatenate(held, axis=1)
                    held, count = [], 0


def _interleave(out, source, copies: dict[int, av.stream.Stream], encoded: Iterator[av.Packet], output: Path) -> None:
    """Mux the copied packets of ``copies``' source streams and the new audio packets, by time.

    Copied packets are muxed at once, never held: a demuxer's parser may reuse a packet's buffer for
    the next one (MPEG program streams do)."""
    bases: dict[av.stream.Stream, tuple[int, int]] = {}
    pending = next(encoded, None)
    pending_time = _packet_time(pending, bases) if pending is not None else None
    last_dts: dict[int, int] = {}
    for packet in source.demux(*[source.streams[i] for i in copies]):
        if packet.size == 0:
            continue  # demuxer flush packet
        packet_time = _packet_time(packet, bases)
        while pending is not None and pending_time <= packet_time:
            with _writing(output):
                out.mux(pending)
            pending = next(encoded, None)
            pending_time = _packet_time(pending, bases) if pending is not None else None
        _make_dts_increase(packet, last_dts)
        packet.stream = copies[packet.stream.index]
        with _writing(output):
            out.mux(packet)
    for packet in itertools.chain([pending] if pending is not None else [], encoded):
        with _writing(output):
            out.mux(packet)
