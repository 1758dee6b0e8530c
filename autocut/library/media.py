"""Media probing, validation and streaming frame sampling (ffprobe/ffmpeg).

`probe` turns ffprobe's JSON into a typed `MediaInfo`; `validate_footage` applies the rules
a clip pool needs (a decodable video stream, long enough). `sample_frames` streams frames at a
fixed rate from ONE ffmpeg process straight into numpy batches at the encoder's input size —
no per-frame files — and can emit a second, denser stream of tiny grey thumbnails from the
same decode for shot-boundary detection (boundaries are found at a higher rate than 1 fps;
docs/method.md, "Decoding and grounding").

Media is untrusted input (uploads), so every ffprobe/ffmpeg started here opens it with
`-protocol_whitelist file` and an explicit demuxer allow-list (`-format_whitelist`): a playlist or
stream description (HLS, SDP, concat) behind a media-looking name or header is refused before its
demuxer could open anything else. `MediaLimits` bound width, height, pixels, frame rate and duration:
checked on the probed header, and enforced again while decoding (`-max_pixels` in the decoder, `-t`
on the input plus a count of the frames that came out), so a header that lies does not make a worker
decode for hours. Optional per-process resource limits (RLIMIT_DATA, RLIMIT_CPU) are applied to each
ffmpeg/ffprobe child (through `prlimit`) (docs/deploy.md, "Media limits").
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import re
import resource
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from autocut.errors import MediaError

__all__ = [
    "ALLOWED_AUDIO_FORMATS",
    "ALLOWED_VIDEO_FORMATS",
    "FrameBatch",
    "MediaInfo",
    "MediaLimits",
    "SampledVideo",
    "ThumbStream",
    "configure_limits",
    "content_hash",
    "current_limits",
    "input_guard_args",
    "limit_prefix",
    "load_audio_mono",
    "probe",
    "sample_frames",
    "sample_video",
    "validate_footage",
]

log = logging.getLogger(__name__)

# Minimum duration for a footage source: one 1 fps frame must exist and a clip needs >= 1 s.
MIN_FOOTAGE_DURATION_S = 1.0

# Demuxers (ffmpeg names) that may open user media. Everything else is refused, in particular the
# ones that open further resources named inside the file: hls, dash, sdp, rtsp, concat, image2 with
# patterns, tee, ... . ffmpeg checks this list after probing the format and before the demuxer reads
# its header, so a refused file never gets to open anything. (Product photos are not opened by ffmpeg:
# the API checks them with Pillow, so no image demuxer is on the list.)
ALLOWED_VIDEO_FORMATS = ("mov", "mp4", "m4a", "3gp", "matroska", "webm", "avi", "mpegts", "flv", "mpeg", "asf")
ALLOWED_AUDIO_FORMATS = ("wav", "mp3", "flac", "ogg", "aac")
_DEMUXERS = ",".join(ALLOWED_VIDEO_FORMATS + ALLOWED_AUDIO_FORMATS)


@dataclass(frozen=True)
class MediaLimits:
    """What one media file may cost a worker. Defaults suit a library host; the service sets its own
    from `server.settings` (docs/deploy.md, "Media limits").

    Width, height, pixels and frame rate are display/stream properties checked on the probed header
    and, for pixels, again by the decoder on every frame (a stream may change size mid-file).
    `max_duration_s` is checked on the header and enforced while decoding: ffmpeg stops reading at the
    limit whatever the header claims, and a decode that reaches it is refused. `child_memory_bytes`
    (RLIMIT_DATA) and `child_cpu_s` (RLIMIT_CPU) apply to every ffmpeg/ffprobe process started on
    media; None = not limited."""

    max_width: int = 7680
    max_height: int = 7680
    max_pixels: int = 7680 * 4320  # 8K UHD
    max_fps: float = 240.0
    max_duration_s: float = 10_000.0  # frame ids allow 9,999 frames at 1 fps (autocut.library.ids)
    child_memory_bytes: int | None = None
    child_cpu_s: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_width", "max_height", "max_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"MediaLimits.{name} must be >= 1")
        if self.max_fps <= 0 or self.max_duration_s <= 0:
            raise ValueError("MediaLimits.max_fps and max_duration_s must be > 0")


_limits = MediaLimits()
_limits_lock = threading.Lock()


def configure_limits(limits: MediaLimits) -> MediaLimits:
    """Set the process-wide limits (a worker calls this once at start-up); returns the previous ones."""
    global _limits
    with _limits_lock:
        old, _limits = _limits, limits
    return old


def current_limits() -> MediaLimits:
    return _limits


def input_guard_args(limits: MediaLimits | None = None, *, max_pixels: bool = True) -> list[str]:
    """ffmpeg/ffprobe input options (placed before `-i`) for a file from a user: local files only, an
    allow-listed demuxer, and (`max_pixels`) decoders that refuse frames above the pixel limit."""
    lim = limits or _limits
    args = ["-protocol_whitelist", "file", "-format_whitelist", _DEMUXERS]
    if max_pixels:
        args += ["-max_pixels", str(lim.max_pixels)]
    return args


def limit_prefix(limits: MediaLimits | None = None) -> list[str]:
    """The command prefix applying the per-child resource limits (`prlimit ... --`; [] when there are none).

    `prlimit` (util-linux) sets the limits on itself and execs the command, so the child keeps its pid and
    no Python runs in the child between fork and exec: a `preexec_fn` could deadlock in a process with
    threads, which the workers are."""
    lim = limits or _limits
    mem, cpu = lim.child_memory_bytes, lim.child_cpu_s
    if not mem and not cpu:
        return []
    out = ["prlimit"]
    if mem:
        soft = hard = _under_hard(resource.RLIMIT_DATA, mem)
        out.append(f"--data={soft}:{hard}")
    if cpu:
        # Soft limit: SIGXCPU (ffmpeg dies); hard limit a little later: SIGKILL.
        out.append(f"--cpu={_under_hard(resource.RLIMIT_CPU, cpu)}:{_under_hard(resource.RLIMIT_CPU, cpu + 5)}")
    return [*out, "--"]


def _under_hard(which: int, value: int) -> int:
    """`value`, never above this process's hard limit (which an unprivileged child cannot raise)."""
    cur_hard = resource.getrlimit(which)[1]
    return value if cur_hard == resource.RLIM_INFINITY else min(value, cur_hard)


