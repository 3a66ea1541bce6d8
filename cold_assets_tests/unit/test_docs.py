"""The docs are held to the code: every variable the code or the stack reads is in
docs/configuration.md, and every command in the README's code blocks exists."""

import re
from pathlib import Path

import pytest

from cold_assets.tools.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
# Full names only: "CLICKHOUSE_" alone is a prefix the code filters by.
VARIABLE = re.compile(r"[\"'`]((?:COLD|CLICKHOUSE|DAGSTER|JAVA|PYICEBERG)_[A-Z0-9_]*[A-Z0-9])[\"'`]")


def test_every_variable_the_code_reads_is_documented():
    read = {name for path in (ROOT / "cold_assets").rglob("*.py") for name in VARIABLE.findall(path.read_text())}
    assert {"COLD_HOME", "CLICKHOUSE_HOST", "JAVA_HOME", "COLD_WARM"} <= read  # the scan finds them
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", CONFIGURATION))
    assert read - documented == set(), "read by the code, missing from docs/configuration.md"


def test_every_variable_the_stack_reads_is_documented():
    compose = (ROOT / "docker" / "docker-compose.yml").read_text()
    read = set(re.findall(r"\$\{([A-Z0-9_]+)", compose))
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", CONFIGURATION))
    assert read - documented == set(), "read by docker-compose.yml, missing from docs/configuration.md"


def _readme_commands() -> list[list[str]]:
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    lines = [line.split("#", 1)[0].strip() for block in blocks for line in block.splitlines()]
    return [line.split() for line in lines if line]


@pytest.mark.parametrize("words", _readme_commands(), ids=" ".join)
def test_every_command_in_the_readme_exists(words):
    if words[0] == "make":
        targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))
        assert words[1] in targets, f"make {words[1]}: no such target"
    elif words[0].endswith("cold-assets"):
        build_parser().parse_args(words[1:])  # exits (a failed test) on an unknown command or flag
    elif words[0] == "export":  # each variable set is one the docs describe
        documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", CONFIGURATION))
        for assignment in words[1:]:
            name = assignment.split("=", 1)[0]
            assert name in documented or name.startswith("PYICEBERG_CATALOG__"), f"{name} is not in docs/configuration.md"
    else:
        assert words[0] in ("git", "cd", "cp", "docker"), f"a command the test does not know how to check: {words}"
