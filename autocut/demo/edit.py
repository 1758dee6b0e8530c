"""The demo's one edit: which held-out product and reference ad it uses, and a paragraph on what the
plan did with them (shots by role, script, music), read from the catalog and the world manifest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autocut.errors import ConfigError
from autocut.library.layout import LibraryLayout

__all__ = ["EditChoice", "choose_edit", "summarize_plan"]


@dataclass(frozen=True)
class EditChoice:
    """The held-out product, its reel(s) and the reference ad whose script the edit uses."""

    product: Any  # ProductRecord
    photo_ids: list[int]
    reference: Any  # RefEditRecord
    bgm_mood: str


def choose_edit(library: Path, product_id: str | None) -> EditChoice:
    """A test-split product with an English reference ad (the first one, unless `product_id` is given)."""
    from autocut.library.catalog import Catalog

    with Catalog.open(library, create=False) as cat:
        products = {p.product_id: p for p in cat.products(split="test")}
        if not products:
            raise ConfigError(f"library {library} has no test-split products (build the demo world first)")
        if product_id is not None and product_id not in products:
            raise ConfigError(
                f"{product_id} is not a test-split product; choose one of {', '.join(sorted(products)[:10])} ..."
            )
        ads = [a for a in cat.reference_edits(split="test") if a.language == "en"]
        for pid in [product_id] if product_id else sorted(products):
            mine = sorted((a for a in ads if a.product_id == pid), key=lambda a: a.edit_id)
            if mine:
                ref = mine[0]
                mood = cat.bgm_track(ref.audio_id).mood if ref.audio_id is not None else ""
                photo_ids = sorted({s.photo_id for s in ref.segments})
                return EditChoice(product=products[pid], photo_ids=photo_ids, reference=ref, bgm_mood=mood)
    raise ConfigError(f"no English reference ad for {product_id or 'any test product'} in {library}")


def _shot_at(shots: list[dict], photo_id: int | None, t_s: float) -> dict | None:
    for s in shots:
        if s["photo_id"] == photo_id and s["offset_s"] <= t_s < s["offset_s"] + s["duration_s"]:
            return s
    return None


def summarize_plan(library: Path, plan: dict, choice: EditChoice) -> str:
    """One paragraph: which shots the plan used (roles from the world manifest), the script, the music, and
    (when the server's `auto` chose the planner) why; it reads only what every planner's plan holds."""
    from autocut.library.catalog import Catalog

    man = json.loads(LibraryLayout(library).world_manifest.read_text())
    shots = man["shots"]
    segs = plan["segments"]
    used = []
    for s in segs:
        shot = _shot_at(shots, s.get("photo_id"), s["start_s"] + s["duration_s"] / 2)
        if shot is None:
            used.append("?")
        elif shot["kind"] == "ad":
            used.append(shot["role"])
        else:
            used.append("rival's " + shot["role"])
    ref_roles = [sg.role for sg in choice.reference.segments]
    own = sum(1 for u in used if u != "?" and not u.startswith("rival"))
    same = sum(1 for a, b in zip(used, ref_roles, strict=False) if a == b)
    dur = sum(s["duration_s"] for s in segs)
    bgm = plan.get("bgm")
    if bgm and bgm.get("audio_id") is not None:
        with Catalog.open(library, create=False) as cat:
            track = cat.bgm_track(int(bgm["audio_id"]))
        music = (
            f'background music: excerpt {track.audio_id} of "{track.title}" at {bgm.get("start_s", 0):.0f} s '
            f"(mood {track.mood}; the reference ad's music is {choice.bgm_mood})"
        )
    else:
        music = "no background music"
    spoken = [s["sentence"] for s in segs]
    words = " / ".join(f'"{w}"' for w in spoken)
    fitted = spoken != [sg.sentence.strip() for sg in choice.reference.segments]
    script = "the reference ad's script" + (" as the planner fitted it to the clips" if fitted else "")
    # Any planner's plan: only the fields every plan has, plus the server's note on why `auto` chose it.
    why = (plan.get("notes") or {}).get("planner_choice")
    return (
        f"The {plan.get('planner') or '?'} planner cut {len(segs)} clips ({dur:.1f} s) from the pool: "
        f"{own} of the product's own ad shots and {len(segs) - own} of the look-alike rival's, in the order "
        f"{' -> '.join(used)} (reference ad: {' -> '.join(ref_roles)}; {same} of {len(segs)} positions "
        f"match). The espeak-ng voice-over and subtitles speak {script}, one sentence per clip: {words}. "
        f"{music[0].upper() + music[1:]}." + (f" Why this planner: {why}." if why else "")
    )
