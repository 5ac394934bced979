"""The benchmark worker that runs **inside** the pod emulation (``python -m bench.pod_worker``).

It reads one JSON command per line on stdin and answers with one JSON line on stdout, so that the
bench outside the pod can clear and read BIND's query log, and pause and resume ``named``, between
and during the commands (``bench/_pod.py`` drives it). Commands:

* ``{"op": "cold", "who": "kubealias"|"glibc", "name": N}``: one cold resolution of ``N`` —
  ``Resolver.flush()`` then ``resolve(N)``, or glibc's ``getaddrinfo(N, 443, SOCK_STREAM)`` as
  an HTTP client calls it — answered with ``{"seconds": ...}``.
* ``{"op": "crowd", "who": ..., "mode": "threads"|"tasks", "name": N, "n": 64, "hold": s}``:
  ``n`` callers on one cold name at once (threads released by a barrier, or asyncio tasks; the
  glibc tasks call ``loop.getaddrinfo``, asyncio's default-executor path). Once all of them are
  inside their call and ``hold`` seconds have passed, the worker writes ``{"event": "waiting"}``;
  when all have returned, ``{"starts": [...], "ends": [...], "errors": [...]}`` in
  ``time.monotonic()`` seconds (CLOCK_MONOTONIC, the same clock as the bench outside).
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

PORT = 443  # any port: it only shapes the getaddrinfo call as an HTTPS client makes it


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def cold(who: str, name: str, resolver: Any) -> dict[str, Any]:
    """One cold resolution of ``name``; its wall time."""
    if who == "kubealias":
        resolver.flush()
        start = time.perf_counter()
        resolver.resolve(name)
    else:
        start = time.perf_counter()
        socket.getaddrinfo(name, PORT, type=socket.SOCK_STREAM)
    return {"seconds": time.perf_counter() - start}


def _threads(call: Callable[[], Any], n: int, hold: float) -> dict[str, Any]:
    starts, ends = [0.0] * n, [0.0] * n
    errors: list[str] = []
    entered = 0
    lock = threading.Lock()
    barrier = threading.Barrier(n)

    def one(i: int) -> None:
        nonlocal entered
        barrier.wait()
        with lock:
            entered += 1
        starts[i] = time.monotonic()
        try:
            call()
        except Exception as exc:
            errors.append(repr(exc))
        ends[i] = time.monotonic()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    while entered < n:
        time.sleep(0.001)
    time.sleep(hold)
    _say({"event": "waiting"})
    for t in threads:
        t.join()
    return {"starts": starts, "ends": ends, "errors": errors}


async def _tasks(call: Callable[[], Any], n: int, hold: float) -> dict[str, Any]:
    starts, ends = [0.0] * n, [0.0] * n
    errors: list[str] = []
    entered = 0

    async def one(i: int) -> None:
        nonlocal entered
        entered += 1
        starts[i] = time.monotonic()
        try:
            await call()
        except Exception as exc:
            errors.append(repr(exc))
        ends[i] = time.monotonic()

    tasks = [asyncio.ensure_future(one(i)) for i in range(n)]
    while entered < n:
        await asyncio.sleep(0.001)
    await asyncio.sleep(hold)
    _say({"event": "waiting"})
    await asyncio.gather(*tasks)
    return {"starts": starts, "ends": ends, "errors": errors}


def crowd(who: str, mode: str, name: str, n: int, hold: float) -> dict[str, Any]:
    """``n`` concurrent callers on one cold name (a fresh resolver for kubealias)."""
    import kubealias

    resolver = kubealias.Resolver()
    if mode == "threads":
        if who == "kubealias":
            return _threads(lambda: resolver.resolve(name), n, hold)
        return _threads(lambda: socket.getaddrinfo(name, PORT, type=socket.SOCK_STREAM), n, hold)

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        if who == "kubealias":
            return await _tasks(lambda: resolver.aresolve(name), n, hold)
        return await _tasks(lambda: loop.getaddrinfo(name, PORT, type=socket.SOCK_STREAM), n, hold)

    return asyncio.run(main())


def main() -> None:
    import kubealias

    resolver = kubealias.Resolver()  # from the pod's resolv.conf, as an application has it
    _say({"event": "ready"})
    for line in sys.stdin:
        command = json.loads(line)
        op = command.pop("op")
        try:
            if op == "cold":
                _say(cold(command["who"], command["name"], resolver))
            elif op == "crowd":
                _say(crowd(**command))
            elif op == "exit":
                return
            else:
                _say({"error": f"unknown op {op!r}"})
        except Exception as exc:  # reported to the bench, which stops with it
            _say({"error": f"{op} {command}: {exc!r}"})


if __name__ == "__main__":
    main()
