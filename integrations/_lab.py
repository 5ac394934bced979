"""What every lab shares: base class, errors, tools, processes, logs and JSON-lines children.

The pod emulation (:mod:`integrations.pod.lab`), the HTTPS lab (:mod:`integrations.https.lab`),
the PostgreSQL lab (:mod:`integrations.postgres.lab`), the reliability tests and the benchmarks
all start programs, stop them, read the tail of their logs and talk to a Python child running
inside the pod's network namespace. Each of those things is written once, here:

* :class:`Lab`, :class:`LabError`, :class:`LabUnavailable`: the lifecycle and the error tree
  every lab raises (``LabUnavailable`` means "this machine cannot host it": tests skip on it);
* :func:`which` and :func:`tool`: find a program, also in the sbin directories;
* :func:`terminate`: stop a process and the process group it leads;
* :func:`file_size`, :func:`settled_size`, :func:`read_since`, :func:`tail`: read log files
  that a server keeps appending to (never truncated: readers keep offsets);
* :class:`JsonLinesChild`: a child process (a module of :mod:`integrations.clients`, a load
  script, a benchmark worker) that reads requests on stdin and writes one JSON object per line
  on stdout; the test reads its lines with a deadline and tells it to go on.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING:
    # Only for annotations: the pod lab itself imports this module.
    from integrations.pod.lab import PodLab

__all__ = [
    "JsonLinesChild",
    "Lab",
    "LabError",
    "LabFile",
    "LabUnavailable",
    "ServerLab",
    "file_size",
    "read_since",
    "settled_size",
    "started_or_raise",
    "tail",
    "terminate",
    "tool",
    "which",
]


#: A lab class (``Self`` is Python 3.11+; the project supports 3.10).
_LabT = TypeVar("_LabT", bound="Lab")
_ServerLabT = TypeVar("_ServerLabT", bound="ServerLab")
#: A JSON-lines child class.
_ChildT = TypeVar("_ChildT", bound="JsonLinesChild")


class LabError(RuntimeError):
    """The lab could not be set up, or a lab command failed."""


class LabUnavailable(LabError):
    """The lab cannot run on this machine (not root, missing programs, no netns)."""


class LabFile:
    """A file of a lab's directory, read as an attribute (``conf = LabFile("nginx.conf", doc)``).

    Args:
        name: the file's name inside the directory.
        doc: what the file holds (the attribute's docstring).
        under: the attribute of the lab holding the directory (None until the lab started).
    """

    def __init__(self, name: str, doc: str, *, under: str = "dir") -> None:
        self.name = name
        self.under = under
        self.__doc__ = doc

    @overload
    def __get__(self, lab: None, owner: type[Any] | None = None) -> LabFile: ...

    @overload
    def __get__(self, lab: object, owner: type[Any] | None = None) -> Path: ...

    def __get__(self, lab: object | None, owner: type[Any] | None = None) -> Path | LabFile:
        """The file's path.

        Raises:
            LabError: the lab has no directory yet (it has not been started).
        """
        if lab is None:
            return self
        directory = getattr(lab, self.under)
        if directory is None:
            raise LabError(f"{type(lab).__name__} has not been started")
        return Path(directory) / self.name


class Lab:
    """What every lab shares: :attr:`started` between a successful :meth:`start` and
    :meth:`stop`, and use as a context manager (``with PodLab() as pod: ...``)."""

    _started = False

    @property
    def started(self) -> bool:
        """True between a successful :meth:`start` and :meth:`stop`."""
        return self._started

    def start(self: _LabT) -> _LabT:
        """Bring the lab up (each lab documents what that means and what it raises)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Tear the lab down; idempotent."""
        raise NotImplementedError

    def __enter__(self: _LabT) -> _LabT:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        # Stopped whatever happened inside; an exception goes on (None is returned).
        self.stop()


class ServerLab(Lab):
    """A lab of servers inside a started pod whose clients are modules of
    :mod:`integrations.clients`: each client gets ``{"lab": client_config(), "args": args}``.

    :meth:`start` and :meth:`stop` are the same for every such lab: the lab's files live in a
    directory of its own inside the pod's, made by :meth:`start` and removed by :meth:`stop`,
    and a start that fails half-way stops what it started. Subclasses set :attr:`pod` (the
    :class:`~integrations.pod.lab.PodLab` they run in), :attr:`dir`, :attr:`timings` and
    :attr:`dir_prefix`, and define :meth:`unavailable`, :meth:`_setup`, :meth:`_teardown`,
    :meth:`ensure_running`, :meth:`clear_logs` and :meth:`client_config`.
    """

    pod: PodLab
    #: The lab's directory inside the pod's (None when stopped).
    dir: Path | None
    #: Seconds each step of :meth:`start` took (``start`` for the whole), and of restarts.
    timings: dict[str, float]
    #: The name of the lab's directory, before a random suffix.
    dir_prefix: str
    #: The default of :meth:`run_client`'s ``timeout``, in seconds.
    client_timeout: float = 60.0

    def start(self: _ServerLabT) -> _ServerLabT:
        """Make the lab's directory inside the pod's and set the servers up in it
        (:meth:`_setup`); nothing is left behind when that fails. Idempotent.

        Raises:
            LabUnavailable: this machine lacks what the lab needs (:meth:`unavailable`).
            LabError: the pod is not started, or a server failed to come up.
        """
        if self._started:
            return self
        if not self.pod.started or self.pod.dir is None:
            raise LabError(f"{type(self).__name__} needs a started PodLab")
        reason = self.unavailable()
        if reason is not None:
            raise LabUnavailable(reason)
        t0 = time.monotonic()
        try:
            self.dir = self.pod.dir / f"{self.dir_prefix}-{secrets.token_hex(3)}"
            # Servers drop privileges inside the pod: they must be able to read their files.
            self.dir.mkdir(mode=0o755)
            self.dir.chmod(0o755)
            self._setup(self.dir)
        except BaseException:
            self.stop()
            raise
        self._started = True
        self.timings["start"] = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Stop every server (:meth:`_teardown`) and remove the lab's directory. Idempotent."""
        self._teardown()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        self._started = False

    @contextlib.contextmanager
    def _timed(self, step: str) -> Iterator[None]:
        """Record in :attr:`timings` how long the block took (when it succeeds)."""
        t0 = time.monotonic()
        yield
        self.timings[step] = time.monotonic() - t0

    def unavailable(self) -> str | None:
        """Why this machine cannot host the lab (a missing program), or None."""
        raise NotImplementedError

    def _setup(self, directory: Path) -> None:
        """Create the lab's files in ``directory`` and start its servers."""
        raise NotImplementedError

    def _teardown(self) -> None:
        """Stop every server (also the ones a failed :meth:`_setup` left); idempotent."""
        raise NotImplementedError

    def ensure_running(self) -> None:
        """Start again every server a test stopped or that died (used between tests)."""
        raise NotImplementedError

    def clear_logs(self) -> None:
        """Count the servers' logs afresh from here."""
        raise NotImplementedError

    def reset(self: _ServerLabT, *, clear_logs: bool = False) -> _ServerLabT:
        """The state every test starts from: the pod's default zone records, ``named`` and
        this lab's servers running, and with ``clear_logs`` the logs counted afresh."""
        self.pod.ensure_running()
        self.pod.reset_records()
        self.ensure_running()
        if clear_logs:
            self.clear_logs()
        return self

    def client_config(self) -> dict[str, Any]:
        """What a client module needs to reach the lab's servers (JSON values)."""
        raise NotImplementedError

    def _client_args(self, args: Any) -> dict[str, Any]:
        if not self._started:
            raise LabError(f"{type(self).__name__} has not been started")
        return {"lab": self.client_config(), "args": args}

    def run_client(
        self,
        client: str,
        args: Any = None,
        env: Mapping[str, str] | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Run the client module ``integrations.clients.<client>`` inside the pod (fresh
        process, clean environment plus ``env``: no ``KUBEALIAS_*``, ``PG*`` or proxy variable
        unless given) and return the JSON of its last stdout line.

        Raises:
            LabError: the lab is not started, or the client failed or printed no JSON (stdout
                and stderr in the message).
        """
        return self.pod.run_module(
            f"integrations.clients.{client}",
            self._client_args(args),
            env=env,
            timeout=self.client_timeout if timeout is None else timeout,
        )

    def start_client(
        self,
        client: str,
        args: Any = None,
        env: Mapping[str, str] | None = None,
        *,
        timeout: float = 60,
    ) -> JsonLinesChild:
        """Start a long-running client module (as :meth:`run_client` runs it) inside the pod,
        driven through its stdin and stdout: the test reads each JSON line it emits
        (:meth:`JsonLinesChild.read`) and changes the world (DNS, servers) in between, telling
        the client to go on with :meth:`JsonLinesChild.send`.

        Raises:
            LabError: the lab is not started.
        """
        child: JsonLinesChild = self.pod.start_module(
            f"integrations.clients.{client}", self._client_args(args), env=env, timeout=timeout
        )
        return child


# --------------------------------------------------------------------------------------------
# Programs and processes
# --------------------------------------------------------------------------------------------


def which(program: str) -> str | None:
    """``shutil.which`` that also looks in the sbin directories (root's PATH may lack them)."""
    found = shutil.which(program)
    if found:
        return found
    for directory in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        candidate = os.path.join(directory, program)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def tool(program: str) -> str:
    """The path of ``program``.

    Raises:
        LabError: it is not installed.
    """
    path = which(program)
    if path is None:
        raise LabError(f"{program} not found")
    return path


def _signal(process: subprocess.Popen[Any], group: bool, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(process.pid, sig)
        else:
            os.kill(process.pid, sig)


def started_or_raise(
    process: subprocess.Popen[Any] | None, what: str, diagnostics: Callable[[], str]
) -> None:
    """Raise when a server that should be coming up has exited instead.

    Args:
        process: the server's process (None: never started).
        what: the server, as the message names it (``"nginx (ports 443, 80)"``).
        diagnostics: what to show of its logs, read only when it has exited.

    Raises:
        LabError: ``what`` exited (its code and ``diagnostics()`` in the message).
    """
    if process is None or process.poll() is not None:
        code = None if process is None else process.returncode
        raise LabError(f"{what} exited with {code} while starting\n{diagnostics()}")


def terminate(
    process: subprocess.Popen[Any], sig: int = signal.SIGTERM, grace: float = 5.0
) -> None:
    """Stop a process, SIGKILL after ``grace`` seconds, reap it and close its pipes.

    When the process leads its own process group (every lab starts its servers with
    ``start_new_session=True``), the whole group gets the signals, so that workers and
    backends go with their master; a stopped (SIGSTOP) group is continued first, or SIGTERM
    would wait for ever. When the leader has already exited, what is left of its group is
    killed.
    """
    try:
        group = os.getpgid(process.pid) == process.pid
    except ProcessLookupError:
        group = True  # gone (or a zombie): only its group can be left
    if process.poll() is None:
        _signal(process, group, signal.SIGCONT)
        _signal(process, group, sig)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            _signal(process, group, signal.SIGKILL)
            process.wait()
    elif group:
        # The leader is gone; its workers (same group) may not be.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


# --------------------------------------------------------------------------------------------
# Log files
# --------------------------------------------------------------------------------------------


def file_size(path: Path) -> int:
    """The size of ``path``, 0 when it does not exist (yet)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def settled_size(path: Path, settle: float) -> int:
    """The file's size once it has not grown for ``settle`` seconds (waiting at most 1 s), so
    that a line still being written is not half-read."""
    size = file_size(path)
    deadline = time.monotonic() + 1.0
    while settle > 0 and time.monotonic() < deadline:
        time.sleep(settle)
        now = file_size(path)
        if now == size:
            break
        size = now
    return size


def read_since(path: Path, offset: int, settle: float = 0.0) -> str:
    """The file's complete lines from ``offset`` (after :func:`settled_size` when ``settle``)."""
    end = settled_size(path, settle)
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read(max(0, end - offset)) if settle > 0 else f.read()
    except FileNotFoundError:
        return ""
    # A line still being written (no newline yet) is left for the next read.
    text = data.decode(errors="replace")
    return text[: text.rfind("\n") + 1]


def tail(path: Path, offset: int = 0, lines: int = 30) -> str:
    """The last ``lines`` lines of ``path`` from ``offset`` ("" when unreadable)."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# A child that speaks JSON lines
# --------------------------------------------------------------------------------------------


class JsonLinesChild:
    """A child process that writes one JSON object per line on stdout and reads lines on stdin.

    Start one with :meth:`start` (the pod's :meth:`~integrations.pod.lab.PodLab.start_module`
    does, inside the namespace). Its stderr goes to a temporary file, never a pipe: nobody reads
    it until something fails, and a full pipe would block the child. Use as a context manager:
    leaving kills the child if it still runs.

    Args:
        process: the child, with binary ``stdin``/``stdout`` pipes.
        stderr: the file its stderr goes to (closed by :meth:`close`).
        timeout: the default deadline of :meth:`read` and :meth:`finish`, in seconds.
        what: how error messages name the child.
    """

    def __init__(
        self, process: subprocess.Popen[bytes], stderr: Any, timeout: float, what: str
    ) -> None:
        self.process = process
        self.timeout = timeout
        self.what = what
        self._stderr = stderr
        self._buffer = b""
        self._selector = selectors.DefaultSelector()
        assert process.stdout is not None
        self._selector.register(process.stdout, selectors.EVENT_READ)

    @classmethod
    def start(
        cls,
        argv: list[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        timeout: float = 60.0,
        what: str = "the client",
    ) -> JsonLinesChild:
        """Start ``argv`` in its own session with pipes for stdin and stdout."""
        stderr = tempfile.TemporaryFile()  # noqa: SIM115  (closed in close())
        process = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
        return cls(process, stderr, timeout, what)

    def stderr(self, limit: int = 4000) -> str:
        """The end of what the child wrote to stderr, for error messages."""
        with contextlib.suppress(OSError, ValueError):
            self._stderr.seek(0)
            text: str = self._stderr.read().decode(errors="replace")[-limit:]
            return f"--- {self.what}'s stderr ---\n{text}"
        return ""

    def _next_line(self, deadline: float) -> bytes | None:
        """The next line of stdout, or None at end of file.

        Raises:
            LabError: no complete line before ``deadline``.
        """
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not self._selector.select(left):
                if time.monotonic() < deadline:
                    continue
                self.kill()
                raise LabError(f"{self.what} printed nothing in time\n{self.stderr()}")
            chunk = os.read(self.process.stdout.fileno(), 65536)
            if not chunk:
                rest, self._buffer = self._buffer, b""
                return rest or None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def read(self, timeout: float | None = None) -> Any:
        """The next JSON line the child printed (lines that are not JSON are skipped).

        Raises:
            LabError: the child exited or printed nothing within ``timeout`` (its stderr in the
                message).
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            line = self._next_line(deadline)
            if line is None:
                code = self.process.wait(5)
                raise LabError(f"{self.what} exited with {code}\n{self.stderr()}")
            with contextlib.suppress(ValueError):
                return json.loads(line)

    def send(self, line: str | dict[str, Any] = "go") -> None:
        """Write one line to the child's stdin (a dict is sent as JSON)."""
        assert self.process.stdin is not None
        text = line if isinstance(line, str) else json.dumps(line)
        self.process.stdin.write(text.encode() + b"\n")
        self.process.stdin.flush()

    def finish(self, timeout: float | None = None) -> Any:
        """Close stdin, wait for the exit, return the last JSON line (the result).

        Raises:
            LabError: the child failed, printed no JSON or did not finish in time.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        lines: list[bytes] = []
        while (line := self._next_line(deadline)) is not None:
            if line.strip():
                lines.append(line)
        try:
            code = self.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            raise LabError(f"{self.what} did not finish in time\n{self.stderr()}") from None
        output = b"\n".join(lines).decode(errors="replace")
        if code != 0 or not lines:
            raise LabError(
                f"{self.what} exited with {code}\n--- stdout ---\n{output}\n{self.stderr()}"
            )
        try:
            return json.loads(lines[-1])
        except ValueError as exc:
            raise LabError(f"last line is not JSON: {lines[-1]!r}\n{self.stderr()}") from exc

    def kill(self) -> None:
        """SIGKILL the child's process group (it leads its own session) and reap it."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def close(self) -> None:
        """Kill the child if it still runs and release its pipes and stderr file."""
        self.kill()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._selector.close()
        with contextlib.suppress(OSError):
            self._stderr.close()

    def __enter__(self: _ChildT) -> _ChildT:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