# ffmpeg's own words for the refusals above, turned into errors that say what was wrong.
_NOT_WHITELISTED = re.compile(r"\[(\w+) @ 0x[0-9a-f]+\] Format not on whitelist")
_PROTOCOL_REFUSED = re.compile(r"Protocol '([^']+)' not on whitelist")
_TOO_MANY_PIXELS = re.compile(r"Picture size (\d+)x(\d+) exceeds specified max pixel count (\d+)")
_INVALID_SIZE = re.compile(r"Picture size (\d+)x(\d+) is invalid")


def _refusal(stderr: str) -> str | None:
    """The reason a guarded ffmpeg/ffprobe refused a file, from its stderr; None if it did not."""
    if m := _NOT_WHITELISTED.search(stderr):
        return (
            f"container format {m.group(1)!r} is not allowed (playlists, stream descriptions and other "
            f"formats that open further files or URLs are refused; allowed: {_DEMUXERS.replace(',', ', ')})"
        )
    if m := _PROTOCOL_REFUSED.search(stderr):
        return f"the file refers to a {m.group(1)!r} resource; only local media files are allowed"
    if m := _TOO_MANY_PIXELS.search(stderr):
        w, h, lim = int(m.group(1)), int(m.group(2)), int(m.group(3))
        return f"a video frame of {w}x{h} ({w * h:,} pixels) exceeds the limit of {lim:,} pixels"
    if m := _INVALID_SIZE.search(stderr):
        w, h = int(m.group(1)), int(m.group(2))
        return f"a video frame of {w}x{h} ({w * h:,} pixels) exceeds the pixel limit (and what ffmpeg can decode)"
    return None


