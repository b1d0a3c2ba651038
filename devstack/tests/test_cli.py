"""The `studyshare-dev` command line."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from studyshare.devstack.cli import app, repo_root
from studyshare.devstack.platform import BOOTSTRAP_PASSWORD, BOOTSTRAP_USER


def test_commands_are_there() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "infra", "gateway", "mailcatcher", "demo"):
        assert command in result.output


def test_repo_root_is_the_uv_workspace() -> None:
    root = repo_root()
    assert (root / "uv.lock").exists()
    assert (root / "devstack" / "tests" / Path(__file__).name).exists()


class _FakePlatform:
    """Records what `run` gives the platform; starts nothing."""

    made: list[_FakePlatform] = []

    def __init__(self, run_dir: Path, **kw: object) -> None:
        self.kw = kw
        self.bootstrap_user = kw["bootstrap_user"]
        self.bootstrap_password = kw["bootstrap_password"]
        self.gateway_url = "http://127.0.0.1:18080"
        self.portal = True
        self.portal_url = self.gateway_url + "/"
        self.mail_url = "http://127.0.0.1:18025"
        self.logs = run_dir / "logs"
        self.chosen: list[object] = []
        self.processes: dict[str, object] = {}
        self.ports = type("P", (), {"smtp": 11025})()
        _FakePlatform.made.append(self)

    def __enter__(self) -> _FakePlatform:
        typer.echo("<platform up>")
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _run_with(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], platform: type = _FakePlatform
) -> tuple[str, list]:
    from studyshare.devstack import cli, demo

    demo_calls: list[tuple[str, str, str]] = []

    def fake_load_demo(url: str, user: str, password: str) -> list[tuple[str, str, str]]:
        demo_calls.append((url, user, password))
        typer.echo("<demo loaded>")
        return [("physician", "dr.x", "Pw-1")]

    _FakePlatform.made.clear()
    monkeypatch.setattr(cli, "LocalPlatform", platform)
    monkeypatch.setattr(demo, "load_demo", fake_load_demo)
    monkeypatch.setattr(cli, "_supervise", lambda platform: None)
    monkeypatch.setattr(cli, "_interrupt_once", lambda: None)
    # logging configured inside CliRunner would write to its captured stream after it closed
    monkeypatch.setattr(cli, "_configure_logging", lambda: None)
    result = CliRunner().invoke(app, ["run"], env=env)
    assert result.exit_code == 0, result.output
    return result.output, demo_calls


def test_make_run_honours_the_bootstrap_account_of_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    output, demo_calls = _run_with(
        monkeypatch,
        {
            "STUDYSHARE_BOOTSTRAP_USER": "desk.owner",
            "STUDYSHARE_BOOTSTRAP_PASSWORD": "S3cret-Own-77",
        },
    )
    (platform,) = _FakePlatform.made
    # the services get it (identity creates that account) and the demo logs in with it
    assert platform.kw["bootstrap_user"] == "desk.owner"
    assert platform.kw["bootstrap_password"] == "S3cret-Own-77"
    assert demo_calls == [(platform.gateway_url, "desk.owner", "S3cret-Own-77")]
    assert "desk.owner" in output
    assert "S3cret-Own-77" not in output  # a password of one's own is never printed


def test_make_run_defaults_to_the_development_account_and_prints_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STUDYSHARE_BOOTSTRAP_USER", raising=False)
    monkeypatch.delenv("STUDYSHARE_BOOTSTRAP_PASSWORD", raising=False)
    output, demo_calls = _run_with(monkeypatch, {})
    assert demo_calls == [("http://127.0.0.1:18080", BOOTSTRAP_USER, BOOTSTRAP_PASSWORD)]
    assert f"{BOOTSTRAP_USER} / {BOOTSTRAP_PASSWORD}" in output


def test_make_run_prints_ready_only_once_the_demo_data_are_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    output, _ = _run_with(monkeypatch, {})
    lines = output.splitlines()
    ready = [i for i, line in enumerate(lines) if "ready" in line.casefold()]
    assert ready == [len(lines) - 1], output  # once, and last
    assert lines.index("<platform up>") < lines.index("<demo loaded>") < ready[0]
    assert "dr.x / Pw-1" in output


def test_make_run_starts_the_c_store_receiver_for_the_demo_department(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from studyshare.devstack import demo

    started: list[dict[str, str]] = []

    class WithStudyStore(_FakePlatform):
        def __init__(self, run_dir: Path, **kw: object) -> None:
            super().__init__(run_dir, **kw)
            self.chosen = [type("S", (), {"name": "study-store"})()]
            self.ports.dicom = 11112

        def start_receiver(self, callers: dict[str, str]) -> None:
            started.append(dict(callers))

    monkeypatch.setattr(demo, "demo_department", lambda url: "dep_demo")
    output, _ = _run_with(monkeypatch, {}, WithStudyStore)
    assert started == [{demo.CALLING_AE_TITLE: "dep_demo"}]
    assert f"storescu -aet {demo.CALLING_AE_TITLE} -aec STUDYSHARE 127.0.0.1 11112" in output
