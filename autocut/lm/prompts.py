"""The SFT prompt formats, shared by the corpus builder (training) and the token planner (inference).

A model answers well only on prompts laid out exactly as the ones it was trained on, so there is one
definition of each piece (AutoCut 7.6; docs/method.md, "Corpus format"):

- `INSTRUCTIONS`: the task instruction per task and language (our own wording);
- `product_header`: 【商品】 name, 【品牌】 brand, 【卖点】 selling points (the public data's keys);
- `clip_listing`: candidates as ``k)<|clip_start|>...<|clip_end|>`` lines, 1-based;
- `durations_line`: 【片段时长】 per-clip durations (script task: lines must fit them);
- `task_prompt`: the whole human turn, in the order instruction, header, script, durations, clips.

The human turn is then rendered with the backbone's chat template by `autocut.lm.chat.render_prompt`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from autocut.library.catalog import ProductRecord

__all__ = [
    "CLIPS_KEY",
    "DURATIONS_KEY",
    "INSTRUCTIONS",
    "SCRIPT_KEY",
    "ProductView",
    "clip_listing",
    "durations_line",
    "product_header",
    "product_view",
    "task_prompt",
]


@dataclass(frozen=True)
class ProductView:
    """The product fields a prompt shows, already in the prompt's language."""

    name: str
    brand: str
    selling_points: list[str]


def product_view(p: ProductRecord, language: str) -> ProductView:
    """A catalog product seen in `language` (its localised names when it has them)."""
    loc = (p.language_names or {}).get(language, {}) if isinstance(p.language_names, dict) else {}
    return ProductView(
        name=loc.get("name") or p.name,
        brand=loc.get("brand") or p.brand,
        selling_points=list(loc.get("selling_points") or p.selling_points),
    )


def product_header(p: ProductView, language: str) -> str:
    """The three product lines every prompt starts its body with (【商品】【品牌】【卖点】)."""
    none = "无" if language == "zh" else "none"
    sep = "，" if language == "zh" else ", "
    return (
        f"【商品】：{p.name or none}\n【品牌】：{p.brand or none}\n"
        f"【卖点】：{sep.join(p.selling_points) if p.selling_points else none}"
    )


# Instruction lines (our own wording; section keys follow the public data: 【广告台词如下】【视频片段如下】).
INSTRUCTIONS: dict[str, dict[str, str]] = {
    "select": {
        "en": "You are a professional video editor. From the pool below, select the clips that belong to this "
        "ad's script (about half of the pool is unrelated). Answer with their numbers in ascending order, "
        "comma-separated, one clip per script line.\nScript lines: {n}",
        "zh": "你是专业的视频剪辑师。请根据商品信息和广告台词，从下面的素材池中选出属于这条广告的视频片段"
        "（素材池中约一半片段无关），按编号从小到大输出，用逗号分隔，每句台词对应一个片段。\n台词句数：{n}",
    },
    "sort": {
        "en": "You are a professional video editor. Order the clips to follow the script. Answer with the clip "
        "numbers in playback order, comma-separated, each number once.",
        "zh": "你是专业的视频剪辑师。请按照广告台词的顺序为视频片段排序，"
        "按播放顺序输出片段编号，用逗号分隔，每个编号只出现一次。",
    },
    "script": {
        "en": "You are a professional ad copywriter. Write the voice-over for these clips in their order: exactly "
        "{n} lines, one sentence per clip, each short enough to be spoken within its clip's duration.",
        "zh": "你是专业的广告文案。请按顺序为这些视频片段写口播台词：恰好输出 {n} 行，每个片段一句，"
        "每句长度要能在该片段的时长内说完。",
    },
    "bgm": {
        "en": "You are a professional ad music editor. Choose the background music for this ad. Answer with one "
        "audio block (8 audio tokens) and nothing else.",
        "zh": "你是专业的广告配乐师。请为这条广告选择背景音乐，只输出一个音频块（8 个音频 token），不要输出其他内容。",
    },
}
SCRIPT_KEY = "【广告台词如下】"
CLIPS_KEY = "【视频片段如下】"
DURATIONS_KEY = "【片段时长】"


def clip_listing(blocks: Sequence[str]) -> str:
    """Clip blocks as numbered lines ``1)<|clip_start|>...``: the indices answers refer to."""
    return "\n".join(f"{k}){b}" for k, b in enumerate(blocks, start=1))


def durations_line(durations_s: Sequence[float]) -> str:
    """``【片段时长】：2.0s, 3.5s``: one duration per clip, in clip order."""
    return f"{DURATIONS_KEY}：" + ", ".join(f"{d:.1f}s" for d in durations_s)


def task_prompt(
    task: str,
    language: str,
    product: ProductView,
    *,
    n: int,
    script: Sequence[str] | None,
    clips: Sequence[str],
    durations_s: Sequence[float] | None = None,
) -> str:
    """The human turn of one SFT task (`task` in select / sort / script / bgm).

    `n` is the script's line count (select, script); `clips` are clip blocks (`autocut.lm.tokens.clip_block`),
    numbered except for the BGM task, whose clips carry their sentences and are listed as they are.
    """
    if task not in INSTRUCTIONS:
        raise ValueError(f"unknown SFT task {task!r}; choose from {', '.join(INSTRUCTIONS)}")
    lang = "zh" if language == "zh" else "en"
    parts = [INSTRUCTIONS[task][lang].format(n=n), product_header(product, lang)]
    if script is not None:
        parts.append(SCRIPT_KEY + "\n" + "\n".join(script))
    if durations_s is not None:
        parts.append(durations_line(durations_s))
    parts.append(CLIPS_KEY + "\n" + (clip_listing(clips) if task != "bgm" else "\n".join(clips)))
    return "\n".join(parts)
