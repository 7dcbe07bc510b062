"""ORM models of the knowledge base: one row per embedded chunk of a seed document.

Schema design (made only by the Alembic migration generated from this module):

- `embedding` is a `vector` column *without* a fixed dimension, so one table holds the
  vectors of whichever provider is configured (384 for the local MiniLM, 1536 for
  OpenAI). Every row records the `embedding_model` that produced it and its `dims`;
  retrieval only ever compares a query with rows of the same model.
- pgvector cannot index an untyped `vector` column, so there is one *partial HNSW
  expression index per supported dimension*: `((embedding::vector(384)))` WHERE
  dims = 384, and the same for 1536 (cosine ops). Retrieval casts the column the same
  way and filters on `dims`, which lets the planner use the matching index. Adding a
  dimension is one more entry in `SUPPORTED_DIMENSIONS` and a migration.
- `tsv` is a generated `tsvector` (English; the title weighted above the body) with a
  GIN index, for the full-text half of hybrid retrieval.
- `content_hash` (sha256 of the text that was embedded) makes re-ingest idempotent: a
  chunk whose (source, model, hash) already exists is kept without re-embedding.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pgvector.sqlalchemy import Vector
from sqlalchemy import Computed, DateTime, Index, Integer, String, Text, UniqueConstraint, func, text
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from hibachi.db import Base, TimestampMixin, new_id

#: Embedding sizes that have an HNSW index (pgvector's HNSW handles at most 2,000).
SUPPORTED_DIMENSIONS = (384, 1536)

TSV_EXPRESSION = (
    "setweight(to_tsvector('english', coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english', coalesce(body, '')), 'B')"
)


def _hnsw_index(dims: int) -> Index:
    return Index(
        f"ix_knowledge_chunks_embedding_hnsw_{dims}",
        text(f"(embedding::vector({dims})) vector_cosine_ops"),
        postgresql_using="hnsw",
        postgresql_with={"m": 16, "ef_construction": 64},
        postgresql_where=text(f"dims = {dims}"),
    )


class KnowledgeChunk(TimestampMixin, Base):
    """One passage of a knowledge document, with its vector and full-text index entry."""

    __tablename__ = "knowledge_chunks"
    __table_args__ = (
        UniqueConstraint("source", "embedding_model", "content_hash", name="uq_knowledge_chunks_content"),
        Index("ix_knowledge_chunks_tsv", "tsv", postgresql_using="gin"),
        *(_hnsw_index(dims) for dims in SUPPORTED_DIMENSIONS),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    # The document's file name (e.g. "menu-and-prices.md"): the passage's citation.
    source: Mapped[str] = mapped_column(String(200))
    # "Document title > Section > Subsection".
    title: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text)
    ordinal: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    embedding_model: Mapped[str] = mapped_column(String(200))
    dims: Mapped[int] = mapped_column(Integer)
    embedding: Mapped[list[float]] = mapped_column(Vector())
    tsv: Mapped[str] = mapped_column(TSVECTOR, Computed(TSV_EXPRESSION, persisted=True))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )
