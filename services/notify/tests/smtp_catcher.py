"""A real SMTP server for the tests (aiosmtpd), run as its own process.

`python smtp_catcher.py PORT DIR` stores every accepted message as `DIR/<n>.eml`. Two switches,
files in DIR, let a test catch a client mid-send:
- `hold-before-accept`: the server holds the DATA reply before storing; a client that is gone
  when the hold is lifted never got its message accepted (nothing is stored).
- `hold-after-accept`: the server stores the message, then holds the `250` reply: the client
  dies in the ambiguous window (accepted, but it never heard so).
While holding, the server writes `DIR/holding`.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Store:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.count = len(list(directory.glob("*.eml")))

    async def _hold(self, switch: str, envelope) -> None:
        """Hold while the switch file exists; a switch naming a tag holds only messages to a
        recipient containing it (other tests' leftover mail passes)."""
        path = self.directory / switch
        if not path.exists():
            return
        tag = path.read_text().strip()
        if tag not in ("", "on") and not any(tag in r for r in envelope.rcpt_tos):
            return
        (self.directory / "holding").write_text(switch)
        while (self.directory / switch).exists():
            await asyncio.sleep(0.02)
        (self.directory / "holding").unlink(missing_ok=True)

    async def handle_DATA(self, server, session, envelope) -> str:
        await self._hold("hold-before-accept", envelope)
        if server.transport is None or server.transport.is_closing():
            return "451 client went away"
        self.count += 1
        tmp = self.directory / f".{self.count}.tmp"
        tmp.write_bytes(envelope.original_content or envelope.content)
        tmp.rename(self.directory / f"{self.count:05d}.eml")
        await self._hold("hold-after-accept", envelope)
        return "250 OK stored"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address.startswith("refuse"):
            return "550 no such mailbox"
        if address.startswith("busy") and not (self.directory / "busy-ok").exists():
            return "451 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def authenticator(expected: str):
    """`CATCHER_AUTH=user:password`: the server requires that login (AUTH PLAIN/LOGIN)."""
    user, _, password = expected.partition(":")

    def check(server, session, envelope, mechanism, data) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            user.encode(),
            password.encode(),
        )
        return AuthResult(success=ok, handled=False)

    return check


def main() -> None:
    port, directory = int(sys.argv[1]), Path(sys.argv[2])
    directory.mkdir(parents=True, exist_ok=True)
    auth = os.environ.get("CATCHER_AUTH")
    options = (
        {"authenticator": authenticator(auth), "auth_required": True, "auth_require_tls": False}
        if auth
        else {}
    )
    controller = Controller(Store(directory), hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        asyncio.run(asyncio.Event().wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
