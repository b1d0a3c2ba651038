"""Settings of the share service."""

from __future__ import annotations

from pydantic import Field, model_validator

from studyshare.contracts.routes import SERVICE_BY_NAME
from studyshare.plumbing.settings import ServiceSettings, refuse_placeholder


class ShareSettings(ServiceSettings):
    service_name: str = "share"
    http_port: int = SERVICE_BY_NAME["share"].port
    otp_hmac_secret: str = Field(
        default="dev-secret", description="key of the HMAC kept instead of OTP codes"
    )
    anonymization_secret: str = Field(
        default="dev-secret",
        description="the study store's key of anonymized shares (their remapped UIDs and "
        "shifted dates in 'shared with me'); the same value as the study store's",
    )
    invitation_secret: str = Field(
        default="dev-secret",
        description="key of the tokens in invitation mails' links (`contracts.invitations`); "
        "the same value as notify's",
    )
    otp_ttl_seconds: int = Field(default=300, ge=30)
    otp_verified_hours: int = Field(
        default=12, ge=1, description="how long a code opens the bucket, in its session only"
    )
    otp_requests_per_window: int = Field(
        default=3, ge=1, description="codes a recipient may ask for per bucket and window"
    )
    otp_request_window_seconds: int = Field(default=600, ge=1)
    otp_new_mobile_hold_s: int = Field(
        default=86_400,
        ge=0,
        description="how long after a recipient's mobile number changed no code of a "
        "two-factor share goes to it (the previous number is told of the change at once): "
        "the account's password alone, and a code to the new number, move the number",
    )
    expiry_interval_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _secret_is_real(self) -> ShareSettings:
        if self.environment == "production":
            refuse_placeholder(self.otp_hmac_secret, "STUDYSHARE_OTP_HMAC_SECRET", "production")
            refuse_placeholder(
                self.anonymization_secret, "STUDYSHARE_ANONYMIZATION_SECRET", "production"
            )
            refuse_placeholder(self.invitation_secret, "STUDYSHARE_INVITATION_SECRET", "production")
            if not self.study_store_internal_url:
                raise ValueError(
                    "production requires STUDYSHARE_STUDY_STORE_INTERNAL_URL: a revocation "
                    "must reach the study store before it answers"
                )
        return self
