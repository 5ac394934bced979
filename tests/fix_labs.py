"""Fixtures of the pod emulation (docs/design.md, "Test environment") for every test directory.

Loaded from ``tests/conftest.py`` through ``pytest_plugins`` (psycopg's ``fix_*.py`` layout), so
``tests/e2e`` and ``tests/reliability`` use the **same** session labs: the pod, nginx and the
PostgreSQL servers start once per run, whichever directories are collected.

* ``pod`` (session): one started :class:`~integrations.pod.lab.PodLab`. Where the machine cannot
  host it (not root, no ``ip netns``, no BIND) the tests are skipped with the reason, except
  under ``CI=true`` where they fail: in CI the pod tests must run.
* ``https_lab`` (session): nginx with the SNI virtual hosts in the pod's namespace
  (:class:`~integrations.https.lab.HttpsLab`).
* ``pg_lab`` (session): the PostgreSQL 15 servers with TLS in the pod's namespace
  (:class:`~integrations.postgres.lab.PgLab`).
* ``pod_clean``, ``https_clean``, ``pg_clean``: per test, the default zone records, every
  server running and the logs counted afresh (from an offset).

Every test of ``tests/e2e`` is marked ``pod``, and so is every other test that uses the ``pod``
fixture (directly or through another fixture). After each test that used the lab, paused or
stopped ``named`` servers are brought back and the names the test changed with ``nsupdate`` are
restored (one ``nsupdate`` run, only when something changed), so tests can change zones freely.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest

from integrations._lab import Lab
from integrations.https.lab import HttpsLab
from integrations.pod.lab import LabUnavailable, PodLab, unavailable_reason
from integrations.postgres.lab import PgLab
from integrations.postgres.lab import unavailable_reason as pg_unavailable_reason

LabT = TypeVar("LabT", bound=Lab)

#: Every test collected from here is a pod test, whatever fixtures it asks for.
E2E_DIR = Path(__file__).resolve().parent / "e2e"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark with ``pod`` every test of ``tests/e2e`` and every test that uses ``pod``."""
    for item in items:
        if E2E_DIR in item.path.parents or "pod" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.pod)


def _unavailable(message: str) -> NoReturn:
    """Skip, or fail under CI=true, because a lab cannot run here."""
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{message} (CI=true: the pod tests must run in CI, not skip)", pytrace=False)
    pytest.skip(message)


def _running(lab: LabT, what: str) -> Iterator[LabT]:
    """Start ``lab`` (skip, or fail under CI, when the machine cannot host it), yield it, and
    stop it at the end."""
    try:
        lab.start()
    except LabUnavailable as exc:
        _unavailable(f"{what} unavailable: {exc}")
    try:
        yield lab
    finally:
        lab.stop()


# --------------------------------------------------------------------------------------------
# The pod (network namespace + BIND)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pod() -> Iterator[PodLab]:
    """A started pod emulation, shared by the whole session and torn down at its end."""
    reason = unavailable_reason()
    if reason is not None:
        _unavailable(f"pod emulation unavailable: {reason}")
    yield from _running(PodLab(), "pod emulation")


@pytest.fixture(autouse=True)
def _restore_pod(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used ``pod``: servers running again, changed names restored."""
    lab: PodLab | None = None
    if "pod" in request.fixturenames:
        lab = request.getfixturevalue("pod")
    yield
    if lab is not None and lab.started:
        lab.ensure_running()
        lab.reset_records()


@pytest.fixture
def pod_clean(pod: PodLab) -> PodLab:
    """The lab with the default records on both servers, running, and empty query logs."""
    pod.ensure_running()
    pod.reset_records()
    pod.clear_query_log("both")
    return pod


# --------------------------------------------------------------------------------------------
# nginx
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def https_lab(pod: PodLab) -> Iterator[HttpsLab]:
    """nginx with the SNI virtual hosts, started in the pod's namespace for the session."""
    yield from _running(HttpsLab(pod), "HTTPS lab")


@pytest.fixture
def https_clean(https_lab: HttpsLab) -> HttpsLab:
    """The lab with default zone records, named and nginx running, and empty logs."""
    return https_lab.reset(clear_logs=True)


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_lab(pod: PodLab) -> Iterator[PgLab]:
    """The PostgreSQL servers, started in the pod's namespace for the session."""
    reason = pg_unavailable_reason()
    if reason is not None:
        _unavailable(f"PostgreSQL lab unavailable: {reason}")
    yield from _running(PgLab(pod), "PostgreSQL lab")


@pytest.fixture
def pg_clean(pg_lab: PgLab) -> PgLab:
    """The lab with default zone records, named and every PostgreSQL running, and empty logs."""
    return pg_lab.reset(clear_logs=True)
