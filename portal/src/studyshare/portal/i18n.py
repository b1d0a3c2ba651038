"""The portal's words in en, nl, fr and de, and the choice of language.

The user's language comes from `GET /api/users/me` once logged in (or the switcher's choice),
else the browser's `Accept-Language`, else English. `tests` check the four catalogues carry
the same keys and placeholders.
"""

from __future__ import annotations

from collections.abc import Callable

from studyshare.portal.messages import catalogue

LANGUAGES = ("en", "nl", "fr", "de")
DEFAULT = "en"
NAMES = {"en": "English", "nl": "Nederlands", "fr": "Français", "de": "Deutsch"}

MESSAGES: dict[str, dict[str, str]] = catalogue()


def translator(language: str) -> Callable[..., str]:
    """`t("key", name=value)`: the message in `language`, English when a key is missing."""
    catalogue = MESSAGES.get(language, MESSAGES[DEFAULT])

    def t(key: str, **values: object) -> str:
        text = catalogue.get(key) or MESSAGES[DEFAULT].get(key, key)
        return text.format(**values) if values else text

    return t


def supported(language: str | None) -> str | None:
    """`language` (e.g. `nl-BE`, `FR`) reduced to one of ours, else None."""
    if not language:
        return None
    base = language.strip().lower().split("-")[0].split("_")[0]
    return base if base in LANGUAGES else None


def from_accept_language(header: str | None) -> str:
    """The best of ours in an `Accept-Language` header (quality values honoured)."""
    choices: list[tuple[float, int, str]] = []
    for position, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        language = supported(tag)
        if language and quality > 0:
            choices.append((-quality, position, language))
    return min(choices)[2] if choices else DEFAULT
