"""The README documents every command, setting and problem type the code has."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from provenance.cli import main
from provenance.config import ENV_PREFIX, setting_names
from provenance.errors import ALL_ERRORS

README = (Path(__file__).parents[1] / "README.md").read_text()


def command_paths(group: click.Group, prefix: str = "provenance") -> list[str]:
    paths = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            paths.extend(command_paths(command, path))
        else:
            paths.append(path)
    return paths


@pytest.mark.parametrize("command", command_paths(main))
def test_every_command_is_documented(command: str) -> None:
    assert command in README


@pytest.mark.parametrize("name", setting_names())
def test_every_setting_has_a_row(name: str) -> None:
    assert f"`{ENV_PREFIX}{name.upper()}`" in README


@pytest.mark.parametrize("error", ALL_ERRORS, ids=lambda e: e.slug)
def test_every_problem_type_is_documented(error) -> None:
    assert f"`{error.slug}`" in README


def test_readme_test_command_is_what_ci_runs() -> None:
    ci = (Path(__file__).parents[1] / ".ci" / "run").read_text()
    assert "scripts/test" in ci and "scripts/test" in README
