"""Fixtures of the PostgreSQL end-to-end tests: the PostgreSQL lab inside the pod emulation.

``pg_lab`` is one started :class:`~integrations.postgres.lab.PgLab` (three PostgreSQL 15 servers
with TLS) for the whole session, on top of the session's ``pod`` (from ``tests/e2e/conftest.py``);
``pg_clean`` gives each test the default zone records, running servers and empty logs (counted
from an offset).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from integrations.pod.lab import LabUnavailable, PodLab
from integrations.postgres.lab import PgLab, unavailable_reason


def _unavailable(message: str) -> None:
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{message} (CI=true: the pod tests must run in CI)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pg_lab(pod: PodLab) -> Iterator[PgLab]:
    """The PostgreSQL servers, started in the pod's namespace for the session."""
    reason = unavailable_reason()
    if reason is not None:
        _unavailable(f"PostgreSQL lab unavailable: {reason}")
    lab = PgLab(pod)
    try:
        lab.start()
    except LabUnavailable as exc:
        _unavailable(f"PostgreSQL lab unavailable: {exc}")
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def pg_clean(pod: PodLab, pg_lab: PgLab) -> PgLab:
    """The lab with default zone records, named and every PostgreSQL running, and empty logs."""
    pod.ensure_running()
    pod.reset_records()
    pg_lab.ensure_running()
    pg_lab.clear_logs()
    return pg_lab
