"""Fixtures shared by every test: a clean environment (httpx's ``clean_environ`` idea).

The pod-emulation labs (``pod``, ``https_lab``, ``pg_lab`` and their ``*_clean`` variants) are in
``tests/fix_labs.py``, loaded here so that every test directory shares the same session labs.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.fix_labs"]

_PREFIXES = ("KUBEALIAS_", "PG")
_NAMES = {
    # requests prefers these over Session.verify (psf/requests#3829)
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "LOCALDOMAIN",
    "RES_OPTIONS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
}


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the KUBEALIAS_*, PG*, proxy or resolver variables of the machine."""
    for name in list(os.environ):
        if name.startswith(_PREFIXES) or name in _NAMES:
            monkeypatch.delenv(name, raising=False)
    import kubealias

    kubealias.set_default_resolver(None)
