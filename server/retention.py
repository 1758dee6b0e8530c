"""Retention: what the service stores is deleted again, so nothing grows without bound.

One sweep (`Sweeper.run_once`, run by the API's background loop every `retention_sweep_interval_s`):

- finished jobs (done, failed, cancelled) older than `job_retention_s`, and a key's oldest finished jobs
  beyond `max_finished_jobs_per_key`: their records (job, batch once its last job is gone, completion
  entry) and their directory (`jobs/<id>`: results, plans, attempt work dirs);
- uploads older than `upload_retention_s`: the clip or image record, its ingest job, and the file once no
  key owns that content any more;
- left-overs of crashes: upload temp files, job directories without a job record, stored files that no
  key owns (all older than `ORPHAN_AGE_S`, so nothing in flight is touched).

A queued or running job is never deleted (the delete scripts refuse it), nor an upload whose ingest is.
The explicit DELETE routes use the same functions (`delete_job`, `delete_upload`). The store's delete scripts
also give the bytes back to the key's storage quota (`max_stored_bytes_per_key`), in the same atomic step.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from server.settings import Settings
from server.storage import Layout
from server.store import DeletedUpload, JobStore

__all__ = ["ORPHAN_AGE_S", "SweepReport", "Sweeper", "delete_job", "delete_upload"]

log = logging.getLogger(__name__)

# Files and directories without a record are removed only when older than this (an upload or a job
# may be between writing its record and its file).
ORPHAN_AGE_S = 3600.0
# Records handled per owner and kind in one round of a sweep (rounds repeat until done or out of time).
_BATCH = 500


@dataclass
class SweepReport:
    jobs: int = 0
    uploads: int = 0
    files: int = 0
    completions: int = 0
    orphans: int = 0
    skipped: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.jobs or self.uploads or self.files or self.completions or self.orphans)


def delete_job(
    store: JobStore, layout: Layout, job_id: str, owner: str = "", *, trim_completion: bool = True
) -> tuple[str, str]:
    """Delete a finished job: records first, then its directory. Returns `JobStore.delete_job`'s answer."""
    status, clip = store.delete_job(job_id, owner, trim_completion=trim_completion)
    if status == "deleted":
        remove_job_dir(layout, job_id)
    return status, clip


def remove_job_dir(layout: Layout, job_id: str) -> None:
    jd = layout.job_dir(job_id)
    if jd.is_dir():
        shutil.rmtree(jd, ignore_errors=True)


def delete_upload(store: JobStore, layout: Layout, upload_id: str, owner: str = "") -> DeletedUpload:
    """Delete an upload's records, then its file if no key owns that content any more."""
    res = store.delete_clip(upload_id, owner)
    if res.status == "deleted" and res.owners_left == 0 and res.path:
        remove_blob_if_unowned(store, layout, res.path)
    return res


def _sha_of(path: Path) -> str:
    return path.name.split(".", 1)[0]


def remove_blob_if_unowned(store: JobStore, layout: Layout, path: str) -> bool:
    """Unlink a stored upload file unless a key owns its content (checked again under the blob lock, which
    uploads hold while storing a file, so a concurrent upload of the same bytes keeps its file)."""
    p = Path(path)
    if not layout.is_upload(p) or p.is_relative_to(layout.uploads_tmp):
        log.warning("not removing %s: not a stored upload", p)
        return False
    with layout.blob_lock():
        if store.upload_owners(_sha_of(p)):
            return False
        try:
            p.unlink()
        except FileNotFoundError:
            return False
    return True


