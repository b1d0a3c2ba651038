"""The HTTP statuses of the study store's own refusals, beside those of their kinds
(`studyshare.plumbing.http.STATUS`)."""

from __future__ import annotations

from studyshare.plumbing.http import Statuses
from studyshare.study_store.domain.exceptions import FrameListTooLong, NotRenderable

STATUS: Statuses = {
    NotRenderable: 406,  # Not Acceptable: no rendering of what was asked for
    FrameListTooLong: 400,
}
