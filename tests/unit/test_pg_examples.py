"""The PostgreSQL examples, as far as they run without root: up to a verified TLS handshake.

A full run needs a PostgreSQL server, which runs only in the pod emulation (root): see
``tests/e2e/postgres/test_pg_examples_pod.py``. Here each example runs as a subprocess against
the in-process cluster DNS (``KUBEALIAS_*`` pointing at it, as ``cluster_dns.env()`` gives) and
``kubealias.testing.TLSServer`` in PostgreSQL mode (it answers the SSLRequest, then does TLS with a
certificate for the external name only, then says hello instead of speaking the protocol). So
the example gets past ``sslmode=verify-full`` for the external name, and fails right after with
libpq's protocol error: proof that it verified the right name, with no server and no root.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from kubealias.testing import ClusterDNS, TLSServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
POSTGRES_EXTERNAL = "prod-db.abc123.us-east-1.rds.amazonaws.com"
DATABASE_EXTERNAL = "mydb.abc123.us-east-1.rds.amazonaws.com"
PASSWORD = "Pw-example-7c1d"
#: What libpq says when the server answers the startup message with text: TLS was verified.
AFTER_TLS = "expected authentication request from server"


class Lab:
    def __init__(self, dns: ClusterDNS, server: TLSServer, cafile: str, wrong_cafile: str):
        self.dns, self.server, self.cafile, self.wrong_cafile = dns, server, cafile, wrong_cafile

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            **self.dns.env(),
            "DATABASE_PORT": str(self.server.port),
            "DATABASE_USER": "app",
            "DATABASE_PASSWORD": PASSWORD,
            "PGSSLROOTCERT": self.cafile,
            **extra,
        }


@pytest.fixture
def lab(cluster_dns: ClusterDNS, tmp_path: Path) -> Iterator[Lab]:
    cluster_dns.article_services(database_ip="127.0.0.1", postgres_ip="127.0.0.1")
    wrong_cafile = str(tmp_path / "wrong.pem")
    trustme.CA().cert_pem.write_to_path(wrong_cafile)
    with TLSServer(
        [POSTGRES_EXTERNAL, DATABASE_EXTERNAL], default_names=["default.invalid"], postgres=True
    ) as server:
        yield Lab(cluster_dns, server, server.cafile, wrong_cafile)


def run(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


EXAMPLE_RUNS = [
    pytest.param("psycopg_app.py", [], id="psycopg"),
    pytest.param("psycopg2_app.py", [], id="psycopg2"),
    pytest.param("psycopg2_app.py", ["--pool"], id="psycopg2-pool"),
    pytest.param("sqlalchemy_app.py", [], id="sqlalchemy"),
    pytest.param("sqlalchemy_app.py", ["--async"], id="sqlalchemy-async"),
]


@pytest.mark.parametrize(("script", "args"), EXAMPLE_RUNS)
@pytest.mark.parametrize("host", [None, "database"], ids=["default-postgres", "database"])
def test_example_verifies_the_external_name(
    lab: Lab, script: str, args: list[str], host: str | None
) -> None:
    env = lab.env(**({"DATABASE_HOST": host} if host else {}))
    result = run(script, env, *args)
    assert result.returncode == 1, result
    assert AFTER_TLS in result.stderr, result.stderr
    assert "does not match host name" not in result.stderr
    assert PASSWORD not in result.stderr + result.stdout


@pytest.mark.parametrize(("script", "args"), EXAMPLE_RUNS)
def test_example_still_verifies_the_certificate(lab: Lab, script: str, args: list[str]) -> None:
    """The control: with a CA that signed nothing here, the same run fails on the chain."""
    result = run(script, lab.env(PGSSLROOTCERT=lab.wrong_cafile), *args)
    assert result.returncode == 1, result
    assert "certificate verify failed" in result.stderr, result.stderr
    assert AFTER_TLS not in result.stderr
