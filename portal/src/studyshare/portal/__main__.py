"""`python -m studyshare.portal api [--port N]`: serve the portal's pages."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
import uvicorn

from studyshare.plumbing.logging import configure_logging
from studyshare.plumbing.tracing import configure_tracing
from studyshare.portal.settings import PortalSettings

cli = typer.Typer(no_args_is_help=True, add_completion=False)


@cli.callback()
def main() -> None:
    """The StudyShare web portal."""


@cli.command()
def api(
    port: Annotated[int | None, typer.Option(help="Override STUDYSHARE_HTTP_PORT")] = None,
) -> None:
    """Serve the portal (pages, static files, /healthz, /readyz, /metrics)."""
    settings = PortalSettings()
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    configure_tracing(settings, "api")
    for chatty in ("httpx", "httpcore"):  # one line per API call otherwise
        logging.getLogger(chatty).setLevel(logging.WARNING)
    uvicorn.run(
        "studyshare.portal.app:create_app",
        factory=True,
        host=settings.http_host,
        port=port or settings.http_port,
        log_config=None,
        access_log=False,
        timeout_keep_alive=settings.http_keep_alive_s,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    cli()
