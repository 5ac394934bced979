"""What the HTTP client modules share: the HTTPS lab's ports, CA files and URLs.

Every ``http_*`` module is run by :meth:`integrations.https.lab.HttpsLab.run_client` (or
``start_client``) with ``{"lab": ..., "args": ...}``: ``lab`` is
:meth:`~integrations.https.lab.HttpsLab.client_config` (read here as an :class:`HttpTarget`),
``args`` the test's own arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from integrations.clients._run import args as _argv
from integrations.clients._run import emit

__all__ = ["HttpTarget", "main"]


@dataclass(frozen=True)
class HttpTarget:
    """nginx in the pod as a client sees it: its two ports, the CA files, the client cert."""

    port: int
    http_port: int
    cafile: str
    wrong_cafile: str = ""
    client_cert: str = ""
    client_key: str = ""
    proxy_url: str | None = None

    def url(self, name: str, path: str = "/", scheme: str = "https") -> str:
        """``scheme://name:port/path`` with the lab's port for the scheme."""
        port = self.http_port if scheme == "http" else self.port
        path = path if path.startswith("/") else "/" + path
        return f"{scheme}://{name}:{port}{path}"


def main(run: Callable[[HttpTarget, Any], Any]) -> None:
    """Call ``run(lab, args)`` with the arguments of the command line and emit its result."""
    given = _argv()
    emit(run(HttpTarget(**given["lab"]), given.get("args")))
