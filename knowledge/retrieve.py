"""Hybrid retrieval: vector (pgvector HNSW, cosine) + full-text (tsvector), fused with RRF.

One query embedding and one SQL round trip. Each retriever ranks its best
`CANDIDATES` chunks; weighted reciprocal rank fusion (k = 60) adds w / (k + rank) from
each list. The full-text list weighs half as much as the vector list: on the labelled
question set (knowledge/retrieval_set.yaml) paraphrases are matched better by meaning
than by words, while full text still lifts exact terms ("tamari", "STOP", "filet").
The fused score is reported normalised to 0..1 (1 = ranked first by both). Full text
uses OR semantics over the question's stemmed words (a spoken question rarely contains
*all* the words of its answer), ranked with `ts_rank_cd`; equal text ranks share a rank,
so ties never depend on row ids and results are deterministic.

`confident` is a heuristic for analysts: the best cosine similarity reached a
per-dimension threshold, calibrated so that out-of-scope questions ("do you offer
dessert", "gift cards") fall below it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from functools import cache

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from knowledge.embeddings import Embedder
from knowledge.ingest import TITLE_SEPARATOR
from knowledge.models import SUPPORTED_DIMENSIONS

RRF_K = 60
CANDIDATES = 20
VECTOR_WEIGHT = 1.0
TEXT_WEIGHT = 0.5
#: Below this cosine similarity (query vs best passage) an answer is flagged not confident.
CONFIDENT_COSINE = {384: 0.4, 1536: 0.3}
DEFAULT_CONFIDENT_COSINE = 0.4


@dataclass(slots=True, frozen=True)
class Passage:
    """One retrieved chunk: its text, where it came from and how well it matched.

    `score` is the fused RRF score normalised to 0..1; `similarity` the cosine
    similarity between the query and the chunk's vector.
    """

    chunk_id: uuid.UUID
    text: str
    source: str
    title: str
    score: float
    similarity: float = 0.0

    @property
    def section(self) -> str:
        """The H2 section of the source document ("" for its introduction)."""
        parts = self.title.split(TITLE_SEPARATOR)
        return parts[1] if len(parts) > 1 else ""


@dataclass(slots=True, frozen=True)
class SearchResult:
    """The passages (best first), the tokens spent embedding the query, and a confidence flag."""

    passages: list[Passage]
    embedding_tokens: int
    model: str
    confident: bool
    latency_ms: float = 0.0
    query: str = field(default="", repr=False)


@cache
def search_statement(dims: int) -> TextClause:
    """The hybrid search SQL for `dims`-dimensional vectors (the cast selects the partial HNSW index)."""
    if dims not in SUPPORTED_DIMENSIONS:
        raise ValueError(f"no vector index for {dims} dimensions")
    vec = f"(embedding::vector({dims}))"
    query_vec = f"CAST(:q AS vector({dims}))"
    return text(
        f"""
        WITH vec AS (
            SELECT id, row_number() OVER (ORDER BY dist) AS rnk
            FROM (
                SELECT id, {vec} <=> {query_vec} AS dist
                FROM knowledge_chunks
                WHERE dims = {dims} AND embedding_model = :model
                ORDER BY {vec} <=> {query_vec}
                LIMIT :n
            ) nearest
        ),
        fts AS (
            SELECT id, rank() OVER (ORDER BY rank DESC) AS rnk
            FROM (
                SELECT id, ts_rank_cd(tsv, query) AS rank
                FROM knowledge_chunks,
                     CAST(regexp_replace(CAST(plainto_tsquery('english', :text) AS text),
                                         '&|<[0-9]*>|<->', '|', 'g') AS tsquery) AS query
                WHERE embedding_model = :model AND dims = {dims} AND tsv @@ query
                ORDER BY rank DESC, source, ordinal
                LIMIT :n
            ) matched
        ),
        fused AS (
            SELECT coalesce(vec.id, fts.id) AS id,
                   coalesce(CAST(:w_vec AS float8) / ({RRF_K} + vec.rnk), 0)
                   + coalesce(CAST(:w_fts AS float8) / ({RRF_K} + fts.rnk), 0) AS rrf
            FROM vec FULL OUTER JOIN fts ON vec.id = fts.id
        )
        SELECT c.id, c.body, c.source, c.title, fused.rrf,
               1 - ({vec} <=> {query_vec}) AS similarity
        FROM fused JOIN knowledge_chunks c ON c.id = fused.id
        ORDER BY fused.rrf DESC, similarity DESC
        LIMIT :k
        """
    )


async def search(session: AsyncSession, *, embedder: Embedder, query: str, k: int = 4) -> SearchResult:
    """The `k` passages that best answer `query` (hybrid vector + full-text, RRF-fused)."""
    started = time.perf_counter()
    query = query.strip()
    if not query:
        return SearchResult(passages=[], embedding_tokens=0, model=embedder.model, confident=False)
    vectors = await embedder.embed([query])
    literal = "[" + ",".join(f"{x:.7g}" for x in vectors[0]) + "]"
    rows = await session.execute(
        search_statement(embedder.dimensions),
        {
            "q": literal,
            "text": query,
            "model": embedder.model,
            "n": max(CANDIDATES, k),
            "k": k,
            "w_vec": VECTOR_WEIGHT,
            "w_fts": TEXT_WEIGHT,
        },
    )
    best_possible = (VECTOR_WEIGHT + TEXT_WEIGHT) / (RRF_K + 1)
    passages = [
        Passage(
            chunk_id=row.id,
            text=row.body,
            source=row.source,
            title=row.title,
            score=round(float(row.rrf) / best_possible, 4),
            similarity=round(float(row.similarity), 4),
        )
        for row in rows
    ]
    threshold = CONFIDENT_COSINE.get(embedder.dimensions, DEFAULT_CONFIDENT_COSINE)
    confident = bool(passages) and max(p.similarity for p in passages) >= threshold
    return SearchResult(
        passages=passages,
        embedding_tokens=vectors.tokens,
        model=embedder.model,
        confident=confident,
        latency_ms=(time.perf_counter() - started) * 1000,
        query=query,
    )
