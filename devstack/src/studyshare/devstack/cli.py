"""`studyshare-dev`: run the platform on one machine (`make run`), or parts of it."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from studyshare.devstack.platform import (
    BOOTSTRAP_PASSWORD,
    BOOTSTRAP_USER,
    LocalPlatform,
    PlatformError,
    Ports,
)
from studyshare.plumbing.logging import configure_logging

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


def repo_root() -> Path:
    """The uv workspace root above the current directory (or above this file)."""
    for start in (Path.cwd(), Path(__file__).resolve()):
        for candidate in (start, *start.parents):
            pyproject = candidate / "pyproject.toml"
            if pyproject.is_file() and "[tool.uv.workspace]" in pyproject.read_text():
                return candidate
    return Path.cwd()


def _interrupt_once() -> None:
    """The first Ctrl-C or SIGTERM stops the platform; more of them cannot cut the stop short
    (which would leave children running)."""
    fired = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if fired:
            typer.echo("stopping, please wait ...", err=True)
            return
        fired.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _configure_logging() -> None:
    configure_logging("devstack", json=False)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _supervise(platform: LocalPlatform) -> None:
    """Block until Ctrl-C, reporting (once) any process that dies."""
    reported: set[str] = set()
    while True:
        time.sleep(1)
        for name, process in platform.processes.items():
            if not process.alive() and name not in reported:
                reported.add(name)
                typer.secho(
                    f"! {name} exited ({process.returncode}); log: {process.log_path}",
                    fg="red",
                    err=True,
                )


@app.command()
def run(
    demo: Annotated[bool, typer.Option(help="Load the demo data")] = True,
    keep_data: Annotated[bool, typer.Option(help="Keep .run/db from the last run")] = False,
    service: Annotated[
        list[str] | None, typer.Option("--service", "-s", help="Only these services")
    ] = None,
    bootstrap_user: Annotated[
        str,
        typer.Option(envvar="STUDYSHARE_BOOTSTRAP_USER", help="The bootstrap service-desk login"),
    ] = BOOTSTRAP_USER,
    bootstrap_password: Annotated[
        str,
        typer.Option(
            envvar="STUDYSHARE_BOOTSTRAP_PASSWORD",
            help="Its password (never printed when given)",
            show_default=False,
        ),
    ] = BOOTSTRAP_PASSWORD,
) -> None:
    """Everything on the ports of DEVELOPING.md, data and logs under .run/; Ctrl-C stops it.

    "ready" is printed last, once the services answer and the demo data are loaded."""
    _configure_logging()
    _interrupt_once()
    run_dir = repo_root() / ".run"
    platform = LocalPlatform(
        run_dir,
        services=service,
        ports=Ports.fixed(),
        fresh=not keep_data,
        bootstrap_user=bootstrap_user,
        bootstrap_password=bootstrap_password,
    )
    names = ", ".join(s.name for s in platform.chosen) or "none (no service has a __main__ yet)"
    typer.echo(f"starting broker, database, mail catcher, gateway and services: {names}")
    try:
        with platform:
            logins: list[tuple[str, str, str]] = []
            receiver = None
            if demo:
                from studyshare.devstack.demo import load_demo

                logins = load_demo(
                    platform.gateway_url, platform.bootstrap_user, platform.bootstrap_password
                )
                receiver = _start_receiver(platform)
            _print_summary(platform, logins, receiver)
            typer.secho(f"ready: {platform.gateway_url}", fg="green")
            _supervise(platform)
    except PlatformError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        left = [name for name, p in platform.processes.items() if p.alive()]
        typer.echo(f"stopped; still running: {left}" if left else "stopped; nothing left running")


def _start_receiver(platform: LocalPlatform) -> str | None:
    """The study store's C-STORE receiver, filing what the demo AE title sends under the demo
    department; its summary line (None: no study store, or no demo department)."""
    from studyshare.devstack.demo import CALLING_AE_TITLE, demo_department

    if "study-store" not in {s.name for s in platform.chosen}:
        return None
    department = demo_department(platform.gateway_url)
    if department is None:
        return None
    platform.start_receiver({CALLING_AE_TITLE: department})
    port = platform.ports.dicom
    return (
        f"DICOM C-STORE        STUDYSHARE@127.0.0.1:{port}   (calling AE title "
        f"{CALLING_AE_TITLE}, the demo department: storescu -aet {CALLING_AE_TITLE} "
        f"-aec STUDYSHARE 127.0.0.1 {port} FILE.dcm)"
    )


def _print_summary(
    platform: LocalPlatform, logins: list[tuple[str, str, str]], receiver: str | None = None
) -> None:
    lines = [
        "",
        f"StudyShare gateway   {platform.gateway_url}   (API docs: {platform.gateway_url}/docs)",
        *([f"portal               {platform.portal_url}   (log in below)"] * bool(platform.portal)),
        f"mail + SMS catcher   {platform.mail_url}   (SMTP 127.0.0.1:{platform.ports.smtp})",
        *([receiver] if receiver else []),
        f"logs                 {platform.logs}",
        "logins:",
        f"  service desk       {platform.bootstrap_user} / {_shown_password(platform)}",
        *(f"  {role:<18} {user} / {password}" for role, user, password in logins),
        "Ctrl-C stops everything.",
    ]
    typer.echo("\n".join(lines))


def _shown_password(platform: LocalPlatform) -> str:
    """The development password is printed; one given through the environment never is."""
    if platform.bootstrap_password == BOOTSTRAP_PASSWORD:
        return BOOTSTRAP_PASSWORD
    return "(the password of STUDYSHARE_BOOTSTRAP_PASSWORD)"


@app.command()
def infra(
    keep_data: Annotated[bool, typer.Option(help="Keep .run/db from the last run")] = False,
) -> None:
    """Only the broker (Kafka protocol, 9092) and the database (MongoDB protocol, 27017)."""
    _configure_logging()
    _interrupt_once()
    platform = LocalPlatform(
        repo_root() / ".run", services=[], ports=Ports.fixed(), fresh=not keep_data
    )
    try:
        platform.start_infra()
        typer.echo(
            f"kafka   STUDYSHARE_KAFKA_BOOTSTRAP={platform.kafka_bootstrap}\n"
            f"mongo   STUDYSHARE_MONGO_URL='{platform.mongo_url}'\n"
            "Ctrl-C stops both."
        )
        _supervise(platform)
    except PlatformError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("stopped")
    finally:
        platform.stop()


@app.command()
def gateway(
    port: Annotated[int | None, typer.Option(help="Override STUDYSHARE_GATEWAY_PORT")] = None,
) -> None:
    """Serve the gateway (upstreams from STUDYSHARE_UPSTREAMS, default the route table)."""
    from studyshare.devstack.gateway import serve
    from studyshare.devstack.settings import GatewaySettings

    settings = GatewaySettings()
    if port:
        settings = settings.model_copy(update={"gateway_port": port})
    serve(settings)


@app.command()
def mailcatcher(
    smtp_port: Annotated[int | None, typer.Option(help="SMTP port (default 1025)")] = None,
    http_port: Annotated[int | None, typer.Option(help="HTTP port (default 8025)")] = None,
) -> None:
    """Serve the mail catcher (SMTP) and SMS sink with their HTTP API."""
    from studyshare.devstack.mailcatcher import serve
    from studyshare.devstack.settings import MailCatcherSettings

    settings = MailCatcherSettings()
    updates = {"mail_smtp_port": smtp_port, "mail_http_port": http_port}
    serve(settings.model_copy(update={k: v for k, v in updates.items() if v}))


@app.command()
def demo(
    gateway_url: Annotated[str, typer.Option("--gateway")] = "http://127.0.0.1:8080",
    user: Annotated[str, typer.Option(envvar="STUDYSHARE_BOOTSTRAP_USER")] = BOOTSTRAP_USER,
    password: Annotated[
        str, typer.Option(envvar="STUDYSHARE_BOOTSTRAP_PASSWORD")
    ] = BOOTSTRAP_PASSWORD,
) -> None:
    """Load the demo data into a running platform, through the gateway."""
    from studyshare.devstack.demo import load_demo

    _configure_logging()
    for role, login, secret in load_demo(gateway_url, user, password):
        typer.echo(f"{role:<18} {login} / {secret}")


def main() -> None:
    app()
