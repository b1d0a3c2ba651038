"""The HTTP statuses of the share service's own refusals, beside those of their kinds
(`studyshare.plumbing.http.STATUS`)."""

from __future__ import annotations

from studyshare.plumbing.http import Statuses
from studyshare.share.domain.exceptions import WrongOTP

STATUS: Statuses = {WrongOTP: 401}
