"""The material library on disk: SQLite (WAL) for rows, append-only memory-mapped arrays for embeddings.

One module on purpose (~800 lines): `Catalog` is the single writer of both stores, and its crash
guarantees (arrays fsynced before the one SQLite transaction that commits their row counts) hold only
if every write goes through the same class.

Layout of a library directory::

    catalog.sqlite          rows: sources, frames, clips, BGM tracks, products, reference edits, meta
    arrays/<name>.f32       float32 row-major, one file per array (frames_raw, frames, clips,
                            bgm_blocks, bgm_tracks); row counts live in SQLite (`arrays` table)
    pca/                    the library's own PCA fits (see `autocut.encoders.pca`)
    indexes/, models/, world/   written by other modules

Crash consistency: a source's vectors are appended to the array files and fsynced *before* the
single SQLite transaction that inserts its rows and advances the committed row counts. Bytes past
a committed count are garbage from a crashed ingest and are truncated when a writer opens the
library, so a kill at any point leaves the previous state intact and re-ingesting does the rest.
Only one writer at a time (an advisory lock on `catalog.lock`); readers may run concurrently.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from autocut.errors import CatalogError, VersionMismatchError
from autocut.library.ids import clip_id as make_clip_id
from autocut.library.ids import frame_id as make_frame_id
from autocut.library.ids import split_clip_id
from autocut.library.layout import LibraryLayout

__all__ = [
    "CATALOG_FORMAT_VERSION",
    "BgmRow",
    "Catalog",
    "ClipRow",
    "LibraryStats",
    "NewBgm",
    "NewSource",
    "ProductRecord",
    "RefEditRecord",
    "RefSegment",
    "SourceRow",
]

log = logging.getLogger(__name__)

CATALOG_FORMAT_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS arrays (name TEXT PRIMARY KEY, dim INTEGER NOT NULL, rows INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    photo_id INTEGER PRIMARY KEY AUTOINCREMENT,
    content_hash TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    kind TEXT NOT NULL,                -- footage | ad
    duration_s REAL NOT NULL,
    width INTEGER, height INTEGER, fps REAL, rotation_deg INTEGER,
    video_codec TEXT, audio_codec TEXT, has_audio INTEGER,
    n_frames INTEGER NOT NULL,         -- 1 fps frames stored
    probe_json TEXT NOT NULL,
    ingested_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sources_path ON sources(path);
CREATE TABLE IF NOT EXISTS frames (
    frame_id INTEGER PRIMARY KEY, photo_id INTEGER NOT NULL, frame_index INTEGER NOT NULL,
    t_s REAL NOT NULL, row INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS frames_photo ON frames(photo_id);
CREATE TABLE IF NOT EXISTS clips (
    clip_id INTEGER PRIMARY KEY, photo_id INTEGER NOT NULL, start_s REAL NOT NULL, end_s REAL NOT NULL,
    start_frame INTEGER NOT NULL, duration_frames INTEGER NOT NULL, row INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS clips_photo ON clips(photo_id);
CREATE TABLE IF NOT EXISTS bgm (
    audio_id INTEGER PRIMARY KEY AUTOINCREMENT,
    content_hash TEXT NOT NULL UNIQUE,     -- hash of the file + excerpt window
    source_path TEXT NOT NULL, start_s REAL NOT NULL, duration_s REAL NOT NULL,
    title TEXT NOT NULL DEFAULT '', mood TEXT NOT NULL DEFAULT '',
    block_row INTEGER NOT NULL, n_blocks INTEGER NOT NULL, row INTEGER NOT NULL,
    flags TEXT NOT NULL DEFAULT '', ingested_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS products (product_id TEXT PRIMARY KEY, split TEXT NOT NULL, json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reference_edits (
    edit_id TEXT PRIMARY KEY, product_id TEXT NOT NULL, language TEXT NOT NULL, split TEXT NOT NULL,
    source TEXT NOT NULL, audio_id INTEGER, json TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ref_split ON reference_edits(split);
CREATE TABLE IF NOT EXISTS failures (path TEXT PRIMARY KEY, kind TEXT, reason TEXT NOT NULL, at REAL NOT NULL);
-- Other paths of an ingested video's content (a copy ingested again is stored once, usable by its path).
CREATE TABLE IF NOT EXISTS source_aliases (
    path TEXT PRIMARY KEY, photo_id INTEGER NOT NULL REFERENCES sources(photo_id));
"""

