"""Sealing secrets to the one service that needs them, so none travels in clear in an event.

- One-time codes: the service that makes a code (share for bucket OTPs, identity for patient
  OTPs) seals it with notify's public key (libsodium sealed box); only notify, holding the
  private key, can open it to send the SMS.
- Pincodes: the study store seals a reference number's pincode with identity's own public key
  (bound to its reference id, `reference_ids`);
  only identity (its worker) opens it and keeps an argon2 hash of it in its own database. Who
  reads `study.events` holds nothing to test a guess against.

The development key pairs below are refused in production.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

DEV_PRIVATE_KEY = "Ov4MHLZtroqVWegXC+6Nr604/hjumx0Tm1UGE4p+Nec="
DEV_PUBLIC_KEY = "Fi3sEQTJ/M5ku/UX0rPry+wsvaVxPmr8SiXlIExAXi0="
DEV_PINCODE_PRIVATE_KEY = "dOIyu4kCR/R7ZT1dO7d4WkL4r3AZz2cVlWo5UrBl4MA="
DEV_PINCODE_PUBLIC_KEY = "39ZB5g+rvuaontMMykpr17LJBiowiKcBSwQE60hDMxE="
DEV_KEYS = frozenset(
    {DEV_PRIVATE_KEY, DEV_PUBLIC_KEY, DEV_PINCODE_PRIVATE_KEY, DEV_PINCODE_PUBLIC_KEY}
)
#: a sealed pincode is padded to this many characters, so its length does not tell the pincode's
PINCODE_PADDED_TO = 32


def seal(code: str, public_key_b64: str) -> str:
    box = SealedBox(PublicKey(base64.b64decode(public_key_b64)))
    return base64.b64encode(box.encrypt(code.encode())).decode()


def unseal(sealed: str, private_key_b64: str) -> str:
    box = SealedBox(PrivateKey(base64.b64decode(private_key_b64)))
    return box.decrypt(base64.b64decode(sealed)).decode()


def generate_keypair() -> tuple[str, str]:
    """(private, public), base64: `python -c 'from studyshare.plumbing.sealing import *;
    print(generate_keypair())'` when provisioning a deployment."""
    key = PrivateKey.generate()
    return base64.b64encode(bytes(key)).decode(), base64.b64encode(bytes(key.public_key)).decode()


def seal_pincode(reference_id: str, pincode: str, public_key_b64: str) -> str:
    """`pincode` sealed to identity's key, bound to the reference id of its number (a box
    copied onto another reference does not open there) and padded to a fixed length."""
    pad = " " * max(PINCODE_PADDED_TO - len(pincode), 0)
    # the key keeps its first name: boxes sealed before reference ids named the number, which
    # is still the id of those references
    body = {"reference_number": reference_id, "pincode": pincode, "pad": pad}
    return seal(json.dumps(body, separators=(",", ":")), public_key_b64)


def open_pincode(sealed: str, reference_id: str, private_keys_b64: Sequence[str]) -> str | None:
    """The pincode sealed by `seal_pincode` for this reference, or None when no key opens the
    box (the keys are tried in order: the current one, then retired ones) or it is for
    another."""
    for key in private_keys_b64:
        try:
            body = json.loads(unseal(sealed, key))
        except (CryptoError, ValueError, binascii.Error):
            continue
        if not isinstance(body, dict) or body.get("reference_number") != reference_id:
            return None
        pincode = body.get("pincode")
        return pincode if isinstance(pincode, str) and pincode else None
    return None


def check_key(value: str, name: str) -> str:
    """A sealing key is 32 bytes, base64."""
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"{name} must be a 32-byte key in base64")
    return value


def check_not_dev_key(value: str, environment: str, what: str = "OTP sealing key") -> str:
    if environment == "production" and value in DEV_KEYS:
        raise ValueError(f"the development {what} must not be used in production")
    return value
