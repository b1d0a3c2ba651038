"""A user's share preferences: favorite recipients, labels and the share defaults."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from studyshare.contracts.events.share import RecipientRef
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.domain import new_id
from studyshare.share.domain import exceptions
from studyshare.share.domain.model import SharePreferences
from studyshare.share.service_layer.base import RecipientInput, ShareBase, actor_of, names_of


class Preferences(ShareBase):
    """Favorites, labels and share preferences."""

    async def list_favorites(self, principal: AccessClaims) -> dict[str, RecipientRef]:
        return (await self.favorites.get(f"fav_{principal.sub}")).items

    async def recipient_names(self, refs: Iterable[RecipientRef]) -> dict[str, str | None]:
        """Display names of recipients from the directory (an e-mail recipient: its address)."""
        refs = list(refs)
        known = await self._directory_facts(
            [RecipientInput(r.kind, r.recipient_id) for r in refs if r.kind != "email"]
        )
        names = names_of(known)
        return {r.recipient_id: names.get(r.recipient_id) or r.email for r in refs}

    async def add_favorite(
        self, principal: AccessClaims, r: RecipientInput
    ) -> tuple[str, RecipientRef]:
        (ref,) = await self._resolve_recipients([r])
        fav, _ = await self.favorites.execute(
            f"fav_{principal.sub}", lambda f: f.add(principal.sub, [ref]), actor_of(principal)
        )
        favorite_id = fav.find(ref)
        assert favorite_id is not None
        return favorite_id, ref

    async def remove_favorite(self, principal: AccessClaims, favorite_id: str) -> None:
        await self.favorites.execute(
            f"fav_{principal.sub}",
            lambda f: f.remove(principal.sub, favorite_id),
            actor_of(principal),
        )

    async def list_labels(self, principal: AccessClaims) -> list[dict[str, Any]]:
        """My own labels (seen by me only), then those of each group I am a member of."""
        groups = sorted(await self.directory.groups_of(principal.sub))
        names = await self.directory.groups(groups) if groups else {}
        lists = await asyncio.gather(
            self.labels.get(f"labels_{principal.sub}"),
            *(self.labels.get(f"labels_{g}") for g in groups),
        )
        owners = [("user", principal.sub, None), *(("group", g, names.get(g)) for g in groups)]
        return [
            {
                "label_id": item.label_id,
                "text": item.text,
                "scope": kind,
                "group_id": owner if kind == "group" else None,
                "group_name": (name or {}).get("name") if kind == "group" else None,
            }
            for (kind, owner, name), labels in zip(owners, lists, strict=True)
            for item in sorted(labels.items.values(), key=lambda i: i.text.casefold())
        ]

    async def _label_owner(self, principal: AccessClaims, group_id: str | None) -> tuple[str, str]:
        if group_id is None:
            return "user", principal.sub
        if group_id not in await self.directory.groups_of(principal.sub):
            raise exceptions.NotAMemberOfGroup("a group's labels are for its members")
        return "group", group_id

    async def add_label(
        self, principal: AccessClaims, text: str, group_id: str | None
    ) -> dict[str, Any]:
        kind, owner = await self._label_owner(principal, group_id)
        label_id = new_id("lbl")
        labels, _ = await self.labels.execute(
            f"labels_{owner}",
            lambda ls: ls.add(kind, owner, label_id, text, principal.sub),
            actor_of(principal),
        )
        return {
            "label_id": label_id,
            "text": labels.items[label_id].text,
            "scope": kind,
            "group_id": group_id,
        }

    async def remove_label(self, principal: AccessClaims, label_id: str) -> None:
        """From my own list, or from the list of a group I am a member of."""
        found = [x for x in await self.list_labels(principal) if x["label_id"] == label_id]
        if found:
            scope, owner = found[0]["scope"], found[0]["group_id"] or principal.sub
            await self.labels.execute(
                f"labels_{owner}",
                lambda ls: ls.remove(scope, owner, label_id, principal.sub),
                actor_of(principal),
            )
            return
        raise exceptions.LabelNotFound(f"no label {label_id} in your lists nor your groups' lists")

    async def share_preferences(self, principal: AccessClaims) -> SharePreferences:
        return await self.preferences.get(f"pref_{principal.sub}")
