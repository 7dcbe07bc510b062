"""Ingest the knowledge documents: split, embed, store (idempotently).

Each Markdown file in `docs_dir` is split by its headers (LangChain's
`MarkdownHeaderTextSplitter`), long sections are split again by size
(`RecursiveCharacterTextSplitter`), and every chunk is embedded *with its title path*
("Menu and prices > Price per person") so short chunks keep their context.

Re-ingest is idempotent: a chunk is identified by (source, embedding model, sha256 of
the embedded text). Unchanged chunks are kept as they are (never re-embedded), new or
edited ones are embedded and inserted, and chunks of removed sections or files are
deleted. Chunks made by another embedding model are deleted too, so switching provider
re-embeds everything once.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter
from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from hibachi.context import AppContext
from hibachi.db import unit_of_work
from knowledge.embeddings import Embedder, LocalMiniLM, build_embedder
from knowledge.models import SUPPORTED_DIMENSIONS, KnowledgeChunk

log = logging.getLogger(__name__)

DEFAULT_DOCS = Path(__file__).parent / "docs"
TITLE_SEPARATOR = " > "
CHUNK_SIZE = 900  # characters; ~200 WordPiece tokens, inside MiniLM's 256-token window
CHUNK_OVERLAP = 120
INGEST_LOCK = 7_263_021_802  # serialises concurrent ingests (several server processes starting)

_HEADERS = [("#", "h1"), ("##", "h2"), ("###", "h3")]


@dataclass(slots=True, frozen=True)
class DocChunk:
    """One chunk as split from a document, before embedding."""

    source: str
    title: str
    body: str
    ordinal: int

    @property
    def embed_text(self) -> str:
        return f"{self.title}\n\n{self.body}"

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.embed_text.encode()).hexdigest()


@dataclass(slots=True, frozen=True)
class IngestReport:
    """What one ingest did; `embedding_tokens` is for the cost ledger."""

    model: str
    documents: int
    chunks: int
    embedded: int
    unchanged: int
    deleted: int
    embedding_tokens: int


def split_document(source: str, markdown: str) -> list[DocChunk]:
    """Split one Markdown document into titled chunks (identical chunks appear once)."""
    sections = MarkdownHeaderTextSplitter(headers_to_split_on=_HEADERS, strip_headers=True).split_text(
        markdown
    )
    splitter = RecursiveCharacterTextSplitter(chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP)
    fallback_title = Path(source).stem.replace("-", " ").capitalize()
    chunks: list[DocChunk] = []
    seen: set[str] = set()
    for section in sections:
        path = [str(section.metadata[key]) for _, key in _HEADERS if section.metadata.get(key)]
        title = TITLE_SEPARATOR.join(path) or fallback_title
        for piece in splitter.split_text(section.page_content):
            body = piece.strip()
            if not body:
                continue
            chunk = DocChunk(source=source, title=title, body=body, ordinal=len(chunks))
            if chunk.content_hash in seen:
                continue
            seen.add(chunk.content_hash)
            chunks.append(chunk)
    return chunks


def load_documents(docs_dir: Path) -> list[DocChunk]:
    """Every chunk of every `*.md` file in `docs_dir`, in a stable order."""
    chunks: list[DocChunk] = []
    for path in sorted(docs_dir.glob("*.md")):
        chunks.extend(split_document(path.name, path.read_text(encoding="utf-8")))
    return chunks


async def ingest(session: AsyncSession, *, embedder: Embedder, docs_dir: Path = DEFAULT_DOCS) -> IngestReport:
    """Bring the stored chunks in line with `docs_dir` for `embedder`'s model; only flushes."""
    if embedder.dimensions not in SUPPORTED_DIMENSIONS:
        raise ValueError(
            f"{embedder.model} makes {embedder.dimensions}-dimensional vectors; "
            f"the knowledge index supports {SUPPORTED_DIMENSIONS}"
        )
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": INGEST_LOCK})
    wanted = load_documents(docs_dir)

    other_models = await session.execute(
        delete(KnowledgeChunk).where(KnowledgeChunk.embedding_model != embedder.model)
    )
    deleted = other_models.rowcount or 0  # type: ignore[attr-defined]  # CursorResult for DML

    rows = await session.execute(
        select(KnowledgeChunk.id, KnowledgeChunk.source, KnowledgeChunk.content_hash).where(
            KnowledgeChunk.embedding_model == embedder.model
        )
    )
    existing: dict[tuple[str, str], uuid.UUID] = {(r.source, r.content_hash): r.id for r in rows}

    kept: dict[uuid.UUID, int] = {}
    new: list[DocChunk] = []
    for chunk in wanted:
        chunk_id = existing.pop((chunk.source, chunk.content_hash), None)
        if chunk_id is None:
            new.append(chunk)
        else:
            kept[chunk_id] = chunk.ordinal

    if existing:
        await session.execute(delete(KnowledgeChunk).where(KnowledgeChunk.id.in_(list(existing.values()))))
        deleted += len(existing)

    for chunk_id, ordinal in kept.items():
        await session.execute(
            update(KnowledgeChunk)
            .where(KnowledgeChunk.id == chunk_id, KnowledgeChunk.ordinal != ordinal)
            .values(ordinal=ordinal)
        )

    tokens = 0
    if new:
        vectors = await embedder.embed([chunk.embed_text for chunk in new])
        tokens = vectors.tokens
        await session.execute(
            insert(KnowledgeChunk),
            [
                {
                    "id": uuid.uuid4(),
                    "source": chunk.source,
                    "title": chunk.title,
                    "body": chunk.body,
                    "ordinal": chunk.ordinal,
                    "content_hash": chunk.content_hash,
                    "embedding_model": embedder.model,
                    "dims": embedder.dimensions,
                    "embedding": vector,
                }
                for chunk, vector in zip(new, vectors, strict=True)
            ],
        )
    await session.flush()
    report = IngestReport(
        model=embedder.model,
        documents=len({chunk.source for chunk in wanted}),
        chunks=len(wanted),
        embedded=len(new),
        unchanged=len(kept),
        deleted=deleted,
        embedding_tokens=tokens,
    )
    log.info("knowledge ingest: %s", report)
    return report


async def ensure_ingested(ctx: AppContext) -> IngestReport:
    """Ingest the bundled documents with the app's embedder (registering one if absent).

    Cheap when nothing changed (no embedding calls); call at server start and from
    `hibachi seed`. The transaction (and an advisory lock, so concurrent starts queue)
    is held while new chunks are embedded: seconds with the local model, longer with a
    remote provider on first start or after a provider switch.
    """
    embedder: Embedder | None = ctx.extras.get("embedder")
    if embedder is None:
        embedder = build_embedder(ctx.settings)
        ctx.extras["embedder"] = embedder
    if isinstance(embedder, LocalMiniLM):
        await embedder.warm()  # load the model now, not on the first caller's question
    async with unit_of_work(ctx.sessions) as session:
        return await ingest(session, embedder=embedder)
