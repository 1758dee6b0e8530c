"""The durable job store: jobs, batches, uploads, API keys and idempotency keys, in Redis.

Why Redis (with AOF; `appendfsync` per `AUTOCUT_REDIS_APPENDFSYNC`, see docs/deploy.md "Durability")
rather than SQLite: the queue already lives in
that Redis, so one store holds both the messages and the records they refer to, and workers on
other machines reach both through one URL (SQLite's WAL needs shared memory, so it cannot be
shared over a network filesystem). Every state change that must not race is one Lua script,
i.e. one atomic step: admission (idempotency check + queue bound + records), start, progress,
completion (compare-and-set: the first attempt to finish writes the one completion record;
later attempts of the same job see it and stop), failure, cancellation and deletion.

Fencing: each delivery that starts a job gets the next `fence` number of that job (`start`), and every state
change a delivery makes (progress, completion, failure, requeue) carries it; the scripts refuse one whose
fence is not the job's current one (`StaleDelivery`): a delivery that was paused (SIGSTOP, a VM freeze) past
its heartbeat while the job was redelivered can neither finish, fail nor requeue the job the newer delivery
owns. The reconciler (`server.queue.Reconciler`) holds a lease (`reconciler:lease`, SET NX PX with a token)
and its recoveries are scripts that check the token, so two reconcilers never act at once.

Nothing grows without bound (`server.retention` sweeps): finished jobs are indexed by finish time per
owner (`jobs:done:<owner>`) and deleted after the retention period or beyond a per-key count; uploads
by upload time (`clips:owner:<owner>`). Deleting never touches a queued or running job. Every delete
script only reads, removes and lowers a usage counter (flag `allow-oom`), so it also runs when Redis is at
`maxmemory` (other writes refused).

Storage quota (`max_stored_bytes_per_key`): `usage:<owner>` counts the bytes a key stores, changed only inside
the scripts that create or delete what they count, so it stays exact: an upload is charged by `admit` (its
`charged` field; the same content again is the existing clip, not a second charge; a clip that replaces one
whose ingest failed takes over that clip's charge), a job's result files by `complete` (its `stored_bytes`
field), and both are uncharged by the delete scripts. An upload in flight holds a reservation
(`upload_reserved:<owner>`), grown while it streams, so parallel uploads cannot together pass the quota.

Key layout (prefix `<ns>:`)::

    job:<id>                hash   one job (fields: `JobRecord`)
    jobs:active             set    ids of queued or running jobs (the admission bound)
    jobs:active:<owner>     set    the same, per API key
    jobs:owner:<owner>      zset   job ids by creation time
    jobs:done:<owner>       zset   finished job ids by finish time (retention; an upload's ingest job is
                                   not in it: it lives as long as its clip)
    owners                  set    API keys that own jobs or uploads (the retention sweep's round)
    retention:v1            string set once `jobs:done:*` and `owners` cover records written before them
    batch:<id>              hash   owner, created_at, job_ids (JSON); deleted with its last job
    batches:owner:<owner>   zset   batch ids by creation time
    idem:<owner>:<sha256>   string idempotency record: fingerprint, job ids, batch id (expires)
    clip:<id>               hash   one upload (`ClipRecord`)
    clipsha:<owner>:<sha>   string the owner's clip id for that content (dedupe; a clip whose ingest
                                   failed or was cancelled does not count: the content is ingested again)
    clips:owner:<owner>     zset   clip ids by creation time
    upload_owners:<sha>     set    API keys that uploaded that content (library visibility)
    usage:<owner>           hash   bytes the key stores: `uploads`, `results` (absent fields: 0)
    upload_reserved:<owner> hash   upload token -> "<bytes> <deadline>": room held by uploads still streaming
    apikey:<hash>           hash   key_id, name, admin, created_at
    apikeys                 hash   key_id -> key hash
    completions             list   one entry per job completion (audit; one per job by construction;
                                   trimmed from the head as the jobs it names expire)
    workers                 zset   worker process id -> last heartbeat (readiness, Retry-After)
    reconciler:lease        string the token of the one reconciler allowed to act (expires unless renewed)
    reconciler:passes       list   the last reconciler passes (holder, start, end, jobs recovered), newest first
    webhooks:outbox         list   finished jobs of owners with webhooks (`server.webhooks`, which keeps the
                                   other `webhook*` keys)
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, cast

import redis

__all__ = [
    "ACTIVE_STATES",
    "TERMINAL_STATES",
    "Admission",
    "ClipRecord",
    "DeletedUpload",
    "JobKind",
    "JobRecord",
    "JobState",
    "JobStore",
    "LeaseLost",
    "NewJob",
    "StaleDelivery",
    "StartDecision",
    "StorageUsage",
]

log = logging.getLogger(__name__)


class JobState(StrEnum):
    """A job's `state` field. Members are `str`s, so Redis fields and JSON hold the bare names; the
    Lua scripts below spell the same names."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StaleDelivery(Exception):
    """A delivery's write was refused: a newer delivery of the job started since (its fence is higher).
    The stale delivery must stop and record nothing: the job is the newer delivery's."""

    def __init__(self, job_id: str, fence: int) -> None:
        super().__init__(f"job {job_id}: delivery with fence {fence} was superseded by a newer delivery")
        self.job_id = job_id
        self.fence = fence


ACTIVE_STATES = frozenset({JobState.QUEUED, JobState.RUNNING})
TERMINAL_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})

JobKind = Literal["edit", "ingest", "rebuild", "render"]

# Moves a job to a terminal state and out of the active sets. Shared by several scripts.
_LUA_FINISH = """
local function finish(P, key, id, state, now)
  local owner = redis.call("HGET", key, "owner")
  redis.call("HSET", key, "state", state, "finished_at", now)
  redis.call("SREM", P .. ":jobs:active", id)
  if owner then
    redis.call("SREM", P .. ":jobs:active:" .. owner, id)
    -- Indexed for retention; an upload's ingest job is not: it is deleted with its clip.
    local clip = redis.call("HGET", key, "clip_id")
    if not clip or clip == "" then redis.call("ZADD", P .. ":jobs:done:" .. owner, now, id) end
    -- Webhooks (`server.webhooks`): an outbox entry when the owner registered any; the API's sender drains it.
    if redis.call("EXISTS", P .. ":webhooks:owner:" .. owner) == 1 then
      redis.call("RPUSH", P .. ":webhooks:outbox", cjson.encode({job_id = id, owner = owner, state = state, at = now}))
      redis.call("LTRIM", P .. ":webhooks:outbox", -100000, -1)
    end
  end
end
local function terminal(st)
  return st == "done" or st == "failed" or st == "cancelled"
end
"""

# A delivery's write names its fence ("" = not a delivery's write); stale when a newer delivery started since.
_LUA_FENCE = """
local function stale(key, fence)
  if fence == "" then return false end
  return (redis.call("HGET", key, "fence") or "0") ~= fence
end
"""

