"""The proof that one holds an invitation mail: a share to a new recipient by e-mail is
accepted with the token its mail's link carries, not with the account's e-mail address alone
(an address on an account is what its holder typed, never verified).

Both the share service (which checks it) and notify (which puts it in the link) derive it from
the invitation secret (`STUDYSHARE_INVITATION_SECRET`, the same in both services), the bucket
and the invited address; nothing is stored, and no event carries it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def invitation_token(secret: str, bucket_id: str, email: str) -> str:
    """128 bits, URL-safe: one per bucket and invited address."""
    message = f"invitation\x00{bucket_id}\x00{email.strip().lower()}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def is_invitation_token(secret: str, bucket_id: str, email: str, token: str | None) -> bool:
    """Compared in constant time, as bytes (any text a caller sends is only unequal)."""
    given = (token or "").encode("utf-8", "surrogatepass")
    expected = invitation_token(secret, bucket_id, email).encode()
    return bool(given) and hmac.compare_digest(expected, given)
