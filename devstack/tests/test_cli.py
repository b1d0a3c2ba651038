"""The `studyshare-dev` command line."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from studyshare.devstack.cli import app, repo_root


def test_commands_are_there() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "infra", "gateway", "mailcatcher", "demo"):
        assert command in result.output


def test_repo_root_is_the_uv_workspace() -> None:
    root = repo_root()
    assert (root / "uv.lock").exists()
    assert (root / "devstack" / "tests" / Path(__file__).name).exists()
