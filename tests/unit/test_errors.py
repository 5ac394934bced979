"""The error tree: every error pickles and copies with its structured fields intact."""

from __future__ import annotations

import copy
import pickle

import pytest

from kubealias import ChainError, ConfigError, KubeAliasError, PolicyError, ResolutionError

CHAIN = ("database.production.svc.cluster.local", "mydb.example.test")

ERRORS = [
    ResolutionError("DNS failure: timed out", name="database", chain=CHAIN, tried=["a (x)"]),
    ChainError("CNAME loop: a is already on the chain", name="database", chain=CHAIN),
    PolicyError("TLS name x matches none of KUBEALIAS_ALLOWED_TARGETS (y)", name="database"),
    KubeAliasError("something: with a colon"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("clone", [pickle.loads, copy.copy], ids=["pickle", "copy"])
def test_errors_survive_pickling_and_copying(error: KubeAliasError, clone: object) -> None:
    again = pickle.loads(pickle.dumps(error)) if clone is pickle.loads else copy.copy(error)
    assert type(again) is type(error) and str(again) == str(error)
    assert (again.reason, again.name, again.chain, again.tried) == (
        error.reason,
        error.name,
        error.chain,
        error.tried,
    )


@pytest.mark.parametrize("problem", ["not a number", "expected ip[:port]: got 'a:b:c'"])
def test_config_error_keeps_its_fields_without_reading_its_own_text(problem: str) -> None:
    error = ConfigError("KUBEALIAS_NAMESERVERS", "a: b", problem)
    again = pickle.loads(pickle.dumps(error))
    assert (again.variable, again.value, again.problem) == (
        "KUBEALIAS_NAMESERVERS",
        "a: b",
        problem,
    )
    assert str(again) == str(error)
    assert isinstance(again, ValueError) and isinstance(again, OSError)
