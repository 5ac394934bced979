"""Print how kubealias resolves each name given on the command line.

Inside a pod (or the pod emulation) it needs no configuration:

    python examples/resolve.py database payment-api shared-cache.app-team-a api.stripe.com

Against the in-process cluster DNS of ``kubealias.testing`` (no cluster):

    python examples/resolve.py --lab
"""

from __future__ import annotations

import sys

import kubealias


def show(resolver: kubealias.Resolver, names: list[str]) -> None:
    for name in names:
        try:
            r = resolver.resolve(name)
        except kubealias.KubeAliasError as exc:  # an OSError: your usual handling applies
            print(f"{name:<26} error: {exc}")
            continue
        where = ", ".join(r.addresses) or "(client resolves it itself)"
        print(f"{name:<26} TLS name {r.tls_name:<42} connect {where}")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--lab"]:
        from kubealias.testing import ClusterDNS

        with ClusterDNS(namespace="production") as dns:
            dns.article_services()
            show(
                dns.resolver(),
                ["database", "payment-api", "shared-cache.app-team-a", "orders", "api.stripe.com"],
            )
        return 0
    show(kubealias.get_default_resolver(), argv or ["database"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
