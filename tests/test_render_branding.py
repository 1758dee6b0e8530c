"""Branding in the one render pass: logo watermark, title card and end card, checked on decoded frames; bad
branding input gets an error naming the plan field."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pydantic
import pytest
from PIL import Image

import autocut.render as R
from autocut.errors import PlanError
from autocut.library.media import probe
from autocut.types import EditPlan, EndCard, OutputSpec, PlanSegment, ProductInfo, TitleCard, VoiceSpec, Watermark
from tests.media_factory import ffmpeg

W, H = 360, 640
SOURCE_RGB = (32, 64, 192)
LOGO_RGB = (230, 20, 20)
PRODUCT_RGB = (20, 200, 40)
CARD_BG = "#E0A030"


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("branding")
    src = d / "blue.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "color=c=0x2040C0:s=320x240:r=25:d=6", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(src)
    )
    logo = d / "logo.png"
    ffmpeg("-f", "lavfi", "-i", "color=c=0xE61414:s=200x100", "-frames:v", "1", str(logo))
    product = d / "product.jpg"
    ffmpeg("-f", "lavfi", "-i", "color=c=0x14C828:s=300x300", "-frames:v", "1", str(product))
    notes = d / "notes.png"
    notes.write_text("not an image", encoding="utf-8")
    return {"src": src, "logo": logo, "product": product, "notes": notes}


def _plan(media: dict[str, Path], **kw: object) -> EditPlan:
    return EditPlan(
        product=ProductInfo(name="Juicer Cup", image_path=str(media["product"])),
        segments=[
            PlanSegment(source_path=str(media["src"]), start_s=0.0, duration_s=2.5, sentence="Fresh juice anywhere."),
            PlanSegment(source_path=str(media["src"]), start_s=3.0, duration_s=2.5, sentence="Rinse and done."),
        ],
        voice=VoiceSpec(),
        output=OutputSpec(width=W, height=H),
        **kw,  # type: ignore[arg-type]
    )


def _frame(video: Path, t_s: float, out: Path) -> np.ndarray:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-ss", f"{t_s:.3f}", "-i", str(video)]
        + ["-frames:v", "1", "-pix_fmt", "rgb24", str(out)],
        check=True,
    )
    return np.asarray(Image.open(out).convert("RGB")).astype(int)


def _close(px: np.ndarray, rgb: tuple[int, int, int], tol: int = 40) -> bool:
    return bool(np.all(np.abs(px - np.array(rgb)) <= tol))


def test_defaults_add_no_branding(media, tmp_path):
    plan = _plan(media)
    assert (plan.watermark, plan.title_card, plan.end_card) == (None, None, None)
    p = R.prepare(plan, work_dir=tmp_path)
    assert p.branding is None
    graph = R.build_video_filters(p, [0, 1])
    assert not any("overlay" in c or "cards.ass" in c or "endcard" in c for c in graph)


def test_watermark_title_and_end_card_in_one_pass(media, tmp_path):
    plan = _plan(
        media,
        watermark=Watermark(path=str(media["logo"]), corner="top-right", width_frac=0.25, opacity=1.0),
        title_card=TitleCard(subtitle="FreshCo", duration_s=1.5),
        end_card=EndCard(duration_s=2.0, price="$29.99", cta="Shop now", background_colour=CARD_BG),
    )
    assert plan.duration_s == pytest.approx(7.0)
    (tmp_path / "prep").mkdir()
    p = R.prepare(plan, work_dir=tmp_path / "prep")
    cmd = R.build_render_command(p, tmp_path / "x.mp4", None)
    # One ffmpeg pass: the logo and the product image are inputs of the one filtergraph.
    assert cmd.args.count("-filter_complex") == 1
    assert str(media["logo"]) in cmd.args and str(media["product"]) in cmd.args

    res = R.render(plan, tmp_path / "b.mp4", threads=2, sidecars=False)
    assert res.duration_s == pytest.approx(7.0, abs=0.04)
    assert probe(res.output_path).duration_s == pytest.approx(7.0, abs=0.1)
    assert res.selfcheck is not None  # a failed self-check raises
    wm = p.branding.watermark  # type: ignore[union-attr]
    assert wm is not None and wm.x_px + wm.width_px <= W and wm.x_px > W // 2 and wm.y_px < H // 4

    # Mid-edit: the logo in its corner, the footage elsewhere, no title any more.
    f = _frame(res.output_path, 3.0, tmp_path / "mid.png")
    assert _close(f[wm.y_px + wm.height_px // 2, wm.x_px + wm.width_px // 2], LOGO_RGB)
    assert _close(f[H // 2, W // 4], SOURCE_RGB)
    title_px = f[int(H * 0.09), W // 2]
    assert _close(title_px, SOURCE_RGB)

    # Opening: the title box darkens the footage near the top.
    f = _frame(res.output_path, 0.7, tmp_path / "title.png")
    band = f[int(H * 0.04) : int(H * 0.16), W // 8 : W - W // 8]
    assert (band.sum(axis=2) < sum(SOURCE_RGB) * 0.75).mean() > 0.1

    # End card: background colour, the product image in the upper half, the logo still in its corner.
    f = _frame(res.output_path, 6.2, tmp_path / "end.png")
    x, y, bw, bh = p.branding.end_card.image_box_px  # type: ignore[union-attr]
    assert _close(f[y + bh // 2, x + bw // 2], PRODUCT_RGB)
    bg = tuple(int(CARD_BG[i : i + 2], 16) for i in (1, 3, 5))
    assert _close(f[H - 10, 10], bg)  # type: ignore[arg-type]
    assert _close(f[wm.y_px + wm.height_px // 2, wm.x_px + wm.width_px // 2], LOGO_RGB)
    # The card's text (name, price, CTA) below the image: pixels far from the background there.
    text = f[y + bh : H - int(H * 0.05), W // 4 : 3 * W // 4]
    assert (np.abs(text - np.array(bg)).sum(axis=2) > 150).mean() > 0.003


def test_watermark_opacity_blends_with_the_footage(media, tmp_path):
    plan = _plan(media, watermark=Watermark(path=str(media["logo"]), corner="bottom-left", opacity=0.5))
    res = R.render(plan, tmp_path / "w.mp4", threads=2, sidecars=False, selfcheck=False)
    (tmp_path / "prep").mkdir()
    wm = R.prepare(plan, work_dir=tmp_path / "prep").branding.watermark  # type: ignore[union-attr]
    assert wm is not None and wm.x_px < W // 4 and wm.y_px > H // 2
    px = _frame(res.output_path, 1.0, tmp_path / "f.png")[wm.y_px + wm.height_px // 2, wm.x_px + wm.width_px // 2]
    half = (np.array(LOGO_RGB) + np.array(SOURCE_RGB)) / 2
    assert np.all(np.abs(px - half) < 40), px


def test_missing_logo_file_names_the_field(media, tmp_path):
    plan = _plan(media, watermark=Watermark(path=str(tmp_path / "nope.png")))
    with pytest.raises(PlanError, match=r"watermark\.path: image file .*nope\.png does not exist"):
        R.prepare(plan, work_dir=tmp_path)


def test_logo_that_is_not_an_image_names_the_field(media, tmp_path):
    plan = _plan(media, watermark=Watermark(path=str(media["notes"])))
    with pytest.raises(PlanError, match=r"watermark\.path: .*notes\.png is not an image"):
        R.prepare(plan, work_dir=tmp_path)
    plan = _plan(media, end_card=EndCard(image_path=str(media["src"])))  # a video is not an image either
    with pytest.raises(PlanError, match=r"end_card\.image_path: .*blue\.mp4 is not an image"):
        R.prepare(plan, work_dir=tmp_path)


@pytest.mark.parametrize(
    ("field", "value"),
    [("end_card", {"duration_s": -1.0}), ("title_card", {"duration_s": -0.5}), ("end_card", {"duration_s": 0})],
)
def test_negative_or_zero_card_durations_name_the_field(media, field, value):
    data = _plan(media).model_dump()
    data[field] = value
    with pytest.raises(pydantic.ValidationError) as exc:
        EditPlan.model_validate(data)
    assert f"{field}.duration_s" in str(exc.value)


def test_title_longer_than_the_edit_names_the_field(media, tmp_path):
    plan = _plan(media, title_card=TitleCard(duration_s=9.0))
    with pytest.raises(PlanError, match=r"title_card\.duration_s: 9\.00 s is longer"):
        R.prepare(plan, work_dir=tmp_path)


def test_unknown_corner_and_bad_colour_name_the_field(media):
    data = _plan(media).model_dump()
    data["watermark"] = {"path": str(media["logo"]), "corner": "centre"}
    with pytest.raises(pydantic.ValidationError, match=r"watermark\.corner"):
        EditPlan.model_validate(data)
    data = _plan(media).model_dump()
    data["end_card"] = {"background_colour": "red"}
    with pytest.raises(pydantic.ValidationError, match=r"end_card\.background_colour"):
        EditPlan.model_validate(data)


def test_api_render_plan_carries_captions_and_cards_both_ways(media):
    from server.jobspec import build_edit_plan, review_result
    from server.schemas import EditRequest, RenderPlan

    body = {
        "product": {"name": "Juicer Cup"},
        "output": {"aspect": "9:16", "resolution": 360, "captions": {"style": "karaoke", "karaoke": "character"}},
        "segments": [{"photo_id": 1, "start_s": 0.0, "duration_s": 2.5, "line": "Fresh juice."}],
        "title_card": {"subtitle": "FreshCo", "duration_s": 1.5},
        "end_card": {"duration_s": 2.0, "price": "$29.99", "cta": "Shop now"},
    }
    rp = RenderPlan.model_validate(body)
    plan = build_edit_plan(rp, [1], [str(media["src"])], None, "p1")
    assert plan.subtitles.preset == "karaoke" and plan.subtitles.karaoke == "character"
    assert plan.title_card is not None and plan.title_card.subtitle == "FreshCo"
    assert plan.end_card is not None and plan.end_card.price == "$29.99" and plan.end_card.image_path is None
    back = review_result(plan, EditRequest.model_validate({"product": {"name": "x"}, "clips": [{"photo_id": 1}]}), 0)
    again = build_edit_plan(RenderPlan.model_validate(back["plan"]), [1], [str(media["src"])], None, "p1")
    assert again.subtitles == plan.subtitles
    assert (again.title_card, again.end_card) == (plan.title_card, plan.end_card)
    # A plan without them stores none of the new keys (stored specs read back unchanged).
    plain = RenderPlan.model_validate(
        {k: v for k, v in body.items() if k not in ("title_card", "end_card")}
        | {"output": {"aspect": "9:16", "resolution": 360}}
    )
    assert not {"title_card", "end_card"} & set(plain.model_dump())
    assert "captions" not in plain.model_dump()["output"]
    with pytest.raises(pydantic.ValidationError, match="unknown caption style 'neon'"):
        RenderPlan.model_validate({**body, "output": {"captions": {"style": "neon"}}})
