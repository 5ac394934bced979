"""``make conformance``: the clients' own test suites, plainly and with kubealias swapped in.

For requests, urllib3 and httpx at the versions installed in the project's ``.venv``:

1. a separate venv, ``.venv-conformance``, gets those versions (and their dependencies at the
   versions ``.venv`` has), the suites' test dependencies (``requirements.txt`` here) and this
   checkout of kubealias; the project's ``.venv`` is not touched;
2. each client's sdist is downloaded from PyPI into ``conformance/.sources/`` and unpacked; the
   library's own source is removed from the unpacked tree, so the tests import the installed
   package;
3. each suite runs twice, plainly and with ``-p kubealias_swap``, both with ``-p harness``
   (loopback guard and outcome recorder), minus the tests of ``deselect.txt`` (they need the
   internet);
4. the outcomes are compared test by test; a test whose outcome differs is run again in both
   modes, and only a difference that repeats counts (the others are reported as flaky);
5. the differences must be exactly ``expected.txt``: otherwise the exit status is 1.

Usage: ``python3 conformance/run.py [requests] [urllib3] [httpx]`` (default: all three).
Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROJECT_PY = ROOT / ".venv" / "bin" / "python"
VENV = ROOT / ".venv-conformance"
VPY = VENV / "bin" / "python"
SOURCES = HERE / ".sources"
RESULTS = HERE / ".results"
TIMEOUT = 300  # seconds for one test (pytest-timeout); a hang fails that test, not the run
SUITE_TIMEOUT = 3600  # seconds for one run of one suite

# The clients and what kubealias needs at run time: their dependency closure is pinned to the
# versions of the project's .venv.
ROOTS = ("requests", "urllib3", "httpx", "dnspython")
# Variables that would make one machine's run differ from another's (CA bundles, proxies,
# kubealias settings); the suites set what they need themselves.
SCRUBBED = re.compile(
    r"(?i)^(.*_proxy|requests_ca_bundle|curl_ca_bundle|ssl_cert_(file|dir)|kubealias_.*)$"
)


@dataclass(frozen=True)
class Suite:
    """One client's test suite: its distribution, its tests directory inside the sdist."""

    name: str
    tests: str
    removed: tuple[str, ...]  # the library's own source in the sdist: the installed one is tested


SUITES = {
    "requests": Suite("requests", "tests", ("src",)),
    "urllib3": Suite("urllib3", "test", ("src",)),
    "httpx": Suite("httpx", "tests", ("httpx",)),
}

OUTCOME_CLASS = {
    "passed": "passed",
    "xpassed": "passed",
    "failed": "failed",
    "skipped": "skipped",
    "xfailed": "skipped",
    None: "absent",
}


def say(text: str = "") -> None:
    print(text, flush=True)


def run(cmd: list[str], **kwargs: object) -> None:
    subprocess.run(cmd, check=True, **kwargs)  # type: ignore[call-overload]


# --- versions and the venv ---------------------------------------------------------------------

_CLOSURE = r"""
import json, re, sys
from importlib import metadata
todo, pins = list(sys.argv[1:]), {}
while todo:
    name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
    if name in pins:
        continue
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        continue
    pins[name] = dist.version
    for req in dist.requires or []:
        if "extra ==" not in req:
            todo.append(re.match(r"[A-Za-z0-9_.-]+", req).group(0))
print(json.dumps(pins))
"""


def installed_pins() -> dict[str, str]:
    """The clients, dnspython and everything they need, at the versions of ``.venv``."""
    if not PROJECT_PY.exists():
        sys.exit("conformance: no .venv here; run `make venv` first")
    out = subprocess.run(
        [str(PROJECT_PY), "-c", _CLOSURE, *ROOTS], check=True, capture_output=True, text=True
    ).stdout
    pins: dict[str, str] = json.loads(out)
    missing = [name for name in ROOTS if name not in pins]
    if missing:
        sys.exit(f"conformance: .venv lacks {', '.join(missing)}; run `make venv`")
    return pins


