"""The portal's message catalogues: one module per area of the portal, each a `MESSAGES` dict
of language -> key -> text with the same keys in every language (`tests` check it)."""

from __future__ import annotations

from studyshare.portal.messages import access, account, audit, core, owner, search_groups, viewer

AREAS = (core, access, audit, account, viewer, owner, search_groups)


def catalogue() -> dict[str, dict[str, str]]:
    """Every area's messages merged per language; a key defined by two areas is an error."""
    merged: dict[str, dict[str, str]] = {}
    for area in AREAS:
        for language, messages in area.MESSAGES.items():
            into = merged.setdefault(language, {})
            twice = into.keys() & messages.keys()
            if twice:
                raise ValueError(f"{area.__name__} redefines {sorted(twice)}")
            into.update(messages)
    return merged
