"""Service settings: the one place AutoCut reads environment variables (deployment: docs/deploy.md).

Every field is read from `AUTOCUT_<FIELD>` (e.g. `AUTOCUT_DATA_DIR`, `AUTOCUT_REDIS_URL`) or a
`.env` file; library code never reads the environment, it takes these values as arguments.
Outside dev mode a placeholder secret is refused at start-up rather than silently used.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from autocut.library.media import MediaLimits

__all__ = ["PLACEHOLDER_SECRETS", "Settings", "media_limits"]

# Values that mean "nobody set this"; refused outside dev mode.
PLACEHOLDER_SECRETS = frozenset(
    {
        "",
        "change-me",
        "changeme",
        "change_me",
        "secret",
        "password",
        "dev",
        "devsecret",
        "test",
        "default",
        "please-change",
        "please-change-me",
        "xxx",
        "todo",
    }
)
_MIN_SECRET_CHARS = 24


class Settings(BaseSettings):
    """Everything the API, the workers and the supervisor need to know; one instance per process."""

    model_config = SettingsConfigDict(env_prefix="AUTOCUT_", env_file=".env", extra="ignore", populate_by_name=True)

    # Dev mode allows placeholder secrets and logs at debug level; never use it on a network.
    dev_mode: bool = False
    # Service state: uploads, job outputs, the supervised redis-server's files, locks.
    data_dir: Path = Path("var/server")
    # The material library the planner and renderer read (shared with `autocut` CLI commands);
    # AUTOCUT_LIBRARY is accepted too, as the Makefile and the CLI use it.
    library_dir: Path = Field(
        default=Path("var/library"), validation_alias=AliasChoices("AUTOCUT_LIBRARY_DIR", "AUTOCUT_LIBRARY")
    )
    # Root for clip references by path (`{"path": "shoot1/a.mp4"}`); None = <library_dir>/media.
    media_root: Path | None = None

    # Broker and job store. None = single-machine default: a local redis-server on `redis_port`,
    # started and supervised by `python -m server all`, password derived from `secret_key`.
    redis_url: str | None = None
    redis_port: int = Field(default=6390, ge=1, le=65535)
    redis_server_bin: str = "redis-server"
    # Logical Redis database of the queue, apart from the job store's, because the broker's
    # dead-worker maintenance scans its database's keys (KEYS), which must not grow with the
    # number of jobs stored. None = the URL's database (e.g. for Redis services that offer only db 0);
    # the local default uses db 0 for the store and db 1 for the queue.
    redis_queue_db: int | None = Field(default=None, ge=0, le=15)
    # Key prefix for the job store and the queue namespace, so several services can share a Redis.
    redis_namespace: str = Field(default="autocut", pattern=r"^[a-z][a-z0-9_-]{0,30}$")

    # Pepper for API-key hashes and the local Redis password; must be a real secret outside dev mode.
    secret_key: SecretStr = SecretStr("change-me")
    # Optional admin key registered at start-up (handy for the first deployment and for containers).
    bootstrap_admin_key: SecretStr | None = None

    # Lifetime of the signed result links in job status answers (downloads without the API key).
    signed_link_ttl_s: int = Field(default=3600, ge=0)

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)

    # Upload limits.
    max_upload_bytes: int = Field(default=2 * 1024**3, ge=1024)
    max_image_bytes: int = Field(default=20 * 1024**2, ge=1024)
    # An upload must arrive within this time (a slow client cannot hold a connection and a temp file for
    # ever), and one key may stream this many uploads at once; more answer 429 + Retry-After.
    upload_timeout_s: float = Field(default=900.0, gt=0)
    max_parallel_uploads_per_key: int = Field(default=4, ge=1)
    # Requests per key per minute (fixed one-minute windows in Redis); over it: 429 + Retry-After. 0 = none.
    rate_limit_per_minute: int = Field(default=1200, ge=0)
    # Bytes one key may store (docs/deploy.md, "Storage quota"): its uploads (clips, images; the same content
    # counted once per key) and its jobs' result files. An upload that would exceed it is refused while it
    # streams (507; 413 when larger than the whole quota), and so is a new job once the key is at or over
    # it; a running job's results are always published. 0 = none.
    max_stored_bytes_per_key: int = Field(default=20 * 1024**3, ge=0)
    min_clip_duration_s: float = Field(default=0.5, ge=0.0)
    max_clip_duration_s: float = Field(default=3600.0, gt=0.0)
    # Media limits (docs/deploy.md, "Media limits"): checked on the probed header and enforced while
    # decoding in the workers; `max_clip_duration_s` is also the decode's duration limit (ffmpeg stops
    # reading there whatever the header says).
    media_max_width: int = Field(default=7680, ge=16)
    media_max_height: int = Field(default=7680, ge=16)
    media_max_pixels: int = Field(default=7680 * 4320, ge=256)
    media_max_fps: float = Field(default=240.0, gt=0.0)

    # Admission: jobs queued or running, in total and per key; beyond that POST answers 429.
    max_active_jobs: int = Field(default=500, ge=1)
    max_active_jobs_per_key: int = Field(default=200, ge=1)
    max_batch_items: int = Field(default=100, ge=1)
    max_pool_items: int = Field(default=64, ge=1)
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)

    # Retention (docs/deploy.md, "Retention"): a finished job (done, failed or cancelled) is deleted with its
    # result files this long after it finished; an upload (clip or image, with its ingest job) this long
    # after it was uploaded. Queued and running jobs are never deleted. Beyond `max_finished_jobs_per_key`
    # finished jobs of one key, its oldest are deleted early (bounds the records by count, not only by age).
    # The API sweeps every `retention_sweep_interval_s`.
    job_retention_s: float = Field(default=7 * 86400.0, gt=0)
    upload_retention_s: float = Field(default=30 * 86400.0, gt=0)
    max_finished_jobs_per_key: int = Field(default=10_000, ge=1)
    retention_sweep_interval_s: float = Field(default=300.0, gt=0)
    # `maxmemory` of the supervised local redis-server (policy noeviction: nothing is ever evicted). At the
    # limit Redis refuses writes; the API then answers 503 + Retry-After until the sweep frees room. 0 = none.
    redis_maxmemory_mb: int = Field(default=2048, ge=0)
    # `appendfsync` of the supervised local redis-server (docs/deploy.md, "Durability"): "everysec" (fsync once a
    # second; an OS crash or power cut loses up to about two seconds of acknowledged writes, which the reconciler
    # repairs only for queue messages) or "always" (fsync before every reply: nothing acknowledged is lost, at
    # the cost of one fsync per write).
    redis_appendfsync: Literal["everysec", "always"] = "everysec"

    # Workers.
    worker_processes: int = Field(default=2, ge=1, le=64)
    # "auto": the compact LM planner (<library>/models/lm/compact/model) when its model card records a won
    # held-out check against the heuristic, else the heuristic (the plan's notes say why); resolved by the
    # worker at each job, so a model trained later is picked up.
    default_planner: str = "auto"
    job_timeout_s: float = Field(default=3600.0, gt=0)
    max_retries: int = Field(default=4, ge=0, le=20)
    retry_min_backoff_s: float = Field(default=2.0, ge=0.0)
    retry_max_backoff_s: float = Field(default=300.0, ge=0.0)
    # A job whose worker died this many times is failed instead of redelivered again (poison pill).
    max_lost_deliveries: int = Field(default=5, ge=1)
    # Longest one Redis command may take (job store and queue, API and workers): a stalled or unreachable
    # Redis makes an API request answer 503 + Retry-After after about this long instead of hanging.
    redis_timeout_s: float = Field(default=5.0, gt=0.0, le=60.0)
    # A worker silent for this long is dead; its unacknowledged jobs are redelivered.
    heartbeat_timeout_s: float = Field(default=20.0, ge=1.0)
    # Chance (per million broker calls) that a call also requeues dead workers' messages.
    maintenance_chance_ppm: int = Field(default=50_000, ge=1, le=1_000_000)
    # Longest a worker sleeps between polls of an empty queue (queue latency, API overhead).
    poll_interval_ms: int = Field(default=200, ge=10, le=10_000)
    # Admitted jobs that were never enqueued (the API died in between) are enqueued after this
    # age by a reconciler pass every `reconcile_interval_s` (in the API and in every worker).
    reconcile_interval_s: float = Field(default=10.0, gt=0)
    reconcile_min_age_s: float = Field(default=5.0, ge=0)
    # How long an edit waits for its uploaded clips to finish ingesting before failing.
    dependency_wait_s: float = Field(default=1800.0, gt=0)
    # ffmpeg threads per render (None = ffmpeg's choice).
    render_threads: int | None = Field(default=None, ge=1)
    # On SIGTERM a worker lets its job run this long before stopping it and handing it back.
    shutdown_grace_s: float = Field(default=30.0, ge=0.0)
    # Worker resource limits (docs/deploy.md, "Media limits"), so the kernel's OOM killer never needs to
    # pick Redis or the API: RLIMIT_DATA of each worker process (its imports and models take ~0.6 GiB)
    # and of each ffmpeg/ffprobe it starts; RLIMIT_CPU (CPU seconds, all threads) of each ffmpeg/ffprobe.
    # 0 = no limit. Workers also raise their OOM score so that they, not Redis or the API, go first.
    worker_max_memory_mb: int = Field(default=8192, ge=0)
    ffmpeg_max_memory_mb: int = Field(default=8192, ge=0)
    ffmpeg_max_cpu_s: int = Field(default=7200, ge=0)
    # Webhooks (docs/deploy.md, "Webhooks"; `server.webhooks`): targets must resolve to public addresses (checked
    # at registration and before every attempt) unless listed here: comma-separated hostnames, IPs or CIDRs
    # (e.g. "hooks.internal,10.1.0.0/16"). Per key at most `webhook_max_per_key`; a delivery is tried up to
    # `webhook_max_attempts` times, waiting base x 2^(n-1) (at most `webhook_retry_max_s`) after failed try n;
    # each try has `webhook_timeout_s` in all; each webhook keeps its last `webhook_log_size` tries.
    webhook_allow_hosts: str = ""
    webhook_max_per_key: int = Field(default=10, ge=1, le=100)
    webhook_max_attempts: int = Field(default=8, ge=1, le=20)
    webhook_retry_base_s: float = Field(default=10.0, gt=0)
    webhook_retry_max_s: float = Field(default=3600.0, gt=0)
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60)
    webhook_log_size: int = Field(default=100, ge=1, le=10_000)
    # Server-sent events (GET /v1/jobs/{id}/events): concurrent streams per key; longest life of one stream.
    sse_max_streams_per_key: int = Field(default=4, ge=1, le=100)
    sse_max_duration_s: float = Field(default=900.0, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Settings:
        if self.dev_mode:
            return self
        for name in ("secret_key", "bootstrap_admin_key"):
            value: SecretStr | None = getattr(self, name)
            if value is None:
                continue
            raw = value.get_secret_value()
            if raw.strip().lower() in PLACEHOLDER_SECRETS or len(raw) < _MIN_SECRET_CHARS:
                raise ValueError(
                    f"AUTOCUT_{name.upper()} is a placeholder or shorter than {_MIN_SECRET_CHARS} characters; "
                    "set a real secret (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`) "
                    "or AUTOCUT_DEV_MODE=1 for local development"
                )
        if self.retry_max_backoff_s < self.retry_min_backoff_s:
            raise ValueError("AUTOCUT_RETRY_MAX_BACKOFF_S must be >= AUTOCUT_RETRY_MIN_BACKOFF_S")
        return self

    # ------------------------------------------------------------------ derived
    @property
    def media_dir(self) -> Path:
        return (self.media_root or self.library_dir / "media").resolve()

    @property
    def local_redis(self) -> bool:
        """True when this service runs its own redis-server (no AUTOCUT_REDIS_URL)."""
        return self.redis_url is None

    @property
    def local_redis_password(self) -> str:
        # Derived, so API, workers and the supervisor agree without another secret to distribute.
        key = self.secret_key.get_secret_value().encode()
        return hmac.new(key, b"autocut-local-redis", hashlib.sha256).hexdigest()

    @property
    def broker_url(self) -> str:
        """The job store's Redis URL."""
        if self.redis_url is not None:
            return self.redis_url
        return f"redis://:{self.local_redis_password}@127.0.0.1:{self.redis_port}/0"

    @property
    def queue_db(self) -> int | None:
        if self.redis_queue_db is not None:
            return self.redis_queue_db
        return 1 if self.local_redis else None


def media_limits(settings: Settings) -> MediaLimits:
    """The service's media limits (`server.settings`) as `autocut.library.media` takes them."""
    from autocut.library.media import MediaLimits

    mb = 1024 * 1024
    return MediaLimits(
        max_width=settings.media_max_width,
        max_height=settings.media_max_height,
        max_pixels=settings.media_max_pixels,
        max_fps=settings.media_max_fps,
        max_duration_s=settings.max_clip_duration_s,
        child_memory_bytes=settings.ffmpeg_max_memory_mb * mb or None,
        child_cpu_s=settings.ffmpeg_max_cpu_s or None,
    )
