"""Constrained decoding over a Hugging Face causal LM, so every answer parses.

One module on purpose (~900 lines): the three answer kinds share one decoding session (KV cache, sampler,
per-token facts precomputed once per tokenizer), and their token masks are built from those shared tables.

The four SFT answer formats (docs/method.md, "Corpus format") are enforced token by token, in our own decoding loop
over the model's forward pass (greedy, or sampled with a temperature and a seed):

- `choose_indices`: 1-based clip numbers as the corpus writes them (``T.format_indices``: "2,5,7") —
  distinct, in 1..n_options, ascending for selection, exactly `count` of them; with
  ``permutation=True`` every number exactly once (sorting);
- `generate_lines`: exactly `n_lines` non-empty lines joined by ``\\n`` (the script answer), each
  between its minimum and maximum word count (words as `autocut.speech.words.count_words` counts them),
  with no code or structural tokens and no markup characters;
- `generate_audio_codes`: ``<|audio_start|>`` + one ``<a_{level}_{code}>`` per level 0..7 in order +
  ``<|audio_end|>`` (``T.audio_block``), returned as the (8,) codes.

How: at each step the logits of every token that cannot continue a valid answer are masked out.
Index answers are checked in text space over the few tokens made only of digits and commas. Script
lines are checked over the whole vocabulary with per-token tables built once per tokenizer: the
token's UTF-8 bytes (byte-level BPE splits a CJK character over several tokens, e.g. SmolLM2's
vocabulary, so lines are tracked as bytes and may only end on a complete character), and how many
words it adds — so the word budget is enforced without decoding 50-150k candidate strings per step.
The last few prompts' prefills (their KV caches) are kept for calls with the same prompt (the
variants of one request share their selection prompt) and copied per decode.

`prompt` is always the full rendered prompt (`autocut.lm.chat.render_prompt`), so decoding sees
exactly the text the model was trained to answer.
"""

from __future__ import annotations

import copy
import functools
import logging
import re
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from autocut.errors import ConfigError
from autocut.lm import tokens as T
from autocut.speech.words import count_words

__all__ = [
    "DecodeStats",
    "choose_indices",
    "generate_audio_codes",
    "generate_lines",
    "index_answer_valid",
    "last_stats",
]

log = logging.getLogger(__name__)

_END_TOKENS = ("<|im_end|>", "<|endoftext|>")  # end of the assistant turn (ChatML, both supported families)
# Never in a voice-over line: markup that would open code/structural tokens, and control characters.
_BANNED_RE = re.compile(r"[<>|\x00-\x09\x0b-\x1f\x7f-\x9f]")
# Word shape in script lines. An undertrained LM primed by index answers ("0,3,5") collapses into
# "1,2,3,4,..." runs, which `count_words` counts as one word. A run (characters between spaces and CJK
# characters) holds at most MAX_RUN_CHARS characters and MAX_RUN_DIGITS digits, and a line at most
# MAX_NUMERIC_RUNS runs with digits but no letter: prices, ratings and "2-in-1" still fit.
MAX_RUN_CHARS = 24
MAX_RUN_DIGITS = 6
MAX_NUMERIC_RUNS = 2

# Characters a voice-over line may hold, as code point intervals: letters of the line's script, digits, a
# space and the punctuation ad scripts use (the demo world's reference scripts use . , ? ! - ' $ and
# 。，？！). Everything else (emoji, math, brackets, other scripts) is what a voice would spell out or
# skip, so it is never generated.
_COMMON = (
    (0x20, 0x22),
    (0x24, 0x29),
    (0x2C, 0x2E),
    (0x30, 0x3B),
    (0x3F, 0x3F),
    (0x41, 0x5A),
    (0x61, 0x7A),
    (0xA3, 0xA3),
    (0xA5, 0xA5),
    (0x2013, 0x2014),
    (0x2018, 0x2019),
    (0x201C, 0x201D),
    (0x2026, 0x2026),
    (0x20AC, 0x20AC),
)
_CHARSETS: dict[str, tuple[tuple[int, int], ...]] = {
    "en": _COMMON + ((0xC0, 0xD6), (0xD8, 0xF6), (0xF8, 0x24F)),  # Latin-1 and Latin Extended letters
    "zh": _COMMON
    + (
        (0xB7, 0xB7),
        (0x3001, 0x3002),
        (0x300A, 0x300D),
        (0x3400, 0x4DBF),
        (0x4E00, 0x9FFF),
        (0xF900, 0xFAFF),
        (0xFF01, 0xFF01),
        (0xFF08, 0xFF09),
        (0xFF0C, 0xFF0C),
        (0xFF1A, 0xFF1B),
        (0xFF1F, 0xFF1F),
    ),
}


