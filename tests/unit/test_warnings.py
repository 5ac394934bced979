"""The warnings kubealias emits: the "no allowlist" notice and unknown ``KUBEALIAS_*`` variables.

Both are Python warning categories (shown by default, filterable) and log records; ``kubealias
env`` and ``kubealias resolve`` show them too. The test suite ignores
``UnpinnedTargetWarning`` (pyproject.toml: which test would see the once-per-process notice
depends on the order); the tests here ask for it.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import kubealias
from kubealias import (
    Config,
    ConfigError,
    KubeAliasWarning,
    PolicyError,
    UnknownVariableWarning,
    UnpinnedTargetWarning,
)
from kubealias._cli import main
from kubealias._config import unknown_variables
from kubealias.testing import ClusterDNS

RDS = "mydb.abc123.us-east-1.rds.amazonaws.com"
NOTICE = (
    f"kubealias verifies TLS against names learned from DNS ({RDS} for database); set "
    "KUBEALIAS_ALLOWED_TARGETS to the external names you expect to pin them"
)


@pytest.fixture
def dns(cluster_dns: ClusterDNS) -> ClusterDNS:
    cluster_dns.external_name("database", "production", RDS)
    cluster_dns.record(RDS, "A", "127.0.0.10")
    cluster_dns.cluster_ip("orders", "production", "127.0.0.40")
    return cluster_dns


@pytest.fixture
def first_in_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As if no unpinned alias had been rewritten yet in this process."""
    monkeypatch.setattr("kubealias._resolver._warned_no_allowlist", False)
    yield


def test_categories_are_user_warnings() -> None:
    assert issubclass(UnpinnedTargetWarning, KubeAliasWarning)
    assert issubclass(UnknownVariableWarning, KubeAliasWarning)
    assert issubclass(KubeAliasWarning, UserWarning)


# --- item 11: the "no allowlist" notice ------------------------------------------------------


async def test_unpinned_notice_is_a_warning_once_per_process_and_a_log_record(
    dns: ClusterDNS, first_in_process: None, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="kubealias"),
        pytest.warns(UnpinnedTargetWarning) as record,
    ):
        dns.resolver().resolve("database")
        dns.resolver().resolve("database.production")  # another resolver: same process
        await dns.resolver().aresolve("database")
    assert [str(w.message) for w in record] == [NOTICE]
    logged = [r for r in caplog.records if "KUBEALIAS_ALLOWED_TARGETS" in r.getMessage()]
    assert [r.getMessage() for r in logged] == [NOTICE]
    assert logged[0].args == (RDS, "database")  # a template: log filters group on it


