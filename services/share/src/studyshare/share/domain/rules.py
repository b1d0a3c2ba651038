"""Rules of sharing that are not the bucket's own (`domain.model`): labels. The refusals of
every rule are in `domain.exceptions`."""

from __future__ import annotations

from studyshare.share.domain.exceptions import LabelTextInvalid

MAX_LABELS = 50
MAX_LABEL_TEXT = 40


def label_text(text: str) -> str:
    """The label as stored: inner runs of spaces made one, ends trimmed."""
    clean = " ".join(text.split())
    if not clean or len(clean) > MAX_LABEL_TEXT:
        raise LabelTextInvalid(f"a label is 1 to {MAX_LABEL_TEXT} characters, not only spaces")
    return clean


# Re-sharing
# Bucket life
# Two-factor
