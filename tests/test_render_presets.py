"""Platform presets (autocut.render.presets): what each sets, unknown names, the API/CLI wiring, and burned-in
captions that stay inside the preset's safe area (checked on rendered frames), and a preset render through the
running service (API + worker, real redis-server) whose result carries the self-check."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pysubs2
import pytest
from pydantic import ValidationError

import autocut.render as R
from autocut.cli import main as cli_main
from autocut.errors import ConfigError
from autocut.render import subtitles as subs
from autocut.render.outputs import apply_preset
from autocut.render.presets import PRESETS, get_preset, preset_names
from autocut.types import EditPlan, OutputSpec, PlanSegment, ProductInfo, SubtitleStyle, VoiceSpec
from server.jobspec import build_edit_plan, output_spec, review_result
from server.schemas import EditOptions, EditRequest, PlanOutput, RenderPlan
from test_server_harness import running_service, wait_job

# Shared session fixtures (redis_server, seed_library) of the server tests.
pytest_plugins = ["test_server_harness"]

EXPECTED = {
    "tiktok": ("9:16", 1080, 1920),
    "reels": ("9:16", 1080, 1920),
    "shorts": ("9:16", 1080, 1920),
    "feed-square": ("1:1", 1080, 1080),
    "feed-portrait": ("4:5", 1080, 1350),
    "youtube": ("16:9", 1920, 1080),
}


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def _plan(source: Path, output: OutputSpec, **kw) -> EditPlan:
    return EditPlan(
        product=ProductInfo(name="Juicer Cup"),
        segments=[PlanSegment(source_path=str(source), start_s=0.0, duration_s=2.0, sentence="Fresh juice, anywhere.")],
        voice=VoiceSpec(engine="none"),
        output=output,
        **kw,
    )


# --------------------------------------------------------------------------- the table


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_preset_sets_size_rate_safe_area_and_loudness(name):
    p = get_preset(name)
    o = OutputSpec(preset=name)
    assert (o.aspect, o.width, o.height) == EXPECTED[name] == (p.aspect, p.width, p.height)
    assert o.fps == p.fps == 30.0
    assert (o.safe_area.top_frac, o.safe_area.bottom_frac) == (p.safe.top_frac, p.safe.bottom_frac)
    assert (o.safe_area.left_frac, o.safe_area.right_frac) == (p.safe.left_frac, p.safe.right_frac)
    plan = _plan(Path("x.mp4"), o)
    assert (plan.loudness_lufs, plan.true_peak_db) == (p.loudness_lufs, p.true_peak_db)
    # Explicit values win over the preset (a free size is still possible).
    plan = _plan(Path("x.mp4"), o, loudness_lufs=-16.0)
    assert plan.loudness_lufs == -16.0
    # The plan round-trips through its JSON sidecar unchanged.
    assert EditPlan.model_validate_json(plan.model_dump_json()) == plan


def test_vertical_presets_keep_the_platform_ui_zones_clear():
    # Bottom zones of the short-video apps (caption, sound, CTA) are larger than the feed and YouTube margins.
    for name in ("tiktok", "reels", "shorts"):
        s = PRESETS[name].safe
        assert s.bottom_frac >= 0.2 and s.top_frac >= 0.08 and s.right_frac >= s.left_frac
    assert PRESETS["reels"].safe.bottom_frac == 0.35  # Meta's published 35 %
    assert preset_names() == list(EXPECTED)


def test_unknown_preset_is_a_clear_error_listing_the_known_ones():
    with pytest.raises(ConfigError, match="unknown output preset 'snapchat'; known presets: tiktok, reels"):
        get_preset("snapchat")
    with pytest.raises(ValidationError, match=r"unknown output preset 'snapchat'.*youtube"):
        OutputSpec(preset="snapchat")
    with pytest.raises(ValidationError, match="unknown preset 'snapchat'; known presets: tiktok"):
        EditOptions(preset="snapchat")
    with pytest.raises(ValidationError, match="conflicts with preset 'reels'"):
        EditOptions(preset="reels", aspect="16:9")
    plan = _plan(Path("x.mp4"), OutputSpec())
    with pytest.raises(ConfigError, match="feed-square"):
        apply_preset(plan, "instagram")


def test_no_preset_is_the_old_free_output():
    o = OutputSpec()
    assert o.preset is None and (o.width, o.height, o.fps) == (1080, 1920, 30.0)
    assert o.safe_area.bottom_frac == 0.0
    assert OutputSpec.for_aspect("4:5", short_side=720).height == 900  # 4:5 also without a preset
    assert "preset" not in EditOptions().model_dump(mode="json")  # stored specs read back unchanged


def test_apply_preset_keeps_the_edit():
    plan = _plan(Path("x.mp4"), OutputSpec(width=360, height=640, transition="fade", video_crf=20))
    used = apply_preset(plan, "youtube")
    assert (used.output.width, used.output.height, used.output.aspect, used.output.preset) == (
        1920,
        1080,
        "16:9",
        "youtube",
    )
    assert used.output.transition == "fade" and used.output.video_crf == 20
    assert used.segments == plan.segments and used.loudness_lufs == PRESETS["youtube"].loudness_lufs


# --------------------------------------------------------------------------- API wiring


def test_api_options_build_the_preset_output_and_loudness():
    req = EditRequest.model_validate(
        {
            "product": {"name": "x"},
            "clips": [{"photo_id": 1}],
            "options": {"preset": "feed-portrait", "resolution": 720},
        }
    )
    o = output_spec(req.options)
    assert (o.preset, o.aspect, o.width, o.height, o.fps) == ("feed-portrait", "4:5", 720, 900, 30.0)
    assert o.safe_area.left_frac == PRESETS["feed-portrait"].safe.left_frac
    # A plan sent back to POST /v1/renders: its output preset reaches the renderer's plan.
    rp = RenderPlan.model_validate(
        {
            "product": {"name": "x"},
            "output": {"preset": "tiktok", "resolution": 540},
            "segments": [{"photo_id": 1, "start_s": 0, "duration_s": 2, "line": "Hi."}],
        }
    )
    plan = build_edit_plan(rp, [1], ["/lib/a.mp4"], None, "p1")
    assert (plan.output.preset, plan.output.width, plan.output.height) == ("tiktok", 540, 960)
    assert plan.loudness_lufs == PRESETS["tiktok"].loudness_lufs
    # ... and a planned edit shown for review keeps it.
    review = review_result(plan, req, 1)
    assert review["plan"]["output"]["preset"] == "tiktok"
    assert PlanOutput.model_validate(review["plan"]["output"]).aspect == "9:16"


def test_cli_render_refuses_an_unknown_preset(tmp_path, capsys):
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(_plan(tmp_path / "x.mp4", OutputSpec()).model_dump_json(), encoding="utf-8")
    rc = cli_main(["render", str(plan_path), "-o", str(tmp_path / "o.mp4"), "--preset", "vine"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown output preset 'vine'" in err and "tiktok" in err


# --------------------------------------------------------------------------- captions inside the safe area


@pytest.mark.parametrize("name", list(EXPECTED))
def test_caption_box_lies_inside_the_safe_area(name, tmp_path):
    o = OutputSpec(preset=name)
    style = SubtitleStyle()
    box = subs.caption_box(style, o.width, o.height, o.safe_area)
    assert box.margin_bottom_px >= o.safe_area.bottom_frac * o.height
    assert box.margin_left_px >= int(o.safe_area.left_frac * o.width)
    assert box.margin_right_px >= int(o.safe_area.right_frac * o.width)
    # A full 13-unit line fits between the side margins, so captions do not wrap into the UI zones.
    size = subs.font_size_px(style, o.width, o.height, o.safe_area)
    assert size * subs.MAX_SEGMENT_UNITS <= o.width - box.margin_left_px - box.margin_right_px
    cue = subs.Cue(0.0, 1.0, "Fresh juice")
    ass = subs.write_ass([cue], tmp_path / "a.ass", style=style, width=o.width, height=o.height, safe=o.safe_area)
    st = pysubs2.load(str(ass)).styles["Default"]
    assert (st.marginv, st.marginl, st.marginr) == (box.margin_bottom_px, box.margin_left_px, box.margin_right_px)


def test_default_captions_unchanged_without_a_preset():
    box = subs.caption_box(SubtitleStyle(), 1080, 1920)
    assert (box.margin_bottom_px, box.margin_left_px, box.margin_right_px) == (230, 43, 43)
    assert subs.font_size_px(SubtitleStyle(), 1080, 1920) == int(0.9 * 1080 / subs.MAX_SEGMENT_UNITS)


def _caption_rows(path: Path, w: int, h: int, at_s: float) -> np.ndarray:
    """Rows of the frame at `at_s` holding bright (caption) pixels; the source is dark grey."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-ss", f"{at_s}", "-i", str(path), "-frames:v", "1", "-f", "rawvideo",
         "-pix_fmt", "gray", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    frame = np.frombuffer(raw, np.uint8).reshape(h, w)
    return np.flatnonzero((frame > 200).sum(axis=1) >= 2)


