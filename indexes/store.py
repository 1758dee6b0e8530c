"""Saving and loading library indexes: versioned metadata, atomic publication, generations.

Layout of an index directory (one per kind, e.g. `<library>/indexes/frames/`):

    current.json        {"format": ..., "format_version": 1, "generation": 7}  <- the only switch
    gen-000007/         index.faiss + meta.json of the index being served
    gen-000006/         the previous generation, kept so a reader that read the pointer just
                        before a publish can still open the files it was told about
    .lock               flock held by whoever is writing (rebuild, incremental add)
    .tmp-*/             a generation being written; swept by the next writer if one was killed

A generation is written completely into a temporary directory, fsynced, renamed into place,
and only then does `current.json` move to it (tmp file + fsync + os.replace). A writer killed
at any moment leaves `current.json` pointing at a complete, checksummed generation: the
previous index stays loadable and correct (faiss contrib checkpoints use the same idea).
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss

from indexes.errors import IndexBusyError, IndexCorruptError, IndexMismatchError, IndexNotFoundError
from indexes.index import KINDS, IndexMeta, LibraryIndex, StructureParams
from indexes.runtime import keep_query_batches_on_simd

__all__ = [
    "FORMAT_VERSION",
    "ExpectedIndex",
    "IndexWriter",
    "current_generation",
    "load_index",
    "pointer_signature",
    "read_meta",
    "save_index",
]

log = logging.getLogger(__name__)

FORMAT_NAME = "autocut-faiss-index"
FORMAT_VERSION = 1
POINTER_NAME = "current.json"
INDEX_NAME = "index.faiss"
META_NAME = "meta.json"
LOCK_NAME = ".lock"
KEEP_GENERATIONS = 2  # current + previous (see module docstring)
_GEN_RE = re.compile(r"^gen-(\d+)$")
_LOAD_ATTEMPTS = 3  # a load can race with two publishes in a row; it then re-reads the pointer


@dataclass(frozen=True)
class ExpectedIndex:
    """What the caller's vectors are: a stored index built from anything else is refused."""

    kind: str
    encoder: str
    pca_version: str | None  # None: the vectors had no PCA (BGM embeddings)
    dim: int | None = None  # None: not checked (encoder and PCA version already pin it)

    def check(self, meta: IndexMeta, where: Path) -> None:
        """Raise `IndexMismatchError` listing every field of `meta` that differs."""
        diffs = []
        if meta.kind != self.kind:
            diffs.append(f"kind {meta.kind!r} (expected {self.kind!r})")
        if meta.encoder != self.encoder:
            diffs.append(f"encoder {meta.encoder!r} (expected {self.encoder!r})")
        if meta.pca_version != self.pca_version:
            diffs.append(f"PCA version {meta.pca_version!r} (expected {self.pca_version!r})")
        if self.dim is not None and meta.dim != self.dim:
            diffs.append(f"dimension {meta.dim} (expected {self.dim})")
        if diffs:
            raise IndexMismatchError(
                f"index at {where} was built with {', '.join(diffs)}; it must be rebuilt from the current vectors"
            )


# ---------------------------------------------------------------------------- metadata JSON


def _meta_to_json(meta: IndexMeta, generation: int, file_bytes: int, sha256: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "generation": generation}
    doc.update(dataclasses.asdict(meta))
    doc["file"] = {"name": INDEX_NAME, "bytes": file_bytes, "sha256": sha256}
    return doc


def _meta_from_json(doc: Any, where: Path) -> tuple[IndexMeta, dict[str, Any]]:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise IndexCorruptError(f"{where} is not an index metadata file")
    version = doc.get("format_version")
    if version != FORMAT_VERSION:
        raise IndexCorruptError(
            f"{where} has format version {version!r}; this code reads version {FORMAT_VERSION} (rebuild the index)"
        )
    try:
        params = StructureParams(**doc["params"])
        fields = {f.name: doc[f.name] for f in dataclasses.fields(IndexMeta) if f.name != "params"}
        meta = IndexMeta(**fields, params=params)
        file_info = doc["file"]
        if not (isinstance(file_info["bytes"], int) and isinstance(file_info["sha256"], str)):
            raise TypeError(f"file entry {file_info!r}")
    except (KeyError, TypeError) as exc:
        raise IndexCorruptError(f"{where} is missing or has malformed fields ({exc!r})") from exc
    if meta.kind not in KINDS:
        raise IndexCorruptError(f"{where} names unknown kind {meta.kind!r}")
    return meta, file_info


