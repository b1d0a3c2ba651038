"""A patient's reference number opens their study only while it meets the sending department's
current complexity rule (a rule made stricter later retires the weaker numbers). Pure.

The rule is checked on the number's *shape* (`ReferenceNumberShape` in the study events): its
length and which kinds of characters it holds. The number itself travels only sealed, so the
shape is what lets everyone (the study store, audit's replay) apply a later rule alike.
"""

from __future__ import annotations

from typing import Protocol


class ComplexityRule(Protocol):
    """The department's rule (`ReferenceNumberRule` in the identity events)."""

    length: int
    alphabet: str


class NumberShape(Protocol):
    """What the rule asks of a number, without the number."""

    length: int
    letters: bool
    digits: bool
    plain: bool  # ASCII letters and digits only


def complies(shape: NumberShape, rule: ComplexityRule) -> bool:
    """The department's minimum complexity: long enough, and for an alphanumeric rule a mix of
    letters and digits (a digits-only number is weaker than the rule asks)."""
    if shape.length < rule.length or not shape.plain:
        return False
    if rule.alphabet == "digits":
        return not shape.letters
    return shape.letters and shape.digits