# The storage quota's figures: the bytes a key stores, and the room held by its other uploads in flight (expired
# reservations, of an API process that died mid-upload, are dropped on the way).
_LUA_USAGE = """
local function used_bytes(P, owner)
  local u = redis.call("HMGET", P .. ":usage:" .. owner, "uploads", "results")
  return (tonumber(u[1]) or 0) + (tonumber(u[2]) or 0)
end
local function reserved_by_others(P, owner, token, now)
  local rk = P .. ":upload_reserved:" .. owner
  local all = redis.call("HGETALL", rk)
  local others = 0
  for i = 1, #all, 2 do
    local b, deadline = string.match(all[i + 1], "^(%d+) (.+)$")
    if (tonumber(deadline) or 0) < now then redis.call("HDEL", rk, all[i])
    elseif all[i] ~= token then others = others + (tonumber(b) or 0) end
  end
  return others
end
"""

# Lowers a usage counter (never below 0; a counter at 0 is removed, so an idle key leaves no usage hash).
_LUA_UNCHARGE = """
local function uncharge(P, owner, field, n)
  if not n or n <= 0 then return end
  local uk = P .. ":usage:" .. owner
  local cur = tonumber(redis.call("HGET", uk, field)) or 0
  if cur <= n then redis.call("HDEL", uk, field) else redis.call("HINCRBY", uk, field, -n) end
end
"""

# ARGV: prefix, owner, now, max_active, max_owner, idem_key, fingerprint, idem_ttl, batch_id,
#       clip_id, clip_sha, clip_fields_json, max_stored (0 = no quota), upload reservation token, clip size,
#       n, then n pairs (job id, job fields JSON).
_LUA_ADMIT = (
    _LUA_USAGE
    + """
local P, owner, now = ARGV[1], ARGV[2], ARGV[3]
local max_active, max_owner = tonumber(ARGV[4]), tonumber(ARGV[5])
local idem, fp, ttl = ARGV[6], ARGV[7], tonumber(ARGV[8])
local batch_id, clip_id, clip_sha, clip_fields = ARGV[9], ARGV[10], ARGV[11], ARGV[12]
local max_stored, resv, clip_size = tonumber(ARGV[13]), ARGV[14], tonumber(ARGV[15]) or 0
local n = tonumber(ARGV[16])
if idem ~= "" then
  local prev = redis.call("GET", idem)
  if prev then return {"replay", prev} end
end
-- The owner's earlier clip of this content whose charge a replacing clip takes over.
local prev_clip, prev_charged = false, 0
if clip_id ~= "" then
  local prev = redis.call("GET", P .. ":clipsha:" .. owner .. ":" .. clip_sha)
  if prev then
    -- The same content again: the existing clip, unless its ingest failed or was cancelled (or its records
    -- are gone), in which case this upload replaces it as the owner's clip of that content and is ingested.
    local pjob = redis.call("HGET", P .. ":clip:" .. prev, "job_id")
    local usable = pjob ~= false
    if usable and pjob ~= "" then
      local pst = redis.call("HGET", P .. ":job:" .. pjob, "state")
      usable = pst ~= false and pst ~= "failed" and pst ~= "cancelled"
    end
    if usable then return {"clip_exists", prev} end
    prev_clip = prev
    prev_charged = tonumber(redis.call("HGET", P .. ":clip:" .. prev, "charged")) or 0
  end
end
-- The storage quota: an upload must fit beside what the key stores and its other uploads in flight; a job
-- needs the key under its quota (its results are not known yet, and are published whatever their size).
if max_stored > 0 and (clip_id ~= "" or n > 0) then
  local used = used_bytes(P, owner)
  if clip_id ~= "" then
    local others = reserved_by_others(P, owner, resv, tonumber(now))
    if used + others + clip_size - prev_charged > max_stored then
      return {"over_quota", tostring(used), tostring(others)}
    end
  elseif used >= max_stored then
    return {"over_quota", tostring(used), "0"}
  end
end
local active = redis.call("SCARD", P .. ":jobs:active")
local owner_active = redis.call("SCARD", P .. ":jobs:active:" .. owner)
if n > 0 and (active + n > max_active or owner_active + n > max_owner) then
  return {"busy", tostring(active), tostring(owner_active)}
end
local ids = {}
for i = 0, n - 1 do
  local id = ARGV[17 + 2 * i]
  local fields = cjson.decode(ARGV[18 + 2 * i])
  local flat = {}
  for k, v in pairs(fields) do
    flat[#flat + 1] = k
    flat[#flat + 1] = v
  end
  redis.call("HSET", P .. ":job:" .. id, unpack(flat))
  redis.call("SADD", P .. ":jobs:active", id)
  redis.call("SADD", P .. ":jobs:active:" .. owner, id)
  redis.call("ZADD", P .. ":jobs:owner:" .. owner, now, id)
  ids[#ids + 1] = id
end
if n > 0 or clip_id ~= "" then redis.call("SADD", P .. ":owners", owner) end
if batch_id ~= "" then
  redis.call("HSET", P .. ":batch:" .. batch_id, "id", batch_id, "owner", owner, "created_at", now,
             "job_ids", cjson.encode(ids))
  redis.call("ZADD", P .. ":batches:owner:" .. owner, now, batch_id)
end
if clip_id ~= "" then
  local fields = cjson.decode(clip_fields)
  local flat = {}
  for k, v in pairs(fields) do
    flat[#flat + 1] = k
    flat[#flat + 1] = v
  end
  redis.call("HSET", P .. ":clip:" .. clip_id, unpack(flat))
  redis.call("SET", P .. ":clipsha:" .. owner .. ":" .. clip_sha, clip_id)
  redis.call("ZADD", P .. ":clips:owner:" .. owner, now, clip_id)
  redis.call("SADD", P .. ":upload_owners:" .. clip_sha, owner)
  -- Charged once per key and content: a replacing clip takes over the replaced one's charge.
  redis.call("HSET", P .. ":clip:" .. clip_id, "charged", ARGV[15])
  if prev_clip and prev_charged > 0 then redis.call("HSET", P .. ":clip:" .. prev_clip, "charged", "0") end
  if clip_size - prev_charged ~= 0 then
    redis.call("HINCRBY", P .. ":usage:" .. owner, "uploads", clip_size - prev_charged)
  end
end
if resv ~= "" then redis.call("HDEL", P .. ":upload_reserved:" .. owner, resv) end
if idem ~= "" then
  redis.call("SET", idem, cjson.encode({fp = fp, ids = ids, batch = batch_id}), "EX", ttl)
end
return {"created"}
"""
)

# Holds room for an upload in flight: sets the reservation of `token` to `want` bytes, or to what is left of the
# quota when less but at least `need`; when not even `need` is left the reservation is dropped (the upload is
# refused, and its room is free at once for the key's other uploads). ARGV: prefix, owner, token, need, want,
# max_stored, now, ttl_s. Returns {granted (0 when refused), used, reserved by the key's other uploads}.
_LUA_RESERVE = (
    _LUA_USAGE
    + """
local P, owner, token = ARGV[1], ARGV[2], ARGV[3]
local need, want, limit = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local now, ttl = tonumber(ARGV[7]), tonumber(ARGV[8])
local used = used_bytes(P, owner)
local others = reserved_by_others(P, owner, token, now)
local grant = math.max(0, math.min(want, limit - used - others))
local rk = P .. ":upload_reserved:" .. owner
if grant < need then
  redis.call("HDEL", rk, token)
  return {"0", string.format("%d", used), string.format("%d", others)}
end
redis.call("HSET", rk, token, string.format("%d %.3f", grant, now + ttl))
redis.call("EXPIRE", rk, math.ceil(ttl) + 60)
return {string.format("%d", grant), string.format("%d", used), string.format("%d", others)}
"""
)

