"""API keys: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``.

Attach ``require_api_key`` to a router when including it::

    app.include_router(router, dependencies=[Depends(require_api_key)], responses=AUTH_RESPONSES)

With no key configured (XENTROPY_API_KEYS, XENTROPY_API_KEYS_FILE) it lets everything
through. The security schemes are FastAPI's own classes, so the OpenAPI document
declares both and generated clients can send either; ``auto_error=False`` because the
401 (with ``WWW-Authenticate: Bearer``) is ours.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any

from fastapi import HTTPException, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.api.body import SettingsDep
from app.api.schemas.common import ERROR_RESPONSES
from app.settings import Settings

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="BearerAuth",
    description="`Authorization: Bearer KEY`, when the service is configured with API keys.",
)
api_key_scheme = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="ApiKeyHeader",
    description="`X-API-Key: KEY`, the same keys as the bearer scheme.",
)

BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)]
HeaderKey = Annotated[str | None, Security(api_key_scheme)]

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {401: ERROR_RESPONSES[401]}


def key_matches(candidate: str, digests: tuple[bytes, ...]) -> bool:
    """Whether ``candidate`` is one of the keys, in time independent of which key
    matches or how much of it: every key is compared, digest against digest."""
    probe = hashlib.sha256(candidate.encode("utf-8", "surrogateescape")).digest()
    found = False
    for digest in digests:
        found |= hmac.compare_digest(probe, digest)
    return found


def check_api_key(
    settings: Settings, bearer: HTTPAuthorizationCredentials | None, header_key: str | None
) -> None:
    """Raise a 401 unless keys are off or one of the two headers carries a valid key."""
    digests = settings.api_key_digests
    if not digests:
        return
    # Surrounding spaces and tabs are not part of a key, in either header (a header value
    # "KEY   " and a bearer token "KEY " are the same key).
    sent = (bearer.credentials if bearer else None, header_key)
    candidates = [c.strip(" \t") for c in sent if c and c.strip(" \t")]
    if not candidates:
        raise HTTPException(
            status_code=401,
            detail="an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    valid = False
    for candidate in candidates:
        valid |= key_matches(candidate, digests)
    if not valid:
        raise HTTPException(
            status_code=401,
            detail="invalid API key",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )


async def require_api_key(
    settings: SettingsDep, bearer: BearerCredentials = None, header_key: HeaderKey = None
) -> None:
    """Router dependency: every operation of the router needs a valid key (when keys
    are configured). A coroutine, so that FastAPI calls it on the event loop (a ``def``
    dependency is a thread-pool hop per request; the check is a hash per key)."""
    check_api_key(settings, bearer, header_key)


async def require_metrics_key(
    settings: SettingsDep, bearer: BearerCredentials = None, header_key: HeaderKey = None
) -> None:
    """/metrics: like ``require_api_key`` unless XENTROPY_METRICS_REQUIRE_KEY is false."""
    if settings.metrics_require_key:
        check_api_key(settings, bearer, header_key)
