"""End-to-end: ``examples/tls_context_app.py`` (pg8000 through the recipe) inside the pod.

Run as a pod would run it: ``python examples/tls_context_app.py`` with the article's
``DATABASE_*`` variables and the CA file, no ``KUBEALIAS_*``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from integrations.pod import lab as L
from integrations.postgres import lab as P
from integrations.postgres.lab import PgLab

pytestmark = pytest.mark.pod

APP = Path(__file__).resolve().parents[3] / "examples" / "tls_context_app.py"


def run(lab: PgLab, host: str, cafile: str) -> subprocess.CompletedProcess[str]:
    env = {
        "DATABASE_HOST": host,
        "DATABASE_PORT": str(lab.port),
        "DATABASE_NAME": lab.dbname,
        "DATABASE_USER": lab.user,
        "DATABASE_PASSWORD": lab.password,
        "DATABASE_CA": cafile,
    }
    proc = lab.pod.exec([sys.executable, str(APP)], env=env, timeout=60)
    assert lab.password not in proc.stdout + proc.stderr
    return proc


def test_the_example_verifies_the_external_name(pg_clean: PgLab) -> None:
    proc = run(pg_clean, "database", pg_clean.cafile)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (
        f"database: verified {L.DATABASE_TARGET}, connected to {L.DATABASE_IP} "
        f"port {pg_clean.port}\n"
        f"server {P.EXTERNAL}, database {pg_clean.dbname}, TLS TLSv1.3\n"
    )


def test_the_example_with_another_ca_fails(pg_clean: PgLab) -> None:
    proc = run(pg_clean, "database", pg_clean.wrong_ca_file)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "ssl.SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED]" in proc.stderr
    assert pg_clean.authorized(P.EXTERNAL) == []
