"""Pick the speech providers from `Settings`: Deepgram with a key, else the embedded engines."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
from deepgram.core.api_error import ApiError
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from agent.speech.deepgram import DeepgramSTT, DeepgramTTS
from agent.speech.instrumented import InstrumentedSTT, InstrumentedTTS
from agent.speech.local import LocalSTT, LocalTTS

if TYPE_CHECKING:
    from hibachi.settings import Settings

# Transient failures worth another attempt (auth and bad-request ApiErrors fail the same way twice,
# but the SDK gives 5xx the same class; the attempt budget stays small).
DEEPGRAM_RETRYABLE = (OSError, httpx.HTTPError, InvalidHandshake, ConnectionClosed, ApiError)


def build_stt(settings: Settings) -> InstrumentedSTT:
    if settings.deepgram_api_key:
        return InstrumentedSTT(
            DeepgramSTT(api_key=settings.deepgram_api_key, base_url=settings.deepgram_base_url),
            retry_on=DEEPGRAM_RETRYABLE,
        )
    return InstrumentedSTT(LocalSTT(), open_timeout=30.0, attempts=1)  # first open loads the model


def build_tts(settings: Settings) -> InstrumentedTTS:
    if settings.deepgram_api_key:
        return InstrumentedTTS(
            DeepgramTTS(api_key=settings.deepgram_api_key, base_url=settings.deepgram_base_url),
            retry_on=DEEPGRAM_RETRYABLE,
        )
    return InstrumentedTTS(LocalTTS(), first_byte_timeout=30.0, attempts=1)