# ---------------------------------------------------------------------------- reading


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise IndexCorruptError(f"{path} is not valid JSON ({exc})") from exc


def pointer_signature(directory: Path) -> tuple[int, int, int] | None:
    """Cheap change detector for `current.json` (inode, mtime, size): every publish changes it."""
    try:
        st = os.stat(Path(directory) / POINTER_NAME)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def current_generation(directory: Path) -> int | None:
    """Generation `current.json` points at, or None if nothing has been published."""
    path = Path(directory) / POINTER_NAME
    try:
        doc = _read_json(path)
    except FileNotFoundError:
        return None
    gen = doc.get("generation") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME or not isinstance(gen, int):
        raise IndexCorruptError(f"{path} is not an index pointer")
    return gen


def _gen_dir(directory: Path, generation: int) -> Path:
    return directory / f"gen-{generation:06d}"


def _require_generation(directory: Path) -> int:
    gen = current_generation(directory)
    if gen is None:
        raise IndexNotFoundError(f"no index has been built in {directory}")
    return gen


def read_meta(directory: Path) -> tuple[int, IndexMeta]:
    """(generation, metadata) of the published index, without loading the index itself."""
    directory = Path(directory)
    for attempt in range(_LOAD_ATTEMPTS):
        gen = _require_generation(directory)
        path = _gen_dir(directory, gen) / META_NAME
        try:
            return gen, _meta_from_json(_read_json(path), path)[0]
        except FileNotFoundError:
            if attempt == _LOAD_ATTEMPTS - 1:
                raise IndexCorruptError(f"{directory}: generation {gen} named by {POINTER_NAME} is missing") from None
    raise AssertionError("unreachable")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def load_index(directory: Path, *, expected: ExpectedIndex | None = None, verify_checksum: bool = True) -> LibraryIndex:
    """Load the published index of `directory`, refusing one that does not match `expected`."""
    directory = Path(directory)
    keep_query_batches_on_simd()
    for attempt in range(_LOAD_ATTEMPTS):
        gen = _require_generation(directory)
        gdir = _gen_dir(directory, gen)
        try:
            return _load_generation(gdir, gen, expected, verify_checksum)
        except FileNotFoundError:
            # Pruned by two publishes since we read the pointer: read it again.
            if attempt == _LOAD_ATTEMPTS - 1:
                raise IndexCorruptError(f"{directory}: generation {gen} named by {POINTER_NAME} is missing") from None
            log.debug("generation %d of %s vanished while loading; retrying", gen, directory)
    raise AssertionError("unreachable")


def _load_generation(gdir: Path, gen: int, expected: ExpectedIndex | None, verify_checksum: bool) -> LibraryIndex:
    meta_path = gdir / META_NAME
    meta, file_info = _meta_from_json(_read_json(meta_path), meta_path)
    if expected is not None:
        expected.check(meta, gdir.parent)
    index_path = gdir / INDEX_NAME
    size = index_path.stat().st_size
    if size != file_info["bytes"]:
        raise IndexCorruptError(f"{index_path} has {size} bytes, metadata says {file_info['bytes']}")
    if verify_checksum and _sha256(index_path) != file_info["sha256"]:
        raise IndexCorruptError(f"{index_path} does not match the checksum in its metadata")
    try:
        # read_index already returns the concrete class; do not downcast its temporary result
        # (the downcast wrapper does not own the C++ object, which Python would then free).
        index = faiss.read_index(str(index_path))
    except RuntimeError as exc:
        raise IndexCorruptError(f"{index_path} cannot be read by FAISS: {exc}") from exc
    if not isinstance(index, faiss.IndexIDMap):
        raise IndexCorruptError(f"{index_path} holds a {type(index).__name__}, not an id-mapped index")
    if index.ntotal != meta.count or index.d != meta.dim:
        raise IndexCorruptError(
            f"{index_path} holds {index.ntotal} x {index.d} vectors, metadata says {meta.count} x {meta.dim}"
        )
    log.info("loaded %s index generation %d (%d x %d, %s)", meta.kind, gen, meta.count, meta.dim, meta.factory)
    return LibraryIndex(index, meta, generation=gen)