# ARGV: prefix, job id, worker, now, max_lost (deliveries whose worker died)
_LUA_START = (
    _LUA_FINISH
    + """
local P, id, worker, now, max_lost = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local key = P .. ":job:" .. id
local st = redis.call("HGET", key, "state")
if not st then return {"missing"} end
if terminal(st) then return {"finished", st} end
if redis.call("HGET", key, "cancel_requested") == "1" then
  finish(P, key, id, "cancelled", now)
  redis.call("HSET", key, "stage", "cancelled before it started")
  return {"cancelled"}
end
-- A delivery that finds the job still "running" means the previous worker died mid-job.
if st == "running" then
  local lost = redis.call("HINCRBY", key, "lost", 1)
  if lost >= max_lost then
    finish(P, key, id, "failed", now)
    redis.call("HSET", key, "stage", "failed", "error_code", "worker_lost",
               "error_message", "the worker running this job died " .. lost ..
               " times; giving up (the job may need more memory or time than a worker has)")
    return {"poison", tostring(lost)}
  end
end
local deliveries = redis.call("HINCRBY", key, "deliveries", 1)
-- This delivery's fencing token: every later write of it must carry it (newer deliveries get higher ones).
local fence = redis.call("HINCRBY", key, "fence", 1)
redis.call("HSET", key, "state", "running", "worker", worker, "heartbeat_at", now, "stage", "starting")
local sa = redis.call("HGET", key, "started_at")
if not sa or sa == "" then redis.call("HSET", key, "started_at", now) end
return {"run", tostring(deliveries), tostring(fence)}
"""
)

# ARGV: prefix, id, stage, progress, now, fence. -1: a newer delivery owns the job.
_LUA_PROGRESS = (
    _LUA_FENCE
    + """
local key = ARGV[1] .. ":job:" .. ARGV[2]
local st = redis.call("HGET", key, "state")
if not st then return 0 end
if stale(key, ARGV[6]) then return -1 end
if st ~= "running" then return 0 end
redis.call("HSET", key, "stage", ARGV[3], "progress", ARGV[4], "heartbeat_at", ARGV[5])
return 1
"""
)

# ARGV: prefix, id, now, results_json, timings_json, fence, stored bytes (the job's result files: charged to
# its owner's storage quota by the one completion). -1: a newer delivery owns the job.
_LUA_COMPLETE = (
    _LUA_FINISH
    + _LUA_FENCE
    + """
local P, id, now, fence = ARGV[1], ARGV[2], ARGV[3], ARGV[6]
local key = P .. ":job:" .. id
local st = redis.call("HGET", key, "state")
if not st then return 0 end
if stale(key, fence) then return -1 end
if terminal(st) then return 0 end
finish(P, key, id, "done", now)
redis.call("HSET", key, "stage", "done", "progress", "100", "results", ARGV[4], "timings", ARGV[5])
if fence ~= "" then redis.call("HSET", key, "finished_fence", fence) end
local stored, owner = tonumber(ARGV[7]) or 0, redis.call("HGET", key, "owner")
if stored > 0 and owner then
  redis.call("HSET", key, "stored_bytes", ARGV[7])
  redis.call("HINCRBY", P .. ":usage:" .. owner, "results", stored)
end
redis.call("RPUSH", P .. ":completions", id)
return 1
"""
)

# ARGV: prefix, id, now, state (failed|cancelled), code, message, fence. -1: a newer delivery owns the job.
_LUA_FAIL = (
    _LUA_FINISH
    + _LUA_FENCE
    + """
local P, id, now, state, fence = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[7]
local key = P .. ":job:" .. id
local st = redis.call("HGET", key, "state")
if not st then return 0 end
if stale(key, fence) then return -1 end
if terminal(st) then return 0 end
finish(P, key, id, state, now)
redis.call("HSET", key, "stage", state, "error_code", ARGV[5], "error_message", ARGV[6])
if fence ~= "" then redis.call("HSET", key, "finished_fence", fence) end
return 1
"""
)

# ARGV: prefix, id, now
_LUA_CANCEL = (
    _LUA_FINISH
    + """
local P, id, now = ARGV[1], ARGV[2], ARGV[3]
local key = P .. ":job:" .. id
local st = redis.call("HGET", key, "state")
if not st then return "missing" end
if terminal(st) then return "finished:" .. st end
redis.call("HSET", key, "cancel_requested", "1")
if st == "queued" then
  finish(P, key, id, "cancelled", now)
  redis.call("HSET", key, "stage", "cancelled before it started", "error_code", "cancelled",
             "error_message", "cancelled by the client")
  return "cancelled"
end
return "cancelling"
"""
)

# ARGV: prefix, id, stage, message, now, fence, "1" to count a retry ("0": a deferral or a shutdown hand-back,
# which is not an attempt at the job). -1: a newer delivery owns the job.
_LUA_REQUEUE = (
    _LUA_FENCE
    + """
local key = ARGV[1] .. ":job:" .. ARGV[2]
local st = redis.call("HGET", key, "state")
if not st then return 0 end
if stale(key, ARGV[6]) then return -1 end
if st ~= "running" and st ~= "queued" then return 0 end
redis.call("HSET", key, "state", "queued", "stage", ARGV[3], "last_error", ARGV[4], "heartbeat_at", ARGV[5],
           "queued_at", ARGV[5])
if ARGV[7] == "1" then
  redis.call("HINCRBY", key, "retries", 1)
else
  redis.call("HINCRBY", key, "deliveries", -1)
end
return 1
"""
)

# The reconciler's lease: acquire (SET NX PX) or renew (PEXPIRE if the token is ours). ARGV: key, token, ttl ms.
_LUA_LEASE = """
local cur = redis.call("GET", ARGV[1])
if cur == ARGV[2] then
  redis.call("PEXPIRE", ARGV[1], ARGV[3])
  return 1
end
if cur then return 0 end
if redis.call("SET", ARGV[1], ARGV[2], "NX", "PX", ARGV[3]) then return 1 end
return 0
"""

# ARGV: key, token. Deletes the lease only if it is still ours.
_LUA_LEASE_RELEASE = """
if redis.call("GET", ARGV[1]) == ARGV[2] then return redis.call("DEL", ARGV[1]) end
return 0
"""

# A reconciler recovers a job whose queue message was lost, if it still holds the lease and the job is as it saw
# it: "queued" with the same `queued_at`, or "running" with the same fence (no delivery started since). Marks it
# (recovered += 1, enqueued, queued_at/heartbeat_at = now) so the next pass does not enqueue it again; the caller
# enqueues. ARGV: prefix, id, lease key, token, state, marker, now.
_LUA_RECOVER = """
local key = ARGV[1] .. ":job:" .. ARGV[2]
if redis.call("GET", ARGV[3]) ~= ARGV[4] then return -1 end
local f = redis.call("HMGET", key, "state", "queued_at", "created_at", "fence")
if f[1] ~= ARGV[5] then return 0 end
if ARGV[5] == "queued" then
  if (f[2] or f[3] or "") ~= ARGV[6] then return 0 end
  redis.call("HSET", key, "queued_at", ARGV[7], "enqueued", "1")
else
  if (f[4] or "0") ~= ARGV[6] then return 0 end
  redis.call("HSET", key, "heartbeat_at", ARGV[7])
end
redis.call("HINCRBY", key, "recovered", 1)
return 1
"""

