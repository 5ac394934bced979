"""Which host names are Kubernetes service names, and which names the pod's resolver would try.

Pure functions, no I/O: every rule here is tested with plain strings.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "Classified",
    "ascii_lower",
    "candidates",
    "classify",
    "in_domain",
    "is_ip_literal",
    "is_valid_hostname",
    "normalize",
]

#: RFC 1035 §2.3.4: at most 253 characters in text form without the trailing dot.
MAX_NAME = 253
MAX_LABEL = 63

# RFC 952/1123 host name label (letters, digits, hyphen; no hyphen at either end). Matched on the
# lowercased name.
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
# Kubernetes: Service names are RFC 1035 labels (start with a letter), namespaces RFC 1123 labels.
_SERVICE_LABEL = re.compile(r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_NAMESPACE_LABEL = _LDH_LABEL
# A-Z -> a-z and nothing else: DNS compares names case-insensitively in ASCII only (RFC 4343),
# while str.lower() also folds non-ASCII letters into ASCII ones (KELVIN SIGN -> "k").
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(name: str) -> str:
    """``name`` with A-Z lowercased and every other character kept as it is.

    ``"\u212aafka".lower()`` is ``"kafka"``: a Unicode look-alike would become a Service name.
    """
    return name.lower() if name.isascii() else name.translate(_ASCII_LOWER)


def normalize(name: str) -> str:
    """Lowercase ``name`` in ASCII only (:func:`ascii_lower`) and drop one trailing dot."""
    name = ascii_lower(name)
    return name[:-1] if name.endswith(".") else name


def is_ip_literal(host: str) -> bool:
    """True for IPv4 and IPv6 literals, bracketed or not, with or without a zone index."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host.split("%", 1)[0]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_valid_hostname(name: str) -> bool:
    """True when ``name`` is a syntactically valid host name that is not an IP literal.

    Letters, digits and hyphens only (RFC 952/1123), labels of 1 to 63 characters, 253 characters
    in all; one trailing dot allowed. The last label may not be all digits (RFC 3696 §2), which
    also rules out dotted-quad addresses.
    """
    if not isinstance(name, str) or not name:
        return False
    name = normalize(name)
    if not name or len(name) > MAX_NAME or not name.isascii():
        return False
    labels = name.split(".")
    if not all(_LDH_LABEL.match(label) for label in labels):
        return False
    return not labels[-1].isdigit()


def in_domain(name: str, domain: str) -> bool:
    """True when normalised ``name`` is ``domain`` or below it."""
    return name == domain or name.endswith("." + domain)


@dataclass(frozen=True, slots=True)
class Classified:
    """The verdict on a host string: a possible cluster service name, or a reason to pass it."""

    cluster: bool
    reason: str
    service: str = ""
    namespace: str | None = None


def classify(host: str, cluster_domain: str) -> Classified:
    """Decide whether ``host`` can name a Kubernetes Service.

    Kubernetes service and namespace names are single labels, so the only shapes are ``svc``,
    ``svc.ns``, ``svc.ns.svc`` and ``svc.ns.svc.<cluster-domain>``, with an optional trailing dot
    and in any case (ASCII case: a host with any other character is never a Service name).
    Everything else is passed through without a DNS query.

    Args:
        host: the host exactly as the application gave it.
        cluster_domain: the cluster DNS domain, lowercase without trailing dot.

    Returns:
        A :class:`Classified` whose ``cluster`` is true for a name that must be looked up.
    """
    if not host:
        return Classified(False, "empty host")
    if "/" in host or host.startswith("@"):
        return Classified(False, "a Unix socket path")
    if is_ip_literal(host):
        return Classified(False, "an IP address literal")
    if not host.isascii():
        # Kubernetes names are ASCII: a host that is not can only be a look-alike of one
        # (docs/design.md, "Which names are looked up"). No query, whatever it folds into.
        return Classified(False, "not a valid host name: not ASCII, so never a Service name")
    name = normalize(host)
    if name == "localhost" or name.endswith(".localhost"):
        return Classified(False, "localhost (RFC 6761)")
    if not is_valid_hostname(host):
        return Classified(False, "not a valid host name")
    labels = name.split(".")
    service = labels[0]
    if not _SERVICE_LABEL.match(service):
        return Classified(False, f"{service!r} cannot be a Kubernetes Service name")
    if len(labels) == 1:
        return Classified(True, "a Service name", service)
    namespace = labels[1]
    if not _NAMESPACE_LABEL.match(namespace):
        return Classified(False, f"{namespace!r} cannot be a Kubernetes namespace")
    rest = ".".join(labels[2:])
    if rest in ("", "svc") or rest == "svc." + cluster_domain:
        return Classified(True, "a Service name", service, namespace)
    return Classified(
        False, f"not of the form svc[.namespace[.svc[.{cluster_domain}]]]: not a Service name"
    )


def candidates(host: str, search: Sequence[str], ndots: int) -> list[str]:
    """The names glibc's resolver queries for ``host``, in order (``res_search`` in res_query.c).

    A trailing dot means the name alone. A name with at least ``ndots`` dots is tried as is
    first, then with each search domain; a name with fewer dots is tried with each search
    domain first, then as is. A name that would exceed 253 characters is skipped, and ``.`` in
    the search list stands for the name as is. Returned names are lowercase, without the
    trailing dot, without duplicates.
    """
    if host.endswith("."):
        return [normalize(host)]
    name = ascii_lower(host)
    as_is_first = name.count(".") >= ndots
    out: list[str] = []

    def add(names: Iterable[str]) -> None:
        for candidate in names:
            if candidate and len(candidate) <= MAX_NAME and candidate not in out:
                out.append(candidate)

    searched = []
    for domain in search:
        candidate = name if domain in (".", "") else f"{name}.{domain}"
        if len(candidate) > MAX_NAME:
            break  # glibc: the query cannot be built (NO_RECOVERY), the search list ends here
        searched.append(candidate)
    if as_is_first:
        add([name])
    add(searched)
    add([name])
    return out
