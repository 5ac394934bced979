"""Fixtures of the end-to-end tests in the pod emulation (DESIGN.md, "Test environment").

Every test in this directory is marked ``pod``. The session-scoped ``pod`` fixture is one
started :class:`~integrations.pod.lab.PodLab`; where the machine cannot host it (not root, no
``ip netns``, no BIND) the tests are skipped with the reason, except under ``CI=true`` where they
fail: in CI the pod tests must run.

After each test that used the lab, paused or stopped ``named`` servers are brought back and the
names the test changed with ``nsupdate`` are restored (one ``nsupdate`` run, only when something
changed), so tests can change zones freely.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parents[1]
if str(REPO_ROOT) not in sys.path:  # pytest does not put the repository root on sys.path
    sys.path.insert(0, str(REPO_ROOT))

from integrations.pod.lab import LabUnavailable, PodLab, unavailable_reason  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test collected from this directory with ``pod``."""
    for item in items:
        if E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.pod)


def _unavailable(reason: str) -> NoReturn:
    """Skip, or fail under CI=true, because the pod emulation cannot run here."""
    message = f"pod emulation unavailable: {reason}"
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{message} (CI=true: the pod tests must run in CI, not skip)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pod() -> Iterator[PodLab]:
    """A started pod emulation, shared by the whole session and torn down at its end."""
    reason = unavailable_reason()
    if reason is not None:
        _unavailable(reason)
    lab = PodLab()
    try:
        lab.start()
    except LabUnavailable as exc:
        _unavailable(str(exc))
    try:
        yield lab
    finally:
        lab.stop()


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
