"""The name a patient reference number goes by, so the number itself never travels.

A reference number opens a study with the patient's date of birth: it is a credential, printed
on paper for the patient. Outside the patient's form and the study store's own read model it is
named by its *reference id*, an HMAC of the number under a secret the study store and identity
share (`STUDYSHARE_REFERENCE_NUMBER_SECRET`):

- the study store issues a number under `ref_<reference id>`; its events name the id, and carry
  the number only sealed (`seal_number`), for the study store's Access tab to show it again;
- identity turns the number a patient types into its id and finds the reference by it; a
  patient's stream and token name the id too;
- audit, notify, Kafka keys and tokens see ids only: nothing they hold opens a study, and with
  few digits a number could be guessed from a plain hash, never from a keyed one.

The id is deterministic, so "this number is taken" is still a question of one stream.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from nacl.exceptions import CryptoError
from nacl.secret import SecretBox


def _key(secret: str, purpose: str) -> bytes:
    return hashlib.sha256(f"studyshare-reference-number-{purpose}\x00{secret}".encode()).digest()


def normalized(number: str) -> str:
    """A number as issued: patients type it from paper, in either case."""
    return number.strip().upper()


def reference_id(number: str, secret: str) -> str:
    """The id of `number` (numbers are issued in capitals: as typed, case and outer spaces
    aside): 32 lower-case base32 characters, which no number (digits and capitals) looks like."""
    digest = hmac.new(_key(secret, "id"), normalized(number).encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:20]).decode().lower()


def seal_number(number: str, ref_id: str, secret: str) -> str:
    """`number` sealed under the shared secret, bound to its id (a box copied onto another
    reference does not open there)."""
    body = json.dumps({"reference_id": ref_id, "number": number}, separators=(",", ":"))
    return base64.b64encode(SecretBox(_key(secret, "seal")).encrypt(body.encode())).decode()


def open_number(sealed: str, ref_id: str, secret: str) -> str | None:
    """The number `seal_number` sealed for `ref_id`, or None (another secret, another id)."""
    try:
        raw = SecretBox(_key(secret, "seal")).decrypt(base64.b64decode(sealed))
        body = json.loads(raw)
    except (CryptoError, ValueError):
        return None
    if not isinstance(body, dict) or body.get("reference_id") != ref_id:
        return None
    number = body.get("number")
    return number if isinstance(number, str) else None
