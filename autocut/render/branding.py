"""Branding: a logo watermark, a title over the opening seconds and an end card, drawn in the render's one
ffmpeg pass (no second encode).

All three are plan fields (`EditPlan.watermark`, `title_card`, `end_card`; `autocut.types`), off by default.
How each is drawn, as filtergraph pieces (`branding_input_args`, `end_card_chains`, `watermark_chains`) that
`autocut.render.filtergraph` splices into the main pass:

* end card: a `color` source of the card's length with the product image overlaid (drifting up a few
  pixels, so the still card is not a frozen picture), concatenated after the last segment; its text (name,
  price, call to action) is an ASS layer;
* title card: an ASS layer over the opening seconds (a box near the top of the safe area, faded in and out);
* the two text layers are one ASS file (`cards.ass`) burned in by a `subtitles` filter before the captions;
* watermark: the logo image as one more input, scaled, its alpha multiplied by the opacity, overlaid last
  in a corner of the safe area.

`prepare_branding` checks the plan's branding (files exist and are images, cards fit) and writes the card
text file; every problem names the plan field.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from autocut.errors import PlanError
from autocut.files import atomic_path
from autocut.render import subtitles as subs
from autocut.types import EditPlan, SafeArea

__all__ = [
    "CARDS_ASS_NAME",
    "BrandingInputs",
    "PreparedBranding",
    "branding_input_args",
    "end_card_chains",
    "end_card_frames",
    "prepare_branding",
    "watermark_chains",
]

CARDS_ASS_NAME = "cards.ass"
# Codecs a logo or product image may be in. Images are read as local files by the image2 demuxer only, the
# name taken literally (no "%d" sequence patterns), in the probe and in the render alike.
_IMAGE_CODECS = ("png", "mjpeg", "webp", "bmp", "tiff", "gif")
_IMAGE_INPUT_GUARD = ["-protocol_whitelist", "file", "-f", "image2", "-pattern_type", "none"]
# The end card's contents drift up by this fraction of the height over the card (a still picture would read
# as frozen to the self-check's freeze detector and looks dead on screen).
_DRIFT_FRAC = 0.012
# Fades of the title and the end card's text, in ms.
_TITLE_FADE_MS = (200, 300)
_CARD_FADE_IN_MS = 300


@dataclass(frozen=True)
class _Image:
    path: Path
    width: int
    height: int


@dataclass(frozen=True)
class PreparedWatermark:
    image: _Image
    x_px: int  # top-left corner on the output frame
    y_px: int
    width_px: int
    height_px: int
    opacity: float


@dataclass(frozen=True)
class PreparedEndCard:
    n_frames: int
    start_s: float  # output time the card starts (the segments' end)
    image: _Image | None
    image_box_px: tuple[int, int, int, int]  # (x, y, w, h) the image is fitted into, centred
    colour: str  # background, ffmpeg 0xRRGGBB


@dataclass(frozen=True)
class PreparedBranding:
    """Everything the filtergraph needs to draw the plan's branding."""

    watermark: PreparedWatermark | None
    end_card: PreparedEndCard | None
    cards_ass: Path | None  # title and end card text (relative to the work dir when drawn)

    @property
    def end_card_frames(self) -> int:
        return self.end_card.n_frames if self.end_card is not None else 0


@dataclass(frozen=True)
class BrandingInputs:
    """Input indices of the branding images in the main pass (None: not used)."""

    watermark: int | None
    end_card_image: int | None


# --------------------------------------------------------------------------- checks


def _resolve(path: str, library_root: Path | None) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute() and library_root is not None:
        p = Path(library_root) / p
    return p.resolve()


