"""Shared fixtures: an isolated cache dir per test session, markers by folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by its tier folder (unit / integration / emulated)."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in ("unit", "integration", "emulated"):
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Point NASC_CACHE_DIR at a temporary folder unless the run sets one (CI shares one)."""
    if os.environ.get("NASC_TEST_CACHE_DIR"):
        path = Path(os.environ["NASC_TEST_CACHE_DIR"])
        path.mkdir(parents=True, exist_ok=True)
    else:
        path = tmp_path_factory.mktemp("nasc-cache")
    os.environ["NASC_CACHE_DIR"] = str(path)
    return path


@pytest.fixture
def one_thread() -> Iterator[None]:
    """torch on one thread for the test: small modules run faster so, and beside a busy CI they do not
    compete for every core (`pytestmark = pytest.mark.usefixtures("one_thread")`)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
