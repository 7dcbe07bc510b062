"""Retrieval quality: a labelled question set and recall@k / MRR / latency over it.

The set (`retrieval_set.yaml`) maps how people ask to the document section(s) that
answer ("file.md#Section"; "file.md#" is the document's introduction). Used by the
test suite as a quality gate and by `benchmarks.retrieval`.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession

from knowledge.embeddings import Embedder
from knowledge.retrieve import Passage, search

DEFAULT_SET = Path(__file__).parent / "retrieval_set.yaml"


class RetrievalCase(BaseModel):
    """One question and the sections whose passages answer it."""

    q: str = Field(min_length=1)
    a: list[str] = Field(min_length=1)

    def is_hit(self, passage: Passage) -> bool:
        return f"{passage.source}#{passage.section}" in self.a


@dataclass(slots=True)
class CaseResult:
    case: RetrievalCase
    rank: int | None  # 1-based rank of the first relevant passage, None if missing from the top k
    latency_ms: float
    top: Passage | None


@dataclass(slots=True)
class RetrievalScores:
    results: list[CaseResult] = field(default_factory=list)

    def recall_at(self, k: int) -> float:
        return sum(1 for r in self.results if r.rank is not None and r.rank <= k) / len(self.results)

    @property
    def mrr(self) -> float:
        return sum(1 / r.rank for r in self.results if r.rank is not None) / len(self.results)

    def latency_percentile(self, pct: float) -> float:
        ordered = sorted(r.latency_ms for r in self.results)
        return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]

    @property
    def latency_mean(self) -> float:
        return statistics.fmean(r.latency_ms for r in self.results)

    def misses(self, k: int) -> list[CaseResult]:
        return [r for r in self.results if r.rank is None or r.rank > k]


def load_cases(path: Path = DEFAULT_SET) -> list[RetrievalCase]:
    return TypeAdapter(list[RetrievalCase]).validate_python(yaml.safe_load(path.read_text(encoding="utf-8")))


async def evaluate(
    session: AsyncSession, *, embedder: Embedder, cases: list[RetrievalCase], k: int = 5
) -> RetrievalScores:
    """Search every case (sequentially, as a caller would) and score the ranks."""
    scores = RetrievalScores()
    for case in cases:
        result = await search(session, embedder=embedder, query=case.q, k=k)
        rank = next((i for i, p in enumerate(result.passages, 1) if case.is_hit(p)), None)
        top = result.passages[0] if result.passages else None
        scores.results.append(CaseResult(case=case, rank=rank, latency_ms=result.latency_ms, top=top))
    return scores
