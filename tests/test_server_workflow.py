"""Plan, review, render, against the running service (API + a worker process, a real redis-server, the real
planner, renderer and ffmpeg): `POST /v1/edits` with `stop_after: plan` plans and stops (a plan with ids
and a thumbnail per segment, no MP4); the plan POSTed back to `/v1/renders`, as is or edited, renders as a
new job that follows it; a bad plan is refused with 422 naming its first bad field; `quality: preview`
renders the same plan at 540p with the fastest encoder settings.

The seed library (`test_server_harness.seed_library`): video 1 = 4 s testsrc2 then 4 s red, video 2 =
4 s mandelbrot then 4 s blue (320x240), one music track (audio_id 1).
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from autocut.library.media import probe
from autocut.types import EditPlan
from media_factory import make_shots
from test_server_harness import running_service, tiny_edit, wait_for, wait_job

# Shared session fixtures (redis_server, seed_library): one instance for all server test modules.
pytest_plugins = ["test_server_harness"]

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

LINES = ["Fresh juice now.", "Take it anywhere."]


@pytest.fixture(scope="module")
def service(tmp_path_factory, redis_server, seed_library):
    with running_service(tmp_path_factory.mktemp("wf"), redis_server, seed_library, workers=1) as svc:
        yield svc


@pytest.fixture(scope="module")
def key(service):
    return service.new_key("workflow")


@pytest.fixture(scope="module")
def planned(service, key):
    """A finished plan-only job (espeak voice, music picked by the planner): its status."""
    req = tiny_edit([1, 2], script=LINES, voice="espeak", bgm="auto", max_duration_s=6.0)
    req["stop_after"] = "plan"
    with service.client(key) as c:
        r = c.post("/v1/edits", json=req)
        assert r.status_code == 202, r.text
        job = wait_job(c, r.json()["job_id"], timeout_s=90)
    assert job["state"] == "done", (job, service.logs())
    return job


def _render(c: httpx.Client, service, body: dict, timeout_s: float = 90) -> dict:
    r = c.post("/v1/renders", json=body)
    assert r.status_code == 202, r.text
    job = wait_job(c, r.json()["job_id"], timeout_s=timeout_s)
    assert job["state"] == "done", (job, service.logs())
    assert job["kind"] == "render"
    return job


def _download(c: httpx.Client, link: str, dest: Path) -> Path:
    r = c.get(link)
    assert r.status_code == 200, r.text
    dest.write_bytes(r.content)
    return dest


def _mean_rgb(path: Path, at_s: float | None = None) -> np.ndarray:
    """The mean colour of one frame (a still image, or a video's frame at `at_s`)."""
    seek = ["-ss", f"{at_s:.3f}"] if at_s is not None else []
    out = subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", *seek, "-i", str(path), "-frames:v", "1", "-vf", "scale=16:16"]
        + ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    assert len(out) == 16 * 16 * 3, f"no frame decoded from {path} at {at_s}"
    return np.frombuffer(out, np.uint8).reshape(-1, 3).astype(float).mean(axis=0)


def test_plan_only_job_returns_the_plan_with_thumbnails_and_no_video(service, key, planned, tmp_path):
    assert planned["results"] == [] and len(planned["plans"]) == 1
    review = planned["plans"][0]
    plan = review["plan"]
    assert [s["line"] for s in plan["segments"]] == LINES
    assert {s["photo_id"] for s in plan["segments"]} <= {1, 2}
    assert all(s["clip_id"] is None for s in plan["segments"])
    assert plan["music"] is not None and plan["music"]["audio_id"] == 1
    assert plan["voice"]["engine"] == "espeak" and plan["output"]["resolution"] == 144
    assert review["duration_s"] == pytest.approx(sum(s["duration_s"] for s in plan["segments"]), abs=1e-3)
    assert review["duration_s"] <= plan["max_duration_s"] == 6.0
    assert "source_path" not in str(planned) and str(service.settings.library_dir) not in str(planned)
    assert len(review["thumbnails"]) == len(plan["segments"]) == len(review["signed_thumbnails"])
    with service.client(key) as c:
        for k, (link, seg) in enumerate(zip(review["thumbnails"], plan["segments"])):
            r = c.get(link)
            assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg", r.text
            assert r.content[:2] == b"\xff\xd8"
            thumb = _download(c, link, tmp_path / f"t{k}.jpg")
            with Image.open(thumb) as im:
                assert (im.format, im.size) == ("JPEG", (240, 180))  # 320x240 source, 180 px high
            # The frame from the middle of the segment's span of its video.
            src = service.settings.library_dir / "media" / f"shoot{seg['photo_id'] - 1}.mp4"
            mid = seg["start_s"] + seg["duration_s"] / 2
            assert np.abs(_mean_rgb(thumb) - _mean_rgb(src, mid)).max() < 12
        missing = review["thumbnails"][0].rsplit("/", 1)[0] + f"/{len(plan['segments'])}"
        assert c.get(missing).status_code == 404
        # Nothing was rendered.
        assert c.get(f"/v1/jobs/{planned['job_id']}/results/1/video").status_code == 404
    assert not list((service.settings.data_dir / "jobs" / planned["job_id"]).rglob("*.mp4"))
    with httpx.Client(base_url=service.base_url, timeout=30) as anon:
        assert anon.get(review["thumbnails"][0]).status_code == 401
        signed = anon.get(review["signed_thumbnails"][0])
        assert signed.status_code == 200 and signed.content[:2] == b"\xff\xd8"
        assert anon.get(review["signed_thumbnails"][0].replace("/thumbnails/0?", "/thumbnails/1?")).status_code == 403


def test_the_plan_sent_back_renders_as_planned(service, key, planned, tmp_path):
    plan = planned["plans"][0]["plan"]
    with service.client(key) as c:
        job = _render(c, service, plan)
        (res,) = job["results"]
        assert res["quality"] == "final" and res["render_s"] > 0
        assert (res["width"], res["height"]) == (144, 256)
        out = probe(_download(c, res["links"]["video"], tmp_path / "as-planned.mp4"))
        assert out.duration_s == pytest.approx(planned["plans"][0]["duration_s"], abs=0.1)
        assert (out.width, out.height) == (144, 256) and out.audio_codec == "aac"
        used = EditPlan.model_validate(c.get(res["links"]["plan"]).json())
    assert [(s.photo_id, s.start_s, s.duration_s, s.sentence) for s in used.segments] == [
        (s["photo_id"], s["start_s"], s["duration_s"], s["line"]) for s in plan["segments"]
    ]
    assert used.bgm is not None and used.bgm.audio_id == 1


def test_an_edited_plan_renders_in_its_new_order_with_its_new_line(service, key, planned, tmp_path):
    plan = copy.deepcopy(planned["plans"][0]["plan"])
    segs = plan["segments"]
    assert all(s["duration_s"] <= 3.9 for s in segs), segs
    with service.client(key) as c:
        # An upload of this key to swap in: solid green.
        footage = make_shots(tmp_path / "mine.mp4", [("green", 4.5)], size="320x240")
        r = c.post("/v1/clips", files={"file": ("mine.mp4", footage.read_bytes(), "video/mp4")})
        assert r.status_code == 201, r.text
        clip_id = r.json()["clip_id"]

        def ready() -> dict | None:
            clip = c.get(f"/v1/clips/{clip_id}").json()
            assert clip["state"] != "failed", clip
            return clip if clip["state"] == "ready" else None

        mine = wait_for(ready, 60, "the upload to be ingested")
        # Reversed; the segment now first swapped for the upload with a new line; the other moved to the
        # solid-colour half of its video (red for video 1, blue for video 2); the music dropped. The frames
        # then tell which footage plays when.
        segs.reverse()
        segs[0] = {"clip_id": clip_id, "start_s": 0.5, "duration_s": segs[0]["duration_s"], "line": "Blend it now."}
        segs[1]["start_s"] = 4.05
        plan["music"] = None
        job = _render(c, service, plan)
        (res,) = job["results"]
        video = _download(c, res["links"]["video"], tmp_path / "edited.mp4")
        srt = c.get(res["links"]["subtitles"]).text
        used = EditPlan.model_validate(c.get(res["links"]["plan"]).json())
    assert [s.photo_id for s in used.segments] == [mine["photo_id"], segs[1]["photo_id"]]
    assert [(s.start_s, s.sentence) for s in used.segments] == [(0.5, "Blend it now."), (4.05, LINES[0])]
    assert used.bgm is None
    # The second line, now first, was replaced.
    assert srt.index("Blend it now") < srt.index("Fresh juice now") and "anywhere" not in srt
    t = 0.0
    for s, want in zip(segs, ["green", {1: "red", 2: "blue"}[segs[1]["photo_id"]]]):
        rgb = _mean_rgb(video, t + s["duration_s"] / 2)
        assert ["red", "green", "blue"][int(np.argmax(rgb))] == want, (s, rgb)
        t += s["duration_s"]
    assert probe(video).duration_s == pytest.approx(t, abs=0.1)


def test_bad_plans_are_refused_naming_the_field(service, key, planned, tmp_path):
    good = planned["plans"][0]["plan"]
    other = service.new_key("someone-else")
    with service.client(other) as c:
        footage = make_shots(tmp_path / "theirs.mp4", [("green", 2.0)], size="160x120")
        r = c.post("/v1/clips", files={"file": ("theirs.mp4", footage.read_bytes(), "video/mp4")})
        assert r.status_code == 201, r.text
        their_clip = r.json()["clip_id"]

    def variant(**changes: object) -> dict:
        body = copy.deepcopy(good)
        for path, value in changes.items():
            target = body
            *parents, last = path.split("__")
            for p in parents:
                target = target[int(p)] if p.isdigit() else target[p]
            target[int(last) if last.isdigit() else last] = value
        return body

    long_line = "This line has far too many words to be spoken in a segment of one short second, " * 2
    cases = [
        (variant(segments__1__photo_id=999), "unknown_video", "segments[1].photo_id"),
        (
            variant(segments__0={"clip_id": "clp_" + "0" * 24, "start_s": 0, "duration_s": 1.5, "line": "Hi."}),
            "unknown_clip",
            "segments[0].clip_id",
        ),
        (
            variant(segments__0={"clip_id": their_clip, "start_s": 0, "duration_s": 1.5, "line": "Hi."}),
            "unknown_clip",
            "segments[0].clip_id",
        ),
        (variant(segments__1__start_s=7.0), "span_outside_source", "segments[1].duration_s"),
        (variant(segments__0__start_s=9.0), "span_outside_source", "segments[0].start_s"),
        (variant(segments__0__line=long_line.strip()), "line_too_long", "segments[0].line"),
        (variant(music={"audio_id": 999}), "unknown_bgm", "music.audio_id"),
        (variant(max_duration_s=1.0), "over_budget", "max_duration_s"),
        (variant(segments__1=copy.deepcopy(good["segments"][0])), "footage_reused", "segments[1].start_s"),
    ]
    with service.client(key) as c:
        before = c.get("/v1/jobs").json()["total"]
        for body, code, field in cases:
            r = c.post("/v1/renders", json=body)
            assert r.status_code == 422, (field, r.text)
            err = r.json()["error"]
            assert (err["code"], err["message"].split(":")[0]) == (code, field), err
        # Paths are not part of a plan: a segment naming a file is refused by the schema.
        smuggled = variant(segments__0={**good["segments"][0], "source_path": "/etc/passwd"})
        r = c.post("/v1/renders", json=smuggled)
        assert r.status_code == 422 and "source_path" in r.json()["error"]["message"], r.text
        both = variant(segments__0={**good["segments"][0], "clip_id": "clp_" + "0" * 24})
        r = c.post("/v1/renders", json=both)
        assert r.status_code == 422 and "exactly one of photo_id or clip_id" in r.text
        assert c.get("/v1/jobs").json()["total"] == before, "a refused plan left a job behind"


def test_preview_renders_the_same_plan_at_540p_faster(service, key, planned, tmp_path):
    plan = copy.deepcopy(planned["plans"][0]["plan"])
    plan["output"]["resolution"] = 1080
    with service.client(key) as c:
        final = _render(c, service, plan, timeout_s=150)["results"][0]
        preview = _render(c, service, {**plan, "quality": "preview"})["results"][0]
        vf = probe(_download(c, final["links"]["video"], tmp_path / "final.mp4"))
        vp = probe(_download(c, preview["links"]["video"], tmp_path / "preview.mp4"))
    assert (vf.width, vf.height) == (1080, 1920) and (vp.width, vp.height) == (540, 960)
    assert (preview["quality"], preview["width"], preview["height"]) == ("preview", 540, 960)
    assert vp.duration_s == pytest.approx(vf.duration_s, abs=0.05) and vp.audio_codec == vf.audio_codec == "aac"
    ratio = preview["render_s"] / final["render_s"]
    print(
        f"\nrender time, {vf.duration_s:.2f} s ad: final 1080x1920 {final['render_s']:.2f} s, "
        f"preview 540x960 {preview['render_s']:.2f} s (ratio {ratio:.2f})"
    )
    assert preview["render_s"] < final["render_s"]


def test_an_edit_can_ask_for_a_preview(service, key, tmp_path):
    req = tiny_edit([2], script=["Fresh juice now."], resolution=720, quality="preview")
    with service.client(key) as c:
        r = c.post("/v1/edits", json=req)
        assert r.status_code == 202, r.text
        job = wait_job(c, r.json()["job_id"], timeout_s=90)
        assert job["state"] == "done", (job, service.logs())
        (res,) = job["results"]
        assert (res["quality"], res["width"], res["height"]) == ("preview", 540, 960)
        info = probe(_download(c, res["links"]["video"], tmp_path / "p.mp4"))
    assert (info.width, info.height) == (540, 960)


def test_an_edit_takes_caption_style_and_cards(service, key):
    """Captions, title and end card given with a new edit reach its plan (what a later render draws)."""
    req = tiny_edit([2], script=["Fresh juice now."], max_duration_s=6.0)
    req["stop_after"] = "plan"
    req["options"]["captions"] = {"style": "karaoke"}
    req["options"]["title_card"] = {"text": "Juicer Cup", "duration_s": 1.0}
    req["options"]["end_card"] = {"duration_s": 2.0, "price": "$29.99", "cta": "Shop now"}
    with service.client(key) as c:
        r = c.post("/v1/edits", json=req)
        assert r.status_code == 202, r.text
        job = wait_job(c, r.json()["job_id"], timeout_s=90)
        assert job["state"] == "done", (job, service.logs())
        bad = dict(req, options=dict(req["options"], captions={"style": "comic-sans"}))
        r = c.post("/v1/edits", json=bad)
        assert r.status_code == 422 and "comic-sans" in r.text
    plan = job["plans"][0]["plan"]
    assert plan["output"]["captions"]["style"] == "karaoke"
    assert plan["title_card"]["text"] == "Juicer Cup"
    assert (plan["end_card"]["price"], plan["end_card"]["cta"]) == ("$29.99", "Shop now")
