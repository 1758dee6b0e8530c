"""Optional LLM judge for VSC and SQ through an OpenAI-compatible chat endpoint (docs/method.md, "Metrics").

The paper scores two things with GPT-4o (AutoCut 4.2 and appendix 7.3; VC-LLM 6.2):

- **VSC** (visual-script correlation): the judge sees *one frame* of a clip and *its script line* and
  answers 0 (mismatch), 1 (partly related) or 2 (strongly aligned). A plan's VSC is the mean over its
  clips. Our prompt (`VSC_PROMPT`) states exactly that scale and asks for the digit only.
- **SQ** (script quality): a 100-point rubric, Basic Quality (30: factual correctness, clarity, content
  safety) + Expression and Communication (40: natural language, audience engagement, clear selling
  points) + Length and Rhythm (30: line-level length consistency with the reference script, fluent
  phrasing and pauses). The judge gets product metadata, the human reference script, the generated
  script and the line-level length difference, and answers a JSON object with the three category
  scores and a one-sentence reason (`SQ_PROMPT`). SQ = the sum.

The paper's own prompt files are not public; these prompts follow its description. Nothing here runs
unless a judge is configured (`JudgeConfig`; the CLI reads `AUTOCUT_JUDGE_URL`, `AUTOCUT_JUDGE_MODEL`
and `AUTOCUT_JUDGE_KEY`). Requests are built as plain data (`build_vsc_request`, `build_sq_request`) and
replies parsed by pure functions (`parse_vsc_reply`, `parse_sq_reply`), so both are unit-tested without
a server; `JudgeClient` is the one place that talks HTTP.
"""

from __future__ import annotations

import base64
import json
import math
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from autocut.errors import AutoCutError, ConfigError, MediaError, TransientError

__all__ = [
    "SQ_PROMPT",
    "VSC_PROMPT",
    "JudgeClient",
    "JudgeConfig",
    "JudgeError",
    "JudgeUnavailable",
    "SqScore",
    "build_sq_request",
    "build_vsc_request",
    "chat_endpoint",
    "frame_jpeg",
    "frame_jpeg_cmd",
    "parse_sq_reply",
    "parse_vsc_reply",
    "reply_text",
]


class JudgeError(AutoCutError):
    """The judge's reply cannot be used (malformed, out of range, not a chat completion)."""


class JudgeUnavailable(TransientError):
    """The judge endpoint did not answer (network, timeout, HTTP 5xx/429): may work later."""


@dataclass(frozen=True)
class JudgeConfig:
    """Where the judge lives. `url` is the API base (".../v1") or the full chat-completions URL."""

    url: str
    model: str
    api_key: str | None = None  # sent as a Bearer token when set; never written to reports
    timeout_s: float = 60.0
    frame_width_px: int = 384  # frames are sent as JPEG data URLs scaled to this width

    def __post_init__(self) -> None:
        if not re.match(r"^https?://", self.url):
            raise ConfigError(f"judge URL must start with http:// or https://, got {self.url!r}")
        if not self.model.strip():
            raise ConfigError("the judge needs a model name (AUTOCUT_JUDGE_MODEL or --judge-model)")
        if self.timeout_s <= 0 or self.frame_width_px < 16:
            raise ConfigError("judge timeout_s must be > 0 and frame_width_px >= 16")

    def public(self) -> dict[str, Any]:
        """What a report may record (no key)."""
        return {"url": self.url, "model": self.model, "api_key_set": bool(self.api_key)}


def chat_endpoint(url: str) -> str:
    """The chat-completions URL for an API base ("http://h/v1" -> "http://h/v1/chat/completions")."""
    u = url.rstrip("/")
    return u if u.endswith("/chat/completions") else u + "/chat/completions"


# --------------------------------------------------------------------------- prompts

VSC_PROMPT = (
    "You judge short product advertisement videos. You see one frame of a video clip and the voice-over "
    "line spoken over that clip. Score how well the line matches what the frame shows:\n"
    "0 = mismatch: the line talks about something the frame does not show;\n"
    "1 = partial: the line is loosely related to the frame (same product or theme, different detail);\n"
    "2 = strong: the line describes or clearly fits what the frame shows.\n"
    "Answer with the single digit 0, 1 or 2 and nothing else."
)

