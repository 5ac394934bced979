"""One HTTPS GET with the standard library (glibc resolves the name, no kubealias).

Args: ``{"url", "cafile"}``. Result: nginx's JSON echo of the request.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from typing import Any

from integrations.clients._run import main


def echo(config: dict[str, Any]) -> Any:
    """GET ``url`` verified against ``cafile``; the decoded JSON body."""
    context = ssl.create_default_context(cafile=config["cafile"])
    request = urllib.request.Request(config["url"])
    with urllib.request.urlopen(request, context=context, timeout=5) as response:
        return json.loads(response.read().decode())


if __name__ == "__main__":
    main(echo)
