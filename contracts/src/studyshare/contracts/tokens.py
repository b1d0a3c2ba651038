"""The claims of StudyShare access tokens, issued by identity and verified by every service."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

ISSUER = "studyshare-identity"
AUDIENCE = "studyshare"

Role = Literal["physician", "department_staff", "department_admin", "service_desk", "auditor"]


class AccessClaims(BaseModel):
    """What a bearer token says about its holder.

    A patient token (`kind="patient"`) opens exactly one study (`study_uid`) through one
    reference number, named by its id (`reference_id`), and only until `exp`.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    sub: str
    kind: Literal["user", "patient", "service"] = "user"
    roles: tuple[str, ...] = ()
    department_ids: tuple[str, ...] = ()
    admin_of: tuple[str, ...] = ()
    environment: str = "be"
    study_uid: str | None = None
    reference_id: str | None = None
    sid: str | None = None
    iss: str = ISSUER
    aud: str = AUDIENCE
    iat: float  # with milliseconds (a NumericDate may have them): ends are ordered exactly
    exp: int
    jti: str | None = None

    def has_role(self, *roles: str) -> bool:
        return any(r in self.roles for r in roles)