# ---------------------------------------------------------------------------- writing


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_path(path.parent)


def _generations_on_disk(directory: Path) -> list[int]:
    gens = []
    for entry in directory.iterdir():
        m = _GEN_RE.match(entry.name)
        if m and entry.is_dir():
            gens.append(int(m.group(1)))
    return sorted(gens)


class IndexWriter:
    """Exclusive writer of one index directory (an flock, released even if the process dies).

    Hold it across read-vectors -> build -> publish so that an incremental add cannot slip in
    between a rebuild's snapshot and its publication and be lost.
    """

    def __init__(self, directory: Path, *, timeout_s: float | None = None) -> None:
        self.directory = Path(directory)
        self.timeout_s = timeout_s
        self._fd: int | None = None

    def __enter__(self) -> IndexWriter:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if deadline is not None else 0))
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or deadline is None:
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise IndexBusyError(
                        f"{self.directory} is being written by another process (waited {self.timeout_s} s)"
                    ) from None
                time.sleep(0.05)
        self._fd = fd
        self._sweep()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._fd is not None
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def _sweep(self) -> None:
        """Remove what killed writers left: temp dirs and generations never pointed at."""
        current = current_generation(self.directory)
        for entry in self.directory.iterdir():
            if entry.name.startswith(".tmp-") and entry.is_dir():
                log.info("removing unfinished index write %s", entry)
                shutil.rmtree(entry, ignore_errors=True)
        for gen in _generations_on_disk(self.directory):
            if current is None or gen > current:
                log.info("removing unpublished generation %d in %s", gen, self.directory)
                shutil.rmtree(_gen_dir(self.directory, gen), ignore_errors=True)

    def publish(self, index: LibraryIndex) -> int:
        """Write `index` as a new generation and point `current.json` at it; returns the generation."""
        assert self._fd is not None, "publish() outside the writer's `with` block"
        previous = current_generation(self.directory)
        gen = max([previous or 0, *_generations_on_disk(self.directory)]) + 1
        tmp = self.directory / f".tmp-gen-{gen:06d}-{os.getpid()}"
        tmp.mkdir()
        try:
            index_path = tmp / INDEX_NAME
            faiss.write_index(index.faiss_index, str(index_path))
            _fsync_path(index_path)
            # Hash what is on disk, not what we meant to write.
            doc = _meta_to_json(index.meta, gen, index_path.stat().st_size, _sha256(index_path))
            _write_json_atomic(tmp / META_NAME, doc)
            _fsync_path(tmp)
            os.rename(tmp, _gen_dir(self.directory, gen))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # e.g. disk full; the current generation is untouched
            raise
        _fsync_path(self.directory)
        # The switch: until this replace, readers see the previous generation.
        _write_json_atomic(
            self.directory / POINTER_NAME, {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "generation": gen}
        )
        index.generation = gen
        self._prune(gen)
        log.info("published %s index generation %d in %s (%d vectors)", index.kind, gen, self.directory, index.count)
        return gen

    def _prune(self, current: int) -> None:
        older = [g for g in _generations_on_disk(self.directory) if g < current]
        for gen in older[: max(0, len(older) - (KEEP_GENERATIONS - 1))]:
            shutil.rmtree(_gen_dir(self.directory, gen), ignore_errors=True)


def save_index(directory: Path, index: LibraryIndex, *, timeout_s: float | None = None) -> int:
    """Publish `index` in `directory` as its new current generation (atomic); returns the generation."""
    with IndexWriter(directory, timeout_s=timeout_s) as writer:
        return writer.publish(index)