def ensure_venv(pins: dict[str, str]) -> None:
    """Build ``.venv-conformance`` unless it was built for these pins and requirements."""
    requirements = HERE / "requirements.txt"
    stamp_text = json.dumps(
        {"pins": pins, "requirements": requirements.read_text(), "python": sys.version}
    )
    digest = hashlib.sha256(stamp_text.encode()).hexdigest()
    stamp = VENV / ".conformance-stamp"
    if stamp.exists() and stamp.read_text() == digest:
        return
    say(f"== building {VENV.name} (the project's .venv is not touched)")
    if not VPY.exists():
        run([sys.executable, "-m", "venv", str(VENV)])
    run([str(VPY), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as constraints:
        constraints.write("".join(f"{name}=={version}\n" for name, version in pins.items()))
    try:
        run(
            [str(VPY), "-m", "pip", "install", "--quiet", "-r", str(requirements)]
            + ["-c", constraints.name]
            + [f"{name}=={version}" for name, version in pins.items()]
        )
    finally:
        os.unlink(constraints.name)
    # This checkout of kubealias, without its extras: the clients are pinned above.
    run([str(VPY), "-m", "pip", "install", "--quiet", "--no-deps", "-e", str(ROOT)])
    stamp.write_text(digest)


def ensure_sources(suite: Suite, version: str) -> Path:
    """The unpacked sdist of ``suite`` at ``version``, without the library's own source."""
    tree = SOURCES / f"{suite.name}-{version}"
    if (tree / suite.tests).is_dir():
        return tree
    SOURCES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as download:
        run(
            [
                str(VPY),
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--dest",
                download,
                f"{suite.name}=={version}",
            ]
        )
        (archive,) = Path(download).glob("*.tar.gz")
        with tarfile.open(archive) as tar:
            top = {member.name.split("/", 1)[0] for member in tar.getmembers()}
            if len(top) != 1:
                sys.exit(f"conformance: unexpected layout of {archive.name}: {sorted(top)}")
            shutil.rmtree(SOURCES / top.pop(), ignore_errors=True)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(SOURCES, filter="data")
            else:  # pragma: no cover - Python < 3.11.4
                tar.extractall(SOURCES)
    extracted = SOURCES / f"{suite.name}-{version}"
    if not (extracted / suite.tests).is_dir():
        sys.exit(
            f"conformance: the {suite.name} {version} sdist ships no {suite.tests}/ directory; "
            "its suite cannot be run from PyPI's sources"
        )
    for path in suite.removed:
        shutil.rmtree(extracted / path, ignore_errors=True)
    return extracted


# --- lists kept in this directory --------------------------------------------------------------


@dataclass
class Listing:
    """``deselect.txt`` or ``expected.txt``: entries with the reason written after ``  # ``."""

    entries: dict[tuple[str, ...], str] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path, fields: int) -> Listing:
        listing = cls()
        for number, raw in enumerate(path.read_text().splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            body, sep, reason = line.partition("  # ")
            parts = body.split(None, fields - 1)
            if not sep or len(parts) != fields or not reason.strip():
                sys.exit(f"conformance: {path.name}:{number}: {fields} fields, then '  # reason'")
            listing.entries[tuple(parts)] = reason.strip()
        return listing


# --- running the suites ------------------------------------------------------------------------


def pytest_env(results: Path, blocked: Path, deselect: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not SCRUBBED.match(key)}
    env.update(
        PYTHONPATH=str(HERE),
        CONFORMANCE_RESULTS=str(results),
        CONFORMANCE_BLOCKED=str(blocked),
        CONFORMANCE_DESELECT=str(deselect),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def run_pytest(
    suite: Suite, tree: Path, mode: str, tag: str, args: list[str]
) -> tuple[dict[str, str], float, str]:
    """Run one suite in one mode: (outcome per test id, seconds, pytest's closing line)."""
    results = RESULTS / f"{suite.name}-{tag}.json"
    blocked = RESULTS / f"{suite.name}-{tag}.blocked"
    log = RESULTS / f"{suite.name}-{tag}.log"
    for path in (results, blocked):
        path.unlink(missing_ok=True)
    cmd = [str(VPY), "-m", "pytest", "-p", "harness", "-p", "no:kubealias"]
    cmd += ["-p", "no:cacheprovider", "-q", f"--timeout={TIMEOUT}"]
    if mode == "swapped":
        cmd += ["-p", "kubealias_swap"]
    cmd += args
    started = time.monotonic()
    with open(log, "w") as out:
        try:
            subprocess.run(
                cmd,
                cwd=tree,
                env=pytest_env(results, blocked, RESULTS / f"{suite.name}.deselect"),
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=SUITE_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            say(f"conformance: {suite.name} ({mode}) still running after {SUITE_TIMEOUT} s: ended")
    seconds = time.monotonic() - started
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    closing = lines[-1].strip("= ") if lines else "(no output)"
    if not results.exists():
        sys.exit(f"conformance: {suite.name} ({mode}) recorded nothing; see {log}")
    return json.loads(results.read_text()), seconds, closing


def counts(outcomes: dict[str, str]) -> str:
    tally: dict[str, int] = {}
    for outcome in outcomes.values():
        tally[OUTCOME_CLASS[outcome]] = tally.get(OUTCOME_CLASS[outcome], 0) + 1
    return ", ".join(f"{tally.get(k, 0)} {k}" for k in ("passed", "failed", "skipped"))


def differences(plain: dict[str, str], swapped: dict[str, str]) -> dict[str, str]:
    """Test id -> ``plain->swapped`` outcome classes, for every test whose class differs."""
    diff = {}
    for nodeid in sorted(set(plain) | set(swapped)):
        before = OUTCOME_CLASS[plain.get(nodeid)]
        after = OUTCOME_CLASS[swapped.get(nodeid)]
        if before != after:
            diff[nodeid] = f"{before}->{after}"
    return diff


def main(argv: list[str]) -> int:
    chosen = argv or list(SUITES)
    unknown = [name for name in chosen if name not in SUITES]
    if unknown:
        sys.exit(f"conformance: unknown suite {unknown}; choose from {list(SUITES)}")
    pins = installed_pins()
    ensure_venv(pins)
    RESULTS.mkdir(parents=True, exist_ok=True)
    deselect = Listing.read(HERE / "deselect.txt", 2)
    expected = Listing.read(HERE / "expected.txt", 3)

    found: dict[tuple[str, ...], str] = {}
    flaky: list[str] = []
    report: list[str] = []
    for name in chosen:
        suite = SUITES[name]
        version = pins[name]
        tree = ensure_sources(suite, version)
        skip = [pattern for (owner, pattern) in deselect.entries if owner == name]
        (RESULTS / f"{name}.deselect").write_text("".join(f"{p}\n" for p in skip))
        args = [suite.tests]
        say(f"== {name} {version}: {len(skip)} test patterns deselected (deselect.txt)")
        outcomes = {}
        for mode in ("plain", "swapped"):
            outcomes[mode], seconds, closing = run_pytest(suite, tree, mode, mode, args)
            line = f"{name:8} {mode:7} {counts(outcomes[mode])}  ({seconds:.0f} s; {closing})"
            say(line)
            report.append(line)
        diff = differences(outcomes["plain"], outcomes["swapped"])
        if diff:
            # Run each differing test again in both modes: only a difference that repeats counts.
            again = {}
            for mode in ("plain", "swapped"):
                again[mode], _, _ = run_pytest(suite, tree, mode, f"{mode}-again", list(diff))
            repeated = differences(again["plain"], again["swapped"])
            for nodeid, change in diff.items():
                if repeated.get(nodeid) == change:
                    found[(name, change, nodeid)] = ""
                else:
                    flaky.append(f"{name} {change} {nodeid}")
        for mode in ("plain", "swapped"):
            blocked = RESULTS / f"{name}-{mode}.blocked"
            if blocked.exists():
                lines = blocked.read_text().splitlines()
                tests = sorted({line.split("\t", 1)[0] for line in lines})
                say(
                    f"   {mode}: the loopback guard refused non-loopback traffic in {len(tests)} "
                    f"test(s): see {blocked.relative_to(ROOT)}"
                )

    wanted = {key for key in expected.entries if key[0] in chosen}
    unexpected = sorted(set(found) - wanted)
    gone = sorted(wanted - set(found))
    say()
    say(f"== differences (plain -> swapped): {len(found)}")
    for key in sorted(found):
        reason = expected.entries.get(key, "NOT IN expected.txt")
        say(f"{' '.join(key)}  # {reason}")
    if flaky:
        say(f"== differences that did not repeat (flaky, not counted): {len(flaky)}")
        for line in flaky:
            say(line)
    summary = report + [f"{' '.join(key)}" for key in sorted(found)]
    (RESULTS / "summary.txt").write_text("\n".join(summary) + "\n")
    if unexpected or gone:
        say()
        for key in unexpected:
            say(f"UNEXPECTED: {' '.join(key)}")
        for key in gone:
            say(f"NO LONGER DIFFERS (remove from expected.txt): {' '.join(key)}")
        say("conformance: FAILED: the difference is not exactly conformance/expected.txt")
        return 1
    say("conformance: OK: the difference is exactly conformance/expected.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
