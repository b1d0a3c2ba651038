"""The browser's address, vouched for by the portal.

The portal calls the public API on behalf of browsers, so to identity every portal login would
come from the portal's one address, and a stranger's twenty wrong guesses would lock the
per-source lockout for every portal user. The portal names the browser's address in a header
with an HMAC under a secret only it and identity hold (`STUDYSHARE_PORTAL_CLIENT_SECRET`),
dated so that a seen header is good for `MAX_AGE_S` only; identity takes that address as the
source of a request that carries a valid one, and the proxies' address otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

ADDRESS, PROOF = "studyshare-client-address", "studyshare-client-proof"
MAX_AGE_S = 60


def forwarded_address(forwarded_for: str, peer: str | None, trusted_proxies: int) -> str | None:
    """The caller's address as the outermost trusted proxy saw it.

    Each proxy appends the address it received the request from to X-Forwarded-For, so only
    the last `trusted_proxies` entries were written by proxies we run; anything to their left
    came from the client and may be forged (the per-source login lockout must not be
    escapable by sending a different header each time). With no trusted proxy, the peer.
    """
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    if trusted_proxies <= 0 or not hops:
        return peer
    return hops[-min(trusted_proxies, len(hops))][:64]


def _mac(secret: str, address: str, at: int) -> str:
    message = f"client-address\x00{address}\x00{at}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def vouched(secret: str, address: str, now: float) -> dict[str, str]:
    """The headers naming `address` as the browser's."""
    at = int(now)
    return {ADDRESS: address, PROOF: f"{at}.{_mac(secret, address, at)}"}


def vouched_address(secret: str | None, headers: Mapping[str, str], now: float) -> str | None:
    """The browser's address the headers name, when the portal vouched for it lately."""
    address, proof = headers.get(ADDRESS), headers.get(PROOF)
    if not secret or not address or not proof or len(address) > 64:
        return None
    at, _, mac = proof.partition(".")
    if not at.isdigit() or abs(now - int(at)) > MAX_AGE_S:
        return None
    expected = _mac(secret, address, int(at)).encode()
    return address if hmac.compare_digest(expected, mac.encode("utf-8", "surrogatepass")) else None
