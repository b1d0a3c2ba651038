"""Settings of the notify service (`STUDYSHARE_*` environment variables)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from studyshare.contracts.routes import SERVICE_BY_NAME
from studyshare.plumbing.sealing import DEV_PRIVATE_KEY
from studyshare.plumbing.settings import ServiceSettings, refuse_placeholder

DEV_SMS_TOKEN = "dev-sms-token"  # noqa: S105 - the local sink's token, refused in production


class NotifySettings(ServiceSettings):
    """Where mail and SMS go, how often a failed message is retried, and who the desk is."""

    model_config = SettingsConfigDict(
        env_prefix="STUDYSHARE_", extra="ignore", populate_by_name=True
    )

    service_name: str = "notify"
    http_port: int = SERVICE_BY_NAME["notify"].port

    # mail (SMTP submission)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_tls: bool = Field(default=False, description="implicit TLS (port 465)")
    smtp_timeout_s: float = Field(default=15.0, gt=0)
    mail_from: str = "StudyShare <no-reply@studyshare.local>"

    # SMS provider (the local sink `/dev/sms` accepts the same JSON)
    # (the Kubernetes Secret `studyshare-notify-sms` names them STUDYSHARE_SMS_API_URL/_TOKEN)
    sms_url: str = Field(
        default="http://127.0.0.1:8025/dev/sms",
        validation_alias=AliasChoices("STUDYSHARE_SMS_URL", "STUDYSHARE_SMS_API_URL"),
    )
    sms_token: str = Field(
        default=DEV_SMS_TOKEN,
        validation_alias=AliasChoices("STUDYSHARE_SMS_TOKEN", "STUDYSHARE_SMS_API_TOKEN"),
    )
    sms_sender: str = "StudyShare"
    sms_timeout_s: float = Field(default=10.0, gt=0)

    # one-time codes in events are sealed with our public key; this opens them
    otp_seal_private_key: str = DEV_PRIVATE_KEY
    invitation_secret: str = Field(
        default="dev-secret",
        description="key of the tokens in invitation mails' links (`contracts.invitations`); "
        "the same value as the share service's",
    )

    # who hears about alerts and pending registrations besides the users with role service_desk
    service_desk_email: str | None = None
    notify_pending_registrations: bool = True

    # delivery: retries with exponential backoff, then parked
    delivery_max_attempts: int = Field(default=6, ge=1)
    delivery_backoff_base_s: float = Field(default=5.0, gt=0)
    delivery_backoff_max_s: float = Field(default=900.0, gt=0)
    delivery_lease_s: float = Field(
        default=60.0, gt=0, description="a claimed message not finished by then is taken again"
    )
    delivery_concurrency: int = Field(default=4, ge=1)
    sender_poll_s: float = Field(default=0.25, gt=0)
    study_details_wait_s: float = Field(
        default=120.0,
        ge=0,
        description="how long a share mail waits for the exam details (StudyReceived)",
    )
    reaction_max_age_s: float = Field(
        default=2 * 86400.0,
        gt=0,
        description="events older than this (a fresh consumer reading history) send nothing",
    )

    def require_delivery_secrets(self) -> None:
        """The sender (the worker) opens sealed codes and texts them: in production it refuses
        the development key and token. The API and the relay never hold these secrets."""
        if self.environment == "production":
            if self.otp_seal_private_key == DEV_PRIVATE_KEY:
                raise ValueError("the development OTP sealing key must not be used in production")
            refuse_placeholder(self.sms_token, "STUDYSHARE_SMS_TOKEN", self.environment)
            if self.sms_token == DEV_SMS_TOKEN:
                raise ValueError("STUDYSHARE_SMS_TOKEN must be set to a real token in production")
            refuse_placeholder(
                self.invitation_secret, "STUDYSHARE_INVITATION_SECRET", self.environment
            )
