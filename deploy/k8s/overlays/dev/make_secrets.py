"""Create the development Secrets' source files (random values) for the dev overlay.

    uv run python deploy/k8s/overlays/dev/make_secrets.py [DIR]

Writes DIR (default: `secrets/` beside this file, which git ignores). Existing files are kept,
so running it again changes nothing. Never use these files outside a development cluster.
"""

from __future__ import annotations

import functools
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from studyshare.contracts.routes import SERVICES
from studyshare.plumbing.sealing import generate_keypair

DEV_KID = "dev-1"
MONGO_HOSTS = "mongodb-0.mongodb:27017,mongodb-1.mongodb:27017,mongodb-2.mongodb:27017"


def database(service: str) -> str:
    return f"studyshare_{service.replace('-', '_')}"


def mongo_url(service: str, password: str) -> str:
    db = database(service)
    return (
        f"mongodb://studyshare-{service}:{password}@{MONGO_HOSTS}/{db}"
        f"?replicaSet=rs0&authSource={db}"
    )


def ed25519_pem() -> str:
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@functools.cache
def sealing_keys(purpose: str) -> tuple[str, str]:
    """A sealing key pair (private, public) per purpose, the same for both files of one run:
    `otp` (notify's), `pincode` (identity's)."""
    return generate_keypair()


def files() -> dict[str, Callable[[], str]]:
    """Relative path -> a function making its content."""

    def service_env(service: str) -> str:
        password = secrets.token_hex(24)
        return f"password={password}\nurl={mongo_url(service, password)}\n"

    made: dict[str, Callable[[], str]] = {
        "mongodb-admin.env": lambda: f"username=admin\npassword={secrets.token_hex(24)}\n",
        "mongodb-keyfile": lambda: secrets.token_urlsafe(512)[:700] + "\n",
        "identity-signing/active-kid": lambda: DEV_KID,
        f"identity-signing/{DEV_KID}.pem": ed25519_pem,
        "notify-smtp.env": lambda: (
            "STUDYSHARE_SMTP_HOST=smtp.invalid\nSTUDYSHARE_SMTP_PORT=587\n"
            f"STUDYSHARE_SMTP_USERNAME=studyshare\nSTUDYSHARE_SMTP_PASSWORD={secrets.token_hex(16)}\n"
        ),
        "otp-sealing/public-key": lambda: sealing_keys("otp")[1],
        "otp-sealing/private-key": lambda: sealing_keys("otp")[0],
        "pincode-sealing/public-key": lambda: sealing_keys("pincode")[1],
        "pincode-sealing/private-key": lambda: sealing_keys("pincode")[0],
        # the HMAC keys of anonymized shares (share and study-store) and of two-factor codes
        "anonymization/secret": lambda: secrets.token_urlsafe(48),
        "reference-numbers/secret": lambda: secrets.token_urlsafe(48),
        "invitation/secret": lambda: secrets.token_urlsafe(48),
        "portal-client/secret": lambda: secrets.token_urlsafe(48),
        "share-otp-hmac/secret": lambda: secrets.token_urlsafe(48),
        "viewer-token/secret": lambda: secrets.token_urlsafe(48),
        "notify-sms.env": lambda: (
            "STUDYSHARE_SMS_API_URL=https://sms.invalid/v1/messages\n"
            f"STUDYSHARE_SMS_API_TOKEN={secrets.token_hex(16)}\n"
        ),
    }
    for service in SERVICES:
        made[f"{service.name}-mongo.env"] = lambda s=service.name: service_env(s)
        made[f"{service.name}-internal/token"] = lambda: secrets.token_urlsafe(32)
    return made


def make(target: Path) -> list[Path]:
    written = []
    for name, content in files().items():
        path = target / name
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content())
        path.chmod(0o600)
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "secrets"
    for path in make(target):
        print(f"wrote {path}")