# Deletion of a finished job and what only it refers to (its batch, once the batch's last job is gone); its
# result bytes are uncharged. Reads, removals and a counter lowered only: `allow-oom` lets it run when Redis is
# at maxmemory (where it frees room). ARGV: prefix, id, owner ("" = any),
# "1" to remove its completion entry too (LREM is O(list); the sweep trims the list from the head instead).
_LUA_DELETE_JOB = (
    "#!lua flags=allow-oom\n"
    + _LUA_UNCHARGE
    + """
local P, id, want, trim = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = P .. ":job:" .. id
local f = redis.call("HMGET", key, "state", "owner", "batch_id", "clip_id", "stored_bytes")
local st, owner, batch, clip = f[1], f[2] or "", f[3], f[4]
if not st or (want ~= "" and owner ~= want) then return {"missing"} end
if st == "queued" or st == "running" then return {"active"} end
if clip and clip ~= "" and redis.call("EXISTS", P .. ":clip:" .. clip) == 1 then return {"clip", clip} end
redis.call("DEL", key)
uncharge(P, owner, "results", tonumber(f[5]))
redis.call("ZREM", P .. ":jobs:owner:" .. owner, id)
redis.call("ZREM", P .. ":jobs:done:" .. owner, id)
redis.call("SREM", P .. ":jobs:active", id)
redis.call("SREM", P .. ":jobs:active:" .. owner, id)
if trim == "1" then redis.call("LREM", P .. ":completions", -1, id) end
if batch and batch ~= "" then
  local bkey = P .. ":batch:" .. batch
  local ids = redis.call("HGET", bkey, "job_ids")
  local left = 0
  if ids then
    for _, j in ipairs(cjson.decode(ids)) do left = left + redis.call("EXISTS", P .. ":job:" .. j) end
  end
  if left == 0 then
    redis.call("DEL", bkey)
    redis.call("ZREM", P .. ":batches:owner:" .. owner, batch)
  end
end
return {"deleted"}
"""
)

# Deletion of an upload (clip or image) with its ingest job; their bytes are uncharged (`allow-oom`: see above).
# Refused while the ingest is queued or running.
# Returns the file path and how many keys still own that content (0: the file may go). ARGV: prefix, id,
# owner ("" = any).
_LUA_DELETE_CLIP = (
    "#!lua flags=allow-oom\n"
    + _LUA_UNCHARGE
    + """
local P, id, want = ARGV[1], ARGV[2], ARGV[3]
local ckey = P .. ":clip:" .. id
local f = redis.call("HMGET", ckey, "owner", "sha256", "job_id", "path", "charged")
local owner, sha, job, path = f[1], f[2] or "", f[3], f[4] or ""
if not owner or (want ~= "" and owner ~= want) then return {"missing"} end
if job and job ~= "" then
  local jkey = P .. ":job:" .. job
  local st = redis.call("HGET", jkey, "state")
  if st == "queued" or st == "running" then return {"active", job} end
  if st then
    uncharge(P, owner, "results", tonumber(redis.call("HGET", jkey, "stored_bytes")))
    redis.call("DEL", jkey)
    redis.call("ZREM", P .. ":jobs:owner:" .. owner, job)
    redis.call("ZREM", P .. ":jobs:done:" .. owner, job)
  end
end
redis.call("DEL", ckey)
uncharge(P, owner, "uploads", tonumber(f[5]))
redis.call("ZREM", P .. ":clips:owner:" .. owner, id)
local skey = P .. ":clipsha:" .. owner .. ":" .. sha
if redis.call("GET", skey) == id then
  redis.call("DEL", skey)
  redis.call("SREM", P .. ":upload_owners:" .. sha, owner)
end
return {"deleted", path, tostring(redis.call("SCARD", P .. ":upload_owners:" .. sha))}
"""
)

# Pops completion entries from the head while they are the ones the sweep found expired (several sweepers
# may run: an entry is popped only if it is still the head). ARGV: prefix, then the ids in head order.
_LUA_TRIM_COMPLETIONS = """
local key = ARGV[1] .. ":completions"
local n = 0
for i = 2, #ARGV do
  if redis.call("LINDEX", key, 0) ~= ARGV[i] then break end
  redis.call("LPOP", key)
  n = n + 1
end
return n
"""


@dataclass
class NewJob:
    """A job as admitted: everything a worker needs is in `spec` (JSON-serialisable)."""

    job_id: str
    kind: JobKind
    spec: dict[str, Any]
    batch_id: str = ""
    batch_index: int = -1
    clip_id: str = ""


@dataclass
class JobRecord:
    job_id: str
    owner: str
    kind: str
    state: JobState
    stage: str
    progress: float
    spec: dict[str, Any]
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    deliveries: int = 0
    lost: int = 0
    retries: int = 0
    error_code: str = ""
    error_message: str = ""
    last_error: str = ""
    results: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    batch_id: str = ""
    batch_index: int = -1
    clip_id: str = ""
    cancel_requested: bool = False
    enqueued: bool = False
    worker: str = ""
    heartbeat_at: float | None = None
    # The fencing token of the delivery that owns the job (the last one started), and of the one that finished it.
    fence: int = 0
    finished_fence: int = 0
    # Times the reconciler re-enqueued the job because its queue message was lost.
    recovered: int = 0

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> JobRecord:
        def f(name: str) -> float | None:
            v = h.get(name, "")
            return float(v) if v else None

        return cls(
            job_id=h["id"],
            owner=h.get("owner", ""),
            kind=h.get("kind", ""),
            state=JobState(h["state"]),
            stage=h.get("stage", ""),
            progress=float(h.get("progress") or 0.0),
            spec=json.loads(h.get("spec") or "{}"),
            created_at=float(h.get("created_at") or 0.0),
            started_at=f("started_at"),
            finished_at=f("finished_at"),
            deliveries=int(h.get("deliveries") or 0),
            lost=int(h.get("lost") or 0),
            retries=int(h.get("retries") or 0),
            error_code=h.get("error_code", ""),
            error_message=h.get("error_message", ""),
            last_error=h.get("last_error", ""),
            results=json.loads(h.get("results") or "[]"),
            timings=json.loads(h.get("timings") or "{}"),
            batch_id=h.get("batch_id", ""),
            batch_index=int(h.get("batch_index") or -1),
            clip_id=h.get("clip_id", ""),
            cancel_requested=h.get("cancel_requested") == "1",
            enqueued=h.get("enqueued") == "1",
            worker=h.get("worker", ""),
            heartbeat_at=f("heartbeat_at"),
            fence=int(h.get("fence") or 0),
            finished_fence=int(h.get("finished_fence") or 0),
            recovered=int(h.get("recovered") or 0),
        )