def _check_header_limits(info: MediaInfo, limits: MediaLimits) -> None:
    """Refuse a file whose probed header exceeds `limits`, naming the limit and the value."""
    if info.has_video:
        if info.width > limits.max_width:
            raise MediaError(info.path, f"video width {info.width} px exceeds the limit of {limits.max_width} px")
        if info.height > limits.max_height:
            raise MediaError(info.path, f"video height {info.height} px exceeds the limit of {limits.max_height} px")
        px = max(info.width * info.height, info.coded_width * info.coded_height)
        if px > limits.max_pixels:
            raise MediaError(
                info.path,
                f"a video frame of {info.width}x{info.height} ({px:,} pixels) exceeds the limit of "
                f"{limits.max_pixels:,} pixels",
            )
        if info.fps > limits.max_fps:
            raise MediaError(info.path, f"frame rate {info.fps:.6g} fps exceeds the limit of {limits.max_fps:g} fps")
    if info.duration_s > limits.max_duration_s:
        raise MediaError(
            info.path, f"duration {info.duration_s:.1f} s exceeds the limit of {limits.max_duration_s:g} s"
        )


def _run_guarded(cmd: list[str], limits: MediaLimits) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*limit_prefix(limits), *cmd], capture_output=True, check=False)


@dataclass(frozen=True)
class MediaInfo:
    """What ffprobe says about a file, normalised."""

    path: str
    format_name: str
    duration_s: float
    size_bytes: int
    has_video: bool
    has_audio: bool
    width: int = 0  # display width (after rotation)
    height: int = 0  # display height (after rotation)
    coded_width: int = 0
    coded_height: int = 0
    rotation_deg: int = 0  # clockwise display rotation from metadata (0/90/180/270)
    fps: float = 0.0  # average frame rate
    is_vfr: bool = False  # r_frame_rate and avg_frame_rate disagree
    n_frames: int | None = None
    video_codec: str | None = None
    pix_fmt: str | None = None
    bit_depth: int = 8
    audio_codec: str | None = None
    audio_sample_rate_hz: int | None = None
    audio_channels: int | None = None
    tags: dict[str, str] = field(default_factory=dict)


def _parse_rate(s: str | None) -> float:
    if not s or s in ("0/0", "N/A"):
        return 0.0
    try:
        return float(Fraction(s))
    except (ValueError, ZeroDivisionError):
        return 0.0


def _rotation(stream: dict) -> int:
    rot = 0
    tag = stream.get("tags", {}).get("rotate")
    if tag is not None:
        try:
            rot = int(float(tag))
        except ValueError:
            rot = 0
    for sd in stream.get("side_data_list", []) or []:
        if "rotation" in sd:
            # Display matrix rotation is counter-clockwise degrees; tags are clockwise.
            rot = -int(float(sd["rotation"]))
    return rot % 360


@functools.lru_cache(maxsize=1)
def _decodable_codecs() -> frozenset[str]:
    """Codec names (as ffprobe reports them) that this ffmpeg can decode."""
    out = subprocess.run(["ffmpeg", "-hide_banner", "-codecs"], capture_output=True, text=True, check=False)
    names = set()
    for line in out.stdout.splitlines():
        parts = line.split()
        # Lines look like " DEV.LS h264  H.264 ..."; flag 0 = decode, flag 2 = type.
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] == "D" and parts[0][2] in "VAS":
            names.add(parts[1])
    return frozenset(names)


