"""The MariaDB lab, for the PyMySQL tests of this directory only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from integrations.mysql.lab import MariaLab, unavailable_reason
from integrations.pod.lab import PodLab
from tests.fix_labs import _running, _unavailable


@pytest.fixture(scope="session")
def maria_lab(pod: PodLab) -> Iterator[MariaLab]:
    """MariaDB with TLS in the pod's namespace, for the session."""
    reason = unavailable_reason()
    if reason is not None:
        _unavailable(f"MariaDB lab unavailable: {reason}")
    yield from _running(MariaLab(pod), "MariaDB lab")


@pytest.fixture
def maria_clean(maria_lab: MariaLab) -> MariaLab:
    """The lab running, with the default zones plus the ``mysql`` ExternalName."""
    maria_lab.reset()
    maria_lab.publish()
    return maria_lab
