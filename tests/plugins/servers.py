"""Pytest plugin: real servers and a store fixture over both backends.

Register with ``pytest_plugins = ["tests.plugins.servers"]`` in
tests/conftest.py.  Servers are session-scoped and started only when a test
asks for them, so memory-only runs never spawn Redis or PostgreSQL; under
pytest-xdist each worker starts its own on its own port.
"""

from __future__ import annotations

import uuid
from typing import Callable, Iterator

import pytest

from idp.store import MemoryStore, RedisStore, Store
from tests.servers import start_postgres, start_redis


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, stop = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    stop()


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, stop = start_postgres(tmp_path_factory.mktemp("postgres"))
    yield url
    stop()


@pytest.fixture(params=["memory", "redis"], ids=["memory", "redis"])
def make_store(request: pytest.FixtureRequest) -> Iterator[Callable[..., Store]]:
    """Factory for stores of the parametrized backend; ``make_store(ns)``.

    Each call without a namespace gets a unique one, so tests sharing one
    Redis never see each other's keys; every store is cleared afterwards.
    """
    made: list[Store] = []

    def make(namespace: str | None = None) -> Store:
        ns = namespace or f"test:{uuid.uuid4().hex}:"
        if request.param == "memory":
            s: Store = MemoryStore(ns)
        else:
            s = RedisStore(request.getfixturevalue("redis_url"), ns)
        made.append(s)
        return s

    yield make
    for s in made:
        s.clear()
        s.close()


@pytest.fixture
def store(make_store: Callable[..., Store]) -> Store:
    """A fresh store with a unique namespace, once per backend."""
    return make_store()
