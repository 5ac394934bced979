"""Outside the pod: start the pod emulation and :mod:`bench.pod_worker` inside it, and talk to it.

The worker stays up for the whole benchmark so that each measurement is one command, with the
query log of the pod's BIND cleared before it and read after it (``PodLab.clear_query_log`` and
``PodLab.query_log``), and ``named`` paused and resumed around it where the bench needs a crowd of
callers waiting on one answer.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

WORKER = Path(__file__).with_name("pod_worker.py")


def unavailable() -> str | None:
    """Why the pod emulation cannot run here (not root, no namespaces, no BIND), or None."""
    from integrations.pod import lab as pod_lab

    return pod_lab.unavailable_reason()


def run_client(pod: Any, script: str, config: dict[str, Any]) -> dict[str, Any]:
    """Run ``script --client CONFIG`` inside ``pod`` once; its last stdout line is the JSON
    result (the HTTP and PostgreSQL benchmarks run this way, one process per measurement).

    Raises:
        integrations.pod.lab.LabError: the client failed or printed nothing.
    """
    from integrations.pod import lab as pod_lab

    result = pod.exec([sys.executable, script, "--client", json.dumps(config)], timeout=900)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise pod_lab.LabError(
            f"the bench client failed (exit {result.returncode})\n{result.stderr[-3000:]}"
        )
    data: dict[str, Any] = json.loads(lines[-1])
    return data


class Worker:
    """The JSON-lines connection to :mod:`bench.pod_worker` running in ``pod``."""

    def __init__(self, pod: Any, timeout: float = 60.0) -> None:
        self.pod = pod
        self.timeout = timeout
        # A file, not a pipe: nobody reads the worker's stderr until it fails, and a full pipe
        # would block it. Closed in close(), so no context manager.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self._proc: subprocess.Popen[bytes] = pod.popen(
            [sys.executable, WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._buffer = b""
        self._selector = selectors.DefaultSelector()
        assert self._proc.stdout is not None
        self._selector.register(self._proc.stdout, selectors.EVENT_READ)
        self._expect("ready")

    def _fail(self, why: str) -> RuntimeError:
        self._stderr.seek(0)
        tail = self._stderr.read().decode(errors="replace")[-3000:]
        return RuntimeError(f"bench worker in the pod: {why}\n--- its stderr ---\n{tail}")

    def _line(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not self._selector.select(left):
                raise self._fail(f"no answer within {self.timeout:g} s")
            chunk = os.read(self._proc.stdout.fileno(), 65536)
            if not chunk:
                raise self._fail(f"exited ({self._proc.wait()})")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        message: dict[str, Any] = json.loads(line)
        if "error" in message:
            raise self._fail(message["error"])
        return message

    def _expect(self, event: str) -> None:
        message = self._line()
        if message.get("event") != event:
            raise self._fail(f"expected event {event!r}, got {message}")

    def send(self, command: dict[str, Any]) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write((json.dumps(command) + "\n").encode())
        self._proc.stdin.flush()

    def call(self, command: dict[str, Any]) -> dict[str, Any]:
        """Send ``command`` and return its answer."""
        self.send(command)
        return self._line()

    def call_with_crowd(
        self, command: dict[str, Any], when_waiting: Callable[[], None]
    ) -> dict[str, Any]:
        """Send a ``crowd`` command, run ``when_waiting`` once every caller is waiting, and
        return the answer."""
        self.send(command)
        self._expect("waiting")
        when_waiting()
        return self._line()

    def close(self) -> None:
        if self._proc.poll() is None:
            with contextlib.suppress(OSError):
                self.send({"op": "exit"})
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                stream.close()
        self._selector.close()
        self._stderr.close()


@contextlib.contextmanager
def session() -> Iterator[tuple[Any, Worker]]:
    """The pod emulation (``integrations.pod.lab.PodLab``) and a worker inside it.

    Raises:
        integrations.pod.lab.LabUnavailable: the pod emulation is not available here.
    """
    from integrations.pod.lab import PodLab

    with PodLab() as pod:
        worker = Worker(pod)
        try:
            yield pod, worker
        finally:
            worker.close()
