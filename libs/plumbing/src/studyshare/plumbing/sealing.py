"""Sealing one-time codes for notify, so no code ever travels in clear in an event.

The service that makes a code (share for bucket OTPs, identity for patient OTPs) seals it with
notify's public key (libsodium sealed box); only notify, holding the private key, can open it to
send the SMS. The development key pair below is refused outside development and test.
"""

from __future__ import annotations

import base64

from nacl.public import PrivateKey, PublicKey, SealedBox

DEV_PRIVATE_KEY = "Ov4MHLZtroqVWegXC+6Nr604/hjumx0Tm1UGE4p+Nec="
DEV_PUBLIC_KEY = "Fi3sEQTJ/M5ku/UX0rPry+wsvaVxPmr8SiXlIExAXi0="


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


def check_not_dev_key(value: str, environment: str) -> str:
    if environment == "production" and value in {DEV_PRIVATE_KEY, DEV_PUBLIC_KEY}:
        raise ValueError("the development OTP sealing key must not be used in production")
    return value
