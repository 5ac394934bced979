"""Outside the pod: start the pod emulation and :mod:`bench.pod_worker` inside it, and talk to it.

The worker stays up for the whole benchmark so that each measurement is one command, with the
query log of the pod's BIND cleared before it and read after it (``PodLab.clear_query_log`` and
``PodLab.query_log``), and ``named`` paused and resumed around it where the bench needs a crowd of
callers waiting on one answer.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from integrations._lab import JsonLinesChild, LabError, ServerLab

if TYPE_CHECKING:
    # Imported when used: ``python -m bench --only resolve`` needs no pod.
    from integrations.pod.lab import PodLab

#: The worker, run as ``python -m bench.pod_worker`` inside the pod.
WORKER = "bench.pod_worker"


def unavailable() -> str | None:
    """Why the pod emulation cannot run here (not root, no namespaces, no BIND), or None."""
    from integrations.pod import lab as pod_lab

    return pod_lab.unavailable_reason()


def run_client(pod: PodLab, module: str, config: dict[str, Any]) -> dict[str, Any]:
    """Run ``python -m module CONFIG`` inside ``pod`` once; its last stdout line is the JSON
    result (the HTTP and PostgreSQL benchmarks run this way, one process per measurement).

    Raises:
        integrations.pod.lab.LabError: the client failed or printed nothing.
    """
    data: dict[str, Any] = pod.run_module(module, config, timeout=900)
    return data


def client_entry(client_main: Callable[[dict[str, Any]], dict[str, Any]], only: str) -> None:
    """The ``__main__`` of a benchmark client that :func:`run_client` runs inside the pod:
    ``client_main`` of the configuration given as the one argument (JSON), printed as one JSON
    line. ``only`` names the benchmark in the usage message."""
    if len(sys.argv) != 2:
        sys.exit(f"usage: python -m bench --only {only} (this file runs itself inside the pod)")
    print(json.dumps(client_main(json.loads(sys.argv[1]))))


def run_in_lab(
    lab: Callable[[PodLab], ServerLab], module: str, config: dict[str, Any]
) -> dict[str, Any]:
    """Start the pod emulation and ``lab`` (a :class:`~integrations._lab.ServerLab` class) in
    it, and :func:`run_client` ``module`` once with ``config`` plus the started lab's
    ``client_config()`` (port, CA file, credentials); both stop afterwards.

    Raises:
        integrations.pod.lab.LabUnavailable: the pod emulation or the lab is not available.
        integrations.pod.lab.LabError: the lab or the client failed.
    """
    from integrations.pod.lab import PodLab

    with PodLab() as pod, lab(pod) as started:
        return run_client(pod, module, {**config, **started.client_config()})


class Worker:
    """The JSON-lines connection to :mod:`bench.pod_worker` running in ``pod``."""

    def __init__(self, pod: PodLab, timeout: float = 60.0) -> None:
        self.pod = pod
        self.timeout = timeout
        self._child: JsonLinesChild = pod.start_module(
            WORKER, timeout=timeout, what="bench worker in the pod"
        )
        self._expect("ready")

    def _fail(self, why: str) -> RuntimeError:
        return RuntimeError(f"bench worker in the pod: {why}\n{self._child.stderr(3000)}")

    def _line(self) -> dict[str, Any]:
        try:
            message: dict[str, Any] = self._child.read()
        except LabError as exc:
            raise self._fail(str(exc)) from exc
        if "error" in message:
            raise self._fail(message["error"])
        return message

    def _expect(self, event: str) -> None:
        message = self._line()
        if message.get("event") != event:
            raise self._fail(f"expected event {event!r}, got {message}")

    def send(self, command: dict[str, Any]) -> None:
        self._child.send(command)

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
        if self._child.process.poll() is None:
            with contextlib.suppress(OSError):
                self.send({"op": "exit"})
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._child.process.wait(10)
        self._child.close()


@contextlib.contextmanager
def session() -> Iterator[tuple[PodLab, Worker]]:
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