def _probe_image(field: str, path: Path) -> _Image:
    """The image at `path` (size from ffprobe); PlanError naming `field` if it is missing or not an image."""
    if not path.is_file():
        raise PlanError(f"{field}: image file {path} does not exist")
    try:
        res = subprocess.run(
            ["ffprobe", "-v", "error", *_IMAGE_INPUT_GUARD, "-select_streams", "v:0"]
            + ["-show_entries", "stream=codec_name,width,height", "-of", "json", "-i", os.path.abspath(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise PlanError(f"{field}: cannot probe {path} ({exc})") from exc
    info = json.loads(res.stdout or "{}") if res.returncode == 0 else {}
    stream = (info.get("streams") or [{}])[0]
    codec = stream.get("codec_name", "")
    w, h = int(stream.get("width") or 0), int(stream.get("height") or 0)
    if codec not in _IMAGE_CODECS or w <= 0 or h <= 0:
        why = (res.stderr.strip().splitlines() or [f"codec {codec or 'unknown'}"])[-1]
        raise PlanError(f"{field}: {path} is not an image (PNG, JPEG, WebP, BMP, TIFF or GIF; {why})")
    return _Image(path, w, h)


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def _safe_rect(safe: SafeArea, width: int, height: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the safe area in pixels."""
    return (
        int(safe.left_frac * width),
        int(safe.top_frac * height),
        width - int(safe.right_frac * width),
        height - int(safe.bottom_frac * height),
    )


def _watermark(plan: EditPlan, library_root: Path | None) -> PreparedWatermark | None:
    wm = plan.watermark
    if wm is None:
        return None
    image = _probe_image("watermark.path", _resolve(wm.path, library_root))
    o = plan.output
    w = _even(wm.width_frac * o.width)
    h = _even(w * image.height / image.width)
    left, top, right, bottom = _safe_rect(o.safe_area, o.width, o.height)
    m = int(wm.margin_frac * min(o.width, o.height))
    x = left + m if wm.corner.endswith("left") else right - m - w
    y = top + m if wm.corner.startswith("top") else bottom - m - h
    return PreparedWatermark(image, max(0, x), max(0, y), w, h, wm.opacity)


# --------------------------------------------------------------------------- the card text (ASS)


def _ass_rgb(rgb: str, alpha: float = 0.0) -> str:
    """'#RRGGBB' (+ transparency 0..1) -> ASS '&HAABBGGRR'."""
    r, g, b = rgb[1:3], rgb[3:5], rgb[5:7]
    return f"&H{int(round(alpha * 255)):02X}{b}{g}{r}".upper()


def _cards_ass(plan: EditPlan, end_start_s: float, image_bottom_px: int, path: Path) -> Path:
    """The title card and end card text as one ASS file."""
    import pysubs2

    o = plan.output
    W, H = o.width, o.height
    base = min(W, H)
    left, top, right, bottom = _safe_rect(o.safe_area, W, H)
    font = plan.subtitles.font
    f = pysubs2.SSAFile()
    f.info.update({"PlayResX": str(W), "PlayResY": str(H), "WrapStyle": "0", "ScaledBorderAndShadow": "yes"})

    def colour(s: str) -> pysubs2.Color:
        return subs._ass_colour(s)

    def style(size: float, fg: str, *, box: str | None = None, pad: float = 0.0) -> pysubs2.SSAStyle:
        st = pysubs2.SSAStyle(
            fontname=font,
            fontsize=int(size),
            primarycolor=colour(fg),
            secondarycolor=colour(fg),
            outlinecolor=colour("&H00000000"),
            backcolor=colour("&H00000000"),
            bold=True,
            outline=0.0,
            shadow=0.0,
            alignment=pysubs2.Alignment.MIDDLE_CENTER,
            marginl=left + int(0.04 * W),
            marginr=W - right + int(0.04 * W),
        )
        if box is not None:
            st.borderstyle = 3
            st.outline = pad
            st.outlinecolor = st.backcolor = colour(box)
        return st

    def ms(t: float) -> int:
        return int(round(t * 1000))

    tc = plan.title_card
    if tc is not None:
        box = _ass_rgb(tc.box_colour, 1 - tc.box_opacity)
        st = style(0.09 * base, _ass_rgb(tc.text_colour), box=box, pad=0.02 * base)
        st.alignment = pysubs2.Alignment.TOP_CENTER
        st.marginv = top + int(0.05 * H)
        f.styles["Title"] = st
        text = subs.cue_text(tc.text if tc.text is not None else plan.product.name)
        if tc.subtitle.strip():
            text += f"\\N{{\\fs{int(0.055 * base)}\\b0}}{subs.cue_text(tc.subtitle)}"
        fade = f"{{\\fad({_TITLE_FADE_MS[0]},{_TITLE_FADE_MS[1]})}}"
        f.append(pysubs2.SSAEvent(start=0, end=ms(tc.duration_s), text=fade + text, style="Title"))

    ec = plan.end_card
    if ec is not None:
        t0, t1 = end_start_s, end_start_s + ec.duration_s
        cx = (left + right) // 2
        drift = int(_DRIFT_FRAC * H)
        span = bottom - image_bottom_px
        lines: list[tuple[str, str, float, str, str | None]] = [
            ("Name", ec.name if ec.name is not None else plan.product.name, 0.07 * base, ec.text_colour, None),
            ("Price", ec.price, 0.085 * base, ec.accent_colour, None),
            ("Cta", ec.cta, 0.055 * base, ec.background_colour, ec.accent_colour),
        ]
        lines = [x for x in lines if x[1].strip()]
        for k, (name, text, size, fg, box_rgb) in enumerate(lines):
            f.styles[name] = style(size, _ass_rgb(fg), box=_ass_rgb(box_rgb) if box_rgb else None, pad=0.02 * base)
            y = image_bottom_px + int(span * (k + 0.6) / (len(lines) + 0.4))
            tags = f"{{\\fad({_CARD_FADE_IN_MS},0)\\move({cx},{y},{cx},{y - drift})}}"
            f.append(pysubs2.SSAEvent(start=ms(t0), end=ms(t1), text=tags + subs.cue_text(text), style=name))
    with atomic_path(path) as tmp:
        f.save(str(tmp), format_="ass", encoding="utf-8")
    return path


def _card_texts(plan: EditPlan) -> list[str]:
    out: list[str] = []
    if plan.title_card is not None:
        out += [plan.title_card.text or plan.product.name, plan.title_card.subtitle]
    if plan.end_card is not None:
        ec = plan.end_card
        out += [ec.name or plan.product.name, ec.price, ec.cta]
    return out


# --------------------------------------------------------------------------- preparation


def end_card_frames(plan: EditPlan, fps: Fraction) -> int:
    """Output frames of the plan's end card (0: none)."""
    if plan.end_card is None:
        return 0
    return max(1, int(round(plan.end_card.duration_s * fps)))


def prepare_branding(
    plan: EditPlan,
    *,
    work_dir: Path,
    library_root: Path | None,
    fps: Fraction,
    segments_end_frame: int,
    problems: list[str],
) -> PreparedBranding | None:
    """Check the plan's branding and write its card text; None when the plan has none. Problems (each naming
    its plan field) are appended to `problems`; the caller reports them all together."""
    if plan.watermark is None and plan.title_card is None and plan.end_card is None:
        return None
    n_before = len(problems)
    watermark = None
    try:
        watermark = _watermark(plan, library_root)
    except PlanError as exc:
        problems.append(str(exc))
    segments_s = float(segments_end_frame / fps)
    if plan.title_card is not None and plan.title_card.duration_s > segments_s + 1e-6:
        problems.append(
            f"title_card.duration_s: {plan.title_card.duration_s:.2f} s is longer than the edit's segments "
            f"({segments_s:.2f} s)"
        )
    o = plan.output
    end_card = None
    image_bottom = 0
    if plan.end_card is not None:
        ec = plan.end_card
        field, path = ("end_card.image_path", ec.image_path) if ec.image_path else ("product.image_path", None)
        if path is None:
            path = plan.product.image_path
        image = None
        if path:
            try:
                image = _probe_image(field, _resolve(path, library_root))
            except PlanError as exc:
                problems.append(str(exc))
        left, top, right, bottom = _safe_rect(o.safe_area, o.width, o.height)
        uh = bottom - top
        # The upper part of the safe area holds the image (if any); the text lines share the rest.
        box_h = int(0.45 * uh) if image is not None else 0
        box = (left + int(0.1 * (right - left)), top + int(0.1 * uh), int(0.8 * (right - left)), box_h)
        image_bottom = box[1] + box_h if image is not None else top + int(0.15 * uh)
        end_card = PreparedEndCard(
            n_frames=end_card_frames(plan, fps),
            start_s=segments_s,
            image=image,
            image_box_px=box,
            colour="0x" + ec.background_colour[1:].upper(),
        )
    if plan.subtitles.font and (plan.title_card is not None or plan.end_card is not None):
        try:
            subs.check_font_coverage(plan.subtitles.font, [t for t in _card_texts(plan) if t])
        except PlanError as exc:
            problems.append(f"title_card/end_card: {exc}")
    if len(problems) > n_before:
        return None
    cards = None
    if plan.title_card is not None or plan.end_card is not None:
        cards = _cards_ass(plan, segments_s, image_bottom, Path(work_dir) / CARDS_ASS_NAME)
    return PreparedBranding(watermark=watermark, end_card=end_card, cards_ass=cards)


# --------------------------------------------------------------------------- filtergraph pieces


def branding_input_args(b: PreparedBranding, first_index: int) -> tuple[list[str], BrandingInputs]:
    """Input args for the watermark and end card images, numbered from `first_index`."""
    args: list[str] = []
    idx = first_index
    wm = img = None
    if b.watermark is not None:
        args += [*_IMAGE_INPUT_GUARD, "-i", str(b.watermark.image.path)]
        wm = idx
        idx += 1
    if b.end_card is not None and b.end_card.image is not None:
        args += [*_IMAGE_INPUT_GUARD, "-i", str(b.end_card.image.path)]
        img = idx
    return args, BrandingInputs(wm, img)


def end_card_chains(
    b: PreparedBranding, inputs: BrandingInputs, *, width: int, height: int, fps: Fraction
) -> list[str]:
    """Chains producing [endcard]: exactly the card's frames, in the segments' format, for the concat."""
    ec = b.end_card
    assert ec is not None
    rate = f"{fps.numerator}/{fps.denominator}"
    dur = f"{float((ec.n_frames + 1) / fps):.6f}"
    bg = f"color=c={ec.colour}:s={width}x{height}:r={rate}:d={dur},format=yuv420p,setsar=1"
    tail = f"trim=end_frame={ec.n_frames},setpts=PTS-STARTPTS"
    if ec.image is None or inputs.end_card_image is None:
        return [f"{bg},{tail}[endcard]"]
    x, y, bw, bh = ec.image_box_px
    # Fit inside the box, keeping the aspect; centred; drifting up by _DRIFT_FRAC of the height.
    scale = min(bw / ec.image.width, bh / ec.image.height)
    iw, ih = _even(ec.image.width * scale), _even(ec.image.height * scale)
    ox, oy = x + (bw - iw) // 2, y + (bh - ih) // 2
    speed = _DRIFT_FRAC * height / max(float(ec.n_frames / fps), 1e-3)
    return [
        # One decoded frame, held by the overlay (eof_action=repeat): no per-frame image decoding.
        f"[{inputs.end_card_image}:v:0]scale={iw}:{ih}:flags=bicubic,format=rgba[endimg]",
        f"{bg}[endbg]",
        f"[endbg][endimg]overlay=x={ox}:y={oy}-t*{speed:.3f}:eof_action=repeat,{tail}[endcard]",
    ]


def watermark_chains(b: PreparedBranding, inputs: BrandingInputs, last: str, out: str) -> list[str]:
    """The logo, scaled and faded to its opacity, overlaid on [last] as [out]."""
    wm = b.watermark
    assert wm is not None and inputs.watermark is not None
    return [
        f"[{inputs.watermark}:v:0]scale={wm.width_px}:{wm.height_px}:flags=bicubic,format=rgba,"
        f"colorchannelmixer=aa={wm.opacity:.3f}[wmlogo]",
        # overlay's default yuv420 blending: the frames stay yuv420p (its format=auto converted every frame,
        # measured at 3.5x the time of the whole filter pass on 1080x1920 test frames).
        f"[{last}][wmlogo]overlay=x={wm.x_px}:y={wm.y_px}:eof_action=repeat[{out}]",
    ]
