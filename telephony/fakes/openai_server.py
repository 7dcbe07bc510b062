"""A local OpenAI API server: Chat Completions (streamed or not, with tools) and Embeddings.

Speaks what the `openai` SDK sends and reads (protocols.md section 6): point
`AsyncOpenAI(base_url=fake.base_url, api_key=...)` at it (`base_url` ends in `/v1`).

- `POST /v1/embeddings`: deterministic pseudo-embeddings. Each word of the text is
  hashed to a fixed random unit vector; the text's vector is their normalised sum, so
  equal texts get equal vectors and texts sharing words are close (useful for
  retrieval tests). 1536 dimensions (3072 for `text-embedding-3-large`), shortened and
  renormalised by `dimensions`; `encoding_format` `float` or `base64` (float32 LE).
- `POST /v1/chat/completions`: answers from a script. `script(Reply(...), Fail(...),
  Stall(...))` queues one item per request; when the queue is empty the `responder`
  (a callable `request_json -> Reply | Fail | Stall`) decides, else `default_reply`.
  Streams are SSE chunks exactly like OpenAI's: role chunk, content pieces, tool-call
  fragments (id and name on the first, arguments split anywhere), a finish chunk, the
  usage chunk when `stream_options.include_usage`, then `data: [DONE]`.

Requests that would get a 400 from OpenAI for broken tool-call pairing (a `tool`
message without its assistant `tool_calls`, or a call left unanswered) get one here too.
Every request is recorded in `requests`; a missing or wrong bearer key gets a 401.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Self

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from telephony.fakes.server import RecordedRequest, ServedFake

DEFAULT_API_KEY = "sk-test-fake-openai"
EMBEDDING_DIMENSIONS = {"text-embedding-3-large": 3072}
DEFAULT_EMBEDDING_DIMENSIONS = 1536
# What OpenAI reports as `model` for an alias (the dated snapshot), as real responses do.
SNAPSHOTS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-5-mini": "gpt-5-mini-2025-08-07",
}
WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(slots=True, frozen=True)
class ToolCallSpec:
    """One tool call the scripted model makes; `id` defaults to a fresh `call_...`."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None


@dataclass(slots=True, frozen=True)
class Reply:
    """A scripted assistant answer: text, tool calls, or both (text first).

    `prompt_tokens` / `completion_tokens` override the rough counts (chars / 4);
    `chunk_chars` is the size of streamed content and argument pieces; `chunk_delay`
    sleeps between chunks; `cut_after=n` ends the stream after n chunks with no finish
    chunk, no usage and no `[DONE]` (a cut stream).
    """

    text: str | None = None
    tool_calls: Sequence[ToolCallSpec] = ()
    model: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0
    chunk_chars: int = 6
    chunk_delay: float = 0.0
    cut_after: int | None = None


@dataclass(slots=True, frozen=True)
class Fail:
    """Answer with this HTTP status and OpenAI's error body (no `x-should-retry` unless set)."""

    status: int = 500
    message: str = "The server had an error while processing your request. Sorry about that!"
    type: str = "server_error"
    code: str | None = None
    should_retry: bool | None = None


@dataclass(slots=True, frozen=True)
class Stall:
    """Answer `then` `seconds` after the request arrived (before the response headers).

    Like a provider's latency, the time is counted from the request's arrival, so the
    fake's own work on the request (parsing, building the answer) happens within it and
    does not add to it.
    """

    seconds: float
    then: Reply | Fail | None = None


Scripted = Reply | Fail | Stall
Responder = Callable[[dict[str, Any]], Scripted]


