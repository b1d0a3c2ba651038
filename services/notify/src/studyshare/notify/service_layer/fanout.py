"""Fan-out: a message to a group, or an alert, becomes one message per person (at the moment
it is expanded)."""

from __future__ import annotations

import dataclasses
from typing import Any

from studyshare.notify.domain.model import Expanded, Intent, Outcome, Permanent, Target, Transient
from studyshare.notify.domain.views import UserView
from studyshare.notify.service_layer.delivery import Delivery


class FanOut(Delivery):
    """Expanding a message to its people."""

    async def expand(self, doc: dict[str, Any], intent: Intent) -> Outcome:
        """A group, or the alert recipients, become one message per person (at this moment)."""
        target = intent.target
        targets: list[Target] = []
        context = dict(intent.context)
        if target.kind == "group":
            group = await self.directory.group(target.id)
            if group is None:
                return Transient(f"group {target.id} is not known yet")
            members = await self.directory.users(group.member_ids)
            targets = [
                Target("user", id=m)
                for m in group.member_ids
                if m not in members or (members[m].active and members[m].email)
            ]
            if not targets and group.email:
                targets = [Target("email", email=group.email)]
            if not targets:
                return Permanent(f"group {target.id} has no member with an e-mail address")
        else:
            people: list[UserView] = []
            if target.kind == "alert":
                department_id = target.id or await self._alert_department(context)
                if department_id is None and doc["attempts"] < self.policy.max_attempts:
                    return Transient("the sending department is not known yet")
                context["department_id"] = department_id
                if department_id:
                    people.extend(await self.directory.admins_of(department_id))
            people.extend(await self.directory.service_desk())
            targets = [Target("user", id=u.id) for u in people if u.email]
            if self.settings.service_desk_email:
                targets.append(Target("email", email=self.settings.service_desk_email))
            if not targets:
                return Permanent("nobody to tell: no department admin or service desk address")
        unique = list({t.key: t for t in targets}.values())
        return Expanded(
            tuple(dataclasses.replace(intent.child(t), context=context) for t in unique)
        )

    async def _alert_department(self, context: dict[str, Any]) -> str | None:
        if context.get("bucket_id"):
            bucket = await self.directory.bucket(context["bucket_id"])
            return bucket.sending_department_id if bucket else None
        if context.get("study_uid"):
            study = await self.directory.study(context["study_uid"])
            return study.department_id if study else None
        return None