def probe(path: str | os.PathLike[str], *, limits: MediaLimits | None = None) -> MediaInfo:
    """ffprobe `path` into a `MediaInfo`; raise `MediaError` naming the file if it is not usable media,
    is not in an allowed container format, or its header exceeds `limits` (default: `current_limits()`)."""
    lim = limits or _limits
    p = Path(path)
    if not p.exists():
        raise MediaError(p, "file does not exist")
    if not p.is_file():
        raise MediaError(p, "not a regular file")
    size = p.stat().st_size
    if size == 0:
        raise MediaError(p, "file is empty (0 bytes)")
    # An absolute path: a name like "concat:a|b" or "http:x" is never read as a protocol.
    res = _run_guarded(
        ["ffprobe", "-hide_banner", *input_guard_args(lim), "-show_format", "-show_streams", "-of", "json", "-i"]
        + [os.path.abspath(p)],
        lim,
    )
    stderr = res.stderr.decode("utf-8", "replace")
    if (why := _refusal(stderr)) is not None:  # also when ffprobe went on without the stream's size
        raise MediaError(p, why) from None
    if res.returncode != 0:
        msg = stderr.strip().splitlines()
        last = msg[-1] if msg else "ffprobe failed"
        if "moov atom not found" in last or "Invalid data" in last or "End of file" in last:
            raise MediaError(p, f"not a readable media file or truncated/corrupt ({last.split(': ')[-1]})") from None
        raise MediaError(p, f"ffprobe cannot read it: {last}") from None
    info = json.loads(res.stdout)
    fmt = info.get("format", {})
    streams = info.get("streams", [])
    # Attached pictures (cover art) are "video" streams in ffprobe but not footage.
    vstreams = [
        s for s in streams if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
    ]
    astreams = [s for s in streams if s.get("codec_type") == "audio"]
    if not vstreams and not astreams:
        raise MediaError(p, "no audio or video stream")
    duration = _parse_float(fmt.get("duration"))
    v = vstreams[0] if vstreams else None
    a = astreams[0] if astreams else None
    if duration <= 0 and v is not None:
        duration = _parse_float(v.get("duration"))
    if duration <= 0 and a is not None:
        duration = _parse_float(a.get("duration"))
    kw: dict = {}
    if v is not None:
        rot = _rotation(v)
        cw, ch = int(v.get("width") or 0), int(v.get("height") or 0)
        w, h = (ch, cw) if rot in (90, 270) else (cw, ch)
        avg, real = _parse_rate(v.get("avg_frame_rate")), _parse_rate(v.get("r_frame_rate"))
        fps = avg or real
        pix = v.get("pix_fmt")
        depth = int(v.get("bits_per_raw_sample") or 0) or (10 if pix and ("10" in pix) else 8)
        nb = v.get("nb_frames")
        kw.update(
            width=w,
            height=h,
            coded_width=cw,
            coded_height=ch,
            rotation_deg=rot,
            fps=fps,
            is_vfr=bool(avg and real and abs(avg - real) / real > 0.01),
            n_frames=int(nb) if nb and str(nb).isdigit() else None,
            video_codec=v.get("codec_name"),
            pix_fmt=pix,
            bit_depth=depth,
        )
    if a is not None:
        kw.update(
            audio_codec=a.get("codec_name"),
            audio_sample_rate_hz=int(a.get("sample_rate") or 0) or None,
            audio_channels=int(a.get("channels") or 0) or None,
        )
    format_name = str(fmt.get("format_name", ""))
    if not set(format_name.split(",")) & set(_DEMUXERS.split(",")):  # ffmpeg enforced it; say it plainly
        raise MediaError(p, f"container format {format_name!r} is not allowed")
    info = MediaInfo(
        path=str(p),
        format_name=format_name,
        duration_s=max(duration, 0.0),
        size_bytes=size,
        has_video=v is not None,
        has_audio=a is not None,
        tags={k: str(val) for k, val in (fmt.get("tags") or {}).items()},
        **kw,
    )
    _check_header_limits(info, lim)
    return info


def _parse_float(x: object) -> float:
    try:
        f = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return f if math.isfinite(f) else 0.0


def validate_footage(info: MediaInfo, *, min_duration_s: float = MIN_FOOTAGE_DURATION_S) -> MediaInfo:
    """Check that a probed file can serve as footage; raise `MediaError` with the reason otherwise."""
    if not info.has_video:
        raise MediaError(info.path, "no video stream (audio-only file given as footage)")
    if info.video_codec not in _decodable_codecs():
        raise MediaError(info.path, f"unsupported video codec {info.video_codec!r} (no ffmpeg decoder)")
    if info.width <= 0 or info.height <= 0:
        raise MediaError(info.path, "video stream has no frame size")
    if info.duration_s < min_duration_s:
        raise MediaError(info.path, f"too short: {info.duration_s:.2f} s < {min_duration_s:.2f} s")
    return info


@dataclass
class FrameBatch:
    """A batch of sampled frames: RGB uint8 (B, H, W, 3) with their sample indices."""

    frames: np.ndarray  # (B, H, W, 3) uint8
    first_index: int  # index of frames[0] in the sampled sequence (0-based)


@dataclass
class ThumbStream:
    """Tiny grey thumbnails sampled densely from the same decode, for boundary detection."""

    rate_hz: float
    thumbs: np.ndarray  # (T, h, w) uint8


