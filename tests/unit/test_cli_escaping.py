"""The command line never writes a terminal control character it was given (issue 10, item 4).

A host name, a ``--cafile`` path or a setting is shown escaped, as names from DNS are: when it
holds a character that is not printable, its Python ``repr`` is printed (quoted, with ``\\x1b``,
``\\r``, ``\\u202e`` ... escapes); otherwise it is printed as it is.
"""

from __future__ import annotations

import io
import socket
from typing import Any

import pytest
import trustme

from kubealias._cli import main
from kubealias._report import shown
from kubealias.testing import ClusterDNS, TLSServer

#: ESC (a colour and a window-title sequence), CR, LF, BEL, a C1 control (CSI), TAB, a bidi
#: override and an isolate, a line separator.
CONTROLS = {
    "esc": "\x1b[31mred\x1b[0m",
    "title": "\x1b]0;pwned\x07",
    "cr": "db\rX",
    "lf": "db\nerror: fake",
    "bel": "db\x07",
    "c1": "db\x9b31m",
    "tab": "db\tx",
    "bidi": "db\u202etxt.exe",
    "isolate": "db\u2066x\u2069",
    "line-separator": "db\u2028x",
}


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = main(list(argv), stdout=out)
    return status, out.getvalue()


def assert_clean(out: str) -> None:
    """No character of ``out`` is a control or format character (newlines end lines)."""
    bad = [c for line in out.split("\n") for c in line if not c.isprintable()]
    assert bad == [], out


def assert_escaped(out: str, raw: str) -> None:
    """``out`` is clean and shows ``raw`` escaped."""
    assert_clean(out)
    assert repr(raw)[1:-1] in out, out


@pytest.mark.parametrize(
    "text, want",
    [
        ("database", "database"),
        ("mydb.abc123.us-east-1.rds.amazonaws.com", "mydb.abc123.us-east-1.rds.amazonaws.com"),
        ("a b", "a b"),
        ("\x1b[31m", "'\\x1b[31m'"),
        ("a\u202eb", "'a\\u202eb'"),
        ("it's\n", '"it\'s\\n"'),
    ],
)
def test_shown(text: str, want: str) -> None:
    assert shown(text) == want


@pytest.fixture
def dns(cluster_dns: ClusterDNS, monkeypatch: pytest.MonkeyPatch) -> ClusterDNS:
    for key, value in cluster_dns.env().items():
        monkeypatch.setenv(key, value)
    return cluster_dns


@pytest.mark.parametrize("raw", CONTROLS.values(), ids=CONTROLS.keys())
def test_resolve_escapes_its_argument(dns: ClusterDNS, raw: str) -> None:
    status, out = run("resolve", raw)
    assert status == 0
    assert_escaped(out, raw)


@pytest.mark.parametrize("raw", CONTROLS.values(), ids=CONTROLS.keys())
def test_check_error_escapes_the_host(dns: ClusterDNS, raw: str) -> None:
    status, out = run("check", f"{raw}:443", "--timeout", "1")
    assert status == 1 and out.startswith("error: ")
    assert_escaped(out, raw)


@pytest.mark.parametrize("raw", CONTROLS.values(), ids=CONTROLS.keys())
def test_check_report_escapes_the_host(
    dns: ClusterDNS, raw: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The system resolver answers for the odd name (a hosts file could): the report is printed.
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if host == raw else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with TLSServer(ca=trustme.CA(), default_names=["example.test"]) as server:
        status, out = run("check", f"{raw}:{server.port}", "--cafile", server.cafile)
    assert status == 1
    assert_escaped(out, raw)


@pytest.mark.parametrize("raw", CONTROLS.values(), ids=CONTROLS.keys())
def test_check_cafile_error_escapes_the_path(dns: ClusterDNS, raw: str) -> None:
    status, out = run("check", "database:443", "--cafile", f"/nonexistent/{raw}.pem")
    assert status == 1 and out.startswith("error: ")
    assert_escaped(out, raw)


@pytest.mark.parametrize("raw", CONTROLS.values(), ids=CONTROLS.keys())
@pytest.mark.parametrize("variable", ["KUBEALIAS_ALLOWED_TARGETS", "KUBEALIAS_SEARCH"])
def test_env_escapes_values(monkeypatch: pytest.MonkeyPatch, raw: str, variable: str) -> None:
    # Refused as malformed (the error shows the value escaped) or split at the whitespace
    # controls (TAB, CR, LF, LINE SEPARATOR): either way nothing raw reaches the terminal.
    monkeypatch.setenv(variable, f"example.{raw}")
    _, out = run("env")
    assert_clean(out)


@pytest.mark.parametrize("raw", CONTROLS.values(), ids=CONTROLS.keys())
def test_usage_errors_escape_arguments(raw: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["resolve", "database", raw])
    assert exit_info.value.code == 2
    assert_escaped(capsys.readouterr().err, raw)
