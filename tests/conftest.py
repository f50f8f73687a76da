from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

from app.main import create_app
from app.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient


@pytest.fixture(scope="session")
def client() -> Iterator[TestClient]:
    """The app in-process; server exceptions become 500s, as a client would see them."""
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture()
def small_limits_client() -> Iterator[TestClient]:
    settings = Settings(max_body_bytes=4096, max_elements=100)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c
