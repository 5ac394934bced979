"""Plain requests and httpx, no kubealias: the HTTPS lab's negative and positive controls.

Args: a list of requests, each ``{"name": host, "path": "/", "scheme": "https", "client":
"requests" | "httpx", "session": label, "verify": "ca" | "wrong" | false, "headers": {...},
"cert": bool, "stream": bool, "addresses": bool, "timeout": seconds}`` (all but ``name``
optional; requests with the same ``session`` label share one ``requests.Session`` or
``httpx.Client``). Result: per request ``{"status", "body", "history"}`` (``digest``, the
SHA-256 of the body, instead of ``body`` when ``stream``) or ``{"error", "message"}``, plus
``addresses`` (what ``getaddrinfo`` gives for the name) when asked.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
from typing import Any

import httpx
import requests
import urllib3

from integrations.clients._http import HttpTarget, main


def _verify(lab: HttpTarget, spec: dict[str, Any]) -> str | bool:
    verify = spec.get("verify", "ca")
    if verify is False:
        # Only the negative control that shows verify=False does not help turns it off.
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        return False
    return lab.wrong_cafile if verify == "wrong" else lab.cafile


def _requests(lab: HttpTarget, spec: dict[str, Any], session: Any) -> dict[str, Any]:
    url = lab.url(spec["name"], spec.get("path", "/"), spec.get("scheme", "https"))
    kwargs: dict[str, Any] = {"headers": spec.get("headers"), "timeout": spec.get("timeout")}
    if spec.get("scheme", "https") == "https":
        kwargs["verify"] = _verify(lab, spec)
    if spec.get("cert"):
        kwargs["cert"] = (lab.client_cert, lab.client_key)
    get = session.get if session is not None else requests.get
    if spec.get("stream"):
        with get(url, stream=True, **kwargs) as r:
            digest = hashlib.sha256(b"".join(r.iter_content(4096))).hexdigest()
        return {"status": r.status_code, "digest": digest}
    r = get(url, **kwargs)
    return {
        "status": r.status_code,
        "body": r.json(),
        "history": [h.status_code for h in r.history],
    }


def _httpx(lab: HttpTarget, spec: dict[str, Any], client: Any) -> dict[str, Any]:
    url = lab.url(spec["name"], spec.get("path", "/"), spec.get("scheme", "https"))
    if client is not None:
        r = client.get(url, headers=spec.get("headers"))
    else:
        # httpx 0.28 deprecates verify=<path>: an SSLContext, as its documentation shows.
        context = ssl.create_default_context(cafile=str(_verify(lab, spec)))
        r = httpx.get(url, verify=context, timeout=spec.get("timeout"), headers=spec.get("headers"))
    return {"status": r.status_code, "body": r.json()}


def plain(lab: HttpTarget, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each request in order; sessions are closed at the end."""
    sessions: dict[str, Any] = {}
    out = []
    try:
        for spec in specs:
            kind = spec.get("client", "requests")
            label = spec.get("session")
            if label is not None and label not in sessions:
                if kind == "httpx":
                    context = ssl.create_default_context(cafile=lab.cafile)
                    sessions[label] = httpx.Client(verify=context)
                else:
                    sessions[label] = requests.Session()
            session = sessions.get(label) if label is not None else None
            result: dict[str, Any] = {}
            if spec.get("addresses"):
                infos = socket.getaddrinfo(spec["name"], lab.port, type=socket.SOCK_STREAM)
                result["addresses"] = sorted({str(i[4][0]) for i in infos})
            try:
                if kind == "httpx":
                    result.update(_httpx(lab, spec, session))
                else:
                    result.update(_requests(lab, spec, session))
            except (requests.exceptions.RequestException, httpx.HTTPError) as exc:
                result.update(error=type(exc).__name__, message=str(exc))
            out.append(result)
    finally:
        for session in sessions.values():
            session.close()
    return out


if __name__ == "__main__":
    main(plain)
