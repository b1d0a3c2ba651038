"""Recipient search terms: one indexed array of lowercase prefixes per recipient.

A recipient document carries every prefix of every searchable value (names, physician numbers,
and email / mobile only when public) plus `=value` markers for whole values, so a query is
always an equality match on a multikey index (exact matches rank before prefix matches).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

MAX_PREFIX = 32
EXACT = "="
_WORD_SPLIT = re.compile(r"[\s\-']+")
_DROP = re.compile(r"[^0-9a-z@]")


def fold(text: str) -> str:
    """Lowercase without accents: "Émile" -> "emile"."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def norm(token: str) -> str:
    """What is indexed and queried: folded, only letters, digits and '@'."""
    return _DROP.sub("", fold(token))


def prefixes(value: str) -> list[str]:
    return [value[:i] for i in range(1, min(len(value), MAX_PREFIX) + 1)]


def terms_for(values: Iterable[str], *, split_words: bool = True) -> list[str]:
    """Prefixes and exact markers for each value (and for each word of it)."""
    out: dict[str, None] = {}
    for value in values:
        if not value:
            continue
        pieces = [value]
        if split_words:
            pieces += [w for w in _WORD_SPLIT.split(value) if w]
        for piece in pieces:
            token = norm(piece)
            if not token:
                continue
            out.update(dict.fromkeys(prefixes(token)))
            out[EXACT + token] = None
    return list(out)


def user_terms(
    *,
    first_name: str,
    last_name: str,
    physician_numbers: Iterable[str],
    email: str | None,
    email_public: bool,
    mobile: str | None,
    mobile_public: bool,
) -> list[str]:
    values = [first_name, last_name]
    exact_values = list(physician_numbers)
    if email and email_public:
        exact_values.append(email)
    if mobile and mobile_public:
        exact_values.append(mobile)
    return list(dict.fromkeys(terms_for(values) + terms_for(exact_values, split_words=False)))


def query_tokens(q: str) -> list[str]:
    """Normalised query words, at most five, without duplicates."""
    tokens = [norm(w) for w in q.split()]
    return list(dict.fromkeys(t for t in tokens if t))[:5]


def prefix_filter(tokens: list[str]) -> dict:
    return {"terms": {"$all": [t[:MAX_PREFIX] for t in tokens]}}


def exact_filter(tokens: list[str]) -> dict:
    return {"terms": {"$all": [EXACT + t for t in tokens]}}
