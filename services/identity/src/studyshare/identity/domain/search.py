"""Recipient search terms: one indexed array of lowercase prefixes per recipient.

A recipient document carries every prefix of every searchable value (names, physician numbers,
and email / mobile only when public) plus `=value` markers for whole values. A query asks the
multikey index for its most selective word (always a plain equality, the only shape every
MongoDB-protocol server answers with an index scan); the other words and the ranking (whole
values before prefixes) are checked on the candidates' terms.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

MAX_PREFIX = 32
EXACT = "="
_WORD_SPLIT = re.compile(r"[\s\-']+")
_DROP = re.compile(r"[^0-9a-z@]")
_NUMBERISH = re.compile(r"[+0-9 ()./-]+")
COUNTRY_CODES = ("352", "32", "31", "33", "41", "44", "49", "1")


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


#: The detailed search's fields (the manual's "specific selection criteria"), in the order the
#: dialog shows them. Their terms are tagged `<field>:` in the same array, so a detailed search
#: uses the same index; a free query's tokens never contain ':' and so never match them.
FIELDS = ("first_name", "last_name", "name", "physician_number", "registry", "email", "mobile")


def tagged(field: str, terms: Iterable[str]) -> list[str]:
    return [f"{field}:{t}" for t in terms]


def user_terms(
    *,
    first_name: str,
    last_name: str,
    physician_numbers: Iterable[str],
    email: str | None,
    email_public: bool,
    mobile: str | None,
    mobile_public: bool,
    registries: Iterable[str] = (),
) -> list[str]:
    values = [first_name, last_name]
    numbers = list(physician_numbers)
    exact_values = list(numbers)
    public_email = [email] if email and email_public else []
    public_mobile = phone_forms(mobile) if mobile and mobile_public else []
    exact_values += public_email + public_mobile
    by_field = (
        tagged("first_name", terms_for([first_name]))
        + tagged("last_name", terms_for([last_name]))
        + tagged("name", terms_for([f"{first_name} {last_name}"]))
        + tagged("physician_number", terms_for(numbers, split_words=False))
        + tagged("registry", terms_for(list(registries), split_words=False))
        + tagged("email", terms_for(public_email, split_words=False))
        + tagged("mobile", terms_for(public_mobile, split_words=False))
    )
    return list(
        dict.fromkeys(terms_for(values) + terms_for(exact_values, split_words=False) + by_field)
    )


def named_terms(name: str, extra: Iterable[str] = ()) -> list[str]:
    """A group's or a department's terms: its name (free and as the `name` field)."""
    return list(dict.fromkeys(terms_for([name, *extra]) + tagged("name", terms_for([name]))))


def field_tokens(criteria: dict[str, str | None]) -> list[str]:
    """The detailed search's tagged tokens: every word of every filled-in field. A number or a
    mobile is one token (as in `query_tokens`)."""
    out: list[str] = []
    for field in FIELDS:
        value = (criteria.get(field) or "").strip()
        if not value:
            continue
        if field in ("physician_number", "email", "registry"):
            tokens = [norm(value)]  # whole values, as indexed
        elif field == "mobile":
            tokens = query_tokens(value)[:1]
        else:
            tokens = query_tokens(value)
        out += [f"{field}:{t}" for t in tokens if t]
    return list(dict.fromkeys(out))


def phone_forms(mobile: str) -> list[str]:
    """International digits and the national form: "+32 475 .." -> "32475..", "0475.."."""
    digits = norm(mobile)
    if digits.startswith("00"):
        digits = digits[2:]
    forms = [digits]
    if mobile.strip().startswith(("+", "00")):
        for code in COUNTRY_CODES:
            if digits.startswith(code) and len(digits) > len(code) + 4:
                forms.append("0" + digits[len(code) :])
                break
    return forms


def query_tokens(q: str) -> list[str]:
    """Normalised query words, at most five, without duplicates. A query made of digits and
    phone punctuation ("+32 475 11") is one number."""
    if _NUMBERISH.fullmatch(q.strip()):
        digits = norm(q)
        return [digits[2:] if digits.startswith("00") else digits] if digits else []
    tokens = [norm(w) for w in q.split()]
    return list(dict.fromkeys(t for t in tokens if t))[:5]


def _cut(token: str) -> str:
    field, sep, value = token.rpartition(":")
    return f"{field}{sep}{value[:MAX_PREFIX]}"


def _exact(token: str) -> str:
    field, sep, value = token.rpartition(":")
    return f"{field}{sep}{EXACT}{value}"


def key_token(tokens: list[str]) -> str:
    """The token the index is asked for: the longest (most selective) one, as a prefix term."""
    return _cut(max(tokens, key=lambda t: len(t.rpartition(":")[2])))


def rank(tokens: list[str], terms: Iterable[str]) -> int | None:
    """0: every word matches a whole value; 1: every word is at least a prefix; None: no match."""
    present = set(terms)
    if not all(_cut(t) in present for t in tokens):
        return None
    return 0 if all(_exact(t) in present for t in tokens) else 1
