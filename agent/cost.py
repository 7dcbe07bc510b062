"""The cost meter: a configurable price table and the arithmetic per billable item.

Defaults are dated list prices (USD); override any of them with a JSON file named by
`HIBACHI_PRICE_TABLE`, shaped like `DEFAULT_PRICES`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.models import CostKind

if TYPE_CHECKING:
    from agent.brain import ModelUsage

DEFAULT_PRICES: dict[str, Any] = {
    # $ per 1M tokens: input, cached input, output.
    "llm": {
        "gpt-4o-mini": {"input": "0.15", "cached": "0.075", "output": "0.60"},
        "gpt-4.1-mini": {"input": "0.40", "cached": "0.10", "output": "1.60"},
        "gpt-4.1-nano": {"input": "0.10", "cached": "0.025", "output": "0.40"},
        "gpt-5-mini": {"input": "0.25", "cached": "0.025", "output": "2.00"},
    },
    # $ per 1M tokens.
    "embedding": {"text-embedding-3-small": "0.02"},
    # $ per SMS segment (provider fee; carrier pass-through not included).
    "sms_segment": "0.0083",
    # $ per audio minute streamed to STT; $ per 1,000 TTS characters; $ per voice minute.
    "stt_minute": {"deepgram": "0.0048"},
    "tts_1k_chars": {"deepgram": "0.030"},
    "voice_minute": {"twilio": "0.0085"},
}

MILLION = Decimal(1_000_000)


@dataclass(slots=True, frozen=True)
class Charge:
    kind: CostKind
    item: str
    quantity: float
    usd: Decimal
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0


class PriceTable:
    """Prices by item; anything not listed (local engines, unknown models) costs $0."""

    def __init__(self, prices: dict[str, Any] | None = None) -> None:
        self.prices = prices or DEFAULT_PRICES

    @classmethod
    def load(cls, path: Path | None) -> PriceTable:
        if path is None:
            return cls()
        merged = {**DEFAULT_PRICES, **json.loads(path.read_text())}
        return cls(merged)

    def _llm_rates(self, model: str) -> dict[str, Any] | None:
        rates: dict[str, dict[str, Any]] = self.prices["llm"]
        # Responses name a dated snapshot ("gpt-4o-mini-2024-07-18"): use the longest family prefix.
        family = max((name for name in rates if model.startswith(name)), key=len, default=None)
        return rates[family] if family else None

    def llm_usage(self, usage: ModelUsage) -> Charge:
        """What one model request's usage costs."""
        return self.llm(
            model=usage.model,
            prompt_tokens=usage.prompt_tokens,
            cached_tokens=usage.cached_tokens,
            completion_tokens=usage.completion_tokens,
        )

    def llm(self, *, model: str, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> Charge:
        rates = self._llm_rates(model)
        usd = Decimal(0)
        if rates:
            usd = (
                (prompt_tokens - cached_tokens) * Decimal(rates["input"])
                + cached_tokens * Decimal(rates["cached"])
                + completion_tokens * Decimal(rates["output"])
            ) / MILLION
        return Charge(
            CostKind.llm,
            model,
            float(prompt_tokens + completion_tokens),
            usd,
            prompt_tokens=prompt_tokens,
            cached_tokens=cached_tokens,
            completion_tokens=completion_tokens,
        )

    def embedding(self, *, model: str, tokens: int) -> Charge:
        rate = self.prices["embedding"].get(model)
        usd = tokens * Decimal(rate) / MILLION if rate else Decimal(0)
        return Charge(CostKind.embedding, model, float(tokens), usd, prompt_tokens=tokens)

    def sms(self, *, provider: str, segments: int) -> Charge:
        return Charge(CostKind.sms, provider, float(segments), segments * Decimal(self.prices["sms_segment"]))

    def stt(self, *, engine: str, seconds: float) -> Charge:
        rate = self.prices["stt_minute"].get(engine)
        usd = Decimal(str(seconds)) / 60 * Decimal(rate) if rate else Decimal(0)
        return Charge(CostKind.stt, engine, seconds, usd)

    def tts(self, *, engine: str, characters: int) -> Charge:
        rate = self.prices["tts_1k_chars"].get(engine)
        usd = characters * Decimal(rate) / 1000 if rate else Decimal(0)
        return Charge(CostKind.tts, engine, float(characters), usd)

    def voice(self, *, provider: str, seconds: float) -> Charge:
        rate = self.prices["voice_minute"].get(provider)
        minutes = -(-int(seconds) // 60)  # billed per started minute
        usd = minutes * Decimal(rate) if rate else Decimal(0)
        return Charge(CostKind.voice, provider, seconds, usd)