@dataclass
class ClipRecord:
    """One upload (a video clip or a product image) owned by one API key."""

    clip_id: str
    owner: str
    kind: Literal["video", "image"]
    sha256: str
    filename: str
    size_bytes: int
    path: str
    created_at: float
    duration_s: float = 0.0
    width: int = 0
    height: int = 0
    job_id: str = ""

    def to_fields(self) -> dict[str, str]:
        return {
            "id": self.clip_id,
            "owner": self.owner,
            "kind": self.kind,
            "sha256": self.sha256,
            "filename": self.filename,
            "size_bytes": str(self.size_bytes),
            "path": self.path,
            "created_at": repr(self.created_at),
            "duration_s": repr(self.duration_s),
            "width": str(self.width),
            "height": str(self.height),
            "job_id": self.job_id,
        }

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> ClipRecord:
        return cls(
            clip_id=h["id"],
            owner=h["owner"],
            kind=cast(Literal["video", "image"], h["kind"]),  # written by the API from the same Literal
            sha256=h["sha256"],
            filename=h.get("filename", ""),
            size_bytes=int(h.get("size_bytes") or 0),
            path=h["path"],
            created_at=float(h.get("created_at") or 0.0),
            duration_s=float(h.get("duration_s") or 0.0),
            width=int(h.get("width") or 0),
            height=int(h.get("height") or 0),
            job_id=h.get("job_id", ""),
        )


@dataclass(frozen=True)
class Admission:
    """Outcome of `JobStore.admit`."""

    status: Literal["created", "replay", "busy", "conflict", "clip_exists", "over_quota"]
    job_ids: tuple[str, ...] = ()
    batch_id: str = ""
    clip_id: str = ""
    active: int = 0
    # "over_quota": the bytes the key stores, and those held by its other uploads in flight.
    stored_bytes: int = 0
    reserved_bytes: int = 0


@dataclass(frozen=True)
class StorageUsage:
    """What one key stores (`usage:<owner>`), for its storage quota."""

    upload_bytes: int  # its uploads (clips, images), each content once
    result_bytes: int  # its finished jobs' result files
    reserved_bytes: int  # held by its uploads still streaming

    @property
    def stored_bytes(self) -> int:
        return self.upload_bytes + self.result_bytes


@dataclass(frozen=True)
class DeletedUpload:
    """Outcome of `JobStore.delete_clip`: `status` "deleted" (then `path` is its file and `owners_left` the
    keys that still own that content), "missing" or "active" (its ingest job `job_id` is queued or running)."""

    status: Literal["deleted", "missing", "active"]
    path: str = ""
    owners_left: int = 0
    job_id: str = ""


@dataclass(frozen=True)
class StartDecision:
    action: Literal["run", "finished", "cancelled", "poison", "missing"]
    deliveries: int = 0
    state: str = ""
    # "run": this delivery's fencing token (pass it to every write of the delivery).
    fence: int = 0


class LeaseLost(Exception):
    """The reconciler's lease expired and another holder took it; the pass stops."""


def _now() -> float:
    return time.time()


def _fence_arg(fence: int | None) -> str:
    return "" if fence is None else str(int(fence))


# The client is built with `decode_responses=True`, so replies are `str`; redis-py types them as
# `bytes | str` because that depends on the flag. These narrow them (decoding a stray `bytes`).
def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _hash(h: dict[bytes | str, bytes | str]) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in h.items()}


def _members(reply: object) -> list[str]:
    """A sorted-set range read without `withscores`: bare members (redis-py types the reply as a
    union with the scored form)."""
    return [_s(m) for m in cast("list[bytes | str]", reply)]


