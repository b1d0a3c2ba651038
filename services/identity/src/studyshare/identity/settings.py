"""Identity settings, read from `STUDYSHARE_*` environment variables."""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field, model_validator

from studyshare.contracts.routes import SERVICE_BY_NAME
from studyshare.plumbing.sealing import DEV_PINCODE_PRIVATE_KEY, check_key, check_not_dev_key
from studyshare.plumbing.settings import ServiceSettings, refuse_placeholder


class IdentitySettings(ServiceSettings):
    """Everything identity needs: keys, token lifetimes, lockout, environments, bootstrap."""

    service_name: str = "identity"
    http_port: int = SERVICE_BY_NAME["identity"].port

    signing_key_pem: str | None = Field(
        default=None,
        description="Ed25519 private key (PKCS#8 PEM) that signs access tokens; required "
        "outside development and test (there a key is generated once and kept in the database)",
    )
    signing_key_id: str | None = Field(default=None, description="`kid` of the signing key")
    previous_signing_keys_jwks: str = Field(
        default='{"keys": []}',
        description="JWKS (JSON) of retired public keys still published during a rotation",
    )

    session_revocation_feed: bool = Field(
        default=False,
        description="identity checks its own sessions store on every request instead",
    )
    session_barrier_timeout_s: float = Field(
        default=12.0,
        gt=0,
        description="a logout (refresh-token reuse, deactivation, password reset) answers once "
        "every API process following the ended sessions has the end, or after this long "
        "(then with `StudyShare-Propagated: false`); longer than a follower's lease, so a "
        "process that died is waited out",
    )
    access_token_ttl_s: int = Field(default=900, ge=30)
    refresh_token_ttl_s: int = Field(default=30 * 24 * 3600, ge=60)
    external_login_state_ttl_s: int = Field(
        default=600, ge=30, description="How long the `state` of an external login start holds"
    )
    external_login_totp_ttl_s: int = Field(
        default=300, ge=30, description="How long an external login waits for its TOTP code"
    )
    patient_token_ttl_s: int = Field(default=3600, ge=30)
    demo_eid: bool = Field(
        default=False,
        description="offer the stand-in eID provider `demo-eid` (development and test only)",
    )

    bootstrap_user: str | None = None
    bootstrap_password: str | None = None

    environment_code: str = Field(default="be", description="this deployment's country code")
    portals: str = Field(
        default=json.dumps(
            {
                "be": "https://be.studyshare.example",
                "nl": "https://nl.studyshare.example",
                "fr": "https://fr.studyshare.example",
                "lu": "https://lu.studyshare.example",
                "de": "https://de.studyshare.example",
            }
        ),
        description="JSON object: environment code -> portal URL",
    )

    trusted_proxies: int = Field(
        default=1,
        ge=0,
        description="proxies in front of identity that append to X-Forwarded-For (the gateway "
        "or the Ingress); the caller is the entry the outermost of them appended",
    )
    portal_client_secret: str | None = Field(
        default=None,
        description="the portal's key vouching for a browser's address "
        "(`plumbing.client_address`; the same value as the portal's); unset: none is taken",
    )
    account_lock_threshold: int = Field(default=5, ge=1)
    source_lock_threshold: int = Field(default=20, ge=1)
    lock_base_s: float = Field(default=30.0, gt=0)
    lock_max_s: float = Field(default=3600.0, gt=0)
    source_window_s: float = Field(
        default=900.0, gt=0, description="a source's failure count decays after this long"
    )
    failure_decay_s: float = Field(
        default=900.0,
        gt=0,
        description="an account's or reference number's failure count is forgotten this long "
        "after its last failure (or the end of its lock)",
    )

    registrations_per_source: int = Field(
        default=10,
        ge=1,
        description="self-registrations one source makes before it waits (lock_base_s x 20, "
        "doubling); each costs an argon2 hash, a pending account and perhaps a mail to the desk",
    )
    registration_window_s: float = Field(
        default=3600.0, gt=0, description="a source's registration count decays after this long"
    )

    patient_lock_threshold: int = Field(default=5, ge=1)
    patient_otp_ttl_s: int = Field(default=300, ge=30)
    patient_otp_resend_s: int = Field(
        default=60, ge=0, description="no second SMS code for a number within this many seconds"
    )

    mobile_change_code_ttl_s: int = Field(
        default=600, ge=30, description="how long the code sent to a new mobile number holds"
    )
    mobile_change_resend_s: int = Field(
        default=30, ge=0, description="no second code for a new mobile number within this gap"
    )

    group_confirmation_days: int = Field(default=91, ge=1)
    group_confirmation_grace_days: float = Field(
        default=14,
        ge=0,
        description="days a due group membership confirmation may wait before the membership "
        "stops giving access to the colleagues' studies (until confirmed)",
    )
    reminder_interval_s: float = Field(default=3600.0, gt=0)

    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=8)

    reference_number_secret: str = Field(
        default="dev-secret",
        description="key of the reference ids patient reference numbers go by "
        "(`studyshare.plumbing.reference_ids`): a patient's number is found by its id; the "
        "study store needs the same value",
    )
    pincode_seal_private_key: str = Field(
        default=DEV_PINCODE_PRIVATE_KEY,
        description="opens the pincodes the study store seals into `PincodeSet`; only the "
        "worker (and a replay of its projection) needs it",
    )
    pincode_seal_previous_private_keys: list[str] = Field(
        default_factory=list,
        description="JSON list of retired pincode keys, still tried so that a replay from "
        "offset 0 opens the pincodes sealed before a rotation",
    )

    @property
    def portal_table(self) -> dict[str, str]:
        return dict(json.loads(self.portals))

    @property
    def previous_jwks(self) -> dict[str, Any]:
        return dict(json.loads(self.previous_signing_keys_jwks))

    def check_signing_key(self) -> None:
        """The API signs tokens: outside development and test its key comes from settings
        (the relay and the worker never sign and do not need it)."""
        if self.environment not in {"development", "test"} and not (
            self.signing_key_pem and self.signing_key_id
        ):
            raise ValueError(
                "STUDYSHARE_SIGNING_KEY_PEM and STUDYSHARE_SIGNING_KEY_ID are required "
                "outside development and test"
            )

    def pincode_opening_keys(self) -> list[str]:
        """The keys that open sealed pincodes, current first. The worker asks for them: in
        production it refuses the development key (the API and the relay never hold it)."""
        check_key(self.pincode_seal_private_key, "STUDYSHARE_PINCODE_SEAL_PRIVATE_KEY")
        for key in self.pincode_seal_previous_private_keys:
            check_key(key, "each of STUDYSHARE_PINCODE_SEAL_PREVIOUS_PRIVATE_KEYS")
        keys = [self.pincode_seal_private_key, *self.pincode_seal_previous_private_keys]
        for key in keys:
            check_not_dev_key(key, self.environment, "pincode sealing key")
        return keys

    @model_validator(mode="after")
    def _checked(self) -> IdentitySettings:
        if self.environment not in {"development", "test"}:
            if self.demo_eid:
                raise ValueError("STUDYSHARE_DEMO_EID is for development and test only")
            refuse_placeholder(
                self.reference_number_secret, "STUDYSHARE_REFERENCE_NUMBER_SECRET", self.environment
            )
            if self.bootstrap_password is not None:
                refuse_placeholder(
                    self.bootstrap_password, "STUDYSHARE_BOOTSTRAP_PASSWORD", self.environment
                )
        if self.environment == "production" and not self.study_store_internal_url:
            raise ValueError(
                "production requires STUDYSHARE_STUDY_STORE_INTERNAL_URL: a member leaving a "
                "group or department must reach the study store before the command answers"
            )
        json.loads(self.portals)
        json.loads(self.previous_signing_keys_jwks)
        return self