def _charset(language: str) -> tuple[tuple[int, int], ...]:
    return _CHARSETS["zh" if language == "zh" else "en"]


@functools.lru_cache(maxsize=1 << 16)
def _char_ok(ch: str, language: str) -> bool:
    cp = ord(ch)
    return ch == "\n" or any(lo <= cp <= hi for lo, hi in _charset(language))


def _prefix_feasible(prefix: bytes, language: str) -> bool:
    """Whether an incomplete UTF-8 character starting with `prefix` can still become an allowed one."""
    need = {0xC0: 2, 0xE0: 3, 0xF0: 4}.get(prefix[0] & (0xE0 if prefix[0] < 0xE0 else 0xF0), 0)
    if not need or len(prefix) >= need:
        return False
    lo = prefix + b"\x80" * (need - len(prefix))
    hi = prefix + b"\xbf" * (need - len(prefix))
    try:
        a, b = ord(lo.decode("utf-8", "surrogatepass")), ord(hi.decode("utf-8", "surrogatepass"))
    except UnicodeDecodeError:
        return False
    return any(x <= b and a <= y for x, y in _charset(language))


@dataclass
class DecodeStats:
    """What the last decode cost (for logs, notes and benchmarks)."""

    prompt_tokens: int = 0
    prefill_cached: bool = False
    prefill_s: float = 0.0
    steps: int = 0  # forward passes after the prefill
    decode_s: float = 0.0


_stats = threading.local()


def last_stats() -> DecodeStats:
    """Cost of the last decode on this thread."""
    return getattr(_stats, "value", DecodeStats())


# ---------------------------------------------------------------------------------------------- the model loop


class _PrefillCache:
    """The KV caches and next-token logits of the last few prompts (LRU), per model.

    A request's variants ask the same selection (or script) prompt again between other prompts; three
    entries keep it across one variant's select/script, sort and BGM prompts. An entry is the prompt's
    KV cache (~46 kB per token for SmolLM2-135M, ~140 kB for Qwen3-8B in bf16).
    """

    def __init__(self, size: int = 3) -> None:
        self.lock = threading.Lock()
        self.size = size
        self.entries: OrderedDict[tuple[int, str], tuple[weakref.ref, object, torch.Tensor, int]] = OrderedDict()

    def get(self, model, prompt: str) -> tuple[object, torch.Tensor, int] | None:
        with self.lock:
            hit = self.entries.get((id(model), prompt))
            if hit is None or hit[0]() is not model:  # an id reused by another model is not a hit
                return None
            self.entries.move_to_end((id(model), prompt))
            return hit[1], hit[2], hit[3]

    def put(self, model, prompt: str, cache: object, logits: torch.Tensor, n: int) -> None:
        with self.lock:
            self.entries[(id(model), prompt)] = (weakref.ref(model), cache, logits, n)
            self.entries.move_to_end((id(model), prompt))
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)


_PREFILL = _PrefillCache()


