"""Knowledge base: ingest (split, embed, store, idempotent), hybrid search, the FAQ tool.

Real embedded PostgreSQL+pgvector and the real local ONNX MiniLM. Tables are truncated
before every test, so each test ingests; a memo over the real model (below) keeps that
cheap after the first time without changing any vector.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent.tools.base import ToolBox, ToolContext
from agent.tools.faq import faq_search
from hibachi.context import AppContext
from hibachi.db import unit_of_work
from hibachi.settings import Settings
from knowledge.embeddings import Embedder, LocalMiniLM, OpenAIEmbedder, build_embedder
from knowledge.evaluation import evaluate as evaluate_set
from knowledge.evaluation import load_cases
from knowledge.ingest import DEFAULT_DOCS, ensure_ingested, ingest, load_documents, split_document
from knowledge.models import KnowledgeChunk
from knowledge.retrieve import search, search_statement
from telephony.fakes.openai_server import DEFAULT_API_KEY, FakeOpenAI, embed_text
from tests.knowledge_support import RecordingEmbedder

RECALL_AT_5_GATE = 0.9


@pytest.fixture
def embedder(minilm_memo: dict[str, list[float]]) -> RecordingEmbedder:
    return RecordingEmbedder(LocalMiniLM(), minilm_memo)


@pytest.fixture
def docs_copy(tmp_path: Path) -> Path:
    target = tmp_path / "docs"
    shutil.copytree(DEFAULT_DOCS, target)
    return target


async def _ingest(
    db: async_sessionmaker[AsyncSession], embedder: Embedder, docs: Path = DEFAULT_DOCS
) -> None:
    async with unit_of_work(db) as session:
        await ingest(session, embedder=embedder, docs_dir=docs)


async def _chunk_ids(db: async_sessionmaker[AsyncSession]) -> dict[tuple[str, str], uuid.UUID]:
    async with db() as session:
        rows = await session.execute(
            select(KnowledgeChunk.id, KnowledgeChunk.source, KnowledgeChunk.content_hash)
        )
        return {(r.source, r.content_hash): r.id for r in rows}


def test_documents_split_into_titled_chunks_that_fit_the_model_window() -> None:
    chunks = load_documents(DEFAULT_DOCS)
    sources = {c.source for c in chunks}
    assert {"faq.md", "menu-and-prices.md", "allergies-and-dietary.md", "loyalty-rewards.md"} <= sources
    assert all(len(c.body) <= 900 for c in chunks)
    prices = [c for c in chunks if c.title == "Menu and prices > Price per person"]
    assert len(prices) == 1
    assert "$55" in prices[0].body
    assert prices[0].embed_text.startswith("Menu and prices > Price per person")

    long_section = "# Doc\n\n## Long\n\n" + "\n\n".join(f"Paragraph {i} " + "word " * 60 for i in range(12))
    pieces = split_document("long.md", long_section)
    assert len(pieces) > 3
    assert {p.title for p in pieces} == {"Doc > Long"}
    assert [p.ordinal for p in pieces] == list(range(len(pieces)))


def test_retrieval_set_labels_name_real_sections() -> None:
    sections = {
        f"{c.source}#{c.title.split(' > ')[1] if ' > ' in c.title else ''}"
        for c in load_documents(DEFAULT_DOCS)
    }
    cases = load_cases()
    assert len(cases) >= 80
    unknown = {label for case in cases for label in case.a if label not in sections}
    assert not unknown


async def test_ingest_stores_every_chunk_with_a_vector_of_the_embedders_dimension(
    db: async_sessionmaker[AsyncSession], embedder: RecordingEmbedder
) -> None:
    async with unit_of_work(db) as session:
        report = await ingest(session, embedder=embedder)
    expected = load_documents(DEFAULT_DOCS)
    assert report.chunks == report.embedded == len(expected)
    assert report.documents == len(list(DEFAULT_DOCS.glob("*.md")))
    async with db() as session:
        row = (
            await session.execute(
                text(
                    "SELECT count(*) AS n, min(vector_dims(embedding)) AS lo,"
                    " max(vector_dims(embedding)) AS hi, bool_and(dims = 384) AS dims_ok,"
                    " bool_and(tsv <> ''::tsvector) AS tsv_ok, count(DISTINCT embedding_model) AS models"
                    " FROM knowledge_chunks"
                )
            )
        ).one()
    assert (row.n, row.lo, row.hi) == (len(expected), 384, 384)
    assert (row.dims_ok, row.tsv_ok, row.models) == (True, True, 1)


async def test_reingest_embeds_nothing_when_the_documents_are_unchanged(
    db: async_sessionmaker[AsyncSession], embedder: RecordingEmbedder
) -> None:
    await _ingest(db, embedder)
    before = await _chunk_ids(db)
    calls = embedder.calls

    async with unit_of_work(db) as session:
        report = await ingest(session, embedder=embedder)

    assert embedder.calls == calls  # not even an empty call
    assert (report.embedded, report.deleted, report.unchanged) == (0, 0, len(before))
    assert await _chunk_ids(db) == before


async def test_editing_one_section_re_embeds_only_that_chunk_and_removed_files_are_deleted(
    db: async_sessionmaker[AsyncSession], embedder: RecordingEmbedder, docs_copy: Path
) -> None:
    await _ingest(db, embedder, docs_copy)
    before = await _chunk_ids(db)
    menu = docs_copy / "menu-and-prices.md"
    menu.write_text(
        menu.read_text().replace("Lobster tail: +$15 per guest.", "Lobster tail: +$18 per guest.")
    )
    removed = [key for key in before if key[0] == "privacy-and-account.md"]
    (docs_copy / "privacy-and-account.md").unlink()
    embedder.texts.clear()

    async with unit_of_work(db) as session:
        report = await ingest(session, embedder=embedder, docs_dir=docs_copy)

    assert report.embedded == 1
    assert len(embedder.texts) == 1
    assert "+$18" in embedder.texts[0]
    assert report.deleted == len(removed) + 1
    after = await _chunk_ids(db)
    assert len(after) == len(before) - len(removed)
    kept = {k: v for k, v in before.items() if k in after}
    assert len(kept) == len(after) - 1  # every untouched chunk kept its row
    async with db() as session:
        upgrades = await session.scalar(
            select(KnowledgeChunk.body).where(KnowledgeChunk.title == "Menu and prices > Premium upgrades")
        )
    assert upgrades is not None
    assert "+$18" in upgrades


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("do you guys bring the grill?", {"how-it-works.md", "faq.md"}),
        ("is there gluten free soy sauce", {"allergies-and-dietary.md"}),
        ("how much for kids", {"menu-and-prices.md", "faq.md"}),
        ("text STOP to unsubscribe?", {"texting-and-reminders.md"}),
        ("if I cancel the day before do I get my $100 back", {"deposits-and-cancellations.md", "faq.md"}),
        ("when do my rewards points expire", {"loyalty-rewards.md"}),
    ],
)
async def test_search_puts_the_answering_passage_first(
    db: async_sessionmaker[AsyncSession], embedder: RecordingEmbedder, question: str, expected: set[str]
) -> None:
    await _ingest(db, embedder)
    async with db() as session:
        result = await search(session, embedder=embedder, query=question, k=4)
    assert len(result.passages) == 4
    assert result.passages[0].source in expected, result.passages[0]
    assert result.confident
    assert result.embedding_tokens > 0
    scores = [p.score for p in result.passages]
    assert scores == sorted(scores, reverse=True)
    assert 0 < scores[0] <= 1


async def test_recall_at_5_over_the_labelled_question_set_meets_the_gate(
    db: async_sessionmaker[AsyncSession], embedder: RecordingEmbedder
) -> None:
    await _ingest(db, embedder)
    cases = load_cases()
    async with db() as session:
        scores = await evaluate_set(session, embedder=LocalMiniLM(), cases=cases, k=5)
    misses = [(m.case.q, m.rank) for m in scores.misses(5)]
    assert scores.recall_at(5) >= RECALL_AT_5_GATE, misses
    assert scores.mrr >= 0.75


async def test_out_of_scope_question_is_flagged_not_confident(
    db: async_sessionmaker[AsyncSession], embedder: RecordingEmbedder
) -> None:
    await _ingest(db, embedder)
    async with db() as session:
        result = await search(session, embedder=embedder, query="what's the weather in Paris tomorrow", k=3)
    assert not result.confident


async def test_faq_search_tool_answers_from_the_knowledge_base(
    app_ctx: AppContext, embedder: RecordingEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(build_embedder(app_ctx.settings), LocalMiniLM)  # no OpenAI key in tests
    monkeypatch.setitem(app_ctx.extras, "embedder", embedder)
    first = await ensure_ingested(app_ctx)
    second = await ensure_ingested(app_ctx)
    assert first.embedded == first.chunks > 0
    assert (second.embedded, second.unchanged) == (0, first.chunks)

    box = ToolBox(
        ToolContext(
            app=app_ctx,
            conversation_id=uuid.uuid4(),
            channel="sms",
            customer_phone="+14085551234",
            location_slug="bay-area",
            now=datetime.now(UTC),
        ),
        [faq_search],
    )
    result = await box.call("faq_search", {"question": "do you have anything for vegans?"})

    assert result.ok
    assert "vegan" in result.message.lower()
    passages = result.data["passages"]
    assert passages[0]["source"] == "allergies-and-dietary.md"
    assert {"text", "source", "score"} <= passages[0].keys()
    assert result.data["confident"] is True
    assert result.data["embedding_tokens"] > 0
    assert box.calls[0].name == "faq_search"

    bad = await box.call("faq_search", {"question": ""})
    assert not bad.ok
    assert bad.error == "InvalidArguments"


async def _plan(session: AsyncSession, embedder: Embedder, query: str) -> str:
    """The query plan of the hybrid search, with the plans a table this small would get ruled out.

    A few dozen chunks are cheaper to scan and sort than to search by index; sequential
    scans and sorts are made expensive so the plan shows which indexes the query can use.
    """
    vector = (await embedder.embed([query]))[0]
    await session.execute(text("ANALYZE knowledge_chunks"))  # this test's rows, not earlier tests'
    await session.execute(text("SET LOCAL enable_seqscan = off"))
    await session.execute(text("SET LOCAL enable_sort = off"))
    rows = await session.execute(
        text("EXPLAIN " + search_statement(embedder.dimensions).text),
        {
            "q": "[" + ",".join(map(str, vector)) + "]",
            "text": query,
            "model": embedder.model,
            "n": 20,
            "k": 4,
            "w_vec": 1.0,
            "w_fts": 0.5,
        },
    )
    return "\n".join(str(r[0]) for r in rows)


async def test_hybrid_search_can_use_the_hnsw_and_gin_indexes(
    db: async_sessionmaker[AsyncSession], embedder: RecordingEmbedder
) -> None:
    await _ingest(db, embedder)
    async with unit_of_work(db) as session:
        plan = await _plan(session, embedder, "how much is the lobster upgrade")
        text_plan = "\n".join(
            str(r[0])
            for r in await session.execute(
                text("EXPLAIN SELECT id FROM knowledge_chunks WHERE tsv @@ CAST(:q AS tsquery)"),
                {"q": "lobster | upgrad"},
            )
        )
    assert "Index Scan using ix_knowledge_chunks_embedding_hnsw_384" in plan
    # The OR-query is folded to a constant at plan time, so the GIN index can serve it.
    assert "tsv @@ '''much'' | ''lobster'' | ''upgrad'''::tsquery" in plan
    assert "ix_knowledge_chunks_tsv" in text_plan


async def test_openai_embedder_speaks_the_real_sdk_and_switching_provider_re_embeds(
    db: async_sessionmaker[AsyncSession], embedder: RecordingEmbedder, fake_openai: FakeOpenAI
) -> None:
    settings = Settings(
        _env_file=None,
        openai_api_key=DEFAULT_API_KEY,
        openai_base_url=fake_openai.base_url,
        hibachi_embedding_model="text-embedding-3-small",
    )
    openai = build_embedder(settings)
    assert isinstance(openai, OpenAIEmbedder)
    assert (openai.name, openai.model, openai.dimensions) == ("openai", "text-embedding-3-small", 1536)

    vectors = await openai.embed(["reschedule appointment", "gluten free tamari"])
    assert vectors.tokens > 0
    assert [len(v) for v in vectors] == [1536, 1536]
    expected = embed_text("gluten free tamari")
    assert max(abs(a - b) for a, b in zip(vectors[1], expected, strict=True)) < 1e-6  # base64 float32
    request = fake_openai.embedding_requests[-1]
    assert request["model"] == "text-embedding-3-small"
    assert request["dimensions"] == 1536
    assert request["input"] == ["reschedule appointment", "gluten free tamari"]

    await _ingest(db, embedder)
    async with unit_of_work(db) as session:
        report = await ingest(session, embedder=openai)
    chunks = len(load_documents(DEFAULT_DOCS))
    assert (report.embedded, report.deleted, report.unchanged) == (chunks, chunks, 0)
    async with db() as session:
        dims = (
            await session.execute(text("SELECT DISTINCT vector_dims(embedding) FROM knowledge_chunks"))
        ).all()
    assert dims == [(1536,)]

    async with unit_of_work(db) as session:
        result = await search(session, embedder=openai, query="premium upgrades: lobster tail", k=3)
        plan = await _plan(session, openai, "lobster tail")
    assert result.model == "text-embedding-3-small"
    assert result.embedding_tokens > 0
    assert "Menu and prices > Premium upgrades" in [p.title for p in result.passages]
    assert "ix_knowledge_chunks_embedding_hnsw_1536" in plan
    await openai.aclose()
