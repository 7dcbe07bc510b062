"""Knowledge-base retrieval benchmark: recall@1/@5, MRR and p50/p95 search latency.

Ingests the bundled documents into a throwaway embedded PostgreSQL (+pgvector), then
runs every question of `knowledge/retrieval_set.yaml` through `knowledge.retrieve.search`
(query embedding + one hybrid SQL query, as the `faq_search` tool does). Latency is per
search, end to end, after a warm-up.

    .venv/bin/python -m benchmarks.retrieval [--provider local|openai] [--repeat 3] [--show]

`--provider openai` uses OPENAI_API_KEY / OPENAI_BASE_URL / HIBACHI_EMBEDDING_MODEL.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from hibachi.db import create_engine, create_sessionmaker, unit_of_work
from hibachi.embedded import start_postgres
from hibachi.migrate import upgrade_async
from hibachi.settings import Settings
from knowledge.embeddings import Embedder, LocalMiniLM, build_embedder
from knowledge.evaluation import RetrievalScores, evaluate, load_cases
from knowledge.ingest import ingest

AIM_RECALL_AT_5 = 0.95
AIM_P95_MS = 50.0


async def run(settings: Settings, embedder: Embedder, *, repeat: int, show: bool) -> None:
    await upgrade_async(settings.async_database_url)
    engine = create_engine(settings)
    sessions = create_sessionmaker(engine)
    try:
        started = time.perf_counter()
        async with unit_of_work(sessions) as session:
            report = await ingest(session, embedder=embedder)
        print(
            f"ingest: {report.documents} documents, {report.chunks} chunks, {report.embedded} embedded "
            f"({report.embedding_tokens} tokens) with {report.model} in {time.perf_counter() - started:.2f} s"
        )
        async with unit_of_work(sessions) as session:
            again = await ingest(session, embedder=embedder)
        print(f"re-ingest: {again.embedded} embedded, {again.unchanged} unchanged, {again.deleted} deleted")

        cases = load_cases()
        async with sessions() as session:
            await evaluate(session, embedder=embedder, cases=cases[:10])  # warm-up
            scores = RetrievalScores()
            for _ in range(repeat):
                scores.results.extend((await evaluate(session, embedder=embedder, cases=cases)).results)
        p50, p95 = scores.latency_percentile(50), scores.latency_percentile(95)
        recall5 = scores.recall_at(5)
        slowest = max(r.latency_ms for r in scores.results)
        print(
            f"{len(cases)} questions x {repeat}: recall@1={scores.recall_at(1):.3f} "
            f"recall@3={scores.recall_at(3):.3f} recall@5={recall5:.3f} MRR={scores.mrr:.3f}  "
            f"search latency p50={p50:.1f} ms p95={p95:.1f} ms max={slowest:.1f} ms"
        )
        print(
            f"aims: recall@5 >= {AIM_RECALL_AT_5} {'met' if recall5 >= AIM_RECALL_AT_5 else 'MISSED'}; "
            f"p95 < {AIM_P95_MS:.0f} ms {'met' if p95 < AIM_P95_MS else 'MISSED'}"
        )
        if show:
            seen: set[str] = set()
            for miss in scores.misses(1):
                if miss.case.q in seen:
                    continue
                seen.add(miss.case.q)
                top = f"{miss.top.source}#{miss.top.section}" if miss.top else "-"
                print(f"  rank={miss.rank}  {miss.case.q!r}  expected={miss.case.a}  got={top}")
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--provider", choices=["local", "openai"], default="local")
    parser.add_argument(
        "--repeat", type=int, default=3, help="passes over the question set (latency samples)"
    )
    parser.add_argument("--show", action="store_true", help="list questions whose top passage missed")
    args = parser.parse_args()
    env = Settings()
    embedder: Embedder
    if args.provider == "openai":
        if not env.openai_api_key:
            raise SystemExit("--provider openai needs OPENAI_API_KEY")
        embedder = build_embedder(env)
    else:
        embedder = LocalMiniLM()
    with tempfile.TemporaryDirectory(prefix="hibachi-bench-") as tmp:
        data_dir = Path(tmp)
        data_dir.chmod(0o755)  # the embedded server runs as its own OS user
        url, server = start_postgres(data_dir)
        try:
            settings = Settings(_env_file=None, hibachi_data_dir=data_dir, database_url=url)
            asyncio.run(run(settings, embedder, repeat=args.repeat, show=args.show))
        finally:
            server.cleanup()


if __name__ == "__main__":
    main()
