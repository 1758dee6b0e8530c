"""One rendering of an SFT exchange into prompt and response text, shared by training and decoding.

The backbone's own chat template formats the exchange (the "qwen3" template of AutoCut Table 4 for
Qwen3 checkpoints, ChatML for SmolLM2). The prompt ends where generation starts; the response is the
rest of the rendered conversation (answer + end-of-turn marker), the only part that carries loss in SFT
(AutoCut 3.5). For Qwen3 the empty ``<think>\\n\\n</think>\\n\\n`` block belongs to the prompt
(``enable_thinking=False``): it is fixed text, so it earns no loss, and decoding sees the same prefix.

An empty system message is omitted, as LLaMA-Factory's qwen3 template does for the public data
(``"system": ""``).
"""

from __future__ import annotations

from dataclasses import dataclass

from autocut.errors import ConfigError

__all__ = ["ChatTurns", "render_exchange", "render_prompt"]

# Used only when a tokenizer ships no chat template (plain ChatML, what both supported families use).
_CHATML_USER = "<|im_start|>user\n{content}<|im_end|>\n"
_CHATML_SYSTEM = "<|im_start|>system\n{content}<|im_end|>\n"
_CHATML_ASSISTANT = "<|im_start|>assistant\n"


@dataclass(frozen=True)
class ChatTurns:
    """An exchange rendered as text: `prompt` (no loss) followed by `response` (loss)."""

    prompt: str
    response: str


def _messages(human: str, system: str) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": system}] if system else []
    msgs.append({"role": "user", "content": human})
    return msgs


def render_prompt(tokenizer, human: str, *, system: str = "") -> str:
    """Prompt text up to where the model starts answering."""
    if not getattr(tokenizer, "chat_template", None):
        return (
            (_CHATML_SYSTEM.format(content=system) if system else "")
            + _CHATML_USER.format(content=human)
            + _CHATML_ASSISTANT
        )
    return tokenizer.apply_chat_template(
        _messages(human, system), add_generation_prompt=True, tokenize=False, enable_thinking=False
    )


def render_exchange(tokenizer, human: str, answer: str, *, system: str = "") -> ChatTurns:
    """Prompt and response text of one human/assistant exchange."""
    prompt = render_prompt(tokenizer, human, system=system)
    if not getattr(tokenizer, "chat_template", None):
        return ChatTurns(prompt, f"{answer}<|im_end|>\n")
    full = tokenizer.apply_chat_template(
        [*_messages(human, system), {"role": "assistant", "content": answer}], tokenize=False, enable_thinking=False
    )
    if not full.startswith(prompt):
        # A template that renders earlier turns differently once an answer follows cannot be split
        # into prompt/response consistently with decoding: refuse rather than train on a mismatch.
        raise ConfigError(
            "the backbone's chat template renders the prompt differently when an answer follows; "
            "cannot split prompt and response consistently"
        )
    return ChatTurns(prompt, full[len(prompt) :])
