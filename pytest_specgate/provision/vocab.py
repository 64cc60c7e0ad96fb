"""The byte-level BPE vocabulary of a random-weight GGUF, and its tokenizer metadata.

Why its own vocabulary: the production tokenizer is megabytes of merges that decode speed does not
depend on. A gpt2-style vocabulary with all 256 byte tokens encodes any text, a few merges give the
tokenizer real work, and Qwen's special tokens (at the end, as in Qwen's own vocabulary) let the
chat template and tool-call markers render.
"""

from __future__ import annotations

from dataclasses import dataclass

import gguf

__all__ = ["ADDED_TOKENS", "CONTROL_TOKENS", "MIN_VOCAB", "N_MERGES", "Vocab", "add_vocab", "byte_level_vocab"]


@dataclass(frozen=True)
class Vocab:
    """A gpt2-style byte-level BPE vocabulary: all 256 byte tokens, so any text encodes."""

    tokens: list[str]
    types: list[int]
    merges: list[str]
    specials: dict[str, int]


# Qwen3.6's special tokens: control tokens and the added (user-defined) tags its template emits.
CONTROL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|mask|>")
ADDED_TOKENS = ("<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")
_MERGE_TEXT = (
    "the of and to in is that for it as with was on be at by this have from or an are not but "
    "hello world weather function parameter name value call tool think answer question"
)


def _byte_chars() -> list[str]:
    """GPT-2's reversible byte -> printable character map, in byte order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def _merges() -> list[tuple[str, str]]:
    """Left-to-right merges that build " word" tokens for a few common words (Ġ is a space)."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for word in _MERGE_TEXT.split():
        left = "Ġ"
        for ch in word:
            pair = (left, ch)
            if left + ch not in seen:
                seen.add(left + ch)
                out.append(pair)
            left += ch
    return out


N_MERGES = len(_merges())
MIN_VOCAB = 256 + N_MERGES + len(CONTROL_TOKENS) + len(ADDED_TOKENS)


def byte_level_vocab(n_vocab: int) -> Vocab:
    """``n_vocab`` tokens: 256 bytes, the merges' products, filler tokens, then the specials.

    The specials sit at the end, as in Qwen's own vocabulary; fillers are never produced by the
    tokenizer but give the embedding and output matrices the requested number of rows.
    """
    if n_vocab < MIN_VOCAB:
        raise ValueError(f"n_vocab {n_vocab} < {MIN_VOCAB}")
    tokens = _byte_chars()
    merges = _merges()
    tokens += [a + b for a, b in merges]
    n_fill = n_vocab - len(tokens) - len(CONTROL_TOKENS) - len(ADDED_TOKENS)
    tokens += [f"[fill{i}]" for i in range(n_fill)]
    types = [int(gguf.TokenType.NORMAL)] * len(tokens)
    specials: dict[str, int] = {}
    for tok in CONTROL_TOKENS:
        specials[tok] = len(tokens)
        tokens.append(tok)
        types.append(int(gguf.TokenType.CONTROL))
    for tok in ADDED_TOKENS:
        specials[tok] = len(tokens)
        tokens.append(tok)
        types.append(int(gguf.TokenType.USER_DEFINED))
    return Vocab(tokens=tokens, types=types, merges=[f"{a} {b}" for a, b in merges], specials=specials)


def add_vocab(writer: gguf.GGUFWriter, vocab: Vocab, chat_template: str | None) -> None:
    """Tokenizer metadata as llama.cpp's converter writes it for Qwen3.5 (``pre`` = qwen35)."""
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen35")
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    writer.add_token_merges(vocab.merges)
    writer.add_eos_token_id(vocab.specials["<|im_end|>"])
    writer.add_pad_token_id(vocab.specials["<|endoftext|>"])
    writer.add_bos_token_id(vocab.specials["<|endoftext|>"])
    writer.add_add_bos_token(False)
    writer.add_uint32("tokenizer.ggml.mask_token_id", vocab.specials["<|mask|>"])
    if chat_template is not None:
        writer.add_chat_template(chat_template)
