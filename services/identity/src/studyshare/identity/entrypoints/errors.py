"""The HTTP statuses of identity's own refusals, beside those of their kinds
(`studyshare.plumbing.http.STATUS`)."""

from __future__ import annotations

from studyshare.identity.domain.exceptions import PaymentPending, WrongEnvironment
from studyshare.plumbing.http import Statuses

STATUS: Statuses = {
    WrongEnvironment: 421,  # Misdirected Request: the account's portal is another one
    PaymentPending: 402,
}