class _Session:
    """Feeds tokens to the model one at a time after the (possibly cached) prompt prefill."""

    def __init__(self, model, tok, prompt: str) -> None:
        self.model = model
        self.stats = DecodeStats()
        t0 = time.perf_counter()
        hit = _PREFILL.get(model, prompt)
        if hit is None:
            ids = tok(prompt, add_special_tokens=False)["input_ids"]
            if not ids:
                raise ConfigError("empty prompt")
            x = torch.tensor([ids], device=model.device)
            with torch.inference_mode():
                out = model(input_ids=x, use_cache=True)
            hit = (out.past_key_values, out.logits[0, -1].float().cpu(), len(ids))
            _PREFILL.put(model, prompt, *hit)
        else:
            self.stats.prefill_cached = True
        cache, logits, n = hit
        # Decoding appends to the cache: work on a copy so the stored prefill stays the prompt's.
        self.cache = copy.deepcopy(cache)
        self.logits = logits.clone()
        self.stats.prompt_tokens = n
        self.stats.prefill_s = time.perf_counter() - t0
        self._t_decode = 0.0

    def feed(self, token_id: int) -> torch.Tensor:
        """Append one token; returns the next-token logits (float32, on CPU)."""
        t0 = time.perf_counter()
        x = torch.tensor([[token_id]], device=self.model.device)
        with torch.inference_mode():
            out = self.model(input_ids=x, past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        self.logits = out.logits[0, -1].float().cpu()
        self.stats.steps += 1
        self._t_decode += time.perf_counter() - t0
        return self.logits

    def finish(self) -> None:
        self.stats.decode_s = self._t_decode
        _stats.value = self.stats


class _Picker:
    """Greedy or temperature sampling among allowed tokens."""

    def __init__(self, sample: bool, temperature: float, seed: int) -> None:
        if sample and not temperature > 0:
            raise ConfigError(f"sampling temperature must be > 0, got {temperature}")
        self.sample = sample
        self.temperature = temperature
        self.rng = np.random.default_rng(seed)

    def pick(self, logits: torch.Tensor, allowed: np.ndarray) -> int:
        """One of `allowed` (token ids, non-empty) by its logit."""
        ids = np.asarray(allowed, dtype=np.int64)
        assert ids.size, "constrained decoding reached a state with no allowed token"
        scores = logits[torch.from_numpy(ids)].double().numpy()
        if not self.sample or ids.size == 1:
            return int(ids[int(np.argmax(scores))])
        z = scores / self.temperature
        z -= z.max()
        p = np.exp(z)
        p /= p.sum()
        return int(ids[int(self.rng.choice(ids.size, p=p))])


def _end_ids(tok) -> list[int]:
    out = []
    for t in _END_TOKENS:
        i = tok.convert_tokens_to_ids(t)
        if isinstance(i, int) and i >= 0 and i != tok.unk_token_id and i not in out:
            out.append(i)
    if not out and tok.eos_token_id is not None:
        out.append(int(tok.eos_token_id))
    if not out:
        raise ConfigError("the tokenizer has no end-of-turn token (<|im_end|> or eos)")
    return out


# ---------------------------------------------------------------------------------------------- token tables


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (byte-level BPE token strings are written in it)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


# Second-byte ranges of the lead bytes whose first continuation is narrower than 80..BF (no overlong
# forms, no surrogates, nothing past U+10FFFF): RFC 3629 section 4.
_SECOND_BYTE = {0xE0: (0xA0, 0xBF), 0xED: (0x80, 0x9F), 0xF0: (0x90, 0xBF), 0xF4: (0x80, 0x8F)}


def _utf8_scan(b: bytes) -> tuple[int, bool, int]:
    """(leading continuation bytes, the rest valid UTF-8 up to an incomplete last character, bytes that
    character still needs)."""
    lead = 0
    while lead < len(b) and 0x80 <= b[lead] <= 0xBF:
        lead += 1
    i = lead
    while i < len(b):
        c = b[i]
        if c < 0x80:
            i += 1
            continue
        if 0xC2 <= c <= 0xDF:
            need = 1
        elif 0xE0 <= c <= 0xEF:
            need = 2
        elif 0xF0 <= c <= 0xF4:
            need = 3
        else:
            return lead, False, 0
        follow = b[i + 1 : i + 1 + need]
        if any(not 0x80 <= x <= 0xBF for x in follow):
            return lead, False, 0
        lo, hi = _SECOND_BYTE.get(c, (0x80, 0xBF))
        if follow and not lo <= follow[0] <= hi:
            return lead, False, 0
        if len(follow) < need:
            return lead, True, need - len(follow)
        i += need + 1
    return lead, True, 0


@functools.lru_cache(maxsize=1 << 16)
def _is_cjk(ch: str) -> bool:
    """A character `count_words` counts on its own (ideographs, kana, Hangul), which also splits words."""
    return count_words(f"a{ch}a") == 3


def _first_chunk_joins(text: str) -> bool:
    """True when `text` starts with a Latin-like chunk (not space, not CJK) holding a letter or digit:
    appended to a line ending in such a chunk, the two are one word."""
    if not text or text[0].isspace() or _is_cjk(text[0]):
        return False
    if text.isascii():
        return any(c.isalnum() for c in text.split(None, 1)[0])
    chunk = []
    for ch in text:
        if ch.isspace() or _is_cjk(ch):
            break
        chunk.append(ch)
    return count_words("".join(chunk)) > 0


def _last_chunk_word(text: str) -> bool:
    """True when `text` ends in a Latin-like chunk holding a letter or digit (a word a token may extend)."""
    if not text or text[-1].isspace() or _is_cjk(text[-1]):
        return False
    chunk = []
    for ch in reversed(text):
        if ch.isspace() or _is_cjk(ch):
            break
        chunk.append(ch)
    return count_words("".join(chunk)) > 0


def _runs(text: str) -> list[str]:
    """Chunks of `text` between breaks (whitespace, CJK characters); empty chunks mark leading/trailing breaks."""
    out: list[str] = []
    cur: list[str] = []
    for ch in text:
        if ch.isspace() or _is_cjk(ch):
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def _run_facts(run: str) -> tuple[int, int, bool]:
    """(characters, digits, numeric: has a digit and no letter) of one run."""
    digits = sum(c.isdigit() for c in run)
    return len(run), digits, digits > 0 and not any(c.isalpha() for c in run)


@dataclass(frozen=True)
class _RunTable:
    """Per token: its first run (the one that continues the line's open run unless the token starts with a
    break) and the worst of its other runs, for the MAX_RUN_* word-shape rules."""

    first_len: np.ndarray  # characters of the first run (0: the token starts with a break)
    first_digits: np.ndarray
    first_digit: np.ndarray  # the first run holds a digit ...
    first_letter: np.ndarray  # ... / a letter
    rest_len: np.ndarray  # longest other run
    rest_digits: np.ndarray  # most digits in another run
    rest_numeric: np.ndarray  # other runs that are numeric

    @classmethod
    def build(cls, texts: list[str]) -> _RunTable:
        n = len(texts)
        cols = {
            k: np.zeros(n, np.int16) for k in ("first_len", "first_digits", "rest_len", "rest_digits", "rest_numeric")
        }
        first_digit, first_letter = np.zeros(n, bool), np.zeros(n, bool)
        for i, text in enumerate(texts):
            if not text:
                continue
            first, *rest = _runs(text.rstrip("\n"))
            cols["first_len"][i], cols["first_digits"][i], _ = _run_facts(first)
            first_digit[i] = any(c.isdigit() for c in first)
            first_letter[i] = any(c.isalpha() for c in first)
            for r in rest:
                ln, dg, num = _run_facts(r)
                cols["rest_len"][i] = max(cols["rest_len"][i], ln)
                cols["rest_digits"][i] = max(cols["rest_digits"][i], dg)
                cols["rest_numeric"][i] += int(num)
        return cls(first_digit=first_digit, first_letter=first_letter, **cols)

    def allowed(self, line: str) -> np.ndarray:
        """Tokens that keep every run of `line` + token within the word-shape limits."""
        *closed, open_run = _runs(line)
        numeric = sum(_run_facts(r)[2] for r in closed)
        o_len, o_digits, o_numeric = _run_facts(open_run)
        o_digit, o_letter = o_digits > 0, any(c.isalpha() for c in open_run)
        joined = self.first_len > 0  # the first run extends the open one (a break first: it starts afresh)
        m_len = self.first_len + np.where(joined, o_len, 0)
        m_digits = self.first_digits + np.where(joined, o_digits, 0)
        m_numeric = (self.first_digit | (joined & o_digit)) & ~(self.first_letter | (joined & o_letter))
        # The open run stays as it is when the token starts with a break.
        after = numeric + np.where(joined, 0, int(o_numeric)) + m_numeric + self.rest_numeric
        return (
            (m_len <= MAX_RUN_CHARS)
            & (m_digits <= MAX_RUN_DIGITS)
            & (self.rest_len <= MAX_RUN_CHARS)
            & (self.rest_digits <= MAX_RUN_DIGITS)
            & (after <= max(MAX_NUMERIC_RUNS, numeric + int(o_numeric)))
        )


@dataclass(eq=False)
class _Tables:
    """Per-tokenizer facts the masks need (built once: ~1 s for a 150k vocabulary)."""

    n_tok: int
    end_ids: list[int]
    index_tokens: list[tuple[int, str]]  # tokens made only of digits and commas
    audio_ids: np.ndarray | None  # (8, 256) ids of <a_level_code>, None without AutoCut tokens
    audio_start: int | None
    audio_end: int | None
    # Script lines (arrays over token ids 0..n_tok-1):
    raw: list[bytes]
    text_ok: np.ndarray  # may appear in a line (ordinary text, no markup, at most one trailing newline)
    newline: np.ndarray  # ends with "\n" (ends a line)
    starts_space: np.ndarray
    lead: np.ndarray  # leading UTF-8 continuation bytes
    all_cont: np.ndarray  # only continuation bytes
    tail_need: np.ndarray  # continuation bytes the token's last character still needs
    first_byte: np.ndarray  # (uint8) checked against the open character's lead byte
    # Words the token adds on its own; an incomplete last character counts as one from its first byte
    # (an upper bound: it may turn out to be punctuation, or to extend a word), so a budget is never overrun.
    words: np.ndarray
    words_lo: np.ndarray  # the same without the open last character (a lower bound)
    joins: np.ndarray  # its first chunk continues a word the line ends with
    n_bytes: np.ndarray
    n_chars: np.ndarray  # characters it adds (an incomplete last one counts; a trailing newline does not)
    texts: list[str]  # complete characters after any leading continuation bytes
    tails: list[bytes]  # bytes of an incomplete last character
    runs: _RunTable  # word-shape facts per token (MAX_RUN_* rules)
    _lang_ok: dict[str, np.ndarray] = field(default_factory=dict)

    def lang_ok(self, language: str) -> np.ndarray:
        """Tokens whose characters (and open last character) fit a `language` voice-over line."""
        key = "zh" if language == "zh" else "en"
        if key not in self._lang_ok:
            self._lang_ok[key] = (
                np.array(
                    [
                        all(_char_ok(ch, key) for ch in txt) and (not tail or _prefix_feasible(tail, key))
                        for txt, tail in zip(self.texts, self.tails)
                    ],
                    bool,
                )
                & self.text_ok
            )
        return self._lang_ok[key]


_TABLES: dict[tuple[int, int], _Tables] = {}
_TABLES_LOCK = threading.Lock()


def _tables(tok) -> _Tables:
    key = (id(tok), len(tok))
    with _TABLES_LOCK:
        got = _TABLES.get(key)
        if got is None:
            got = _TABLES[key] = _build_tables(tok)
        return got


def _build_tables(tok) -> _Tables:
    n = len(tok)
    special = {int(i) for i in getattr(tok, "added_tokens_decoder", {})}
    pieces = [""] * n
    for piece, i in tok.get_vocab().items():
        if 0 <= i < n and i not in special:
            pieces[i] = piece
    to_byte = {c: chr(b) for b, c in _bytes_to_unicode().items()}
    byte_level = set("".join(pieces)) <= set(to_byte)
    raw: list[bytes] = []
    if byte_level:
        trans = str.maketrans(to_byte)
        raw = [p.translate(trans).encode("latin-1") for p in pieces]
    else:  # e.g. SentencePiece: decode each token; byte fragments come back as U+FFFD and are refused
        texts = tok.batch_decode([[i] for i in range(n)])
        raw = [b"" if i in special or "\ufffd" in t else t.encode("utf-8") for i, t in enumerate(texts)]
    # Per token: (id, newline, starts_space, lead, all_cont, tail_need, words, joins, n_chars, words_lo).
    rows: list[tuple[int, bool, bool, int, bool, int, int, bool, int, int]] = []
    texts = [""] * n
    tails = [b""] * n
    index_tokens: list[tuple[int, str]] = []
    for i, b in enumerate(raw):
        if not b:
            continue
        nl_at = b.find(b"\n")
        if nl_at != -1 and nl_at != len(b) - 1:
            continue  # a newline inside or twice: lines must stay one sentence each
        try:  # most tokens are whole characters
            text, ld, need, body, cut = b.decode("utf-8"), 0, 0, b, len(b)
        except UnicodeDecodeError:
            ld, valid, need = _utf8_scan(b)
            if not valid:
                continue
            body = b[ld:]
            cut = _complete_prefix_len(body) if need else len(body)
            text = body[:cut].decode("utf-8")
        if _BANNED_RE.search(text):
            continue
        texts[i], tails[i] = text, body[cut:]
        n_words = count_words(text)
        rows.append(
            (
                i,
                nl_at != -1,
                b[:1].isspace(),
                ld,
                ld == len(b),
                need,
                n_words + int(need > 0),
                ld == 0 and _first_chunk_joins(text),
                len(text.rstrip("\n")) + int(need > 0),
                n_words,
            )
        )
        if text and ld == 0 and not need and not text.strip("0123456789,"):
            index_tokens.append((i, text))
    ids = np.array([r[0] for r in rows], np.int64)

    def column(k: int, dtype: type) -> np.ndarray:
        out: np.ndarray = np.zeros(n, dtype)
        out[ids] = np.array([r[k] for r in rows], dtype)
        return out

    text_ok = np.zeros(n, bool)
    text_ok[ids] = True
    newline, starts_space, lead, all_cont = column(1, bool), column(2, bool), column(3, np.int8), column(4, bool)
    tail_need, words, joins, n_chars = column(5, np.int8), column(6, np.int16), column(7, bool), column(8, np.int16)
    words_lo = column(9, np.int16)
    first_byte = np.array([b[0] if b else 0 for b in raw], np.uint8)
    n_bytes = np.array([len(b) for b in raw], np.int16)
    audio_ids = None
    a_start = a_end = None
    probe = tok.convert_tokens_to_ids("<a_0_0>")
    if isinstance(probe, int) and probe >= 0 and probe != tok.unk_token_id:
        audio_ids = np.array(
            [
                [tok.convert_tokens_to_ids(T.code_token("audio", lv, c)) for c in range(T.CODEBOOK_SIZE)]
                for lv in range(T.NUM_LEVELS)
            ],
            np.int64,
        )
        a_start = int(tok.convert_tokens_to_ids(T.AUDIO_START))
        a_end = int(tok.convert_tokens_to_ids(T.AUDIO_END))
    log.debug(
        "token tables for %d tokens (byte-level %s): %d usable in script lines", n, byte_level, int(text_ok.sum())
    )
    return _Tables(
        n,
        _end_ids(tok),
        index_tokens,
        audio_ids,
        a_start,
        a_end,
        raw,
        text_ok,
        newline,
        starts_space,
        lead,
        all_cont,
        tail_need,
        first_byte,
        words,
        words_lo,
        joins,
        n_bytes,
        n_chars,
        texts,
        tails,
        _RunTable.build(texts),
    )


def _complete_prefix_len(b: bytes) -> int:
    """Length of the longest prefix of `b` (no leading continuation bytes) that decodes completely."""
    for k in range(len(b), max(len(b) - 4, -1), -1):
        try:
            b[:k].decode("utf-8")
            return k
        except UnicodeDecodeError:
            continue
    return 0


def _mask(n_rows: int, allowed: np.ndarray) -> np.ndarray:
    """Token ids where `allowed` (over the tokenizer's ids) is true; logits rows past it never qualify."""
    return np.flatnonzero(allowed[:n_rows])


# ---------------------------------------------------------------------------------------------- indices


def index_answer_valid(
    text: str, *, n_options: int, count: int | None, ascending: bool, permutation: bool, complete: bool
) -> bool:
    """Whether `text` is a valid index answer (``complete=True``) or a prefix of one (``complete=False``).

    Valid: 1-based numbers in 1..n_options without leading zeros, comma-separated, distinct; ascending
    when asked; exactly `count` of them (n_options for a permutation; any number >= 1 when None).
    """
    total = n_options if permutation else count
    items = text.split(",")
    done, part = items[:-1], items[-1]
    if total is not None and len(items) > total:
        return False
    used: list[int] = []
    for it in done:
        if not it or it[0] == "0" or not it.isdigit():
            return False
        v = int(it)
        if not 1 <= v <= n_options or v in used or (ascending and used and v <= used[-1]):
            return False
        used.append(v)
    if part and (part[0] == "0" or not part.isdigit()):
        return False
    last = used[-1] if (ascending and used) else 0
    remaining = (total - len(items)) if total is not None else 0  # numbers still needed after this one

    def fits(v: int) -> bool:
        if v in used or v <= last:
            return False
        if ascending:
            return n_options - v >= remaining
        return n_options - len(used) - 1 >= remaining

    if complete:
        return bool(part) and 1 <= int(part) <= n_options and fits(int(part)) and remaining == 0
    return any(fits(v) for v in range(1, n_options + 1) if str(v).startswith(part))


def choose_indices(
    model,
    tok,
    prompt: str,
    *,
    n_options: int,
    count: int | None,
    ascending: bool,
    permutation: bool,
    sample: bool = False,
    temperature: float = 1.0,
    seed: int = 0,
) -> list[int]:
    """The model's clip numbers (1-based, as prompts show them) under the answer constraints.

    Selection: ``ascending=True`` and `count` numbers (None: any number >= 1); sorting:
    ``permutation=True`` (each of 1..n_options once, in the model's order).
    """
    if n_options < 1:
        raise ConfigError(f"n_options must be >= 1, got {n_options}")
    if permutation:
        count = n_options
    if count is not None and not 1 <= count <= n_options:
        raise ConfigError(f"cannot choose {count} distinct clips of {n_options}")
    tables = _tables(tok)
    if not tables.index_tokens:
        raise ConfigError("the tokenizer has no digit tokens")
    picker = _Picker(sample, temperature, seed)
    session = _Session(model, tok, prompt)
    valid = functools.partial(
        index_answer_valid, n_options=n_options, count=count, ascending=ascending, permutation=permutation
    )

    def continuations(text: str) -> list[tuple[int, str]]:
        return [(i, s) for i, s in tables.index_tokens if valid(text + s, complete=False)]

    text = ""
    ok = continuations(text)
    try:
        for _ in range((len(str(n_options)) + 1) * n_options + 1):  # every token adds a character
            end_ok = valid(text, complete=True)
            allowed = [i for i, _ in ok] + (tables.end_ids[:1] if end_ok else [])
            choice = picker.pick(session.logits, np.array(allowed))
            if end_ok and choice == tables.end_ids[0]:
                break
            text += dict(ok)[choice]
            ok = continuations(text)
            if not ok:  # a complete answer nothing can extend: no need to ask the model for its end
                break
            session.feed(choice)
        else:  # pragma: no cover - bounded by the answer's length
            raise AssertionError(f"index decoding did not finish: {text!r}")
    finally:
        session.finish()
    assert valid(text, complete=True), text
    return [int(x) for x in text.split(",")]


# ---------------------------------------------------------------------------------------------- BGM codes


def generate_audio_codes(
    model, tok, prompt: str, *, sample: bool = False, temperature: float = 1.0, seed: int = 0
) -> np.ndarray:
    """(8,) int64 audio codes: the model's ``<|audio_start|>`` + 8 a-tokens (levels 0..7) answer."""
    tables = _tables(tok)
    if tables.audio_ids is None or tables.audio_start is None:
        raise ConfigError("the tokenizer has no AutoCut audio tokens (<a_l_c>): not an extended-vocabulary model")
    picker = _Picker(sample, temperature, seed)
    session = _Session(model, tok, prompt)
    codes = np.zeros(T.NUM_LEVELS, np.int64)
    try:
        logits = session.feed(tables.audio_start)  # the answer's fixed opening
        for level in range(T.NUM_LEVELS):
            choice = picker.pick(logits, tables.audio_ids[level])
            codes[level] = int(np.flatnonzero(tables.audio_ids[level] == choice)[0])
            if level + 1 < T.NUM_LEVELS:
                logits = session.feed(choice)
    finally:
        session.finish()
    return codes


# ---------------------------------------------------------------------------------------------- script lines


def generate_lines(
    model,
    tok,
    prompt: str,
    *,
    n_lines: int,
    max_words: Sequence[int],
    language: str,
    sample: bool = False,
    temperature: float = 1.0,
    seed: int = 0,
    min_words: Sequence[int] | None = None,
    max_chars: Sequence[int] | None = None,
) -> list[str]:
    """Exactly `n_lines` non-empty lines (the script answer), line i holding min_words[i]..max_words[i] words
    and at most max_chars[i] characters (what the voice can say in the clip).

    Words follow `autocut.speech.words.count_words` (Latin words, CJK characters); `language` only names
    the script for errors. Lines never hold code tokens, structural tokens or ``< > |``. A minimum the
    character cap leaves no room for is not reached (the line ends when nothing else fits).
    """
    if n_lines < 1:
        raise ConfigError(f"n_lines must be >= 1, got {n_lines}")
    if len(max_words) != n_lines:
        raise ConfigError(f"{len(max_words)} word limits for {n_lines} lines")
    lo = [1] * n_lines if min_words is None else [max(1, int(m)) for m in min_words]
    if len(lo) != n_lines:
        raise ConfigError(f"{len(lo)} minimum word counts for {n_lines} lines")
    hi = [int(m) for m in max_words]
    chars = [10**6] * n_lines if max_chars is None else [int(c) for c in max_chars]
    if len(chars) != n_lines or any(c < 1 for c in chars):
        raise ConfigError(f"need {n_lines} character limits >= 1, got {list(chars)}")
    if any(a > b for a, b in zip(lo, hi)):
        raise ConfigError(f"{language} script: a line's minimum words exceed its maximum ({lo} vs {hi})")
    t = _tables(tok)
    picker = _Picker(sample, temperature, seed)
    session = _Session(model, tok, prompt)
    end_id = t.end_ids[0]
    lines: list[str] = []
    try:
        for li in range(n_lines):
            lines.append(
                _one_line(
                    session, picker, t, lo[li], hi[li], chars[li], language, last=li == n_lines - 1, end_id=end_id
                )
            )
    finally:
        session.finish()
    return lines


def _one_line(
    session: _Session,
    picker: _Picker,
    t: _Tables,
    lo: int,
    hi: int,
    max_chars: int,
    language: str,
    *,
    last: bool,
    end_id: int,
) -> str:
    """Decode one line (feeding its tokens, and the newline that ends it unless it is the last line)."""
    line = bytearray()
    pending = 0  # continuation bytes the line's last character still needs (counted as a word already)
    soft = 4 * hi + 8  # tokens after which the line is steered to its end (any token may be punctuation)
    n_rows = min(t.n_tok, int(session.logits.shape[0]))
    plain_newline = np.flatnonzero(t.newline & (t.n_bytes == 1))
    usable = t.lang_ok(language)
    per_word = 1 if language == "zh" else 2  # fewest characters a further word takes (CJK char; space + letter)
    for step in range(soft + 4 * hi + 16):
        complete = line[: len(line) - _tail_len(line, pending)].decode("utf-8")
        count_lo = count_words(complete)  # words for sure (the open character may merge into a word)
        count = count_lo + int(pending > 0)  # at most
        room = max_chars - len(complete) - int(pending > 0)  # characters still allowed
        merges = (t.joins & (not pending and _last_chunk_word(complete))).astype(np.int16)
        delta = t.words - merges  # words a token adds, at most ...
        delta_lo = t.words_lo - merges  # ... and at least
        if pending:  # only bytes that continue the open character
            utf8 = (t.all_cont & (t.n_bytes <= pending)) | (~t.all_cont & (t.lead == pending))
            if len(line) - len(complete.encode()) == 1 and line[-1] in _SECOND_BYTE:
                b_lo, b_hi = _SECOND_BYTE[line[-1]]
                utf8 &= (t.first_byte >= b_lo) & (t.first_byte <= b_hi)
        else:
            utf8 = t.lead == 0
        # Room for the words still needed after this token, so the minimum stays reachable under the cap.
        reserve = per_word * np.maximum(0, lo - count_lo - delta_lo)
        ok = usable & utf8 & ~t.newline & (count + delta <= hi) & (t.n_chars + reserve <= room)
        ends_here = np.zeros_like(ok)
        if not last and not pending and line:
            ends_here = (
                usable
                & t.newline
                & (t.lead == 0)
                & (delta <= max(0, hi - count))
                & (count + delta >= lo)
                & (t.n_chars <= max(room, 0))
            )
        if not line:
            ok &= ~t.starts_space
        if not pending:
            ok &= t.runs.allowed(complete)
        if pending:
            ok &= _completes_allowed(t, np.flatnonzero(ok), bytes(line[len(complete.encode()) :]), pending, language)
        if step >= soft:
            if pending:
                pass  # finish the open character first
            elif count < lo:
                ok &= delta_lo >= 1
                ends_here[:] = False
            else:
                ok[:] = False
        can_end = last and not pending and count >= lo and bool(line)
        allowed = _mask(n_rows, ok | ends_here)
        if can_end:
            allowed = np.append(allowed, end_id)
        if allowed.size == 0 and not pending and line:
            # Nothing fits (a minimum the character cap leaves no room for, or a character that added a
            # word the tables did not foresee): end the line here.
            allowed = np.array([end_id]) if last else plain_newline[:1]
            can_end = last
        if allowed.size == 0:
            raise AssertionError(f"script line decoding stuck at {bytes(line)!r} ({count} words, {lo}..{hi})")
        choice = picker.pick(session.logits, allowed)
        if can_end and choice == end_id:
            return complete.strip()
        b = t.raw[choice]
        if t.newline[choice]:
            line += b[:-1]
            session.feed(choice)
            return line.decode("utf-8").strip()
        line += b
        if pending and t.all_cont[choice]:
            pending -= len(b)
        else:
            pending = int(t.tail_need[choice])
        session.feed(choice)
    raise AssertionError(f"script line did not end: {bytes(line)!r}")  # pragma: no cover - bounded by `soft`


def _completes_allowed(t: _Tables, ids: np.ndarray, open_char: bytes, pending: int, language: str) -> np.ndarray:
    """Mask over the vocabulary: which of `ids` continue the open character into an allowed one."""
    out = np.zeros(t.n_tok, bool)
    seen: dict[bytes, bool] = {}
    for i in ids.tolist():
        head = t.raw[i][:pending]
        ok = seen.get(head)
        if ok is None:
            full = open_char + head
            ok = _char_ok(full.decode("utf-8"), language) if len(head) == pending else _prefix_feasible(full, language)
            seen[head] = ok
        out[i] = ok
    return out


def _tail_len(line: bytearray, pending: int) -> int:
    """Bytes of the incomplete last character of `line` (0 when complete)."""
    if not pending:
        return 0
    k = 1
    while k <= len(line) and 0x80 <= line[-k] <= 0xBF:
        k += 1
    return min(k, len(line))
