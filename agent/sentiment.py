"""Sentiment per customer turn (VADER, offline) and the "sharp negative trend" rule."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

# A turn at or below this compound score is clearly negative.
NEGATIVE = -0.4
# How far the score must fall from the customer's earlier average to count as sharp.
SHARP_DROP = 0.6


@cache
def _analyzer() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


def score(text: str) -> float:
    """VADER compound score in [-1, 1]; 0 for empty text."""
    if not text.strip():
        return 0.0
    return float(_analyzer().polarity_scores(text)["compound"])


def sharp_negative_trend(scores: Sequence[float]) -> bool:
    """True when the latest customer turns turned clearly negative (oldest first).

    Either two clearly negative turns in a row, or a clearly negative turn that falls
    sharply from the customer's earlier average.
    """
    if not scores or scores[-1] > NEGATIVE:
        return False
    if len(scores) >= 2 and scores[-2] <= NEGATIVE:
        return True
    earlier = scores[:-1]
    return bool(earlier) and sum(earlier) / len(earlier) - scores[-1] >= SHARP_DROP
