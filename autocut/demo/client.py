"""The demo's HTTP client: upload the product photo, POST one edit, poll the job, download its files.

Everything goes through the public API with the admin key `DemoServer` bootstrapped; the files are
the job's result files (`autocut.render.outputs.RESULT_FILES`), saved under
`<library>/demo/output/<product>-<job>/`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autocut.demo.config import DemoConfig
from autocut.demo.edit import choose_edit, summarize_plan
from autocut.demo.service import DemoServer
from autocut.errors import ConfigError
from autocut.files import atomic_path
from autocut.render.outputs import RESULT_FILES

__all__ = ["EditOutcome", "run_edit"]


@dataclass(frozen=True)
class EditOutcome:
    """What the edit gave back: downloaded paths by result file (plus `job_id`, `planner`), and a summary."""

    outputs: dict[str, str]
    summary: str


def run_edit(cfg: DemoConfig, server: DemoServer, *, say: Callable[[str], None]) -> EditOutcome:
    """Upload the product photo, POST the edit, poll it, download its files."""
    import httpx

    choice = choose_edit(cfg.library, cfg.product_id)
    p, ref = choice.product, choice.reference
    script = [s.sentence for s in ref.segments]
    say(f"  product {p.product_id} (test split, never trained on): {p.name} by {p.brand}, {p.category}")
    say(
        f"  pool: its reel (photo_id {', '.join(map(str, choice.photo_ids))}: its ad shots and a look-alike "
        f"rival's); script-driven with reference ad {ref.edit_id}'s {len(script)} sentences"
    )
    headers = {"X-API-Key": server.api_key}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=60.0) as c:
        image_id = None
        if p.image_path and Path(p.image_path).exists():
            with open(p.image_path, "rb") as f:
                r = c.post("/v1/images", files={"file": (Path(p.image_path).name, f, "image/png")})
            _check(r, "uploading the product photo")
            image_id = r.json()["clip_id"]
            say(f"  uploaded the product photo: {image_id}")
        options: dict[str, Any] = {"resolution": cfg.resolution, "language": "en", "max_duration_s": 60}
        if cfg.planner:
            options["planner"] = cfg.planner
        body = {
            "product": {
                "name": p.name,
                "brand": p.brand,
                "category": p.category,
                "selling_points": list(p.selling_points),
                "description": p.description,
                **({"image_id": image_id} if image_id else {}),
            },
            "clips": [{"photo_id": pid} for pid in choice.photo_ids],
            "script": script,
            "options": options,
        }
        t0 = time.perf_counter()
        r = c.post("/v1/edits", json=body)
        _check(r, "POST /v1/edits")
        job_id = r.json()["job_id"]
        say(f"  POST /v1/edits -> {r.status_code}, job {job_id}")
        try:
            job = _poll(c, job_id, cfg.job_timeout_s, say)
        except KeyboardInterrupt:  # cancel the job (stops its ffmpeg), so the service stops at once
            with contextlib.suppress(Exception):
                c.delete(f"/v1/jobs/{job_id}", timeout=5.0)
            raise
        wall = time.perf_counter() - t0
        if job["state"] != "done":
            err = job.get("error") or {}
            raise ConfigError(f"job {job_id} ended {job['state']}: {err.get('code')}: {err.get('message')}")
        res = job["results"][0]
        out_dir = cfg.demo_dir / "output" / f"{p.product_id}-{job_id}"
        out_dir.mkdir(parents=True, exist_ok=True)
        outputs: dict[str, str] = {"job_id": job_id, "planner": res["planner"]}
        for artifact, name in RESULT_FILES.items():
            dest = out_dir / name
            with c.stream("GET", res["links"][artifact]) as rr, atomic_path(dest) as tmp:
                _check(rr, f"downloading the {artifact}")
                with open(tmp, "wb") as f:
                    for chunk in rr.iter_bytes(1 << 16):
                        f.write(chunk)
            outputs[artifact] = str(dest)
        timings = job.get("timings") or {}
        say(
            f"  done in {wall:.1f} s (planning {timings.get('plan_s', 0):.1f} s, rendering "
            f"{timings.get('render_s', 0):.1f} s); downloaded into {out_dir}"
        )
    plan = json.loads(Path(outputs["plan"]).read_text())
    return EditOutcome(outputs, summarize_plan(cfg.library, plan, choice))


def _check(r: Any, what: str) -> None:
    if r.status_code >= 400:
        with contextlib.suppress(Exception):
            r.read()
        raise ConfigError(f"{what}: HTTP {r.status_code}: {r.text[:500]}")


def _poll(c: Any, job_id: str, timeout_s: float, say: Callable[[str], None]) -> dict:
    deadline = time.monotonic() + timeout_s
    shown, shown_pct = "", -100.0
    while True:
        r = c.get(f"/v1/jobs/{job_id}")
        _check(r, f"GET /v1/jobs/{job_id}")
        job = r.json()
        stage, pct = f"{job['state']}: {job['stage'] or '-'}", float(job["progress_pct"])
        if stage != shown or pct >= shown_pct + 10:  # a line per stage and per 10 %
            say(f"    {stage} {pct:.0f}%")
            shown, shown_pct = stage, pct
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        if time.monotonic() > deadline:
            c.delete(f"/v1/jobs/{job_id}")
            raise ConfigError(f"job {job_id} did not finish within {timeout_s:.0f} s (cancelled)")
        time.sleep(0.5)
