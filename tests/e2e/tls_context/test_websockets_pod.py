"""End-to-end: websockets with ``kubealias.tls_context`` inside the pod, against a real
websockets server with TLS on the article's ``payment-api`` address.

``payment-api`` is an ExternalName for ``api.payments.example.test`` (127.0.0.20); the server
there holds a certificate for that name only. The plain client (``wss://payment-api:PORT/``)
fails verification; the recipe of docs/clients-tls-context.md connects to the answer's address
and sends the external name as SNI, certificate name and Host header. A second server on a
cluster address stands for the in-cluster service after the ExternalName -> ClusterIP switch.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from integrations.pod import lab as L
from integrations.pod.lab import PodLab

pytestmark = pytest.mark.pod

#: The address of the in-cluster service after the switch (unused by the pod's other labs).
CLUSTER_IP = "127.0.0.61"
CLUSTER_NAMES = [
    "payment-api",
    "payment-api.production",
    "payment-api.production.svc",
    L.PAYMENT_API,
]


class WsLab:
    """The two servers (external and in-cluster), their port and the CA files."""

    def __init__(self, pod: PodLab, tmp: Path) -> None:
        self.pod = pod
        ca = trustme.CA()
        self.cafile = str(tmp / "ca.pem")
        ca.cert_pem.write_to_path(self.cafile)
        self.wrong_cafile = str(tmp / "wrong-ca.pem")
        trustme.CA().cert_pem.write_to_path(self.wrong_cafile)
        (self.port,) = pod.free_ports(1)
        self.servers = {}
        for name, address, names in [
            ("external", L.PAYMENT_API_IP, [L.PAYMENT_API_TARGET]),
            ("internal", CLUSTER_IP, CLUSTER_NAMES),
        ]:
            cert = ca.issue_cert(*names)
            certfile, keyfile = tmp / f"{name}.pem", tmp / f"{name}.key"
            cert.cert_chain_pems[0].write_to_path(certfile)
            cert.private_key_pem.write_to_path(keyfile)
            config = {
                "name": name,
                "address": address,
                "port": self.port,
                "certfile": str(certfile),
                "keyfile": str(keyfile),
            }
            child = pod.start_module("integrations.clients.ws_server", config, timeout=30)
            assert child.read() == {"listening": self.port}
            self.servers[name] = child

    def run(self, *cases: tuple[str, str, str, str]) -> dict[str, Any]:
        """Run ``(label, entry, host, ca)`` cases in one client process inside the pod."""
        config = {
            "port": self.port,
            "cafile": self.cafile,
            "wrong_cafile": self.wrong_cafile,
            "cases": [dict(zip(("label", "entry", "host", "ca"), c, strict=True)) for c in cases],
        }
        out: dict[str, Any] = self.pod.run_module(
            "integrations.clients.ws_tls_context", config, timeout=60
        )
        return out

    def stop(self) -> dict[str, list[dict[str, Any]]]:
        """Stop both servers; what each was asked (SNI, Host, path per connection)."""
        return {
            name: child.finish(timeout=15)["connections"] for name, child in self.servers.items()
        }


@pytest.fixture
def ws_lab(pod_clean: PodLab, tmp_path: Path) -> Iterator[WsLab]:
    lab = WsLab(pod_clean, tmp_path)
    try:
        yield lab
    finally:
        for child in lab.servers.values():
            child.close()


def external(host: str) -> dict[str, Any]:
    return {"server": "external", "sni": L.PAYMENT_API_TARGET, "host": host, "path": "/feed"}


def test_plain_websockets_fails_and_the_recipe_verifies_the_external_name(ws_lab: WsLab) -> None:
    out = ws_lab.run(
        ("plain", "plain", "payment-api", "lab"),
        ("recipe", "recipe", "payment-api", "lab"),
        ("fqdn", "recipe", L.PAYMENT_API, "lab"),
        ("keep-host", "recipe-keep-host", "payment-api", "lab"),
    )
    # The control: the certificate is for the external name, not for the Service name.
    assert out["plain"]["error"] == "SSLCertVerificationError", out
    assert "'payment-api'" in out["plain"]["message"], out
    want = external(f"{L.PAYMENT_API_TARGET}:{ws_lab.port}")
    assert out["recipe"] == out["fqdn"] == want, out
    # With the Service name kept in the URL (and so in Host), only the context gives the
    # handshake the external name.
    kept = external(f"payment-api:{ws_lab.port}")
    assert out["keep-host"] == kept, out
    assert ws_lab.stop() == {"external": [want, want, kept], "internal": []}


def test_a_wrong_ca_still_fails(ws_lab: WsLab) -> None:
    out = ws_lab.run(("wrong-ca", "recipe", "payment-api", "wrong"))
    assert out["wrong-ca"]["error"] == "SSLCertVerificationError", out
    assert "certificate verify failed" in out["wrong-ca"]["message"], out
    assert ws_lab.stop() == {"external": [], "internal": []}


def test_the_switch_to_a_cluster_ip_is_followed(ws_lab: WsLab) -> None:
    """After the switch the name is no alias: the recipe connects to the Service's address
    and verifies the Service name, as the plain client does."""
    ws_lab.pod.set_a(L.PAYMENT_API, CLUSTER_IP)
    out = ws_lab.run(
        ("recipe", "recipe", "payment-api", "lab"),
        ("plain", "plain", "payment-api", "lab"),
    )
    want = {"server": "internal", "sni": "payment-api", "host": f"payment-api:{ws_lab.port}"}
    assert out["recipe"] == out["plain"] == {**want, "path": "/feed"}, out
    assert ws_lab.stop()["external"] == []


def test_failures_are_oserrors_as_websockets_own(ws_lab: WsLab) -> None:
    """websockets raises OSError for a name it cannot reach; kubealias's errors are OSErrors.
    A missing Service is passed through (websockets reports it itself, as without kubealias);
    an alias to a missing target is kubealias's error."""
    ws_lab.pod.set_cname(L.svc("broken"), "gone.payments.example.test")
    out = ws_lab.run(
        ("missing-plain", "plain", "no-such-service", "lab"),
        ("missing", "recipe", "no-such-service", "lab"),
        ("broken", "recipe", "broken", "lab"),
    )
    assert out["missing"] == out["missing-plain"], out
    assert out["missing"]["oserror"] is True and out["missing"]["kubealias_error"] is False
    assert out["broken"]["oserror"] is True and out["broken"]["kubealias_error"] is True, out
    assert "broken" in out["broken"]["message"], out
