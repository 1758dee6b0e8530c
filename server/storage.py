"""Files the service owns: uploads, job outputs, locks; and the rules for touching them.

Layout under `data_dir`::

    uploads/tmp/             partial uploads (deleted on any rejection)
    uploads/blobs/ab/<sha256><ext>   accepted videos, content-addressed (one file per content)
    uploads/images/ab/<sha256><ext>  accepted product images
    jobs/<job_id>/plans.json         the job's plans, written once (first writer wins)
    jobs/<job_id>/v<k>/              one published variant: the result files (`RESULT_FILES` of
                                     `autocut.render.outputs`: edit.mp4, .srt, .plan.json, .otio) + variant.json
    jobs/<job_id>/.attempt-<uuid>/   an attempt's private work; renamed to v<k> when it finishes
    locks/                           advisory locks (one catalog writer among this service's workers;
                                     storing vs removing upload files)

Everything here is deleted again by the retention sweep (`server.retention`) or the DELETE routes: a
job's directory with its records, an upload file once no key owns its content.

Idempotent results: an attempt renders into its own directory and publishes it with one
`rename`; renaming onto an existing non-empty directory fails, so the first attempt to finish
wins and later attempts (redeliveries of the same job) discard their copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from fastapi.concurrency import run_in_threadpool
from python_multipart.multipart import MultipartParser, parse_options_header

from autocut.errors import ConfigError, MediaError

__all__ = [
    "VARIANT_INFO",
    "Layout",
    "PathRefError",
    "ReceivedFile",
    "UploadError",
    "check_upload_media",
    "publish_dir",
    "receive_multipart_file",
    "resolve_media_path",
    "sniff_image",
    "sniff_video",
    "write_json_once",
]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20

# Beside a published variant's result files: its figures (duration, size, planner, render time).
VARIANT_INFO = "variant.json"


class PathRefError(ConfigError):
    """A clip or image path reference points outside its root, or at nothing usable."""


class UploadError(Exception):
    """An upload was refused; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Layout:
    data_dir: Path

    @classmethod
    def create(cls, data_dir: Path) -> Layout:
        lay = cls(Path(data_dir).resolve())
        for d in (lay.uploads_tmp, lay.blobs, lay.images, lay.jobs, lay.locks):
            d.mkdir(parents=True, exist_ok=True)
        return lay

    @property
    def uploads(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def uploads_tmp(self) -> Path:
        return self.uploads / "tmp"

    @property
    def blobs(self) -> Path:
        return self.uploads / "blobs"

    @property
    def images(self) -> Path:
        return self.uploads / "images"

    @property
    def jobs(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def locks(self) -> Path:
        return self.data_dir / "locks"

    def blob_path(self, sha256: str, ext: str, *, image: bool = False) -> Path:
        root = self.images if image else self.blobs
        return root / sha256[:2] / f"{sha256}{ext}"

    def job_dir(self, job_id: str) -> Path:
        return self.jobs / job_id

    def plans_path(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "plans.json"

    def variant_dir(self, job_id: str, variant: int) -> Path:
        return self.job_dir(job_id) / f"v{variant}"

    def new_attempt_dir(self, job_id: str) -> Path:
        d = self.job_dir(job_id) / f".attempt-{uuid.uuid4().hex[:12]}"
        d.mkdir(parents=True)
        return d

    def clean_attempts(self, job_id: str) -> None:
        """Remove every attempt's work directory (called once the job is finished)."""
        jd = self.job_dir(job_id)
        if jd.is_dir():
            for d in jd.glob(".attempt-*"):
                shutil.rmtree(d, ignore_errors=True)

    @contextlib.contextmanager
    def blob_lock(self) -> Iterator[None]:
        """Serialise storing and removing upload files: a file being removed because its last owner deleted
        it is not the one a concurrent upload of the same bytes just found in place (and so did not store)."""
        fd = os.open(self.locks / "blobs.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def store_blob(self, tmp_path: Path, dest: Path) -> None:
        """Move an accepted upload to its content-addressed place (the temp file is dropped if the same
        content is there already, e.g. uploaded by another key)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self.blob_lock():
            if dest.exists():
                with contextlib.suppress(FileNotFoundError):
                    tmp_path.unlink()
            else:
                os.replace(tmp_path, dest)

    def sweep_partial_uploads(self, older_than_s: float) -> int:
        """Delete temp files of uploads interrupted by an API crash (older than any live upload)."""
        cutoff = time.time() - older_than_s
        n = 0
        for p in self.uploads_tmp.glob("upload-*.part"):
            with contextlib.suppress(FileNotFoundError):
                if p.stat().st_mtime < cutoff:
                    p.unlink()
                    n += 1
        return n

    def is_upload(self, path: str | os.PathLike[str]) -> bool:
        try:
            Path(path).resolve().relative_to(self.uploads.resolve())
        except ValueError:
            return False
        return True

    @contextlib.contextmanager
    def library_write_lock(self, cancel: threading.Event | None = None, poll_s: float = 0.2) -> Iterator[None]:
        """Serialise catalog writers among this service's workers (the catalog's own lock gives up
        after 30 s, which a long ingest by a sibling worker would exceed)."""
        fd = os.open(self.locks / "library-write.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if cancel is not None and cancel.is_set():
                        raise InterruptedError("stopped while waiting for the library write lock") from None
                    time.sleep(poll_s)
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


# --------------------------------------------------------------------------- path references


def resolve_media_path(root: Path, ref: str) -> Path:
    """Resolve a user's relative path inside `root`, refusing traversal and symlink escapes.

    The check is on the fully resolved path (every symlink followed), so a link inside the root
    that points outside it is refused like `../` is. Callers re-check at use time (TOCTOU)."""
    if "\x00" in ref or not ref.strip():
        raise PathRefError(f"invalid path reference {ref!r}")
    if "://" in ref:
        raise PathRefError(
            f"path reference {ref!r} looks like a URL; the server does not fetch URLs "
            "(upload the file with POST /v1/clips instead)"
        )
    rel = Path(ref)
    if rel.is_absolute() or ref.startswith(("/", "\\", "~")):
        raise PathRefError(f"path reference {ref!r} must be relative to the media root")
    if any(part == ".." for part in rel.parts):
        raise PathRefError(f"path reference {ref!r} must not contain '..'")
    root = root.resolve()
    try:
        resolved = (root / rel).resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        raise PathRefError(f"no file {ref!r} in the media root") from None
    except (OSError, RuntimeError) as exc:  # symlink loops, name too long
        raise PathRefError(f"path reference {ref!r} cannot be resolved ({exc.__class__.__name__})") from None
    try:
        resolved.relative_to(root)
    except ValueError:
        raise PathRefError(f"path reference {ref!r} leads outside the media root (symlink)") from None
    if not resolved.is_file():
        raise PathRefError(f"path reference {ref!r} is not a regular file")
    return resolved


# --------------------------------------------------------------------------- content sniffing


def sniff_video(head: bytes) -> str | None:
    """Container of a video from its first bytes, as a file extension; None if not an allowed one.

    An allow-list by magic bytes (not by name or Content-Type) keeps formats that can make ffmpeg
    open other files or URLs (HLS/DASH playlists, concat lists, SDP) away from ffprobe and ingest."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand == b"qt  ":
            return ".mov"
        if brand.startswith(b"3g"):
            return ".3gp"
        return ".mp4"
    if len(head) >= 8 and head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):
        return ".mov"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return ".webm" if b"webm" in head[:64] else ".mkv"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return ".avi"
    if head.startswith(b"FLV"):
        return ".flv"
    if head.startswith(b"\x00\x00\x01\xba"):
        return ".mpg"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return ".wmv"
    if len(head) >= 376 and head[0] == 0x47 and head[188] == 0x47:
        return ".ts"
    return None


def sniff_image(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    return None


# --------------------------------------------------------------------------- streamed multipart upload


@dataclass
class ReceivedFile:
    """A file part written to disk while it arrived."""

    tmp_path: Path
    filename: str
    size_bytes: int
    sha256: str
    head: bytes
    fields: dict[str, str]


async def receive_multipart_file(
    content_type: str | None,
    body: AsyncIterator[bytes],
    *,
    tmp_dir: Path,
    max_bytes: int,
    file_field: str = "file",
    max_field_bytes: int = 4096,
    max_parts: int = 16,
    max_header_bytes: int = 8192,
    timeout_s: float | None = None,
) -> ReceivedFile:
    """Stream a multipart/form-data body to a temp file, hashing as it goes; stop at `max_bytes`.

    Exactly one file part named `file_field` is accepted; small text fields are returned. Bounded: at most
    `max_parts` parts, `max_header_bytes` of headers per part, `max_field_bytes` per text field, and the whole
    body within `timeout_s` (408; a client that stops sending is cut off too). On any error, a disconnect
    included, the temp file is removed before the error is raised (nothing stored)."""
    ctype, params = parse_options_header(content_type or "")
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise UploadError(
            415, "unsupported_media_type", "send the file as multipart/form-data with a part named 'file'"
        )
    boundary = params[b"boundary"]
    tmp_path = tmp_dir / f"upload-{uuid.uuid4().hex}.part"

    def open_tmp() -> BinaryIO:
        tmp_dir.mkdir(parents=True, exist_ok=True)
        return open(tmp_path, "wb")  # closed in the finally below, also on errors

    state: dict[str, Any] = {
        "parts": 0,
        "header_bytes": 0,
        "headers": {},
        "field": b"",
        "value": b"",
        "name": None,
        "filename": None,
        "file_seen": False,
        "in_file": False,
        "size": 0,
        "head": b"",
        "fields": {},
        "error": None,
    }
    hasher = hashlib.sha256()
    out = await run_in_threadpool(open_tmp)  # off the event loop: a slow disk must not stall other requests

    def fail(status: int, code: str, msg: str) -> None:
        if state["error"] is None:
            state["error"] = UploadError(status, code, msg)

    def on_part_begin() -> None:
        state["parts"] += 1
        state["header_bytes"] = 0
        if state["parts"] > max_parts:
            fail(400, "too_many_parts", f"the upload has more than {max_parts} parts")
        state["headers"] = {}
        state["name"] = state["filename"] = None
        state["in_file"] = False

    def header_room(n: int) -> bool:
        state["header_bytes"] += n
        if state["header_bytes"] > max_header_bytes:
            fail(400, "header_too_large", f"a part's headers exceed {max_header_bytes} bytes")
            return False
        return state["error"] is None

    def on_header_field(data: bytes, start: int, end: int) -> None:
        if header_room(end - start):
            state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        if header_room(end - start):
            state["value"] += data[start:end]

    def on_header_end() -> None:
        if state["error"] is None:
            state["headers"][state["field"].decode("latin-1").lower()] = state["value"]
        state["field"] = state["value"] = b""

    def on_headers_finished() -> None:
        if state["error"] is not None:
            return
        _disp, opts = parse_options_header(state["headers"].get("content-disposition", b""))
        name = opts.get(b"name", b"").decode("utf-8", "replace")
        state["name"] = name
        if b"filename" in opts:
            if name != file_field:
                fail(400, "unexpected_file", f"unexpected file part {name!r}; send the file as part {file_field!r}")
                return
            if state["file_seen"]:
                fail(400, "too_many_files", "send exactly one file per upload")
                return
            state["file_seen"] = True
            state["in_file"] = True
            state["filename"] = opts[b"filename"].decode("utf-8", "replace")
        else:
            state["fields"][name] = ""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["error"] is not None:
            return
        chunk = data[start:end]
        if state["in_file"]:
            state["size"] += len(chunk)
            if state["size"] > max_bytes:
                fail(413, "too_large", f"file exceeds the upload limit of {max_bytes} bytes")
                return
            if len(state["head"]) < 4096:
                state["head"] += chunk[: 4096 - len(state["head"])]
            hasher.update(chunk)
            out.write(chunk)
        elif state["name"] is not None:
            cur = state["fields"].get(state["name"], "")
            if len(cur) + len(chunk) > max_field_bytes:
                fail(400, "field_too_large", f"form field {state['name']!r} is too long")
                return
            state["fields"][state["name"]] = cur + chunk.decode("utf-8", "replace")

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
        },
    )
    ok = False

    async def pump() -> None:
        async for chunk in body:
            if chunk:
                parser.write(chunk)
            if state["error"] is not None:
                raise state["error"]

    try:
        try:
            if timeout_s is None:
                await pump()
            else:
                try:
                    async with asyncio.timeout(timeout_s):
                        await pump()
                except TimeoutError:
                    raise UploadError(
                        408, "upload_timeout", f"the upload did not arrive within {timeout_s:g} s"
                    ) from None
            parser.finalize()
        except UploadError:
            raise
        except Exception as exc:  # noqa: BLE001 - python-multipart raises assorted errors on malformed bodies
            raise UploadError(400, "malformed_multipart", f"malformed multipart body ({exc})") from None
        if state["error"] is not None:
            raise state["error"]
        if not state["file_seen"]:
            raise UploadError(400, "missing_file", f"no file part named {file_field!r} in the upload")
        if state["size"] == 0:
            raise UploadError(400, "empty_file", "the uploaded file is empty")
        ok = True
    finally:
        out.close()
        if not ok:
            with contextlib.suppress(FileNotFoundError):
                tmp_path.unlink()
    name = os.path.basename((state["filename"] or "").replace("\\", "/"))[:255] or "upload"
    return ReceivedFile(
        tmp_path=tmp_path,
        filename=name,
        size_bytes=state["size"],
        sha256=hasher.hexdigest(),
        head=state["head"],
        fields=state["fields"],
    )


# --------------------------------------------------------------------------- idempotent publishing


def publish_dir(src: Path, dst: Path) -> bool:
    """Rename `src` to `dst` unless `dst` exists. True if this call published; `src` is removed otherwise."""
    try:
        os.rename(src, dst)
        return True
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            shutil.rmtree(src, ignore_errors=True)
            return False
        raise


def write_json_once(path: Path, obj: Any) -> Any:
    """Write `obj` as JSON at `path` unless it already exists; return what is there afterwards.

    `os.link` fails if the target exists, so concurrent attempts agree on one content."""
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(obj, indent=2), encoding="utf-8")
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return json.loads(path.read_text(encoding="utf-8"))


def check_upload_media(path: Path, *, min_duration_s: float, max_duration_s: float, limits=None):
    """ffprobe an uploaded video (under `limits`, the service's `MediaLimits`; default: the process's) and
    check it can serve as footage; `MediaError` otherwise."""
    from autocut.library.media import probe, validate_footage

    info = validate_footage(probe(path, limits=limits), min_duration_s=min_duration_s)
    if info.duration_s > max_duration_s:
        raise MediaError(path, f"too long: {info.duration_s:.0f} s > {max_duration_s:.0f} s")
    return info