def test_rendered_captions_sit_above_the_reels_bottom_zone(tmp_path):
    src = tmp_path / "grey.mp4"
    _ffmpeg("-f", "lavfi", "-i", "color=c=0x505050:size=320x240:rate=30", "-t", "3", "-c:v", "libx264",
            "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(src))  # fmt: skip
    w, h = 270, 480
    rows = {}
    for name, output in (
        ("free", OutputSpec(width=w, height=h)),
        ("reels", OutputSpec(preset="reels", width=w, height=h)),
    ):
        out = tmp_path / f"{name}.mp4"
        res = R.render(_plan(src, output), out, sidecars=False)
        # A still grey picture: frozen (a warning), never a failure.
        assert res.selfcheck is not None and res.selfcheck.status.value in ("ok", "warn")
        rows[name] = _caption_rows(out, w, h, 1.0)
        assert rows[name].size, f"no caption pixels in the {name} render"
    bottom_zone = h * (1 - PRESETS["reels"].safe.bottom_frac)
    assert rows["reels"].max() < bottom_zone  # inside the safe area
    assert rows["free"].max() > bottom_zone  # where it was without the preset (the default 12 % margin)
    assert rows["reels"].min() > h * PRESETS["reels"].safe.top_frac


# --------------------------------------------------------------------------- through the service


@pytest.fixture(scope="module")
def service(tmp_path_factory, redis_server, seed_library):
    with running_service(tmp_path_factory.mktemp("presets"), redis_server, seed_library, workers=1) as svc:
        yield svc


def test_service_renders_a_preset_and_reports_its_selfcheck(service, tmp_path):
    """POST /v1/renders with `output.preset`: the variant is rendered for the preset (its frame rate, safe
    area and loudness target in the plan used) and its result carries the self-check; an unknown preset is 422."""
    key = service.new_key("presets")
    body = {
        "product": {"name": "Juicer Cup"},
        "voice": {"engine": "espeak"},
        "output": {"preset": "tiktok", "resolution": 144},
        "music": {"audio_id": 1},
        "segments": [
            {"photo_id": 1, "start_s": 0.0, "duration_s": 2.5, "line": "Fresh juice now."},
            {"photo_id": 2, "start_s": 0.5, "duration_s": 2.5, "line": "Take it anywhere."},
        ],
    }
    with service.client(key) as c:
        r = c.post("/v1/renders", json={**body, "output": {"preset": "vine"}})
        assert r.status_code == 422, r.text
        msg = r.json()["error"]["message"]
        assert "unknown preset 'vine'" in msg and "feed-portrait" in msg
        r = c.post("/v1/renders", json=body)
        assert r.status_code == 202, r.text
        job = wait_job(c, r.json()["job_id"], timeout_s=90)
        assert job["state"] == "done", (job, service.logs())
        (res,) = job["results"]
        assert (res["width"], res["height"], res["preset"]) == (144, 256, "tiktok")
        check = res["selfcheck"]
        assert check["status"] in ("ok", "warn") and not check["failures"], check
        assert {x["name"] for x in check["checks"]} >= {"segments", "loudness", "narration_silence", "black"}
        used = EditPlan.model_validate(c.get(res["links"]["plan"]).json())
    assert used.output.preset == "tiktok" and used.output.fps == PRESETS["tiktok"].fps
    assert used.output.safe_area.bottom_frac == PRESETS["tiktok"].safe.bottom_frac
    assert used.loudness_lufs == PRESETS["tiktok"].loudness_lufs
