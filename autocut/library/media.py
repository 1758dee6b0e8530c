"""Media probing, validation and streaming frame sampling (ffprobe/ffmpeg).

`probe` turns ffprobe's JSON into a typed `MediaInfo`; `validate_footage` applies the rules
a clip pool needs (a decodable video stream, long enough). `sample_frames` streams frames at a
fixed rate from ONE ffmpeg process straight into numpy batches at the encoder's input size —
no per-frame files — and can emit a second, denser stream of tiny grey thumbnails from the
same decode for shot-boundary detection (boundaries are found at a higher rate than 1 fps;
docs/method.md, "Decoding and grounding").
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from autocut.errors import MediaError

__all__ = [
    "FrameBatch",
    "MediaInfo",
    "SampledVideo",
    "ThumbStream",
    "content_hash",
    "load_audio_mono",
    "probe",
    "sample_frames",
    "sample_video",
    "validate_footage",
]

log = logging.getLogger(__name__)

# Minimum duration for a footage source: one 1 fps frame must exist and a clip needs >= 1 s.
MIN_FOOTAGE_DURATION_S = 1.0


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


def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """ffprobe `path` into a `MediaInfo`; raise `MediaError` naming the file if it is not usable media."""
    p = Path(path)
    if not p.exists():
        raise MediaError(p, "file does not exist")
    if not p.is_file():
        raise MediaError(p, "not a regular file")
    size = p.stat().st_size
    if size == 0:
        raise MediaError(p, "file is empty (0 bytes)")
    res = subprocess.run(
        ["ffprobe", "-show_format", "-show_streams", "-of", "json", str(p)], capture_output=True, check=False
    )
    if res.returncode != 0:
        msg = res.stderr.decode("utf-8", "replace").strip().splitlines()
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
    return MediaInfo(
        path=str(p),
        format_name=fmt.get("format_name", ""),
        duration_s=max(duration, 0.0),
        size_bytes=size,
        has_video=v is not None,
        has_audio=a is not None,
        tags={k: str(val) for k, val in (fmt.get("tags") or {}).items()},
        **kw,
    )


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
) -> list[str]:
    h, w = size_hw
    # Crop to the encoder's aspect before scaling (cheaper, and ImageNet-style centre crop).
    main = (
        f"fps={rate_hz}:round=near,scale={w}:{h}:force_original_aspect_ratio=increase:flags=bilinear,"
        f"crop={w}:{h},format=rgb24"
    )
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-threads", str(threads), "-i", path]
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


def sample_frames(
    path: str | os.PathLike[str],
    *,
    rate_hz: float = 1.0,
    size_hw: tuple[int, int] = (224, 224),
    batch_size: int = 32,
    threads: int = 2,
) -> Iterator[FrameBatch]:
    """Stream frames sampled at `rate_hz` as RGB uint8 batches, from one ffmpeg process."""
    sv = _run_sampler(
        str(path),
        rate_hz=rate_hz,
        size_hw=size_hw,
        thumb_rate_hz=None,
        thumb_size_hw=(36, 64),
        threads=threads,
        batch_size=batch_size,
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
) -> SampledVideo:
    """Decode once; return the `rate_hz` frames and a dense thumbnail stream for segmentation."""
    info = info or validate_footage(probe(path))
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
) -> Iterator[FrameBatch]:
    h, w = size_hw
    frame_bytes = h * w * 3
    cmd = _build_sample_cmd(
        path,
        rate_hz=rate_hz,
        size_hw=size_hw,
        thumb_rate_hz=thumb_rate_hz,
        thumb_size_hw=thumb_size_hw,
        threads=threads,
    )
    pass_fds: tuple[int, ...] = ()
    r3 = w3 = -1
    if thumb_rate_hz:
        r3, w3 = os.pipe()
        # ffmpeg writes the thumbnail stream to its fd 3; dup our write end there in the child.
        pass_fds = (w3,)
        cmd = [c if c != "pipe:3" else f"pipe:{w3}" for c in cmd]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        pass_fds=pass_fds,
        bufsize=frame_bytes * 4,
    )
    thumb_chunks: list[bytes] = []
    reader: threading.Thread | None = None
    stderr_chunks: list[bytes] = []
    err_reader = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
    err_reader.start()
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
    try:
        while True:
            buf = proc.stdout.read(frame_bytes * batch_size)
            if not buf:
                break
            n = len(buf) // frame_bytes
            if n == 0:
                break
            arr = np.frombuffer(buf[: n * frame_bytes], np.uint8).reshape(n, h, w, 3)
            yield FrameBatch(frames=arr, first_index=index)
            index += n
    finally:
        if proc.poll() is None and index == 0:
            pass
        rc = proc.wait()
        err_reader.join(timeout=5)
        if reader is not None:
            reader.join(timeout=30)
    err = b"".join(stderr_chunks).decode("utf-8", "replace").strip()
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
    path: str | os.PathLike[str], sample_rate_hz: int, start_s: float = 0.0, duration_s: float | None = None
) -> np.ndarray:
    """Decode (part of) an audio file to mono float32 in [-1, 1] at `sample_rate_hz` (one ffmpeg process).

    Seeking is exact (`-ss` after `-i`); channels are averaged (`-ac 1`) and resampled by ffmpeg.
    """
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path)]
    if start_s:
        cmd += ["-ss", f"{start_s:.6f}"]
    if duration_s is not None:
        cmd += ["-t", f"{duration_s:.6f}"]
    cmd += ["-vn", "-sn", "-ac", "1", "-ar", str(int(sample_rate_hz)), "-f", "s16le", "-acodec", "pcm_s16le", "-"]
    res = subprocess.run(cmd, capture_output=True, check=False)
    if res.returncode != 0:
        err = res.stderr.decode("utf-8", "replace").strip().splitlines()
        raise MediaError(path, f"cannot decode audio ({err[-1][-200:] if err else f'ffmpeg exit {res.returncode}'})")
    return np.frombuffer(res.stdout, dtype=np.int16).astype(np.float32) / 32768.0