@dataclass
class SampledVideo:
    """All frames of a video sampled at `rate_hz` plus (optionally) the dense thumbnail stream."""

    info: MediaInfo
    rate_hz: float
    frames: np.ndarray  # (N, H, W, 3) uint8
    thumbs: ThumbStream | None


def _build_sample_cmd(
    path: str,
    *,
    rate_hz: float,
    size_hw: tuple[int, int],
    thumb_rate_hz: float | None,
    thumb_size_hw: tuple[int, int],
    threads: int,
    limits: MediaLimits | None = None,
) -> list[str]:
    lim = limits or _limits
    h, w = size_hw
    # Crop to the encoder's aspect before scaling (cheaper, and ImageNet-style centre crop).
    main = (
        f"fps={rate_hz}:round=near,scale={w}:{h}:force_original_aspect_ratio=increase:flags=bilinear,"
        f"crop={w}:{h},format=rgb24"
    )
    # `-t` on the input: ffmpeg stops reading at the duration limit (plus a margin that lets
    # `_run_sampler` tell "reached the limit" from "ended at it"), whatever the header claims.
    read_s = lim.max_duration_s + _decode_margin_s(rate_hz)
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-threads", str(threads)]
    cmd += [*input_guard_args(lim), "-t", f"{read_s:.3f}", "-i", os.path.abspath(path)]
    if thumb_rate_hz:
        th, tw = thumb_size_hw
        graph = (
            f"[0:v:0]split=2[a][b];[a]{main}[out1];"
            f"[b]fps={thumb_rate_hz}:round=near,scale={tw}:{th}:flags=area,format=gray[out2]"
        )
        cmd += [
            "-filter_complex",
            graph,
            "-map",
            "[out1]",
            "-f",
            "rawvideo",
            "pipe:1",
            "-map",
            "[out2]",
            "-f",
            "rawvideo",
            "pipe:3",
        ]
    else:
        cmd += ["-map", "0:v:0", "-vf", main, "-f", "rawvideo", "pipe:1"]
    return cmd


def _decode_margin_s(rate_hz: float) -> float:
    """How far past the duration limit a decode reads: three sample periods, at least 2 s (enough for
    the fps filter to emit more than `max_duration_s * rate_hz + 1` frames from a longer source)."""
    return max(2.0, 3.0 / rate_hz)


def sample_frames(
    path: str | os.PathLike[str],
    *,
    rate_hz: float = 1.0,
    size_hw: tuple[int, int] = (224, 224),
    batch_size: int = 32,
    threads: int = 2,
    limits: MediaLimits | None = None,
) -> Iterator[FrameBatch]:
    """Stream frames sampled at `rate_hz` as RGB uint8 batches, from one ffmpeg process.

    Raises `MediaError` when the decode passes `limits.max_duration_s` or meets a frame above
    `limits.max_pixels` (ffmpeg is stopped first)."""
    sv = _run_sampler(
        str(path),
        rate_hz=rate_hz,
        size_hw=size_hw,
        thumb_rate_hz=None,
        thumb_size_hw=(36, 64),
        threads=threads,
        batch_size=batch_size,
        limits=limits,
    )
    yield from sv


def sample_video(
    path: str | os.PathLike[str],
    *,
    rate_hz: float = 1.0,
    size_hw: tuple[int, int] = (224, 224),
    thumb_rate_hz: float | None = 5.0,
    thumb_size_hw: tuple[int, int] = (36, 64),
    threads: int = 2,
    info: MediaInfo | None = None,
    limits: MediaLimits | None = None,
) -> SampledVideo:
    """Decode once; return the `rate_hz` frames and a dense thumbnail stream for segmentation.

    All frames are returned in one array (tests and small tools); ingest streams batches through the
    encoder instead (`autocut.library.ingest`), so memory does not grow with the video's length."""
    info = info or validate_footage(probe(path, limits=limits))
    frames_list: list[np.ndarray] = []
    thumbs_holder: list[np.ndarray] = []
    for item in _run_sampler(
        str(path),
        rate_hz=rate_hz,
        size_hw=size_hw,
        thumb_rate_hz=thumb_rate_hz,
        thumb_size_hw=thumb_size_hw,
        threads=threads,
        batch_size=64,
        thumbs_out=thumbs_holder,
        limits=limits,
    ):
        frames_list.append(item.frames)
    h, w = size_hw
    frames = np.concatenate(frames_list) if frames_list else np.zeros((0, h, w, 3), np.uint8)
    if len(frames) == 0:
        raise MediaError(path, "no frames could be decoded (corrupt or truncated video stream)")
    thumbs = None
    if thumb_rate_hz:
        arr = thumbs_holder[0] if thumbs_holder else np.zeros((0, *thumb_size_hw), np.uint8)
        thumbs = ThumbStream(rate_hz=thumb_rate_hz, thumbs=arr)
    return SampledVideo(info=info, rate_hz=rate_hz, frames=frames, thumbs=thumbs)


