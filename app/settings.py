"""Service configuration: one pydantic-settings class, read from XENTROPY_* variables."""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from xentropy.calibration import MAX_BINS

_PRINTABLE_KEY = re.compile(r"[!-~]+")

LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]


class Settings(BaseSettings):
    """Every setting can be given as an environment variable ``XENTROPY_<NAME>``."""

    # hide_input_in_errors: a validation error (printed at start-up) never shows a key.
    model_config = SettingsConfigDict(
        env_prefix="XENTROPY_", extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    host: str = Field("127.0.0.1", description="Address `xentropy serve` binds to.")
    port: int = Field(
        8000,
        ge=0,
        le=65535,
        # PORT is the platform convention (container platforms, PaaS): used when
        # XENTROPY_PORT is not set.
        validation_alias=AliasChoices("XENTROPY_PORT", "PORT"),
        description="Port `xentropy serve` listens on (XENTROPY_PORT, else PORT).",
    )
    workers: int = Field(1, ge=1, le=64, description="Worker processes for `xentropy serve`.")
    log_level: LogLevel = Field("info", description="Log level of uvicorn and the access log.")
    access_log: bool = Field(True, description="One JSON line per request on stdout.")
    graceful_timeout: int = Field(
        20,
        ge=0,
        le=3600,
        description="Seconds in-flight requests get to finish after SIGTERM (then cancelled).",
    )
    drain_delay: float = Field(
        0.0,
        ge=0,
        le=300,
        description="Seconds between SIGTERM and closing the listener, /readyz answering 503 "
        "meanwhile, so that load balancers stop sending traffic first.",
    )
    max_body_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 beyond)."
    )
    max_elements: int = Field(
        20_000_000, ge=1, description="Most array elements one request may carry (413 beyond)."
    )
    max_bins: int = Field(
        MAX_BINS,
        ge=1,
        le=MAX_BINS,
        description="Most calibration bins one request may ask for (`n_bins`; 422 beyond).",
    )
    max_class_bins: int = Field(
        10_000_000,
        ge=1,
        description="Most classes × bins of one calibration request (422 beyond): the "
        "per-class statistics hold at most that many bins.",
    )
    max_bootstrap_work: int = Field(
        50_000_000_000,
        ge=1,
        description="Most bootstrap work of one calibration request with `confidence_level` "
        "(422 beyond), in sample-replicates (one sample's share of one replicate of the binned "
        "statistics, about 10 ns): replicates × Σ over the reports with intervals (the batch, "
        "each group, each label) of their samples, plus the fixed cost of `smooth_ece` and the "
        "bins `ece_sweep` may try (`xentropy.calibration.calibration_bootstrap_work`). The "
        "default admits 1000 replicates of 20 million samples.",
    )
    body_timeout: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Seconds a request may take to send its whole body (408 beyond): a slow "
        "or stalled client does not hold its request open forever.",
    )
    max_header_bytes: int = Field(
        64 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="Largest request head (request line and headers) accepted; larger gets "
        "431 and the connection is closed, after reading at most this much.",
    )
    max_header_count: int = Field(
        100, ge=8, le=10_000, description="Most header fields in one request (431 beyond)."
    )
    max_url_bytes: int = Field(
        8 * 1024,
        ge=256,
        le=16 * 1024 * 1024,
        description="Longest request target (path and query string); longer gets 414.",
    )
    header_timeout: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Seconds a connection may take to send a request's headers, counted from "
        "its opening or the end of the previous response: a partial request gets 408, an "
        "idle connection is closed.",
    )
    write_timeout: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Seconds a response may wait for the client to read any of it; a client "
        "that stops reading for longer is disconnected and its buffered response freed.",
    )
    max_connections: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="Open connections per worker process. At the limit the connection idle "
        "longest (no request in progress) is closed to make room; when every connection has "
        "a request in progress, a new one gets 503.",
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated API keys; when any key is configured, /v1 needs one.",
    )
    api_keys_file: Path | None = Field(
        None, description="File with one API key per line (blank lines and # comments skipped)."
    )
    metrics_require_key: bool = Field(
        True, description="Whether /metrics needs an API key when keys are configured."
    )

    _key_digests: tuple[bytes, ...] = PrivateAttr(default=())

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            keys = [key.strip() for key in value.split(",") if key.strip()]
            if value.strip() and not keys:
                # " , " is a list of keys gone wrong, not a wish for an open service.
                raise ValueError("XENTROPY_API_KEYS holds separators but no key")
            return keys
        return value

    @model_validator(mode="after")
    def _load_keys(self) -> Settings:
        keys = [key.strip() for key in self.api_keys if key.strip()]
        if self.api_keys_file is not None:
            try:
                text = self.api_keys_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"cannot read XENTROPY_API_KEYS_FILE: {exc.strerror}") from None
            from_file = [
                line.strip()
                for line in text.splitlines()
                if line.strip() and not line.lstrip().startswith("#")
            ]
            if not from_file:
                # An empty key file is a broken deployment, not a wish for an open service.
                raise ValueError(f"XENTROPY_API_KEYS_FILE {self.api_keys_file} holds no key")
            keys += from_file
        for number, key in enumerate(keys, 1):
            if not _PRINTABLE_KEY.fullmatch(key):
                # A header carries bytes; a key outside printable ASCII could never be sent
                # the way it is configured. Never print the key itself.
                raise ValueError(
                    f"API key {number} of {len(keys)} has characters outside printable ASCII "
                    "or spaces: keys must be made of the characters '!' to '~'"
                )
        # Only digests are kept: requests are compared by digest, in constant time.
        self._key_digests = tuple(hashlib.sha256(key.encode()).digest() for key in keys)
        return self

    @property
    def api_key_digests(self) -> tuple[bytes, ...]:
        """SHA-256 digests of every configured API key (empty: no authentication)."""
        return self._key_digests

    @property
    def auth_enabled(self) -> bool:
        return bool(self._key_digests)

    def __repr_args__(self) -> Any:
        # Never print keys (settings end up in logs and tracebacks).
        for name, value in super().__repr_args__():
            yield name, ("***" if name == "api_keys" and value else value)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once (a FastAPI dependency; tests override it)."""
    return Settings()
