"""One `Settings` object, built at startup from the environment (and `.env`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_TWILIO_ACCOUNT_SID = "AC" + "0" * 32
DEV_TWILIO_AUTH_TOKEN = "dev-twilio-auth-token"


class Settings(BaseSettings):
    """Configuration named in the external contract; every field maps to one env var."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    hibachi_data_dir: Path = Field(default=Path("./.hibachi"))
    database_url: str | None = None
    redis_url: str | None = None
    public_base_url: str = "http://127.0.0.1:8000"
    hibachi_admin_api_key: str | None = None

    openai_api_key: str | None = None
    openai_base_url: str | None = None
    hibachi_llm_model: str = "gpt-4o-mini"
    # The cheaper model tried when the primary fails or stalls ("" = none); then the deterministic brain.
    hibachi_llm_fallback_model: str = "gpt-4.1-nano"
    # Seconds to wait for a model's first streamed chunk before falling back.
    hibachi_llm_first_token_timeout: float = 0.8
    # Whole-turn budget for LLM brains (all tool rounds) before falling back.
    hibachi_llm_turn_timeout: float = 12.0
    hibachi_embedding_model: str = "text-embedding-3-small"
    # Who scores each customer turn's sentiment: "vader" (offline) or "llm" (needs OPENAI_API_KEY).
    hibachi_sentiment: Literal["vader", "llm"] = "vader"
    hibachi_sentiment_model: str = "gpt-4.1-nano"
    # How long the SMS webhook waits for the agent to answer in TwiML before replying by REST instead.
    hibachi_sms_reply_wait_seconds: float = 10.0
    # JSON file overriding the cost meter's price table (see agent/cost.py).
    hibachi_price_table: Path | None = None

    deepgram_api_key: str | None = None
    deepgram_base_url: str | None = None

    twilio_account_sid: str = DEV_TWILIO_ACCOUNT_SID
    twilio_auth_token: str = DEV_TWILIO_AUTH_TOKEN
    twilio_api_base: str | None = None

    ringcentral_server_url: str | None = None
    ringcentral_client_id: str | None = None
    ringcentral_client_secret: str | None = None
    ringcentral_jwt: str | None = None
    ringcentral_verification_token: str | None = None

    stripe_api_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = None

    hibachi_run_worker: bool = True
    hibachi_db_pool_size: int = 20
    # The CPU time slice (us) `hibachi serve` asks Linux 6.12+ for, for itself and what it starts:
    # a longer one than the kernel's (~1.4 ms) keeps a busy event loop from being preempted in
    # the middle of a burst of calls' work (hibachi.sched). 0 leaves the kernel's.
    hibachi_sched_slice_us: int = Field(default=6000, ge=0, le=100_000)

    @field_validator("hibachi_sched_slice_us")
    @classmethod
    def _slice_the_kernel_takes(cls, value: int) -> int:
        if 0 < value < 100:
            raise ValueError("a scheduler slice is 0 (the kernel's) or 100-100000 us")
        return value

    # On SIGTERM, how long open requests and calls may take to finish before they are cancelled
    # (a cancelled call still saves its transcript and cost).
    hibachi_shutdown_grace_seconds: float = 20.0
    # Calls start with a key menu (1 book, 2 prices, 0 staff); 0 reaches staff either way.
    hibachi_voice_menu: bool = False

    @property
    def async_database_url(self) -> str:
        """The SQLAlchemy asyncpg URL; only valid once embedded servers are resolved."""
        if self.database_url is None:
            raise RuntimeError("database_url is not resolved; start the embedded servers first")
        url = self.database_url
        for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url[len(prefix) :]
        return url

    @property
    def ringcentral_enabled(self) -> bool:
        return bool(self.ringcentral_server_url and self.ringcentral_client_id)
