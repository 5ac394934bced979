"""The settings table: every Config field has a row, every row parses, and the README shows it."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest

from kubealias import Config, ConfigError
from kubealias._config import KNOWN_VARIABLES, SETTINGS, Setting

README = Path(__file__).resolve().parents[2] / "README.md"

KUBELET = """\
search production.svc.cluster.local svc.cluster.local cluster.local
nameserver 10.96.0.10
options ndots:5
"""

#: field -> (a good value as the variable would hold it, its typed value, a bad value).
SAMPLES: dict[str, tuple[str, object, str]] = {
    "nameservers": ("10.0.0.1, [::1]:5353", (("10.0.0.1", 53), ("::1", 5353)), "10.0.0.1:0"),
    "search": ("a.svc.k.test svc.k.test", ("a.svc.k.test", "svc.k.test"), "a..b"),
    "ndots": ("3", 3, "16"),
    "cluster_domain": ("Corp.Example.", "corp.example", "1.2.3.4"),
    "namespace": ("team-a", "team-a", "Team_A"),
    "timeout": ("0.5", 0.5, "0"),
    "aliases": (
        "database=DB.example.com",
        {"database.production.svc.cluster.local": "db.example.com"},
        "database",
    ),
    "allowed_targets": (
        "*.example.com, db.example.org",
        ("*.example.com", "db.example.org"),
        "a/b",
    ),
    "strict": ("yes", True, "maybe"),
    "max_stale": ("60", 60.0, "-5"),
    "min_ttl": ("1", 1.0, "abc"),
    "max_ttl": ("30", 30.0, "inf"),
    "disable": ("on", True, "2"),
    "attempts": ("3", 3, "0"),
    "resolv_timeout": ("1.5", 1.5, "0"),
}


def read(environ: dict[str, str] | None = None, **kw: object) -> Config:
    return Config.from_env(
        environ or {}, resolv_conf=io.StringIO(KUBELET), namespace_file=None, **kw
    )


def given(setting: Setting, value: str) -> tuple[dict[str, str], dict[str, object], str]:
    """(environ, keywords, the name an error must show) that give ``value`` to ``setting``."""
    if setting.variable is None:
        return {}, {setting.field: value}, setting.field
    return {setting.variable: value}, {}, setting.variable


def test_every_config_field_has_one_row_in_field_order() -> None:
    fields = [f.name for f in dataclasses.fields(Config) if f.name != "sources"]
    assert [s.field for s in SETTINGS] == fields
    assert set(SAMPLES) == set(fields)  # a new row needs its samples here


def test_known_variables_are_the_table_variables() -> None:
    variables = [s.variable for s in SETTINGS if s.variable is not None]
    assert len(variables) == len(set(variables))
    assert set(variables) == KNOWN_VARIABLES
    assert all(v.startswith("KUBEALIAS_") for v in KNOWN_VARIABLES)
    # resolv.conf's own retry knobs have no variable of their own
    assert {s.field for s in SETTINGS if s.variable is None} == {"attempts", "resolv_timeout"}


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.field)
def test_each_row_parses_its_value(setting: Setting) -> None:
    text, want, _ = SAMPLES[setting.field]
    environ, keywords, _ = given(setting, text)
    config = read(environ, **keywords)
    assert getattr(config, setting.field) == want
    want_source = "keyword argument" if keywords else f"environment {setting.variable}"
    assert config.sources[setting.field] == want_source


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.field)
def test_each_row_names_the_variable_and_the_bad_value(setting: Setting) -> None:
    _, _, bad = SAMPLES[setting.field]
    environ, keywords, name = given(setting, bad)
    with pytest.raises(ConfigError) as info:
        read(environ, **keywords)
    assert info.value.variable == name and info.value.value == bad
    assert f"{name}={bad!r}" in str(info.value)
    with pytest.raises(ConfigError, match=name):  # the parser alone, too
        setting.parse(name, bad)


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.field)
def test_each_row_falls_back_when_nothing_is_given(setting: Setting) -> None:
    config = Config.from_env({}, resolv_conf=io.StringIO(""), namespace_file=None)
    assert config.sources[setting.field].startswith(("default", "unknown"))
    assert setting.doc and setting.fallback.doc


def test_env_rows_follow_the_table() -> None:
    rows = read().describe()
    assert [label for label, _, _ in rows] == [s.variable or s.field for s in SETTINGS]


def render_markdown() -> str:
    """The README's configuration table, from SETTINGS."""
    lines = ["| variable | keyword | meaning | default |", "|---|---|---|---|"]
    for s in SETTINGS:
        variable = f"`{s.variable}`" if s.variable else "(none)"
        lines.append(f"| {variable} | `{s.field}` | {s.doc} | {s.fallback.doc} |")
    return "\n".join(lines) + "\n"


def test_readme_configuration_table_is_the_settings_table() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    table = "".join(line + "\n" for line in section.splitlines() if line.startswith("|"))
    assert table == render_markdown(), "README.md: paste the output of render_markdown()"