SQ_PROMPT = (
    "You judge advertisement voice-over scripts with a 100-point rubric.\n"
    "1. Basic Quality (0-30): factual correctness against the product information, clarity, content safety.\n"
    "2. Expression and Communication (0-40): natural language, audience engagement, clear delivery of the "
    "selling points.\n"
    "3. Length and Rhythm (0-30): line-level length consistency with the reference script, fluent phrasing "
    "and pausing.\n"
    "Judge only the generated script; the reference script is a human example of the expected length and "
    "style. Reply with one JSON object and nothing else:\n"
    '{"basic": <0-30>, "expression": <0-40>, "length_rhythm": <0-30>, "reason": "<one sentence>"}'
)

# Rubric maxima (AutoCut 4.2): parse_sq_reply refuses values outside them.
SQ_MAXIMA: dict[str, float] = {"basic": 30.0, "expression": 40.0, "length_rhythm": 30.0}


def build_vsc_request(config: JudgeConfig, frame: bytes, line: str) -> dict[str, Any]:
    """Chat-completions body asking for the VSC score of one (frame as JPEG bytes, line) pair."""
    if not frame:
        raise ConfigError("VSC needs a frame image (got no bytes)")
    if not line.strip():
        raise ConfigError("VSC needs a non-empty script line")
    data_url = "data:image/jpeg;base64," + base64.b64encode(frame).decode("ascii")
    return {
        "model": config.model,
        "temperature": 0,
        "max_tokens": 8,
        "messages": [
            {"role": "system", "content": VSC_PROMPT},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": data_url}},
                    {"type": "text", "text": f"Script line: {line.strip()}"},
                ],
            },
        ],
    }


def _length_stats(lines: Sequence[str], reference: Sequence[str]) -> str:
    from autocut.speech.words import count_words

    gen = [count_words(s) for s in lines]
    ref = [count_words(s) for s in reference]
    return (
        f"generated words per line: {gen}; reference words per line: {ref}; "
        f"mean absolute difference over aligned lines: "
        + (f"{sum(abs(a - b) for a, b in zip(gen, ref)) / min(len(gen), len(ref)):.2f}" if gen and ref else "n/a")
    )


def build_sq_request(
    config: JudgeConfig,
    *,
    product_name: str,
    brand: str,
    selling_points: Sequence[str],
    reference_lines: Sequence[str],
    lines: Sequence[str],
) -> dict[str, Any]:
    """Chat-completions body asking for the SQ rubric scores of one generated script."""
    if not lines or not any(s.strip() for s in lines):
        raise ConfigError("SQ needs a non-empty generated script")
    user = "\n".join(
        [
            f"Product: {product_name}",
            f"Brand: {brand or 'n/a'}",
            "Selling points: " + ("; ".join(selling_points) if selling_points else "n/a"),
            "",
            "Reference script (human):",
            *(f"{i + 1}. {s}" for i, s in enumerate(reference_lines)),
            "",
            "Generated script:",
            *(f"{i + 1}. {s}" for i, s in enumerate(lines)),
            "",
            "Line-level length statistic: " + _length_stats(lines, reference_lines),
        ]
    )
    return {
        "model": config.model,
        "temperature": 0,
        "max_tokens": 200,
        "messages": [{"role": "system", "content": SQ_PROMPT}, {"role": "user", "content": user}],
    }


# --------------------------------------------------------------------------- replies


def reply_text(response: Any) -> str:
    """The assistant text of a chat-completions response (`choices[0].message.content`)."""
    try:
        content = response["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise JudgeError(f"not a chat-completions response: {str(response)[:200]!r}") from None
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str) or not content.strip():
        raise JudgeError("the judge returned an empty message")
    return content


def _json_object(text: str) -> dict[str, Any]:
    """The first JSON object in `text` (prose or code fences around it are allowed)."""
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, m.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    raise JudgeError(f"no JSON object in the judge's reply: {text[:200]!r}")


def parse_vsc_reply(text: str) -> int:
    """The VSC score (0, 1 or 2) in a reply: a bare digit, "Score: 2" or {"score": 2}.

    A reply naming several different scores, a fraction or nothing usable is an error: a judge
    that hedges has not answered.
    """
    t = text.strip()
    if "{" in t:
        try:
            obj = _json_object(t)
        except JudgeError:
            obj = None
        if obj is not None:
            for key in ("score", "vsc", "VSC"):
                if key in obj:
                    v = obj[key]
                    if isinstance(v, bool) or not isinstance(v, (int, float)) or v not in (0, 1, 2):
                        raise JudgeError(f"VSC must be 0, 1 or 2, got {v!r}")
                    return int(v)
            raise JudgeError(f"the judge's JSON has no score: {t[:200]!r}")
    if re.search(r"\d+\.\d+", t):
        raise JudgeError(f"VSC must be a whole score 0, 1 or 2, got {t[:200]!r}")
    found = {int(m) for m in re.findall(r"(?<![\d.])(\d+)(?![\d.])", t)}
    if len(found) != 1:
        raise JudgeError(f"expected one VSC score 0, 1 or 2 in the reply, got {t[:200]!r}")
    v = found.pop()
    if v not in (0, 1, 2):
        raise JudgeError(f"VSC must be 0, 1 or 2, got {v}")
    return v