class OpenAIApiError(Exception):
    def __init__(self, status: int, message: str, *, type_: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type_, code

    def response(self, *, should_retry: bool | None = None) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": None, "code": self.code}}
        headers = {} if should_retry is None else {"x-should-retry": str(should_retry).lower()}
        return JSONResponse(body, status_code=self.status, headers=headers)


class FakeOpenAI(ServedFake):
    """OpenAI's Chat Completions and Embeddings endpoints, scripted for tests and evals.

    `requests` holds every request (JSON body, headers, status answered);
    `chat_requests` / `embedding_requests` are the JSON bodies per endpoint. A long-lived
    fake (the voice benchmark's) sets `record = False`: thousands of kept bodies made its
    garbage collector's full passes stall its event loop for up to ~90 ms.
    """

    def __init__(self, *, api_key: str | None = DEFAULT_API_KEY, default_reply: Reply | None = None) -> None:
        # api_key=None accepts any bearer key (but still requires one).
        self.api_key = api_key
        self.default_reply = default_reply or Reply(text="Okay.")
        self.responder: Responder | None = None
        self.requests: list[RecordedRequest] = []
        self.record = True
        self._script: deque[Scripted] = deque()
        self._embedding_script: deque[Fail | Stall] = deque()
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
            ]
        )

    @property
    def base_url(self) -> str:
        """The SDK's `base_url`: `http://127.0.0.1:<port>/v1`."""
        return super().base_url + "/v1"

    def script(self, *items: Scripted) -> Self:
        """Queue answers for the next chat completion requests, one item per request."""
        with self._lock:
            self._script.extend(items)
        return self

    def script_embeddings(self, *items: Fail | Stall) -> Self:
        """Queue failures or stalls for the next embeddings requests."""
        with self._lock:
            self._embedding_script.extend(items)
        return self

    @property
    def pending(self) -> int:
        """Scripted chat answers not yet used."""
        with self._lock:
            return len(self._script)

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.json for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def embedding_requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.json for r in self.requests if r.path.endswith("/embeddings")]

    def reset(self) -> None:
        """Forget recorded traffic, the scripts and the responder; record again."""
        with self._lock:
            self.record = True
            self.requests.clear()
            self._script.clear()
            self._embedding_script.clear()
            self.responder = None

    # -- HTTP handlers -------------------------------------------------------------

    async def _record(self, request: Request) -> RecordedRequest:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = None
        record = RecordedRequest(request.method, request.url.path, dict(request.headers), json=body)
        if self.record:
            with self._lock:
                self.requests.append(record)
        return record

    def _accept(self, request: Request, record: RecordedRequest) -> dict[str, Any]:
        """The authenticated request's JSON object, or the error OpenAI would answer."""
        self._authenticate(request)
        if not isinstance(record.json, dict):
            raise OpenAIApiError(
                400,
                "We could not parse the JSON body of your request.",
                type_="invalid_request_error",
            )
        return record.json

    def _authenticate(self, request: Request) -> None:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise OpenAIApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization "
                "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                type_="invalid_request_error",
            )
        if self.api_key is not None and key.strip() != self.api_key:
            raise OpenAIApiError(
                401,
                f"Incorrect API key provided: {key[:3]}***{key[-4:]}.",
                type_="invalid_request_error",
                code="invalid_api_key",
            )

    async def _chat_completions(self, request: Request) -> Response:
        arrived = time.monotonic()
        record = await self._record(request)
        try:
            body = self._accept(request, record)
            _validate_chat(body)
            item = self._next_chat(body)
            stall = 0.0
            while isinstance(item, Stall):
                stall += item.seconds
                item = item.then or self.default_reply
            if isinstance(item, Fail):
                await _pause_until(request, arrived + stall)
                response: Response = OpenAIApiError(
                    item.status, item.message, type_=item.type, code=item.code
                ).response(should_retry=item.should_retry)
            else:
                answer = _answer(item, body)  # built within the stall, not after it
                await _pause_until(request, arrived + stall)
                if body.get("stream"):
                    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                    response = _EventStream(
                        _stream(item, answer, include_usage=include_usage),
                        media_type="text/event-stream",
                        headers={"cache-control": "no-cache", "x-request-id": _rid("req_")},
                    )
                else:
                    response = JSONResponse(_completion(answer), headers={"x-request-id": _rid("req_")})
        except OpenAIApiError as error:
            response = error.response()
        record.status = response.status_code
        return response

    def _next_chat(self, body: dict[str, Any]) -> Scripted:
        with self._lock:
            if self._script:
                return self._script.popleft()
            responder = self.responder
        return responder(body) if responder is not None else self.default_reply

    async def _embeddings(self, request: Request) -> Response:
        arrived = time.monotonic()
        record = await self._record(request)
        try:
            body = self._accept(request, record)
            with self._lock:
                item = self._embedding_script.popleft() if self._embedding_script else None
            stall = 0.0
            while isinstance(item, Stall):
                stall += item.seconds
                then = item.then
                item = then if isinstance(then, Fail) else None
            await _pause_until(request, arrived + stall)
            if isinstance(item, Fail):
                response: Response = OpenAIApiError(
                    item.status, item.message, type_=item.type, code=item.code
                ).response(should_retry=item.should_retry)
            else:
                response = JSONResponse(_embeddings(body))
        except OpenAIApiError as error:
            response = error.response()
        record.status = response.status_code
        return response


