"""End-to-end: SQLAlchemy (sync and async engines) and Django against the lab, inside the pod.

Each framework is configured as its documentation shows, with the service name ``database`` and
``sslmode=verify-full``; the only kubealias line is ``kubealias.sqlalchemy.install(engine)``,
``ENGINE: "kubealias.django"``, or (Django >= 5.1 with its stock backend)
``OPTIONS["pool"]["connection_class"] = kubealias.psycopg.Connection``. Each has a negative
control without that line.
"""

from __future__ import annotations

from typing import Any

import pytest

from integrations.pod import lab as L
from integrations.postgres import lab as P
from integrations.postgres.lab import PgLab, described

pytestmark = pytest.mark.pod


@pytest.fixture(scope="module")
def sqlalchemy_results(pg_lab: PgLab) -> dict[str, Any]:
    pg_lab.reset()
    out: dict[str, Any] = pg_lab.run_client("pg_sqlalchemy")
    return out


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_sqlalchemy_engine(sqlalchemy_results: dict[str, Any], pg_lab: PgLab, kind: str) -> None:
    result = sqlalchemy_results[kind]
    assert result == {
        "described": described(P.EXTERNAL, L.DATABASE_TARGET, L.DATABASE_IP, pg_lab.port),
        "one": 1,
    }, result
    control = sqlalchemy_results[f"{kind}-control"]
    assert 'does not match host name "database"' in control.get("error", ""), control


@pytest.fixture(scope="module")
def django_results(pg_lab: PgLab) -> dict[str, Any]:
    pg_lab.reset()
    out: dict[str, Any] = pg_lab.run_client("pg_django")
    return out


@pytest.mark.parametrize(
    ("alias", "pooled"),
    [("kubealias", False), ("kubealias-pool", True), ("stock-pool-connection-class", True)],
)
def test_django_cursor(
    django_results: dict[str, Any], pg_lab: PgLab, alias: str, pooled: bool
) -> None:
    result = django_results[alias]
    assert result == {
        "described": described(P.EXTERNAL, L.DATABASE_TARGET, L.DATABASE_IP, pg_lab.port),
        "one": 1,
        "vendor": "postgresql",
        "pooled": pooled,
    }, result


def test_django_stock_backend_fails_without_kubealias(django_results: dict[str, Any]) -> None:
    control = django_results["stock"]
    assert 'does not match host name "database"' in control.get("error", ""), control
