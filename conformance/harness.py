"""pytest plugin loaded in both runs of ``make conformance``: a loopback guard and a recorder.

Loaded with ``-p harness`` (``conformance/`` is put on ``PYTHONPATH``), in the plain run and in
the swapped run alike, so that the two runs differ only by ``kubealias_swap``.

The guard: the clients' suites are written for a machine on the internet, and a few of their
tests reach for it (a "tarpit" address in 10.0.0.0/8 or 240.0.0.0/4, public names). Nothing may
leave this machine but loopback traffic, so every connect, datagram and name lookup that is not
for loopback fails here as on a machine without a network (``ENETUNREACH``, ``EAI_NONAME``), and
is written to ``$CONFORMANCE_BLOCKED`` with the test that tried it. The tests known to need the
network are deselected by the runner (``deselect.txt``); the guard catches the rest.

The recorder writes one outcome per test id to ``$CONFORMANCE_RESULTS`` (JSON): ``passed``,
``failed`` (a failure in setup, call or teardown), ``skipped``, ``xfailed`` or ``xpassed``;
collection errors as ``failed`` under the collected node's id. It ends the process once pytest
is done, so that a thread a failed test left blocked cannot hold the run.
"""

from __future__ import annotations

import errno
import fnmatch
import ipaddress
import json
import os
import socket
import sys
from typing import Any

import pytest

# --- the loopback guard ------------------------------------------------------------------------

_original_getaddrinfo = socket.getaddrinfo
_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex
_original_sendto = socket.socket.sendto


def _hosts_file_loopback_names() -> set[str]:
    """Names /etc/hosts maps to a loopback address only (``localhost``, the machine's name)."""
    names: dict[str, bool] = {}
    try:
        with open("/etc/hosts", encoding="utf-8") as hosts:
            for line in hosts:
                fields = line.split("#", 1)[0].split()
                if len(fields) < 2:
                    continue
                loopback = _is_loopback_ip(fields[0])
                for name in fields[1:]:
                    key = name.lower().rstrip(".")
                    names[key] = names.get(key, True) and loopback
    except OSError:
        pass
    return {name for name, loopback in names.items() if loopback}


def _is_ip_literal(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def _is_loopback_ip(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    # The unspecified address connects to this machine on Linux.
    return address.is_loopback or address.is_unspecified


_LOOPBACK_NAMES = _hosts_file_loopback_names() | {"localhost"}


def _host_allowed(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return True  # not ours to judge; the socket layer refuses it
    if host in ("", "<broadcast>"):
        return host == ""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        name = host.lower().rstrip(".")
        return name in _LOOPBACK_NAMES or name.endswith(".localhost")
    return _is_loopback_ip(host)


def _address_allowed(address: Any) -> bool:
    """True for loopback addresses and for every address family that is not IP (Unix, ...)."""
    if isinstance(address, tuple) and address:
        return _host_allowed(address[0])
    return True


def _record_blocked(what: str) -> None:
    path = os.environ.get("CONFORMANCE_BLOCKED")
    if not path:
        return
    test = os.environ.get("PYTEST_CURRENT_TEST", "(outside a test)").rsplit(" (", 1)[0]
    with open(path, "a", encoding="utf-8") as out:
        out.write(f"{test}\t{what}\n")


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    # An address literal costs no lookup: the connect to it is judged (ENETUNREACH, as on a
    # machine without a route, which urllib3's suite recognises and skips).
    if not _host_allowed(host) and not _is_ip_literal(host):
        _record_blocked(f"getaddrinfo {host!r}")
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (loopback only)")
    return _original_getaddrinfo(host, *args, **kwargs)


def _unreachable(address: Any) -> OSError:
    _record_blocked(f"connect {address!r}")
    return OSError(errno.ENETUNREACH, "Network is unreachable (loopback only)")


def _connect(self: socket.socket, address: Any) -> None:
    if not _address_allowed(address):
        raise _unreachable(address)
    _original_connect(self, address)


def _connect_ex(self: socket.socket, address: Any) -> int:
    if not _address_allowed(address):
        _unreachable(address)
        return errno.ENETUNREACH
    return _original_connect_ex(self, address)


def _sendto(self: socket.socket, data: Any, *args: Any) -> int:
    address = args[-1] if args else None
    if not _address_allowed(address):
        raise _unreachable(address)
    return _original_sendto(self, data, *args)


socket.getaddrinfo = _getaddrinfo
socket.socket.connect = _connect  # type: ignore[method-assign,assignment]
socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign,assignment]
socket.socket.sendto = _sendto  # type: ignore[assignment]


# --- deselection ------------------------------------------------------------------------------


def _deselect_patterns() -> list[str]:
    path = os.environ.get("CONFORMANCE_DESELECT")
    if not path:
        return []
    with open(path, encoding="utf-8") as patterns:
        return [line.strip() for line in patterns if line.strip()]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop the tests of ``$CONFORMANCE_DESELECT``: shell patterns of test ids, one a line
    (``test/*::TestHTTPS_*::test_https_timeout``); a pattern also matches the parametrized ids
    of the tests it names."""
    patterns = _deselect_patterns()
    if not patterns:
        return
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        matched = any(
            fnmatch.fnmatchcase(item.nodeid, p) or fnmatch.fnmatchcase(item.nodeid, p + "[[]*")
            for p in patterns
        )
        (drop if matched else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


# --- the recorder ------------------------------------------------------------------------------

_outcomes: dict[str, str] = {}
_RANK = {"passed": 0, "xpassed": 0, "skipped": 1, "xfailed": 1, "failed": 2}


def _set(nodeid: str, outcome: str) -> None:
    # A later phase can only make a test's outcome worse (a teardown error after a pass).
    if nodeid not in _outcomes or _RANK[outcome] > _RANK[_outcomes[nodeid]]:
        _outcomes[nodeid] = outcome


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    xfail = hasattr(report, "wasxfail")
    if report.failed:
        _set(report.nodeid, "failed")
    elif report.skipped:
        _set(report.nodeid, "xfailed" if xfail else "skipped")
    elif report.when == "call":
        _set(report.nodeid, "xpassed" if xfail else "passed")


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _set(report.nodeid or "(collection)", "failed")


_exit_status = 0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = exitstatus
    path = os.environ.get("CONFORMANCE_RESULTS")
    if path:
        with open(path, "w", encoding="utf-8") as out:
            json.dump(_outcomes, out, indent=0, sort_keys=True)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure() -> None:
    # A failed test can leave a non-daemon thread blocked for ever (urllib3's HTTP/2 probe
    # tests do when the probe's server fails), and the interpreter would wait for it at exit.
    # The outcomes are written; end the process here.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status)
