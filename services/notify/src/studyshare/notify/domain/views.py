"""What notify knows of people, groups, departments, studies and buckets (from their events)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True)
class UserView:
    id: str
    first_name: str = ""
    last_name: str = ""
    email: str | None = None
    mobile: str | None = None
    language: str = "en"
    roles: tuple[str, ...] = ()
    admin_of: tuple[str, ...] = ()
    active: bool = True

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


@dataclass(frozen=True)
class GroupView:
    id: str
    name: str = ""
    email: str | None = None
    member_ids: tuple[str, ...] = field(default_factory=tuple)
    confirmed_until: dict[str, datetime] = field(default_factory=dict)

    def confirmed_since(self, user_id: str, due_since: datetime) -> bool:
        """The member confirmed the composition after the reminder fell due."""
        until = self.confirmed_until.get(user_id)
        return until is not None and until > due_since


@dataclass(frozen=True)
class DepartmentView:
    id: str
    name: str = ""
    email: str | None = None


@dataclass(frozen=True)
class StudyView:
    uid: str
    patient_initials: str = ""
    description: str = ""
    study_date: date | None = None
    department_id: str | None = None


@dataclass(frozen=True)
class BucketView:
    id: str
    sender_id: str | None = None
    sending_department_id: str | None = None