# Filesystems where SQLite's WAL (shared memory, POSIX locks) is not safe (https://sqlite.org/wal.html).
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "ceph",
        "glusterfs",
        "lustre",
        "afs",
        "ncpfs",
        "coda",
        "gfs2",
        "ocfs2",
    }
)


def network_filesystem(path: str | os.PathLike[str], mounts: str | None = None) -> str | None:
    """The type of the network filesystem `path` lies on (from /proc/self/mounts, or `mounts` text), or None
    for a local one (or when the mount table cannot be read). FUSE mounts of network filesystems
    (``fuse.sshfs``, ``fuse.glusterfs``, ``fuse.s3fs``, ...) count as network ones."""
    if mounts is None:
        try:
            mounts = Path("/proc/self/mounts").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    p = str(Path(path).resolve())
    best, best_type = "", ""
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        if (p == point or p.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, best_type = point, parts[2]
    kind = best_type.lower()
    sub = kind.split(".", 1)[1] if kind.startswith("fuse.") else None
    if kind in NETWORK_FILESYSTEMS or (sub is not None and sub in {"sshfs", "glusterfs", "s3fs", "rclone", "cephfs"}):
        return best_type
    return None


# Array name -> meta key holding its dim (set on first write).
ARRAY_NAMES = ("frames_raw", "frames", "clips", "bgm_blocks", "bgm_tracks")


@dataclass(frozen=True)
class SourceRow:
    photo_id: int
    content_hash: str
    path: str
    kind: str
    duration_s: float
    width: int
    height: int
    fps: float
    rotation_deg: int
    has_audio: bool
    n_frames: int


@dataclass(frozen=True)
class ClipRow:
    clip_id: int
    photo_id: int
    start_s: float
    end_s: float
    start_frame: int
    duration_frames: int

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class BgmRow:
    audio_id: int
    source_path: str
    start_s: float
    duration_s: float
    title: str
    mood: str
    n_blocks: int
    flags: str


@dataclass
class NewSource:
    """Everything ingest computed for one source video, written in one transaction."""

    content_hash: str
    path: str
    kind: str
    duration_s: float
    probe: dict
    frame_times_s: list[float]
    frames_raw: np.ndarray  # (N, raw_dim) float32, encoder output before PCA
    frames: np.ndarray  # (N, 128) float32, PCA-reduced and L2-normalised
    clip_spans: list[tuple[float, float]]  # (start_s, end_s)
    clips: np.ndarray  # (C, 128) float32


@dataclass
class NewBgm:
    """One BGM track (or excerpt of a longer file)."""

    content_hash: str
    source_path: str
    start_s: float
    duration_s: float
    blocks: np.ndarray  # (n_blocks, D) float32 encoder block embeddings
    track: np.ndarray  # (D,) float32 pooled, L2-normalised
    title: str = ""
    mood: str = ""
    flags: str = ""  # e.g. "full_mix" when VAD found no music-only region


@dataclass
class ProductRecord:
    product_id: str
    name: str
    brand: str = ""
    category: str = ""
    selling_points: list[str] = field(default_factory=list)
    description: str = ""
    image_path: str | None = None
    split: str = "train"
    # Localised display fields, e.g. {"zh": {"name": ..., "selling_points": [...]}}.
    language_names: dict = field(default_factory=dict)


@dataclass
class RefSegment:
    photo_id: int
    start_s: float
    duration_s: float
    sentence: str
    role: str = ""


@dataclass
class RefEditRecord:
    """A reference edit: the clips (in order) and BGM of a finished ad (AutoCut 4.1)."""

    edit_id: str
    product_id: str
    language: str
    segments: list[RefSegment]
    audio_id: int | None = None
    split: str = "train"
    source: str = ""  # e.g. "demo-world", "asr:<path>"


@dataclass(frozen=True)
class LibraryStats:
    root: str
    frame_encoder: str
    audio_encoder: str
    pca_version: str
    sources: int
    footage_s: float
    frames: int
    clips: int
    bgm_tracks: int
    bgm_s: float
    products: int
    reference_edits: dict[str, int]
    failures: int
    disk_bytes: int

    def to_text(self) -> str:
        refs = ", ".join(f"{k}={v}" for k, v in sorted(self.reference_edits.items())) or "0"
        return "\n".join(
            [
                f"library        {self.root}",
                f"encoders       frames={self.frame_encoder} audio={self.audio_encoder} pca={self.pca_version}",
                f"sources        {self.sources} videos, {self.footage_s / 60:.1f} min",
                f"frames (1 fps) {self.frames}",
                f"clips          {self.clips}",
                f"bgm tracks     {self.bgm_tracks}, {self.bgm_s / 60:.1f} min",
                f"products       {self.products}",
                f"reference ads  {refs}",
                f"failed files   {self.failures}",
                f"disk           {self.disk_bytes / 1e6:.1f} MB",
            ]
        )


class Catalog:
    """Handle on one library directory. Use `Catalog.open(root)`; close it (or use `with`)."""

    def __init__(self, root: Path, conn: sqlite3.Connection, *, writable: bool, lock_fd: int | None) -> None:
        self.root = root
        self._conn = conn
        self._writable = writable
        self._lock_fd = lock_fd
        self._pending: dict[str, tuple[int, int]] = {}

    # ------------------------------------------------------------------ open / close
    @classmethod
    def open(
        cls,
        root: str | os.PathLike[str],
        *,
        create: bool = True,
        writable: bool = False,
        frame_encoder: str | None = None,
        audio_encoder: str | None = None,
        lock_timeout_s: float = 30.0,
    ) -> Catalog:
        """Open (and with `create`, initialise) a library.

        `writable=True` takes the single-writer lock and repairs arrays left by a crashed writer.
        `frame_encoder`/`audio_encoder`, when given, must match what the library was built with.
        """
        root = Path(root).resolve()
        if (fs := network_filesystem(root)) is not None:
            raise CatalogError(
                f"library {root} is on a network filesystem ({fs}): SQLite in WAL mode is unsafe there "
                "(docs/deploy.md, 'Several hosts'); keep the library on a local disk of the host that runs "
                "the workers"
            )
        layout = LibraryLayout(root)
        db = layout.catalog_db
        if not db.exists():
            if not create:
                raise CatalogError(f"no material library at {root} (run `autocut ingest` first)")
            root.mkdir(parents=True, exist_ok=True)
            writable = True
        layout.arrays_dir.mkdir(parents=True, exist_ok=True)
        lock_fd = None
        if writable:
            lock_fd = os.open(layout.catalog_lock, os.O_RDWR | os.O_CREAT, 0o644)
            deadline = time.monotonic() + lock_timeout_s
            while True:
                try:
                    fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        os.close(lock_fd)
                        raise CatalogError(f"library {root} is locked by another writer (ingest running?)") from None
                    time.sleep(0.1)
        try:
            conn = sqlite3.connect(db, timeout=30.0, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            if writable:
                conn.executescript(_SCHEMA)
            cat = cls(root, conn, writable=writable, lock_fd=lock_fd)
            cat._check_format()
            if writable:
                cat._init_meta(frame_encoder, audio_encoder)
                cat._repair_arrays()
            else:
                cat._check_encoders(frame_encoder, audio_encoder)
        except sqlite3.DatabaseError as exc:
            if lock_fd is not None:
                os.close(lock_fd)
            raise CatalogError(f"library {root}: catalog database is corrupt or unreadable ({exc})") from None
        except BaseException:
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        return cat

    def close(self) -> None:
        self._conn.close()
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ meta
    def _meta(self, key: str, default: str | None = None) -> str | None:
        try:
            row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        except sqlite3.OperationalError:
            return default
        return row[0] if row else default

    def _set_meta(self, key: str, value: str) -> None:
        self._conn.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    def _check_format(self) -> None:
        v = self._meta("format_version")
        if v is not None and int(v) != CATALOG_FORMAT_VERSION:
            raise VersionMismatchError(
                f"library {self.root} has catalog format {v}; this AutoCut reads format {CATALOG_FORMAT_VERSION}"
            )

    def _init_meta(self, frame_encoder: str | None, audio_encoder: str | None) -> None:
        with self._conn:
            if self._meta("format_version") is None:
                self._set_meta("format_version", str(CATALOG_FORMAT_VERSION))
                self._set_meta("created_at", str(time.time()))
            for key, want in (("frame_encoder", frame_encoder), ("audio_encoder", audio_encoder)):
                have = self._meta(key)
                if want is None:
                    continue
                if have is None:
                    self._set_meta(key, want)
                elif have != want:
                    raise VersionMismatchError(
                        f"library {self.root} was built with {key.replace('_', ' ')} {have!r}, not {want!r}; "
                        "use a separate library per encoder"
                    )

    def _check_encoders(self, frame_encoder: str | None, audio_encoder: str | None) -> None:
        for key, want in (("frame_encoder", frame_encoder), ("audio_encoder", audio_encoder)):
            have = self._meta(key)
            if want is not None and have is not None and have != want:
                raise VersionMismatchError(f"library {self.root} was built with {key} {have!r}, not {want!r}")

    @property
    def frame_encoder(self) -> str:
        return self._meta("frame_encoder", "") or ""

    @property
    def audio_encoder(self) -> str:
        return self._meta("audio_encoder", "") or ""

    @property
    def pca_version(self) -> str:
        return self._meta("pca_version", "") or ""

    def set_meta(self, key: str, value: str) -> None:
        self._require_writer()
        with self._conn:
            self._set_meta(key, value)

    # ------------------------------------------------------------------ arrays
    def _array_path(self, name: str) -> Path:
        return self.root / "arrays" / f"{name}.f32"

    def _array_info(self, name: str) -> tuple[int, int]:
        try:
            row = self._conn.execute("SELECT dim, rows FROM arrays WHERE name=?", (name,)).fetchone()
        except sqlite3.OperationalError:
            row = None
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def _repair_arrays(self) -> None:
        for name in ARRAY_NAMES:
            dim, rows = self._array_info(name)
            p = self._array_path(name)
            want = dim * rows * 4
            if p.exists() and p.stat().st_size > want:
                log.warning(
                    "library %s: truncating %s to %d committed rows (left by an interrupted ingest)",
                    self.root,
                    p.name,
                    rows,
                )
                with open(p, "r+b") as f:
                    f.truncate(want)
            elif want and (not p.exists() or p.stat().st_size < want):
                raise CatalogError(
                    f"library {self.root}: array {p.name} is shorter than its {rows} committed rows "
                    "(file damaged or deleted); rebuild the library"
                )

    def _append(self, name: str, arr: np.ndarray) -> int:
        """Append rows to an array file (fsynced); return the first new row. Caller commits the count."""
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if arr.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D array, got shape {arr.shape}")
        dim, rows = self._pending.get(name) or self._array_info(name)
        if dim and arr.shape[1] != dim:
            raise CatalogError(
                f"library {self.root}: {name} vectors are {dim}-d, got {arr.shape[1]}-d "
                "(different encoder? use a separate library)"
            )
        if not np.isfinite(arr).all():
            raise CatalogError(f"{name}: refusing to store NaN/inf vectors")
        p = self._array_path(name)
        with open(p, "ab") as f:
            # Position at the committed end (the file may hold a crashed writer's tail: repaired on open).
            f.seek(rows * arr.shape[1] * 4)
            f.write(arr.tobytes())
            f.flush()
            os.fsync(f.fileno())
        self._pending[name] = (arr.shape[1], rows + len(arr))
        return rows

    @contextlib.contextmanager
    def _write_txn(self) -> Iterator[sqlite3.Connection]:
        self._require_writer()
        self._pending = {}
        try:
            with self._conn:
                yield self._conn
                for name, (dim, rows) in self._pending.items():
                    self._conn.execute(
                        "INSERT INTO arrays(name, dim, rows) VALUES(?,?,?) "
                        "ON CONFLICT(name) DO UPDATE SET dim=excluded.dim, rows=excluded.rows",
                        (name, dim, rows),
                    )
        except BaseException:
            # Roll the files back to the committed length so a later append in this process is clean.
            self._pending = {}
            self._repair_arrays()
            raise
        finally:
            self._pending = {}

    def array(self, name: str) -> np.ndarray:
        """Read-only memory map of a committed array: (rows, dim) float32 (empty if none)."""
        dim, rows = self._array_info(name)
        if rows == 0:
            return np.zeros((0, dim), np.float32)
        return np.memmap(self._array_path(name), dtype=np.float32, mode="r", shape=(rows, dim))

    def _require_writer(self) -> None:
        if not self._writable:
            raise CatalogError(f"library {self.root} was opened read-only")

    # ------------------------------------------------------------------ sources
    def has_source(self, content_hash: str) -> int | None:
        row = self._conn.execute("SELECT photo_id FROM sources WHERE content_hash=?", (content_hash,)).fetchone()
        return int(row[0]) if row else None

    def add_source(self, src: NewSource) -> int:
        """Insert a source with its frames and clips atomically; return its photo_id."""
        n = len(src.frames)
        if n != len(src.frames_raw) or n != len(src.frame_times_s):
            raise ValueError("frames, frames_raw and frame_times_s must have the same length")
        if len(src.clip_spans) != len(src.clips):
            raise ValueError("clip_spans and clips must have the same length")
        with self._write_txn() as c:
            cur = c.execute(
                "INSERT INTO sources(content_hash, path, kind, duration_s, width, height, fps, rotation_deg, "
                "video_codec, audio_codec, has_audio, n_frames, probe_json, ingested_at) "
                "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    src.content_hash,
                    src.path,
                    src.kind,
                    src.duration_s,
                    src.probe.get("width"),
                    src.probe.get("height"),
                    src.probe.get("fps"),
                    src.probe.get("rotation_deg"),
                    src.probe.get("video_codec"),
                    src.probe.get("audio_codec"),
                    int(bool(src.probe.get("has_audio"))),
                    n,
                    json.dumps(src.probe, default=str),
                    time.time(),
                ),
            )
            photo_id = int(cur.lastrowid)  # type: ignore[arg-type]
            fids = [make_frame_id(photo_id, i) for i in range(n)]  # raises IdRangeError past 9,999 s
            cids = []
            from autocut.library.segmentation import ClipSpan  # local: segmentation is a leaf module

            for a, b in src.clip_spans:
                span = ClipSpan(a, b)
                cids.append(make_clip_id(photo_id, span.start_frame, span.duration_frames))
            if len(set(cids)) != len(cids):
                raise CatalogError(f"{src.path}: two clips quantise to the same 1 fps clip id")
            r_raw = self._append("frames_raw", src.frames_raw)
            r_vec = self._append("frames", src.frames)
            assert r_raw == r_vec, "frames_raw and frames arrays out of step"
            c.executemany(
                "INSERT INTO frames(frame_id, photo_id, frame_index, t_s, row) VALUES(?,?,?,?,?)",
                [(fid, photo_id, i, float(t), r_vec + i) for i, (fid, t) in enumerate(zip(fids, src.frame_times_s))],
            )
            if len(src.clips):
                r_clip = self._append("clips", src.clips)
                c.executemany(
                    "INSERT INTO clips(clip_id, photo_id, start_s, end_s, start_frame, duration_frames, row) "
                    "VALUES(?,?,?,?,?,?,?)",
                    [
                        (cid, photo_id, a, b, *split_clip_id(cid)[1:], r_clip + k)
                        for k, (cid, (a, b)) in enumerate(zip(cids, src.clip_spans))
                    ],
                )
            c.execute("DELETE FROM failures WHERE path=?", (src.path,))
        return photo_id

    def sources(self, kind: str | None = None) -> list[SourceRow]:
        q = (
            "SELECT photo_id, content_hash, path, kind, duration_s, width, height, fps, rotation_deg, has_audio, "
            "n_frames FROM sources"
        )
        rows = self._conn.execute(
            q + (" WHERE kind=?" if kind else "") + " ORDER BY photo_id", (kind,) if kind else ()
        ).fetchall()
        return [
            SourceRow(r[0], r[1], r[2], r[3], r[4], r[5] or 0, r[6] or 0, r[7] or 0.0, r[8] or 0, bool(r[9]), r[10])
            for r in rows
        ]

    def source(self, photo_id: int) -> SourceRow:
        for s in self._sources_where("photo_id=?", (int(photo_id),)):
            return s
        raise CatalogError(f"unknown photo_id {photo_id} in library {self.root}")

    def video_by_path(self, path: str | os.PathLike[str]) -> SourceRow | None:
        """The source ingested from `path`; the newest one when the file was replaced and ingested again
        (sources are keyed by content, so the older content keeps its row)."""
        p = str(Path(path).resolve())
        for s in self._sources_where("path=? ORDER BY photo_id DESC", (p,)):
            return s
        try:
            row = self._conn.execute("SELECT photo_id FROM source_aliases WHERE path=?", (p,)).fetchone()
        except sqlite3.OperationalError:  # a library written before aliases, opened read-only
            return None
        if row is not None:
            for s in self._sources_where("photo_id=?", (int(row[0]),)):
                return s
        return None

    def add_source_alias(self, path: str | os.PathLike[str], photo_id: int) -> None:
        """Make `path` (a file with the same content as source `photo_id`) find that source by path."""
        p = str(Path(path).resolve())
        with self._write_txn() as c:
            c.execute(
                "INSERT INTO source_aliases(path, photo_id) VALUES(?,?) "
                "ON CONFLICT(path) DO UPDATE SET photo_id=excluded.photo_id",
                (p, int(photo_id)),
            )

    def _sources_where(self, where: str, params: tuple) -> list[SourceRow]:
        rows = self._conn.execute(
            "SELECT photo_id, content_hash, path, kind, duration_s, width, height, fps, rotation_deg, has_audio, "
            f"n_frames FROM sources WHERE {where}",
            params,
        ).fetchall()
        return [
            SourceRow(r[0], r[1], r[2], r[3], r[4], r[5] or 0, r[6] or 0, r[7] or 0.0, r[8] or 0, bool(r[9]), r[10])
            for r in rows
        ]

    def clips(self, photo_id: int | None = None) -> list[ClipRow]:
        q = "SELECT clip_id, photo_id, start_s, end_s, start_frame, duration_frames FROM clips"
        rows = self._conn.execute(
            q + (" WHERE photo_id=?" if photo_id is not None else "") + " ORDER BY clip_id",
            (int(photo_id),) if photo_id is not None else (),
        ).fetchall()
        return [ClipRow(*r) for r in rows]

    # ------------------------------------------------------------------ vectors
    def _vectors(
        self, table: str, id_col: str, array: str, photo_ids: Sequence[int] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        arr = self.array(array)
        if photo_ids is None:
            rows = self._conn.execute(f"SELECT {id_col}, row FROM {table} ORDER BY {id_col}").fetchall()
        else:
            ph = ",".join("?" * len(photo_ids))
            rows = self._conn.execute(
                f"SELECT {id_col}, row FROM {table} WHERE photo_id IN ({ph}) ORDER BY {id_col}",
                tuple(int(p) for p in photo_ids),
            ).fetchall()
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, arr.shape[1] if arr.ndim == 2 else 0), np.float32)
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        idx = np.fromiter((r[1] for r in rows), np.int64, len(rows))
        return ids, np.asarray(arr[idx], dtype=np.float32)

    def frame_vectors(self, photo_ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(frame_ids int64 (N,), PCA vectors float32 (N, 128)), optionally for some sources only."""
        return self._vectors("frames", "frame_id", "frames", photo_ids)

    def frame_raw_vectors(self, photo_ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(frame_ids, raw encoder features (N, raw_dim)) — kept so a PCA refit can recompute everything."""
        return self._vectors("frames", "frame_id", "frames_raw", photo_ids)

    def clip_vectors(self, photo_ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(clip_ids int64 (C,), clip embeddings float32 (C, 128))."""
        return self._vectors("clips", "clip_id", "clips", photo_ids)

    def bgm_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(audio_ids int64 (M,), pooled track embeddings float32 (M, D), L2-normalised)."""
        arr = self.array("bgm_tracks")
        rows = self._conn.execute("SELECT audio_id, row FROM bgm ORDER BY audio_id").fetchall()
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, arr.shape[1]), np.float32)
        ids = np.array([r[0] for r in rows], np.int64)
        return ids, np.asarray(arr[[r[1] for r in rows]], np.float32)

    def bgm_block_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(audio_id per block int64 (B,), block embeddings float32 (B, D)) for RQ-VAE audio training."""
        arr = self.array("bgm_blocks")
        rows = self._conn.execute("SELECT audio_id, block_row, n_blocks FROM bgm ORDER BY audio_id").fetchall()
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, arr.shape[1]), np.float32)
        ids = np.concatenate([np.full(n, a, np.int64) for a, _, n in rows])
        idx = np.concatenate([np.arange(r, r + n) for _, r, n in rows])
        return ids, np.asarray(arr[idx], np.float32)

    def replace_frame_vectors(self, frames: np.ndarray, clips: np.ndarray, pca_version: str) -> None:
        """After a PCA refit: swap in recomputed 128-d frame and clip arrays (row order unchanged) atomically."""
        self._require_writer()
        for name, arr in (("frames", frames), ("clips", clips)):
            _dim, rows = self._array_info(name)
            if rows and len(arr) != rows:
                raise CatalogError(f"{name}: expected {rows} rows, got {len(arr)}")
        with self._conn:
            for name, arr in (("frames", frames), ("clips", clips)):
                arr = np.ascontiguousarray(arr, np.float32)
                tmp = self._array_path(name).with_suffix(".f32.tmp")
                with open(tmp, "wb") as f:
                    f.write(arr.tobytes())
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self._array_path(name))
                self._conn.execute(
                    "INSERT INTO arrays(name, dim, rows) VALUES(?,?,?) ON CONFLICT(name) DO UPDATE "
                    "SET dim=excluded.dim, rows=excluded.rows",
                    (name, arr.shape[1], len(arr)),
                )
            self._set_meta("pca_version", pca_version)

    # ------------------------------------------------------------------ BGM
    def has_bgm(self, content_hash: str) -> int | None:
        row = self._conn.execute("SELECT audio_id FROM bgm WHERE content_hash=?", (content_hash,)).fetchone()
        return int(row[0]) if row else None

    def add_bgm(self, tracks: Sequence[NewBgm]) -> list[int]:
        """Insert BGM tracks (e.g. all excerpts of one file) in one transaction; return their audio_ids."""
        out = []
        with self._write_txn() as c:
            for t in tracks:
                if t.blocks.ndim != 2 or len(t.blocks) == 0:
                    raise CatalogError(f"{t.source_path}: BGM track has no audio blocks")
                r_blocks = self._append("bgm_blocks", t.blocks)
                r_track = self._append("bgm_tracks", t.track.reshape(1, -1))
                cur = c.execute(
                    "INSERT INTO bgm(content_hash, source_path, start_s, duration_s, title, mood, block_row, "
                    "n_blocks, row, flags, ingested_at) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        t.content_hash,
                        t.source_path,
                        t.start_s,
                        t.duration_s,
                        t.title,
                        t.mood,
                        r_blocks,
                        len(t.blocks),
                        r_track,
                        t.flags,
                        time.time(),
                    ),
                )
                out.append(int(cur.lastrowid))  # type: ignore[arg-type]
            c.executemany("DELETE FROM failures WHERE path=?", [(t.source_path,) for t in tracks])
        return out

    def bgm_tracks(self) -> list[BgmRow]:
        rows = self._conn.execute(
            "SELECT audio_id, source_path, start_s, duration_s, title, mood, n_blocks, flags FROM bgm ORDER BY audio_id"
        ).fetchall()
        return [BgmRow(*r) for r in rows]

    def bgm_track(self, audio_id: int) -> BgmRow:
        row = self._conn.execute(
            "SELECT audio_id, source_path, start_s, duration_s, title, mood, n_blocks, flags FROM bgm WHERE audio_id=?",
            (int(audio_id),),
        ).fetchone()
        if row is None:
            raise CatalogError(f"unknown audio_id {audio_id} in library {self.root}")
        return BgmRow(*row)

    def set_bgm_mood(self, audio_id: int, mood: str) -> None:
        self._require_writer()
        with self._conn:
            self._conn.execute("UPDATE bgm SET mood=? WHERE audio_id=?", (mood, int(audio_id)))

    # ------------------------------------------------------------------ products and reference edits
    def upsert_product(self, rec: ProductRecord) -> None:
        self._require_writer()
        with self._conn:
            self._conn.execute(
                "INSERT INTO products(product_id, split, json) VALUES(?,?,?) ON CONFLICT(product_id) DO UPDATE "
                "SET split=excluded.split, json=excluded.json",
                (rec.product_id, rec.split, json.dumps(asdict(rec))),
            )

    def products(self, split: str | None = None) -> list[ProductRecord]:
        q = "SELECT json FROM products" + (" WHERE split=?" if split else "") + " ORDER BY product_id"
        return [ProductRecord(**json.loads(r[0])) for r in self._conn.execute(q, (split,) if split else ())]

    def product(self, product_id: str) -> ProductRecord:
        row = self._conn.execute("SELECT json FROM products WHERE product_id=?", (product_id,)).fetchone()
        if row is None:
            raise CatalogError(f"unknown product {product_id!r}")
        return ProductRecord(**json.loads(row[0]))

    def add_reference_edit(self, rec: RefEditRecord) -> None:
        """Insert or replace a reference edit (idempotent on edit_id)."""
        self._require_writer()
        for s in rec.segments:
            src = self.source(s.photo_id)
            if s.start_s < 0 or s.start_s + s.duration_s > src.duration_s + 0.05:
                raise CatalogError(
                    f"reference edit {rec.edit_id}: segment {s.start_s:.2f}+{s.duration_s:.2f}s "
                    f"is outside photo {s.photo_id} ({src.duration_s:.2f}s)"
                )
        with self._conn:
            self._conn.execute(
                "INSERT INTO reference_edits(edit_id, product_id, language, split, source, audio_id, json) "
                "VALUES(?,?,?,?,?,?,?) ON CONFLICT(edit_id) DO UPDATE SET product_id=excluded.product_id, "
                "language=excluded.language, split=excluded.split, source=excluded.source, "
                "audio_id=excluded.audio_id, json=excluded.json",
                (
                    rec.edit_id,
                    rec.product_id,
                    rec.language,
                    rec.split,
                    rec.source,
                    rec.audio_id,
                    json.dumps(asdict(rec)),
                ),
            )

    def reference_edits(self, split: str | None = None) -> list[RefEditRecord]:
        q = "SELECT json FROM reference_edits" + (" WHERE split=?" if split else "") + " ORDER BY edit_id"
        out = []
        for (js,) in self._conn.execute(q, (split,) if split else ()):
            d = json.loads(js)
            d["segments"] = [RefSegment(**s) for s in d["segments"]]
            out.append(RefEditRecord(**d))
        return out

    # ------------------------------------------------------------------ failures and stats
    def record_failure(self, path: str, kind: str, reason: str) -> None:
        if not self._writable:
            return
        with self._conn:
            self._conn.execute(
                "INSERT INTO failures(path, kind, reason, at) VALUES(?,?,?,?) ON CONFLICT(path) "
                "DO UPDATE SET reason=excluded.reason, at=excluded.at",
                (path, kind, reason, time.time()),
            )

    def clear_failure(self, path: str) -> None:
        """Forget an earlier failure of `path` (it has now been ingested)."""
        if not self._writable:
            return
        with self._conn:
            self._conn.execute("DELETE FROM failures WHERE path=?", (path,))

    def failures(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self._conn.execute("SELECT path, reason FROM failures ORDER BY path")]

    def stats(self) -> LibraryStats:
        c = self._conn
        n_src, foot = c.execute("SELECT COUNT(*), COALESCE(SUM(duration_s),0) FROM sources").fetchone()
        n_bgm, bgm_s = c.execute("SELECT COUNT(*), COALESCE(SUM(duration_s),0) FROM bgm").fetchone()
        refs = dict(c.execute("SELECT split, COUNT(*) FROM reference_edits GROUP BY split").fetchall())
        disk = sum(
            p.stat().st_size
            for p in self.root.rglob("*")
            if p.is_file() and "world" not in p.relative_to(self.root).parts[:1]
        )
        return LibraryStats(
            root=str(self.root),
            frame_encoder=self.frame_encoder,
            audio_encoder=self.audio_encoder,
            pca_version=self.pca_version,
            sources=n_src,
            footage_s=float(foot),
            frames=c.execute("SELECT COUNT(*) FROM frames").fetchone()[0],
            clips=c.execute("SELECT COUNT(*) FROM clips").fetchone()[0],
            bgm_tracks=n_bgm,
            bgm_s=float(bgm_s),
            products=c.execute("SELECT COUNT(*) FROM products").fetchone()[0],
            reference_edits=refs,
            failures=c.execute("SELECT COUNT(*) FROM failures").fetchone()[0],
            disk_bytes=disk,
        )
