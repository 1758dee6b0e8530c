"""Template script writer for the baseline planners (footage-driven scenario, AutoCut appendix 7.2).

One sentence per clip, in ad order: a hook on the first clip, the product's selling points on the
middle clips, a call to action on the last. Each sentence is assembled from an opener, a core and
up to four extension clauses, and the combination whose word count is closest to the clip's
target (the WCD target: round(rate x duration), 2.5 English words/s or 5 CJK characters/s) is kept;
ties are broken by the seed, so different seeds give different scripts of the same fit.

The writer knows nothing about the footage: it is the text half of the vision-only baselines, and
the floor a trained script generator must beat.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from autocut.errors import PlanError
from autocut.speech.words import count_words, target_words
from autocut.types import Language, ProductInfo

__all__ = ["ScriptLine", "fit_line", "line_roles", "write_script"]

# Templates per language and role: (openers, cores, extensions). "{name}", "{brand}", "{sp}",
# "{category}" are filled from the product; a template whose field is empty is skipped.
_EN: dict[str, tuple[list[str], list[str], list[str]]] = {
    "hook": (
        ["", "Take a look: ", "Right here, ", "Good news: ", "Say goodbye to the hassle, "],
        [
            "meet the {name}",
            "say hello to the {name}",
            "this is the {name} by {brand}",
            "discover the {name}",
            "meet {brand}",
            "here is the new {name}",
        ],
        [
            ", your new favourite {category} essential",
            ", made for the way you live",
            ", built to make every day easier",
            ", designed with you in mind",
            ", and you are going to love it",
            " from {brand}",
            ", the smart pick this season",
        ],
    ),
    "feature": (
        ["", "Best of all, ", "On top of that, ", "Plus, ", "And yes, "],
        ["it comes with {sp}", "enjoy {sp}", "you get {sp}", "count on {sp}", "it is all about {sp}"],
        [
            ", every single day",
            ", wherever you go",
            ", just what you expect from {brand}",
            ", so you can focus on what matters",
            ", and you will notice it right away",
            ", without any extra effort",
            ", built to last for years",
        ],
    ),
    "benefit": (
        ["", "Best of all, ", "Plus, "],
        ["it fits right into your routine", "it is simple to use", "it looks as good as it works", "it just works"],
        [
            ", every single day",
            ", wherever you go",
            ", so you can focus on what matters",
            ", with nothing to set up",
            ", for the whole family",
        ],
    ),
    "cta": (
        ["", "Don't wait, ", "So go on, "],
        [
            "get yours today",
            "order the {name} now",
            "tap the link and grab the {name} today",
            "try the {name} for yourself",
            "shop now",
            "get the {name} from {brand} today",
        ],
        [
            " while stocks last",
            " and see the difference",
            ", you will be glad you did",
            " at a great price",
            " and make every day better",
        ],
    ),
}

_ZH: dict[str, tuple[list[str], list[str], list[str]]] = {
    "hook": (
        ["", "快来看看，", "好消息，", "告别麻烦，"],
        ["这就是{name}", "认识一下{name}", "今天给大家推荐{name}", "{brand}新品{name}来了", "看这里", "来看看{brand}"],
        [
            "，让生活更轻松",
            "，你的日常好帮手",
            "，颜值和实力都在线",
            "，用过的人都说好",
            "，{category}必备好物",
            "，专为你设计",
        ],
    ),
    "feature": (
        ["", "而且", "更棒的是，", "不仅如此，"],
        ["{sp}", "拥有{sp}", "主打{sp}", "它还有{sp}", "{sp}，真的很实用"],
        ["，每天都用得上", "，细节满满", "，用起来特别安心", "，出门在外也方便", "，品质看得见", "，省心又省力"],
    ),
    "benefit": (
        ["", "而且", "更棒的是，"],
        ["用起来非常简单", "颜值高又好用", "轻松融入你的日常"],
        ["，每天都用得上", "，全家都适用", "，不用任何设置", "，省心又省力"],
    ),
    "cta": (
        ["", "别犹豫了，", "心动不如行动，"],
        ["赶紧下单吧", "点击链接，把{name}带回家", "现在就入手{name}", "喜欢就别错过", "马上抢购{brand}{name}"],
        ["，数量有限", "，手慢无", "，你一定会爱上它", "，价格超值"],
    ),
}

_MAX_EXTENSIONS = 4


@dataclass(frozen=True)
class ScriptLine:
    """One written line with the numbers behind it."""

    text: str
    role: str  # hook | feature | benefit | cta
    target_words: int
    words: int


def line_roles(n: int, n_selling_points: int) -> list[str]:
    """Narrative role per clip: hook first, call to action last, selling points (or benefits) between."""
    if n <= 0:
        return []
    if n == 1:
        return ["hook"]
    # Each selling point once; further middle clips alternate a generic benefit and a repeated point.
    middle = [
        "feature"
        if i < n_selling_points
        else ("benefit" if (i - n_selling_points) % 2 == 0 or n_selling_points == 0 else "feature")
        for i in range(n - 2)
    ]
    return ["hook", *middle, "cta"]


def _fill(template: str, fields: Mapping[str, str]) -> str | None:
    brand, name = fields.get("brand", ""), fields.get("name", "")
    if "{brand}" in template and "{name}" in template and brand and brand.lower() in name.lower():
        return None  # "the FreshCo Bottle by FreshCo": the name already carries the brand
    for key, value in fields.items():
        token = "{" + key + "}"
        if token in template:
            if not value:
                return None
            template = template.replace(token, value)
    return template


def _finish(text: str, language: Language, role: str) -> str:
    text = text.strip().strip(",，")
    if language == "zh":
        return text + ("！" if role == "cta" else "。")
    text = text[0].upper() + text[1:]
    return text + ("!" if role == "cta" else ".")


@functools.lru_cache(maxsize=512)
def _options_counted(
    role: str, language: Language, fields: tuple[tuple[str, str], ...]
) -> tuple[list[str], np.ndarray]:
    """Every sentence for `role` with these fields, and their word counts (cached: variants reuse them)."""
    options = _options(role, language, dict(fields))
    return options, np.array([count_words(o) for o in options], np.int64)


def _options(role: str, language: Language, fields: Mapping[str, str]) -> list[str]:
    openers, cores, exts = (_ZH if language == "zh" else _EN)[role]
    cores_f = [c for c in (_fill(c, fields) for c in cores) if c]
    exts_f = [e for e in (_fill(e, fields) for e in exts) if e]
    out = []
    for opener in openers:
        for core in cores_f:
            for k in range(_MAX_EXTENSIONS + 1):
                for combo in itertools.combinations(exts_f, k):
                    out.append(_finish(opener + core + "".join(combo), language, role))
    return out


def fit_line(
    role: str,
    fields: Mapping[str, str],
    target: int,
    language: Language,
    rng: np.random.Generator,
    *,
    speech_rate: Callable[[str], float | None] | None = None,
    max_tries: int = 12,
) -> str:
    """The template sentence for `role` whose word count is closest to `target` (random among ties).

    With `speech_rate` (sentence -> the voice speed its clip needs, None if it cannot fit at any
    allowed speed), a sentence the voice can say at its natural pace is preferred among the
    near-best word counts, then any sentence that fits at all, then the shortest.
    """
    options, words = _options_counted(role, language, tuple(sorted(fields.items())))
    if not options:
        raise PlanError(f"no {language} template for a {role} line fits this product (name is required)")
    gaps = np.abs(words - target)
    ranked = np.lexsort((rng.random(len(options)), gaps))  # by gap, ties in random order
    if speech_rate is None:
        return options[int(ranked[0])]
    # Rates are asked lazily, in the order the rules read them: each one may synthesise speech, and the
    # first near-best line the voice says at its natural pace usually ends the search (same answer as
    # asking for every rate first).
    rates: dict[int, float | None] = {}

    def rate(i: int) -> float | None:
        if i not in rates:
            rates[i] = speech_rate(options[i])
        return rates[i]

    top = [int(i) for i in ranked[:max_tries]]
    for i in top:
        if gaps[i] > gaps[top[0]] + 1:
            break  # ranked by gap: no later line is within one word of the best count
        r = rate(i)
        if r is not None and r <= 1.0 + 1e-9:
            return options[i]
    for i in top:
        if rate(i) is not None:
            return options[i]
    # Nothing near the target fits the clip: the shortest sentence that fits, else the shortest.
    for i in np.argsort(words, kind="stable")[:max_tries]:
        if rate(int(i)) is not None:
            return options[int(i)]
    return options[int(np.argmin(words))]


def write_script(
    product: ProductInfo,
    durations_s: Sequence[float],
    language: Language = "en",
    *,
    seed: int = 0,
    words_per_s: float | Mapping[str, float] | None = None,
    speech_rate: Callable[[str, float], float | None] | None = None,
) -> list[ScriptLine]:
    """One line per clip (clips in ad order), each fit to its clip's word target.

    `speech_rate(sentence, duration_s)`: the voice speed a sentence needs to fit a clip (None: it
    cannot fit), so lines are also sayable in their clips (see `fit_line`).
    """
    if not product.name.strip():
        raise PlanError("the product needs a name to write a script")
    rng = np.random.default_rng(seed)
    points = [p.strip().rstrip(".。") for p in product.selling_points if p.strip()]
    order = list(rng.permutation(len(points))) if points else []
    roles = line_roles(len(durations_s), len(points))
    base = {
        "name": product.name.strip(),
        "brand": product.brand.strip(),
        "category": product.category.strip().lower() if language == "en" else product.category.strip(),
    }
    lines: list[ScriptLine] = []
    feature_k = 0
    for dur, role in zip(durations_s, roles):
        fields = dict(base)
        if role == "feature":
            fields["sp"] = points[order[feature_k % len(order)]]
            feature_k += 1
        else:
            fields["sp"] = ""
        target = target_words(dur, language, words_per_s=words_per_s)
        rate_fn = None if speech_rate is None else (lambda text, d=dur: speech_rate(text, d))
        text = fit_line(role, fields, target, language, rng, speech_rate=rate_fn)
        lines.append(ScriptLine(text, role, target, count_words(text)))
    return lines