class _EventStream(StreamingResponse):
    """A streamed answer sent straight out, as starlette does for ASGI 2.4 servers.

    Under uvicorn's ASGI 2.3 starlette would run it in a task group beside a disconnect
    watcher, a task and a cancel scope per response, each adding to the first chunk's
    time; uvicorn drops what is sent after a disconnect anyway.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with contextlib.suppress(OSError):
            await self.stream_response(send)


async def _pause_until(request: Request, deadline: float) -> None:
    """Sleep until `deadline` (`time.monotonic()`), or less if the client hangs up first
    (as a client timeout does)."""
    seconds = deadline - time.monotonic()
    if seconds <= 0:
        return

    async def hang_up() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(hang_up(), seconds)


# -- embeddings ------------------------------------------------------------------------


@lru_cache(maxsize=65536)
def _word_vector(word: str, dims: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(dims)


def embed_text(text: str, *, dims: int = DEFAULT_EMBEDDING_DIMENSIONS) -> list[float]:
    """The fake's embedding of one text (also usable directly by tests): unit length."""
    words = WORD.findall(text.lower()) or [text]
    total = np.zeros(dims)
    for word in words:
        total += _word_vector(word, dims)
    norm = float(np.linalg.norm(total))
    return [float(x) for x in (total / norm if norm else total)]


def _embeddings(body: dict[str, Any]) -> dict[str, Any]:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise OpenAIApiError(400, "you must provide a model parameter", type_="invalid_request_error")
    texts = _embedding_inputs(body.get("input"))
    native = EMBEDDING_DIMENSIONS.get(model, DEFAULT_EMBEDDING_DIMENSIONS)
    dims = body.get("dimensions") or native
    if not isinstance(dims, int) or not 1 <= dims <= native:
        raise OpenAIApiError(
            400,
            f"This model does not support specifying dimensions of {dims}.",
            type_="invalid_request_error",
        )
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise OpenAIApiError(
            400,
            f"'{encoding}' is not one of ['float', 'base64'] - 'encoding_format'",
            type_="invalid_request_error",
        )
    data = []
    tokens = 0
    for index, text in enumerate(texts):
        vector = np.asarray(embed_text(text, dims=native)[:dims])
        vector = vector / (float(np.linalg.norm(vector)) or 1.0)
        tokens += _rough_tokens(text)
        embedding: list[float] | str = (
            base64.b64encode(np.asarray(vector, "<f4").tobytes()).decode()
            if encoding == "base64"
            else [float(x) for x in vector]
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _embedding_inputs(raw: Any) -> list[str]:
    """Strings, or token arrays (rendered as their numbers), one entry per embedding."""
    if isinstance(raw, str):
        raw = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(t, int) for t in raw):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise OpenAIApiError(400, "'input' is a required property", type_="invalid_request_error")
    texts: list[str] = []
    for item in raw:
        if isinstance(item, list) and item and all(isinstance(t, int) for t in item):
            texts.append(" ".join(f"t{t}" for t in item))
        elif isinstance(item, str) and item:
            texts.append(item)
        else:
            raise OpenAIApiError(
                400, "'$.input' is invalid. Please check the API reference.", type_="invalid_request_error"
            )
    return texts


# -- chat completions ---------------------------------------------------------------------


def _validate_chat(body: dict[str, Any]) -> None:
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise OpenAIApiError(400, "you must provide a model parameter", type_="invalid_request_error")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise OpenAIApiError(
            400, "'messages' must contain at least one message.", type_="invalid_request_error"
        )
    open_calls: set[str] = set()
    for position, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("system", "developer", "user", "assistant", "tool"):
            raise OpenAIApiError(
                400, f"Invalid value for 'messages[{position}].role'.", type_="invalid_request_error"
            )
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in open_calls:
                raise OpenAIApiError(
                    400,
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                    "message with 'tool_calls'.",
                    type_="invalid_request_error",
                    code=None,
                )
            open_calls.discard(call_id)
            continue
        if open_calls:
            raise OpenAIApiError(
                400,
                "An assistant message with 'tool_calls' must be followed by tool messages responding "
                f"to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
                f"{', '.join(sorted(open_calls))}",
                type_="invalid_request_error",
            )
        if role == "assistant":
            open_calls = {call["id"] for call in message.get("tool_calls") or []}
    if open_calls:
        raise OpenAIApiError(
            400,
            "An assistant message with 'tool_calls' must be followed by tool messages responding to "
            f"each 'tool_call_id'. The following tool_call_ids did not have response messages: "
            f"{', '.join(sorted(open_calls))}",
            type_="invalid_request_error",
        )