@dataclass(frozen=True)
class SqScore:
    basic: float
    expression: float
    length_rhythm: float
    reason: str = ""

    @property
    def total(self) -> float:
        return self.basic + self.expression + self.length_rhythm


def parse_sq_reply(text: str) -> SqScore:
    """The SQ rubric scores in a JSON reply; every category present, numeric and within its maximum."""
    obj = _json_object(text)
    vals: dict[str, float] = {}
    for key, hi in SQ_MAXIMA.items():
        if key not in obj:
            raise JudgeError(f"the judge's SQ reply lacks {key!r}: {text[:200]!r}")
        v = obj[key]
        if isinstance(v, str):
            try:
                v = float(v.strip())
            except ValueError:
                raise JudgeError(f"SQ {key} is not a number: {v!r}") from None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise JudgeError(f"SQ {key} is not a number: {v!r}")
        if not 0 <= v <= hi:
            raise JudgeError(f"SQ {key} must be within 0-{hi:g}, got {v}")
        vals[key] = float(v)
    reason = obj.get("reason", "")
    return SqScore(vals["basic"], vals["expression"], vals["length_rhythm"], str(reason)[:500])


# --------------------------------------------------------------------------- frames and HTTP


def frame_jpeg_cmd(path: str, t_s: float, width_px: int) -> list[str]:
    """ffmpeg arguments writing one JPEG frame of `path` at `t_s` to stdout, `width_px` wide."""
    return [
        "ffmpeg",
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-ss",
        f"{max(t_s, 0.0):.3f}",
        "-i",
        path,
        "-frames:v",
        "1",
        "-vf",
        f"scale={int(width_px)}:-2",
        "-f",
        "image2pipe",
        "-c:v",
        "mjpeg",
        "-q:v",
        "4",
        "pipe:1",
    ]


def frame_jpeg(path: str, t_s: float, width_px: int = 384) -> bytes:
    """One frame of a video as JPEG bytes."""
    res = subprocess.run(frame_jpeg_cmd(path, t_s, width_px), capture_output=True, check=False)
    if res.returncode != 0 or not res.stdout:
        raise MediaError(
            path, f"cannot extract a frame at {t_s:.2f} s: {res.stderr.decode(errors='replace')[-200:] or 'no output'}"
        )
    return res.stdout


class JudgeClient:
    """Posts built requests to the configured endpoint and parses the replies."""

    def __init__(self, config: JudgeConfig) -> None:
        import httpx

        self.config = config
        headers = {"Content-Type": "application/json"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        self._http = httpx.Client(timeout=config.timeout_s, headers=headers)
        self._url = chat_endpoint(config.url)

    def close(self) -> None:
        self._http.close()

    def _post(self, body: dict[str, Any]) -> str:
        import httpx

        try:
            resp = self._http.post(self._url, json=body)
        except httpx.HTTPError as exc:
            raise JudgeUnavailable(f"judge {self._url} did not answer: {exc}") from None
        if resp.status_code == 429 or resp.status_code >= 500:
            raise JudgeUnavailable(f"judge {self._url} answered HTTP {resp.status_code}")
        if resp.status_code >= 400:
            raise JudgeError(f"judge {self._url} refused the request: HTTP {resp.status_code} {resp.text[:200]}")
        try:
            return reply_text(resp.json())
        except ValueError:
            raise JudgeError(f"judge {self._url} did not answer JSON: {resp.text[:200]!r}") from None

    def vsc(self, frame: bytes, line: str) -> int:
        return parse_vsc_reply(self._post(build_vsc_request(self.config, frame, line)))

    def sq(
        self,
        *,
        product_name: str,
        brand: str,
        selling_points: Sequence[str],
        reference_lines: Sequence[str],
        lines: Sequence[str],
    ) -> SqScore:
        body = build_sq_request(
            self.config,
            product_name=product_name,
            brand=brand,
            selling_points=selling_points,
            reference_lines=reference_lines,
            lines=lines,
        )
        return parse_sq_reply(self._post(body))
