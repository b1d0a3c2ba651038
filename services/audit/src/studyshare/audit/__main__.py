"""`python -m studyshare.audit api|worker|replay|verify|rebuild`."""

from __future__ import annotations

from studyshare.audit.cli import cli

if __name__ == "__main__":
    cli()
