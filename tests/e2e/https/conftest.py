"""Fixtures of the HTTP-client end-to-end tests: the HTTPS lab (nginx) inside the pod emulation.

``https_lab`` is one started :class:`~integrations.https.lab.HttpsLab` for the whole session, on
top of the session's ``pod`` (from ``tests/e2e/conftest.py``); ``https_clean`` gives each test
the default zone records, a running nginx and empty logs (counted from an offset).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from integrations.https.lab import HttpsLab
from integrations.pod.lab import LabUnavailable, PodLab


@pytest.fixture(scope="session")
def https_lab(pod: PodLab) -> Iterator[HttpsLab]:
    """nginx with the SNI virtual hosts, started in the pod's namespace for the session."""
    lab = HttpsLab(pod)
    try:
        lab.start()
    except LabUnavailable as exc:
        message = f"HTTPS lab unavailable: {exc}"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"{message} (CI=true: the pod tests must run in CI)", pytrace=False)
        pytest.skip(message)
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def https_clean(pod: PodLab, https_lab: HttpsLab) -> HttpsLab:
    """The lab with default zone records, named and nginx running, and empty logs."""
    pod.ensure_running()
    pod.reset_records()
    https_lab.ensure_running()
    https_lab.clear_logs()
    return https_lab
