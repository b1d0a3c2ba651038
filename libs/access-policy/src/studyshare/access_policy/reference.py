"""A patient's reference number opens their study only while it meets the sending department's
current complexity rule (a rule made stricter later retires the weaker numbers). Pure."""

from __future__ import annotations

from typing import Protocol


class ComplexityRule(Protocol):
    """The department's rule (`ReferenceNumberRule` in the identity events)."""

    length: int
    alphabet: str


def complies(number: str, rule: ComplexityRule) -> bool:
    """The department's minimum complexity: long enough, and for an alphanumeric rule a mix of
    letters and digits (a digits-only number is weaker than the rule asks)."""
    if len(number) < rule.length or not number.isascii() or not number.isalnum():
        return False
    if rule.alphabet == "digits":
        return number.isdigit()
    return any(c.isalpha() for c in number) and any(c.isdigit() for c in number)