@dataclass(slots=True)
class _Answer:
    """A `Reply` made concrete for one request: ids, model name, token counts."""

    id: str
    model: str
    created: int
    text: str | None
    calls: list[tuple[str, str, str]]  # (id, name, arguments JSON)
    finish_reason: str
    usage: dict[str, Any]


def _answer(reply: Reply, body: dict[str, Any]) -> _Answer:
    calls = [
        (
            spec.id or _rid("call_"),
            spec.name,
            spec.arguments if isinstance(spec.arguments, str) else json.dumps(spec.arguments),
        )
        for spec in reply.tool_calls
    ]
    prompt = (
        reply.prompt_tokens
        if reply.prompt_tokens is not None
        else _rough_tokens(json.dumps(body.get("messages"))) + _rough_tokens(json.dumps(body.get("tools")))
    )
    completion = (
        reply.completion_tokens
        if reply.completion_tokens is not None
        else _rough_tokens(reply.text or "") + sum(_rough_tokens(c[1] + c[2]) for c in calls)
    )
    requested = str(body["model"])
    return _Answer(
        id=_rid("chatcmpl-"),
        model=reply.model or SNAPSHOTS.get(requested, requested),
        created=int(time.time()),
        text=reply.text,
        calls=calls,
        finish_reason=reply.finish_reason or ("tool_calls" if calls else "stop"),
        usage={
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": min(reply.cached_tokens, prompt), "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
    )


def _completion(answer: _Answer) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.text, "refusal": None}
    if answer.calls:
        message["tool_calls"] = [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            for call_id, name, arguments in answer.calls
        ]
    return {
        "id": answer.id,
        "object": "chat.completion",
        "created": answer.created,
        "model": answer.model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": answer.finish_reason}
        ],
        "usage": answer.usage,
        "system_fingerprint": "fp_fake0001",
    }


def _pieces(text: str, size: int) -> list[str]:
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)]


def _deltas(answer: _Answer, chunk_chars: int) -> list[tuple[dict[str, Any], str | None]]:
    """(delta, finish_reason) for every chunk of the stream, in order."""
    deltas: list[tuple[dict[str, Any], str | None]] = []
    if answer.text is not None or not answer.calls:
        deltas.append(({"role": "assistant", "content": "", "refusal": None}, None))
        deltas.extend(({"content": piece}, None) for piece in _pieces(answer.text or "", chunk_chars))
    # Tool calls: the first fragment of each carries id and name; arguments follow in
    # pieces, and parallel calls interleave (keyed by `index`, as OpenAI allows).
    fragments: list[list[dict[str, Any]]] = []
    for index, (call_id, name, arguments) in enumerate(answer.calls):
        head = {
            "index": index,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        rest = [{"index": index, "function": {"arguments": p}} for p in _pieces(arguments, chunk_chars)]
        fragments.append([head, *rest])
    first = not deltas
    for step in range(max((len(f) for f in fragments), default=0)):
        for frags in fragments:
            if step < len(frags):
                delta: dict[str, Any] = {"tool_calls": [frags[step]]}
                if first:
                    delta = {"role": "assistant", "content": None, **delta}
                    first = False
                deltas.append((delta, None))
    deltas.append(({}, answer.finish_reason))
    return deltas


async def _stream(reply: Reply, answer: _Answer, *, include_usage: bool) -> AsyncIterator[bytes]:
    for sent, (delta, finish) in enumerate(_deltas(answer, reply.chunk_chars)):
        if reply.cut_after is not None and sent >= reply.cut_after:
            return
        chunk: dict[str, Any] = {
            "id": answer.id,
            "object": "chat.completion.chunk",
            "created": answer.created,
            "model": answer.model,
            "system_fingerprint": "fp_fake0001",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            chunk["usage"] = None
        if reply.chunk_delay and sent:
            await asyncio.sleep(reply.chunk_delay)
        yield _sse(chunk)
    if include_usage:
        yield _sse(
            {
                "id": answer.id,
                "object": "chat.completion.chunk",
                "created": answer.created,
                "model": answer.model,
                "system_fingerprint": "fp_fake0001",
                "choices": [],
                "usage": answer.usage,
            }
        )
    yield b"data: [DONE]\n\n"


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _rough_tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


def _rid(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(18).replace("-", "x").replace("_", "y")
