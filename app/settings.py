"""Service configuration: one pydantic-settings class, read from XENTROPY_* variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting can be given as an environment variable ``XENTROPY_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="XENTROPY_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address `xentropy serve` binds to.")
    port: int = Field(8000, ge=0, le=65535, description="Port `xentropy serve` listens on.")
    workers: int = Field(1, ge=1, le=64, description="Worker processes for `xentropy serve`.")
    log_level: str = Field("info", description="uvicorn log level.")
    max_body_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 beyond)."
    )
    max_elements: int = Field(
        20_000_000, ge=1, description="Most array elements one request may carry (413 beyond)."
    )


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once (a FastAPI dependency; tests override it)."""
    return Settings()