@pytest.mark.parametrize(
    "settings", [{"allowed_targets": "*.amazonaws.com"}, {}], ids=["pinned", "not-an-alias"]
)
def test_no_unpinned_warning_when_pinned_or_not_an_alias(
    dns: ClusterDNS, first_in_process: None, settings: dict[str, str]
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolver = dns.resolver(**settings)
        name = "database" if settings else "orders"
        resolver.resolve(name)
    assert not kubealias._resolver._warned_no_allowlist


def test_strict_refuses_without_the_warning(dns: ClusterDNS, first_in_process: None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(PolicyError):
            dns.resolver(strict=True).resolve("database")


def test_unpinned_warning_can_be_filtered_and_the_log_record_stays(
    dns: ClusterDNS, first_in_process: None, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="kubealias"),
        warnings.catch_warnings(record=True) as record,
    ):
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=UnpinnedTargetWarning)
        assert dns.resolver().resolve("database").tls_name == RDS
    assert record == []
    assert [r.getMessage() for r in caplog.records] == [NOTICE]


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter with Python's default warning filters."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_unpinned_warning_is_shown_by_default_once(dns: ClusterDNS) -> None:
    # No logging configured, no -W: the warning reaches stderr, once; stdout stays clean.
    code = (
        "import kubealias\n"
        "for name in ('database', 'database.production', 'orders'):\n"
        "    print(kubealias.resolve(name).tls_name)\n"
    )
    proc = run_python(code, dns.env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [RDS, RDS, "orders"]
    assert proc.stderr.count("UnpinnedTargetWarning") == 1, proc.stderr
    assert NOTICE in proc.stderr
    # ... and the ordinary -W / PYTHONWARNINGS syntax silences it.
    quiet = run_python(code, {**dns.env(), "PYTHONWARNINGS": "ignore::UserWarning"})
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_readme_trust_example_filters_the_warning(
    dns: ClusterDNS, first_in_process: None, caplog: pytest.LogCaptureFixture
) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    trust = readme.split("\n## Trust\n", 1)[1].split("\n## ", 1)[0]
    code = trust.split("```python\n", 1)[1].split("```", 1)[0]
    with (
        caplog.at_level(logging.WARNING, logger="kubealias"),
        warnings.catch_warnings(record=True) as record,
    ):
        warnings.simplefilter("always")
        exec(compile(code, "README.md", "exec"), {})
        dns.resolver().resolve("database")
    assert record == []
    assert [r.getMessage() for r in caplog.records] == [NOTICE]


# --- item 10: unknown KUBEALIAS_* variables --------------------------------------------------


def read(environ: dict[str, str], **kw: object) -> Config:
    return Config.from_env(environ, resolv_conf=io.StringIO(""), namespace_file=None, **kw)


@pytest.mark.parametrize(
    "name, closest",
    [
        ("KUBEALIAS_ALLOWED_TARGET", "KUBEALIAS_ALLOWED_TARGETS"),
        ("KUBEALIAS_STIRCT", "KUBEALIAS_STRICT"),
        ("KUBEALIAS_NAMESERVER", "KUBEALIAS_NAMESERVERS"),
        ("kubealias_timeout", "KUBEALIAS_TIMEOUT"),
        ("KUBEALIAS_ALLOWED_HOSTS", "KUBEALIAS_ALLOWED_TARGETS"),
        ("KUBEALIAS_FROBNICATE", None),
    ],
)
def test_unknown_variable_warns_with_the_closest_name(
    name: str, closest: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    # Empty counts: "KUBEALIAS_ALLOWED_TARGET=" is the typo of a security setting.
    with (
        caplog.at_level(logging.WARNING, logger="kubealias"),
        pytest.warns(UnknownVariableWarning) as record,
    ):
        config = read({name: "", "KUBEALIAS_NDOTS": "3"})
    assert config.ndots == 3  # the known ones are read as before
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith(f"{name} is not a kubealias variable and is ignored")
    if closest:
        assert f"did you mean {closest}?" in message
    else:
        assert "did you mean" not in message and "kubealias env" in message
    assert [r.getMessage() for r in caplog.records] == [message]


def test_known_and_unrelated_variables_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read({"KUBEALIAS_TIMEOUT": "1", "KUBEALIASX": "1", "PATH": "/bin", "MY_KUBEALIAS_X": ""})
    assert unknown_variables({"KUBEALIAS_STRICT": "1", "KUBEALIASES": "x"}) == []


@pytest.mark.parametrize(
    "environ, keywords",
    [
        ({"KUBEALIAS_STRICT": "1", "KUBEALIAS_ALLOWED_TARGET": "*.example.com"}, {}),
        ({"KUBEALIAS_ALLOWED_TARGET": "*.example.com"}, {"strict": True}),
    ],
    ids=["variable", "keyword"],
)
def test_unknown_variable_is_an_error_under_strict(
    environ: dict[str, str], keywords: dict[str, object]
) -> None:
    with pytest.raises(ConfigError) as info:
        read(environ, **keywords)
    assert info.value.variable == "KUBEALIAS_ALLOWED_TARGET"
    assert "did you mean KUBEALIAS_ALLOWED_TARGETS?" in str(info.value)
    assert "KUBEALIAS_STRICT" in str(info.value)


def test_default_resolver_warns_about_a_typo(
    dns: ClusterDNS, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in dns.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KUBEALIAS_STIRCT", "1")
    with pytest.warns(UnknownVariableWarning, match="did you mean KUBEALIAS_STRICT"):
        kubealias.get_default_resolver()


# --- the command line shows both --------------------------------------------------------------


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = main(list(argv), stdout=out)
    return status, out.getvalue()


@pytest.fixture
def pod_env(dns: ClusterDNS, monkeypatch: pytest.MonkeyPatch) -> ClusterDNS:
    for key, value in dns.env().items():
        monkeypatch.setenv(key, value)
    return dns


def test_env_shows_unknown_variables_and_the_missing_allowlist(
    pod_env: ClusterDNS, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBEALIAS_STIRCT", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the command shows it itself, not on stderr too
        status, out = run_cli("env")
    assert status == 0
    row = next(line for line in out.splitlines() if line.startswith("KUBEALIAS_STIRCT"))
    assert row.split()[1:] == ["1", "ignored:", "did", "you", "mean", "KUBEALIAS_STRICT?"]
    assert "warning     KUBEALIAS_STIRCT is not a kubealias variable" in out
    assert "warning     no KUBEALIAS_ALLOWED_TARGETS" in out
    status, out = run_cli("env", "--json")
    data = json.loads(out)
    assert data["KUBEALIAS_STIRCT"] == {
        "value": "1",
        "source": "ignored: did you mean KUBEALIAS_STRICT?",
    }
    assert "no KUBEALIAS_ALLOWED_TARGETS" in data["KUBEALIAS_ALLOWED_TARGETS"]["warning"]


def test_env_without_notices_when_pinned(
    pod_env: ClusterDNS, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBEALIAS_ALLOWED_TARGETS", "*.amazonaws.com")
    status, out = run_cli("env")
    assert status == 0 and "warning" not in out
    data = json.loads(run_cli("env", "--json")[1])
    assert "warning" not in data["KUBEALIAS_ALLOWED_TARGETS"]


def test_env_under_strict_names_the_unknown_variable(
    pod_env: ClusterDNS, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBEALIAS_STRICT", "1")
    monkeypatch.setenv("KUBEALIAS_ALLOWED_TARGET", "*.amazonaws.com")
    status, out = run_cli("env")
    assert status == 1
    assert "KUBEALIAS_ALLOWED_TARGET=" in out and "did you mean KUBEALIAS_ALLOWED_TARGETS" in out


def test_resolve_shows_the_unpinned_notice(
    pod_env: ClusterDNS, first_in_process: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # shown in the output, not on stderr too
        status, out = run_cli("resolve", "database")
    assert status == 0
    assert out.rstrip().endswith(f"warning     {NOTICE}")
    data = json.loads(run_cli("resolve", "database", "--json")[1])
    assert data["warning"] == NOTICE
    # Not an alias, or pinned: no notice.
    assert "warning" not in run_cli("resolve", "orders")[1]
    monkeypatch.setenv("KUBEALIAS_ALLOWED_TARGETS", "*.amazonaws.com")
    assert "warning" not in run_cli("resolve", "database")[1]
