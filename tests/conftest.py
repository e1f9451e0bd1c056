"""Shared pytest fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Under pytest-xdist every worker is a process of its own: one intra-op thread each keeps the
# workers from oversubscribing the cores (torch's default of one thread per core made the small
# trainings of the suite several times slower on a 2-core machine). Set before torch is imported;
# subprocesses started by tests inherit it. An explicit OMP_NUM_THREADS wins.
if os.environ.get("PYTEST_XDIST_WORKER") and "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "methods"))


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Give every test its own manifest cache directory."""
    monkeypatch.setenv("GEOCISS_CACHE", str(tmp_path_factory.mktemp("cache")))