class _StderrWatch:
    """Reads a child's stderr in a thread, keeping only its head and tail (a damaged stream can log an
    error per frame), and stops the child at the first limit refusal (`_refusal`)."""

    _KEEP = 16 * 1024

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.head = b""
        self.tail = b""
        self.refused: str | None = None
        self.thread = threading.Thread(target=self._run, name="ffmpeg-stderr", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if len(self.head) < self._KEEP:
                self.head += line
            self.tail = (self.tail + line)[-self._KEEP :]
            if self.refused is None and (why := _refusal(line.decode("utf-8", "replace"))) is not None:
                self.refused = why
                _kill(self.proc)

    def text(self) -> str:
        body = self.head if len(self.head) < self._KEEP else self.head + b"\n...\n" + self.tail
        return body.decode("utf-8", "replace").strip()


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def _run_sampler(
    path: str,
    *,
    rate_hz: float,
    size_hw: tuple[int, int],
    thumb_rate_hz: float | None,
    thumb_size_hw: tuple[int, int],
    threads: int,
    batch_size: int,
    thumbs_out: list[np.ndarray] | None = None,
    limits: MediaLimits | None = None,
) -> Iterator[FrameBatch]:
    lim = limits or _limits
    h, w = size_hw
    frame_bytes = h * w * 3
    # Frames the fps filter may emit for a source that really is within the duration limit; one more
    # means the decode went past the limit (the input's `-t` lets it read a margin further).
    max_frames = math.floor(lim.max_duration_s * rate_hz + 1e-9) + 1
    cmd = _build_sample_cmd(
        path,
        rate_hz=rate_hz,
        size_hw=size_hw,
        thumb_rate_hz=thumb_rate_hz,
        thumb_size_hw=thumb_size_hw,
        threads=threads,
        limits=lim,
    )
    pass_fds: tuple[int, ...] = ()
    r3 = w3 = -1
    if thumb_rate_hz:
        r3, w3 = os.pipe()
        # ffmpeg writes the thumbnail stream to its fd 3; dup our write end there in the child.
        pass_fds = (w3,)
        cmd = [c if c != "pipe:3" else f"pipe:{w3}" for c in cmd]
    proc = subprocess.Popen(
        [*limit_prefix(lim), *cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        pass_fds=pass_fds,
        bufsize=frame_bytes * 4,
    )
    thumb_chunks: list[bytes] = []
    reader: threading.Thread | None = None
    watch = _StderrWatch(proc)
    if thumb_rate_hz:
        os.close(w3)

        def _read_thumbs() -> None:
            with os.fdopen(r3, "rb", buffering=1 << 20) as f:
                while chunk := f.read(1 << 20):
                    thumb_chunks.append(chunk)

        reader = threading.Thread(target=_read_thumbs, daemon=True)
        reader.start()
    assert proc.stdout is not None
    index = 0
    over_limit = False
    finished = False
    try:
        while True:
            buf = proc.stdout.read(frame_bytes * batch_size)
            if not buf:
                break
            n = len(buf) // frame_bytes
            if n == 0:
                break
            if index + n > max_frames:  # decoded past the duration limit: stop ffmpeg now
                over_limit = True
                _kill(proc)
                break
            arr = np.frombuffer(buf[: n * frame_bytes], np.uint8).reshape(n, h, w, 3)
            yield FrameBatch(frames=arr, first_index=index)
            index += n
        finished = True
    finally:
        if not finished:  # the consumer stopped early (or failed): ffmpeg would block on a full pipe
            _kill(proc)
        proc.stdout.close()
        rc = proc.wait()
        watch.thread.join(timeout=5)
        if reader is not None:
            reader.join(timeout=30)
    err = watch.text()
    if watch.refused is not None:
        raise MediaError(path, watch.refused)
    if over_limit:
        raise MediaError(
            path,
            f"the video runs longer than the duration limit of {lim.max_duration_s:g} s "
            f"(decoding stopped at {(index + n) / rate_hz:.0f} s, whatever its header says)",
        )
    if rc == 255 or rc < 0:  # a signal: SIGXCPU from the CPU-time limit, SIGKILL, ... (not a damaged stream)
        cpu = f"; the CPU-time limit per ffmpeg is {lim.child_cpu_s} s" if lim.child_cpu_s else ""
        raise MediaError(path, f"ffmpeg was stopped by a signal before the end of the video (exit {rc}{cpu})")
    if rc != 0 and index == 0:
        raise MediaError(path, f"ffmpeg could not decode the video stream: {err.splitlines()[-1] if err else rc}")
    if err:
        # Damaged streams decode partially; keep what decoded and say so.
        log.warning("%s: ffmpeg reported decode problems (kept %d frames): %s", path, index, err.splitlines()[-1][:200])
    if thumb_rate_hz and thumbs_out is not None:
        th, tw = thumb_size_hw
        data = b"".join(thumb_chunks)
        n = len(data) // (th * tw)
        thumbs_out.append(np.frombuffer(data[: n * th * tw], np.uint8).reshape(n, th, tw).copy())


def content_hash(path: str | os.PathLike[str]) -> str:
    """sha256 of the file's bytes (dedupe key: the same content under another name is not re-ingested)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def load_audio_mono(
    path: str | os.PathLike[str],
    sample_rate_hz: int,
    start_s: float = 0.0,
    duration_s: float | None = None,
    *,
    limits: MediaLimits | None = None,
) -> np.ndarray:
    """Decode (part of) an audio file to mono float32 in [-1, 1] at `sample_rate_hz` (one ffmpeg process).

    Seeking is exact (`-ss` after `-i`); channels are averaged (`-ac 1`) and resampled by ffmpeg.
    The decode stops past `limits.max_duration_s` whatever the header says; audio longer than the
    limit is refused (`MediaError`), not held in memory.
    """
    lim = limits or _limits
    cmd = ["ffmpeg", "-nostdin", "-v", "error", *input_guard_args(lim, max_pixels=False), "-i", os.path.abspath(path)]
    if start_s:
        cmd += ["-ss", f"{start_s:.6f}"]
    margin_s = 1.0
    read_s = lim.max_duration_s + margin_s - start_s
    if duration_s is not None:
        read_s = min(duration_s, read_s)
    if read_s <= 0:
        raise MediaError(path, f"start {start_s:.1f} s is past the duration limit of {lim.max_duration_s:g} s")
    cmd += ["-t", f"{read_s:.6f}"]
    cmd += ["-vn", "-sn", "-ac", "1", "-ar", str(int(sample_rate_hz)), "-f", "s16le", "-acodec", "pcm_s16le", "-"]
    res = _run_guarded(cmd, lim)
    if res.returncode != 0:
        stderr = res.stderr.decode("utf-8", "replace")
        if (why := _refusal(stderr)) is not None:
            raise MediaError(path, why)
        err = stderr.strip().splitlines()
        raise MediaError(path, f"cannot decode audio ({err[-1][-200:] if err else f'ffmpeg exit {res.returncode}'})")
    decoded_s = len(res.stdout) / 2 / sample_rate_hz
    if start_s + decoded_s > lim.max_duration_s + margin_s / 2:
        raise MediaError(
            path,
            f"the audio runs longer than the duration limit of {lim.max_duration_s:g} s "
            f"(decoding stopped at {start_s + decoded_s:.0f} s, whatever its header says)",
        )
    return np.frombuffer(res.stdout, dtype=np.int16).astype(np.float32) / 32768.0