class Sweeper:
    """The periodic sweep (see the module docstring). `run_once` is safe to run in several processes."""

    def __init__(self, store: JobStore, layout: Layout, settings: Settings, *, budget_s: float = 10.0) -> None:
        self.store = store
        self.layout = layout
        self.settings = settings
        self.budget_s = budget_s
        self.next_at = 0.0  # monotonic time of the next sweep (0: at once)

    def due(self) -> bool:
        return time.monotonic() >= self.next_at

    def run_once(self, now: float | None = None) -> SweepReport:
        """Sweep until nothing is left to delete or the time budget is spent (then the next sweep is soon)."""
        s = self.settings
        now = time.time() if now is None else now
        t0 = time.monotonic()
        rep = SweepReport()
        if self.store.index_for_retention():
            log.info("indexed existing jobs and uploads for retention")
        job_cutoff, upload_cutoff = now - s.job_retention_s, now - s.upload_retention_s
        finished = False
        while time.monotonic() - t0 < self.budget_s:
            progress = 0
            for owner in self.store.owners():
                ids = self.store.finished_jobs(owner, before=job_cutoff, limit=_BATCH)
                ids += self.store.finished_jobs_over(owner, s.max_finished_jobs_per_key, limit=_BATCH)
                for jid in dict.fromkeys(ids):
                    status, _clip = delete_job(self.store, self.layout, jid, trim_completion=False)
                    if status == "deleted":
                        rep.jobs += 1
                    else:
                        # A stale index entry ("missing"), or one that should not be there ("active", "clip":
                        # jobs:done holds finished jobs that are not an upload's ingest): drop the entry only.
                        if status != "missing":
                            rep.skipped.append(f"{jid}: {status}")
                        self.store.r.zrem(self.store.k("jobs", "done", owner), jid)
                    progress += 1
                for uid in self.store.uploads_before(owner, upload_cutoff, limit=_BATCH):
                    res = delete_upload(self.store, self.layout, uid)
                    if res.status == "deleted":
                        rep.uploads += 1
                        progress += 1
                    elif res.status == "missing":  # a stale index entry
                        self.store.r.zrem(self.store.k("clips", "owner", owner), uid)
                        progress += 1
                    # "active": its ingest is still running; deleted by a later sweep
                self.store.forget_owner_if_empty(owner)
            if progress == 0:
                finished = True
                break
        rep.completions = self.store.trim_completions(job_cutoff)
        rep.orphans = self._sweep_orphans()
        # Out of time with work left: sweep again at the next background tick rather than an interval later.
        self.next_at = time.monotonic() + (s.retention_sweep_interval_s if finished else 0.0)
        if rep.skipped:
            log.warning("retention sweep: unexpected index entries dropped: %s", ", ".join(rep.skipped[:20]))
        if rep:
            log.info(
                "retention sweep: %d jobs, %d uploads, %d completion entries, %d orphaned files deleted",
                rep.jobs,
                rep.uploads,
                rep.completions,
                rep.orphans,
            )
        return rep

    def _sweep_orphans(self) -> int:
        """Crash left-overs: upload temp files, job dirs without a record, stored files nobody owns."""
        lay = self.layout
        n = lay.sweep_partial_uploads(older_than_s=ORPHAN_AGE_S)
        cutoff = time.time() - ORPHAN_AGE_S
        dirs = [d for d in _entries(lay.jobs) if d.is_dir() and _older(d, cutoff)]
        for start in range(0, len(dirs), _BATCH):
            chunk = dirs[start : start + _BATCH]
            with self.store.r.pipeline(transaction=False) as p:
                for d in chunk:
                    p.exists(self.store.k("job", d.name))
                alive = p.execute()
            for d, ok in zip(chunk, alive):
                if not ok:
                    shutil.rmtree(d, ignore_errors=True)
                    n += 1
        files = [f for root in (lay.blobs, lay.images) for sub in _entries(root) for f in _entries(sub)]
        files = [f for f in files if f.is_file() and _older(f, cutoff)]
        for start in range(0, len(files), _BATCH):
            chunk = files[start : start + _BATCH]
            owned = self.store.uploaded_hashes([_sha_of(f) for f in chunk])
            for f in chunk:
                if _sha_of(f) not in owned and remove_blob_if_unowned(self.store, lay, str(f)):
                    n += 1
        return n


def _entries(d: Path) -> list[Path]:
    try:
        return list(d.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _older(p: Path, cutoff: float) -> bool:
    with contextlib.suppress(FileNotFoundError):
        return os.stat(p).st_mtime < cutoff
    return False
