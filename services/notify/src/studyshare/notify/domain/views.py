"""What notify knows of people, groups, departments, studies and buckets (from their events)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


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
