"""A memo over the real local embedder, so tests that need the knowledge base ingest cheaply."""

from __future__ import annotations

from knowledge.embeddings import Embedder, Embeddings


class RecordingEmbedder:
    """A real embedder seen through a memo (text -> vector) that counts what it embeds."""

    def __init__(self, inner: Embedder, memo: dict[str, list[float]]) -> None:
        self.inner = inner
        self.memo = memo
        self.name = inner.name
        self.model = inner.model
        self.dimensions = inner.dimensions
        self.calls = 0
        self.texts: list[str] = []

    async def embed(self, texts: list[str]) -> Embeddings:
        self.calls += 1
        self.texts.extend(texts)
        missing = [t for t in dict.fromkeys(texts) if t not in self.memo]
        tokens = 0
        if missing:
            fresh = await self.inner.embed(missing)
            tokens = fresh.tokens
            self.memo.update(zip(missing, fresh, strict=True))
        return Embeddings([self.memo[t] for t in texts], tokens=tokens)