class JobStore:
    """All reads and writes of service state go through this class (API and workers alike)."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.r = client
        self.ns = namespace
        self._admit = client.register_script(_LUA_ADMIT)
        self._reserve = client.register_script(_LUA_RESERVE)
        self._start = client.register_script(_LUA_START)
        self._progress = client.register_script(_LUA_PROGRESS)
        self._complete = client.register_script(_LUA_COMPLETE)
        self._fail = client.register_script(_LUA_FAIL)
        self._cancel = client.register_script(_LUA_CANCEL)
        self._requeue = client.register_script(_LUA_REQUEUE)
        self._delete_job = client.register_script(_LUA_DELETE_JOB)
        self._delete_clip = client.register_script(_LUA_DELETE_CLIP)
        self._trim_completions = client.register_script(_LUA_TRIM_COMPLETIONS)
        self._lease = client.register_script(_LUA_LEASE)
        self._lease_release = client.register_script(_LUA_LEASE_RELEASE)
        self._recover = client.register_script(_LUA_RECOVER)

    @classmethod
    def from_url(cls, url: str, namespace: str, *, timeout_s: float = 5.0) -> JobStore:
        """A store on `url`: a command that gets no answer within `timeout_s` is retried once, then fails with
        `redis.TimeoutError` (the API answers 503), so a stalled Redis costs a request about 2 x `timeout_s`."""
        client = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout_s,
            socket_connect_timeout=min(timeout_s, 5.0),
            health_check_interval=30,
            retry_on_timeout=True,
        )
        return cls(client, namespace)

    def k(self, *parts: str) -> str:
        return ":".join((self.ns, *parts))

    def ping(self) -> bool:
        try:
            return bool(self.r.ping())
        except redis.RedisError:
            return False

    # ------------------------------------------------------------------ admission
    def admit(
        self,
        owner: str,
        jobs: Sequence[NewJob],
        *,
        max_active: int,
        max_active_per_owner: int,
        idempotency_key: str | None = None,
        fingerprint: str = "",
        idempotency_ttl_s: int = 86400,
        batch_id: str = "",
        clip: ClipRecord | None = None,
        max_stored: int = 0,
        reservation: str = "",
    ) -> Admission:
        """Atomically: replay an idempotent request, or refuse when the queue is full or the key's storage quota
        (`max_stored` bytes, 0 = none) has no room, or create every record (jobs, batch, clip, idempotency key)
        at once, charging the clip's bytes and dropping the upload's `reservation`. Nothing is created on
        refusal."""
        now = _now()
        idem = ""
        if idempotency_key:
            digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
            idem = self.k("idem", owner, digest)
        args: list[str] = [
            self.ns,
            owner,
            repr(now),
            str(max_active),
            str(max_active_per_owner),
            idem,
            fingerprint,
            str(int(idempotency_ttl_s)),
            batch_id,
            clip.clip_id if clip else "",
            clip.sha256 if clip else "",
            json.dumps(clip.to_fields()) if clip else "",
            str(int(max_stored)),
            reservation,
            str(clip.size_bytes) if clip else "0",
            str(len(jobs)),
        ]
        for j in jobs:
            fields = {
                "id": j.job_id,
                "owner": owner,
                "kind": j.kind,
                "state": JobState.QUEUED,
                "stage": "queued",
                "progress": "0",
                "spec": json.dumps(j.spec, separators=(",", ":")),
                "created_at": repr(now),
                "deliveries": "0",
                "retries": "0",
                "batch_id": j.batch_id,
                "batch_index": str(j.batch_index),
                "clip_id": j.clip_id,
                "enqueued": "0",
                "cancel_requested": "0",
                "queued_at": repr(now),
            }
            args += [j.job_id, json.dumps(fields)]
        res = self._admit(args=args)
        status = res[0]
        if status == "created":
            return Admission("created", tuple(j.job_id for j in jobs), batch_id, clip.clip_id if clip else "")
        if status == "replay":
            prev = json.loads(res[1])
            ids = prev.get("ids") or []
            if isinstance(ids, dict):  # cjson encodes an empty array as {}
                ids = []
            if prev.get("fp") != fingerprint:
                return Admission("conflict", tuple(ids), prev.get("batch", ""))
            return Admission("replay", tuple(ids), prev.get("batch", ""))
        if status == "clip_exists":
            return Admission("clip_exists", clip_id=res[1])
        if status == "over_quota":
            return Admission("over_quota", stored_bytes=int(res[1]), reserved_bytes=int(res[2]))
        return Admission("busy", active=int(res[1]))

    def mark_enqueued(self, job_ids: Iterable[str]) -> None:
        with self.r.pipeline(transaction=False) as p:
            for jid in job_ids:
                p.hset(self.k("job", jid), "enqueued", "1")
            p.execute()

    def unenqueued_jobs(self, older_than_s: float) -> list[str]:
        """Active jobs admitted but never handed to the queue (the API died in between)."""
        cutoff = _now() - older_than_s
        out = []
        for jid in map(_s, self.r.smembers(self.k("jobs", "active"))):
            st, enq, created = self.r.hmget(self.k("job", jid), "state", "enqueued", "created_at")
            if st == JobState.QUEUED and enq != "1" and created and float(created) < cutoff:
                out.append(jid)
        return out

    def stale_running_jobs(self, stale_after_s: float) -> list[str]:
        """Jobs "running" on a worker that has been gone for `stale_after_s` and that no delivery
        has touched since: their message was lost (the broker redelivers long before this)."""
        cutoff = _now() - stale_after_s
        out = []
        for jid in map(_s, self.r.smembers(self.k("jobs", "active"))):
            st, worker, beat = self.r.hmget(self.k("job", jid), "state", "worker", "heartbeat_at")
            if st != JobState.RUNNING or not beat or float(beat) >= cutoff:
                continue
            seen = self.r.zscore(self.k("workers"), worker or "")
            if seen is None or seen < cutoff:
                out.append(jid)
        return out

    def touch(self, job_id: str) -> None:
        self.r.hset(self.k("job", job_id), "heartbeat_at", repr(_now()))

    # ------------------------------------------------------------------ reconciliation (lease-holder only)
    def acquire_lease(self, name: str, token: str, ttl_s: float) -> bool:
        """Take the lease `name` (SET NX PX) or renew it if `token` holds it; False if another token holds it."""
        return bool(self._lease(args=[self.k(name, "lease"), token, str(max(1, int(ttl_s * 1000)))]))

    def release_lease(self, name: str, token: str) -> bool:
        return bool(self._lease_release(args=[self.k(name, "lease"), token]))

    def lease_holder(self, name: str) -> str | None:
        v = self.r.get(self.k(name, "lease"))
        return _s(v) if v is not None else None

    def queued_jobs(self, older_than_s: float) -> list[tuple[str, str]]:
        """Queued jobs that entered the queued state more than `older_than_s` ago: (id, marker) pairs, the
        marker (its `queued_at`) to pass to `recover`."""
        cutoff = _now() - older_than_s
        ids = [_s(v) for v in self.r.smembers(self.k("jobs", "active"))]
        out = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            with self.r.pipeline(transaction=False) as p:
                for jid in chunk:
                    p.hmget(self.k("job", jid), "state", "queued_at", "created_at")
                rows = p.execute()
            for jid, (st, queued_at, created) in zip(chunk, rows):
                marker = queued_at or created
                if st == JobState.QUEUED and marker and float(marker) < cutoff:
                    out.append((jid, _s(marker)))
        return out

    def running_jobs_of_gone_workers(self, stale_after_s: float) -> list[tuple[str, str]]:
        """`stale_running_jobs` with each job's fence (the marker to pass to `recover`)."""
        out = []
        for jid in self.stale_running_jobs(stale_after_s):
            fence = self.r.hget(self.k("job", jid), "fence")
            out.append((jid, _s(fence) if fence else "0"))
        return out

    def recover(self, job_id: str, lease: str, token: str, state: JobState, marker: str) -> bool:
        """Mark a job whose queue message was lost as re-enqueued, if `token` still holds `lease` and the job is
        unchanged since the reconciler saw it (`state` with that marker). True: the caller enqueues it (once).
        Raises `LeaseLost` when the lease is no longer `token`'s."""
        res = int(self._recover(args=[self.ns, job_id, self.k(lease, "lease"), token, state, marker, repr(_now())]))
        if res < 0:
            raise LeaseLost(lease)
        return res == 1

    def record_reconcile_pass(
        self, holder: str, started: float, ended: float, recovered: Sequence[str], *, lease_lost: bool = False
    ) -> None:
        """Remember the pass (newest first, the last 100): who reconciled when, what it recovered, and whether
        it found its lease taken by another reconciler part-way (its later recoveries were refused)."""
        entry = json.dumps(
            {"holder": holder, "start": started, "end": ended, "recovered": list(recovered), "lease_lost": lease_lost}
        )
        with self.r.pipeline(transaction=False) as p:
            p.lpush(self.k("reconciler", "passes"), entry)
            p.ltrim(self.k("reconciler", "passes"), 0, 99)
            p.execute()

    def reconcile_passes(self) -> list[dict[str, Any]]:
        return [json.loads(_s(v)) for v in self.r.lrange(self.k("reconciler", "passes"), 0, -1)]

    def active_count(self) -> int:
        return int(self.r.scard(self.k("jobs", "active")))

    # ------------------------------------------------------------------ reads
    def get_job(self, job_id: str) -> JobRecord | None:
        h = self.r.hgetall(self.k("job", job_id))
        return JobRecord.from_hash(_hash(h)) if h else None

    def get_jobs(self, job_ids: Sequence[str]) -> list[JobRecord | None]:
        with self.r.pipeline(transaction=False) as p:
            for jid in job_ids:
                p.hgetall(self.k("job", jid))
            rows = p.execute()
        return [JobRecord.from_hash(h) if h else None for h in rows]

    def list_jobs(self, owner: str, *, limit: int, offset: int = 0) -> tuple[list[JobRecord], int]:
        key = self.k("jobs", "owner", owner)
        total = int(self.r.zcard(key))
        ids = _members(self.r.zrevrange(key, offset, offset + limit - 1))
        return [j for j in self.get_jobs(ids) if j is not None], total

    def get_batch(self, batch_id: str) -> tuple[str, float, list[str]] | None:
        h = _hash(self.r.hgetall(self.k("batch", batch_id)))
        if not h:
            return None
        return h["owner"], float(h["created_at"]), json.loads(h["job_ids"])

    def completions(self) -> list[str]:
        return [_s(v) for v in self.r.lrange(self.k("completions"), 0, -1)]

    # ------------------------------------------------------------------ worker transitions
    def start(self, job_id: str, worker: str, max_lost: int) -> StartDecision:
        """Claim a delivered job; counts deliveries whose worker died and fails a poison job. A "run" decision
        carries the delivery's fencing token, which every later write of this delivery must pass."""
        res = self._start(args=[self.ns, job_id, worker, repr(_now()), str(max_lost)])
        action = res[0]
        if action == "run":
            return StartDecision("run", deliveries=int(res[1]), fence=int(res[2]))
        if action == "finished":
            return StartDecision("finished", state=res[1])
        if action == "poison":
            return StartDecision("poison", deliveries=int(res[1]))
        return StartDecision(action)

    # A delivery passes its `fence` (from `start`) to every write below; the store refuses the write with
    # `StaleDelivery` when a newer delivery started since. `fence=None` is for writes that are no delivery's.
    @staticmethod
    def _fenced(job_id: str, fence: int | None, res: object) -> bool:
        code = int(cast(int, res))
        if code < 0:
            raise StaleDelivery(job_id, fence or 0)
        return code == 1

    def progress(self, job_id: str, stage: str, progress_pct: float, *, fence: int | None = None) -> bool:
        pct = f"{max(0.0, min(100.0, progress_pct)):.1f}"
        res = self._progress(args=[self.ns, job_id, stage, pct, repr(_now()), _fence_arg(fence)])
        return self._fenced(job_id, fence, res)

    def complete(
        self,
        job_id: str,
        results: list[dict[str, Any]],
        timings: dict[str, float],
        *,
        fence: int | None = None,
        stored_bytes: int = 0,
    ) -> bool:
        """Compare-and-set to done; True for the one call that wrote the completion record (which also charges
        `stored_bytes`, the job's result files, to its owner's storage quota)."""
        args = [
            self.ns,
            job_id,
            repr(_now()),
            json.dumps(results),
            json.dumps(timings),
            _fence_arg(fence),
            str(int(stored_bytes)),
        ]
        return self._fenced(job_id, fence, self._complete(args=args))

    def fail(
        self, job_id: str, code: str, message: str, *, state: JobState = JobState.FAILED, fence: int | None = None
    ) -> bool:
        args = [self.ns, job_id, repr(_now()), state, code, message[:2000], _fence_arg(fence)]
        return self._fenced(job_id, fence, self._fail(args=args))

    def requeue(
        self, job_id: str, stage: str, message: str = "", *, count_retry: bool, fence: int | None = None
    ) -> bool:
        """Back to queued (a retry, or a deferral or shutdown hand-back, which is not an attempt at the job:
        `count_retry=False`); the caller enqueues the delayed message."""
        args = [self.ns, job_id, stage, message[:2000], repr(_now()), _fence_arg(fence), "1" if count_retry else "0"]
        return self._fenced(job_id, fence, self._requeue(args=args))

    def owning_fence(self, job_id: str) -> tuple[int, bool]:
        """The fence of the delivery that owns the job now, and whether a cancel was requested (one read)."""
        fence, cancel = self.r.hmget(self.k("job", job_id), "fence", "cancel_requested")
        return int(fence or 0), cancel == "1"

    def cancel_requested(self, job_id: str) -> bool:
        return self.r.hget(self.k("job", job_id), "cancel_requested") == "1"

    def request_cancel(self, job_id: str) -> str:
        return str(self._cancel(args=[self.ns, job_id, repr(_now())]))

    # ------------------------------------------------------------------ uploads
    def get_clip(self, clip_id: str) -> ClipRecord | None:
        h = self.r.hgetall(self.k("clip", clip_id))
        return ClipRecord.from_hash(_hash(h)) if h else None

    def list_clips(self, owner: str, *, limit: int, offset: int = 0) -> tuple[list[ClipRecord], int]:
        key = self.k("clips", "owner", owner)
        total = int(self.r.zcard(key))
        ids = _members(self.r.zrevrange(key, offset, offset + limit - 1))
        with self.r.pipeline(transaction=False) as p:
            for cid in ids:
                p.hgetall(self.k("clip", cid))
            rows = p.execute()
        return [ClipRecord.from_hash(h) for h in rows if h], total

    def upload_owners(self, sha256: str) -> set[str]:
        return {_s(v) for v in self.r.smembers(self.k("upload_owners", sha256))}

    def owned_upload_hashes(self, owner: str, hashes: Sequence[str]) -> set[str]:
        """Which of `hashes` were uploaded by `owner`."""
        if not hashes:
            return set()
        with self.r.pipeline(transaction=False) as p:
            for h in hashes:
                p.sismember(self.k("upload_owners", h), owner)
            flags = p.execute()
        return {h for h, ok in zip(hashes, flags) if ok}

    def uploaded_hashes(self, hashes: Sequence[str]) -> set[str]:
        """Which of `hashes` came from an upload (by anyone)."""
        if not hashes:
            return set()
        with self.r.pipeline(transaction=False) as p:
            for h in hashes:
                p.exists(self.k("upload_owners", h))
            flags = p.execute()
        return {h for h, ok in zip(hashes, flags) if ok}

    # ------------------------------------------------------------------ deletion and retention
    def delete_job(self, job_id: str, owner: str = "", *, trim_completion: bool = True) -> tuple[str, str]:
        """Delete a finished job's records (not its files: `server.retention` removes those).

        Returns ("deleted", ""), ("missing", "") (also for another owner's job when `owner` is given),
        ("active", "") for a queued or running job (never deleted), or ("clip", clip id) for the ingest job
        of an upload that still exists (it is deleted with the upload)."""
        res = [_s(x) for x in self._delete_job(args=[self.ns, job_id, owner, "1" if trim_completion else "0"])]
        return res[0], res[1] if len(res) > 1 else ""

    def delete_clip(self, clip_id: str, owner: str = "") -> DeletedUpload:
        """Delete an upload's records and its ingest job's (refused while that ingest is queued or running)."""
        res = [_s(x) for x in self._delete_clip(args=[self.ns, clip_id, owner])]
        if res[0] == "deleted":
            return DeletedUpload("deleted", path=res[1], owners_left=int(res[2]))
        if res[0] == "active":
            return DeletedUpload("active", job_id=res[1])
        return DeletedUpload("missing")

    def owners(self) -> list[str]:
        """Keys that own jobs or uploads (the retention sweep's round)."""
        return sorted(_s(v) for v in self.r.smembers(self.k("owners")))

    def forget_owner_if_empty(self, owner: str) -> bool:
        """Drop `owner` from the sweep's round once it owns nothing (a revoked key, all expired)."""
        with self.r.pipeline(transaction=False) as p:
            p.zcard(self.k("jobs", "owner", owner))
            p.zcard(self.k("clips", "owner", owner))
            p.zcard(self.k("batches", "owner", owner))
            counts = p.execute()
        if any(counts):
            return False
        self.r.srem(self.k("owners"), owner)
        return True

    def finished_jobs(self, owner: str, *, before: float, limit: int) -> list[str]:
        """The owner's jobs that finished before `before` (oldest first)."""
        return _members(self.r.zrangebyscore(self.k("jobs", "done", owner), "-inf", f"({before!r}", start=0, num=limit))

    def finished_jobs_over(self, owner: str, keep: int, *, limit: int) -> list[str]:
        """The owner's oldest finished jobs beyond the newest `keep`."""
        key = self.k("jobs", "done", owner)
        excess = int(self.r.zcard(key)) - keep
        if excess <= 0:
            return []
        return _members(self.r.zrange(key, 0, min(excess, limit) - 1))

    def uploads_before(self, owner: str, before: float, *, limit: int) -> list[str]:
        """The owner's uploads (clips and images) uploaded before `before` (oldest first)."""
        return _members(
            self.r.zrangebyscore(self.k("clips", "owner", owner), "-inf", f"({before!r}", start=0, num=limit)
        )

    def trim_completions(self, before: float, *, batch: int = 200) -> int:
        """Pop completion entries from the head while their job is gone or finished before `before`."""
        key = self.k("completions")
        popped = 0
        while True:
            head = [_s(v) for v in self.r.lrange(key, 0, batch - 1)]
            if not head:
                return popped
            with self.r.pipeline(transaction=False) as p:
                for jid in head:
                    p.hget(self.k("job", jid), "finished_at")
                ends = p.execute()
            expired = []
            for jid, end in zip(head, ends):
                if end and float(end) >= before:
                    break
                expired.append(jid)
            if not expired:
                return popped
            n = int(self._trim_completions(args=[self.ns, *expired]))
            popped += n
            if n < len(head):
                return popped

    def index_for_retention(self) -> bool:
        """Once per store: index records written before retention existed (`jobs:done:*`, `owners`).
        True if this call did the indexing."""
        marker = self.k("retention", "v1")
        if self.r.exists(marker):
            return False
        owners: set[str] = set()
        for what in ("jobs", "clips", "batches"):
            prefix = self.k(what, "owner", "")
            for key in self.r.scan_iter(match=prefix + "*", count=1000):
                owners.add(_s(key)[len(prefix) :])
        for owner in owners:
            ids = _members(self.r.zrange(self.k("jobs", "owner", owner), 0, -1))
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                with self.r.pipeline(transaction=False) as p:
                    for jid in chunk:
                        p.hmget(self.k("job", jid), "state", "finished_at", "clip_id")
                    rows = p.execute()
                done = {
                    jid: float(end or 0.0)
                    for jid, (st, end, clip) in zip(chunk, rows)
                    if st in TERMINAL_STATES and not clip
                }
                if done:
                    self.r.zadd(self.k("jobs", "done", owner), done)
        if owners:
            self.r.sadd(self.k("owners"), *owners)
        self.r.set(marker, "1")
        return True

    # ------------------------------------------------------------------ API keys
    def add_api_key(self, key_hash: str, key_id: str, name: str, admin: bool) -> None:
        with self.r.pipeline(transaction=True) as p:
            p.hset(
                self.k("apikey", key_hash),
                mapping={"key_id": key_id, "name": name, "admin": "1" if admin else "0", "created_at": repr(_now())},
            )
            p.hset(self.k("apikeys"), key_id, key_hash)
            p.execute()

    def lookup_api_key(self, key_hash: str) -> dict[str, str] | None:
        h = self.r.hgetall(self.k("apikey", key_hash))
        return _hash(h) if h else None

    def rate_hit(self, key_id: str, limit: int, window_s: int = 60) -> int:
        """Count one request of `key_id` in the current window; 0 when within `limit`, else the seconds until
        the window ends (the Retry-After)."""
        window = int(time.time()) // window_s
        k = self.k("rate", key_id, str(window))
        with self.r.pipeline(transaction=False) as p:
            p.incr(k)
            p.expire(k, window_s + 5)
            count = int(p.execute()[0])
        if count <= limit:
            return 0
        return max(1, (window + 1) * window_s - int(time.time()))

    def upload_slot(self, key_id: str, limit: int, ttl_s: int) -> str | None:
        """Take one of `key_id`'s `limit` parallel upload slots: its token, or None when none is free. Slots
        expire after `ttl_s` (an API process killed mid-upload cannot keep one for ever)."""
        k = self.k("uploading", key_id)
        now = time.time()
        token = uuid.uuid4().hex
        with self.r.pipeline(transaction=True) as p:
            p.zremrangebyscore(k, "-inf", now - ttl_s)
            p.zadd(k, {token: now})
            p.zrank(k, token)
            p.expire(k, int(ttl_s) + 60)
            _, _, rank, _ = p.execute()
        if rank is None or int(rank) >= limit:  # the oldest `limit` hold the slots
            self.r.zrem(k, token)
            return None
        return token

    def release_upload_slot(self, key_id: str, token: str) -> None:
        self.r.zrem(self.k("uploading", key_id), token)

    def reserve_upload_bytes(
        self, key_id: str, token: str, need_bytes: int, *, ahead_bytes: int = 0, max_stored: int, ttl_s: float
    ) -> tuple[int, int, int]:
        """Hold room in `key_id`'s storage quota for an upload in flight: its reservation becomes `need_bytes` +
        `ahead_bytes`, or what is left of the quota when less. Returns (bytes granted, bytes stored, bytes held by
        the key's other uploads); granted < `need_bytes` (then 0) means no room: the reservation is dropped and
        the upload must be refused. A reservation ends with `admit` (which charges the upload instead), with
        `release_upload_bytes`, or after `ttl_s` (an API process that died mid-upload)."""
        need = int(need_bytes)
        args = [self.ns, key_id, token, str(need), str(need + int(ahead_bytes)), str(int(max_stored))]
        res = self._reserve(args=[*args, repr(_now()), repr(ttl_s)])
        granted, used, others = (int(_s(x)) for x in res)
        return granted, used, others

    def release_upload_bytes(self, key_id: str, token: str) -> None:
        self.r.hdel(self.k("upload_reserved", key_id), token)

    def storage_usage(self, key_id: str) -> StorageUsage:
        """The bytes `key_id` stores and holds for uploads in flight (expired reservations not counted)."""
        with self.r.pipeline(transaction=False) as p:
            p.hmget(self.k("usage", key_id), "uploads", "results")
            p.hvals(self.k("upload_reserved", key_id))
            (uploads, results), held = p.execute()
        now, reserved = _now(), 0
        for v in held:
            size, _, deadline = _s(v).partition(" ")
            if float(deadline or 0) >= now:
                reserved += int(size)
        return StorageUsage(upload_bytes=int(uploads or 0), result_bytes=int(results or 0), reserved_bytes=reserved)

    def api_key_exists(self, key_id: str) -> bool:
        return bool(self.r.hexists(self.k("apikeys"), key_id))

    def revoke_api_key(self, key_id: str) -> bool:
        key_hash = self.r.hget(self.k("apikeys"), key_id)
        if not key_hash:
            return False
        with self.r.pipeline(transaction=True) as p:
            p.delete(self.k("apikey", _s(key_hash)))
            p.hdel(self.k("apikeys"), key_id)
            p.execute()
        return True

    def list_api_keys(self) -> list[dict[str, str]]:
        out = []
        for _key_id, key_hash in sorted(_hash(self.r.hgetall(self.k("apikeys"))).items()):
            h = self.r.hgetall(self.k("apikey", key_hash))
            if h:
                out.append(_hash(h))
        return out

    # ------------------------------------------------------------------ worker presence
    def worker_heartbeat(self, worker_id: str) -> None:
        self.r.zadd(self.k("workers"), {worker_id: _now()})

    def worker_gone(self, worker_id: str) -> None:
        self.r.zrem(self.k("workers"), worker_id)

    def live_workers(self, timeout_s: float) -> int:
        """Worker processes seen within `timeout_s` (stale entries are pruned)."""
        key = self.k("workers")
        cutoff = _now() - timeout_s
        self.r.zremrangebyscore(key, "-inf", cutoff - 3600)
        return int(self.r.zcount(key, cutoff, "+inf"))

    # ------------------------------------------------------------------ stats
    def stats_record(self, name: str, value: float, keep: int = 50) -> None:
        """Remember recent values of a figure (e.g. job run time) for Retry-After estimates."""
        key = self.k("stats", name)
        with self.r.pipeline(transaction=False) as p:
            p.lpush(key, repr(value))
            p.ltrim(key, 0, keep - 1)
            p.execute()

    def stats_mean(self, name: str) -> float | None:
        vals = [float(v) for v in self.r.lrange(self.k("stats", name), 0, -1)]
        return sum(vals) / len(vals) if vals else None
