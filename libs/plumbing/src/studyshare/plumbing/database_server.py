"""The local MongoDB-protocol server (SecantusDB's daemon) with mongod's transaction reaper.

mongod aborts a transaction that outlives `transactionLifetimeLimitSeconds` on a background
thread, so a client killed in the middle of one (kill -9, OOM) cannot hold its writes for
ever. SecantusDB aborts such a transaction only when another transaction statement arrives;
until then a database drop or a plain write to the same documents retries without end (a
killed notify worker wedged the test database that way). This entry point runs the very same
daemon (`secantus.cli.main`, every flag unchanged) on a server that also reaps idle
transactions every second.

    python -m studyshare.plumbing.database_server [--transaction-lifetime-seconds N] <flags>
"""

from __future__ import annotations

import argparse
import functools
import logging
import threading

from secantus import cli
from secantus.server import SecantusDBServer

log = logging.getLogger("studyshare.database_server")

REAP_EVERY_S = 1.0


class ReapingServer(SecantusDBServer):
    """SecantusDB's server plus a thread aborting transactions idle past their lifetime."""

    def start(self) -> None:
        super().start()
        threading.Thread(target=self._reap, name="transaction-reaper", daemon=True).start()

    def _reap(self) -> None:
        while not self._stop_event.wait(REAP_EVERY_S):
            try:
                reaped = self.transactions.prune_expired()
            except Exception:
                log.exception("reaping idle transactions failed")
                continue
            if reaped:
                log.warning("aborted %d transaction(s) idle past their lifetime", reaped)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--transaction-lifetime-seconds", type=float, default=60.0)
    ours, theirs = parser.parse_known_args(argv)
    # The daemon's own main builds the server: it builds ours.
    cli.SecantusDBServer = functools.partial(  # type: ignore[misc]
        ReapingServer, transaction_lifetime_seconds=ours.transaction_lifetime_seconds
    )
    return cli.main(theirs)


if __name__ == "__main__":
    raise SystemExit(main())
