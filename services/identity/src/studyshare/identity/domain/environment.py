"""Which environment (country portal) a login page offers for a username, before the password.

The manual: on another country's portal "your username will not be known in that environment",
and you are asked whether to go to your country's portal. Offering it before the password must
reveal nothing about whether a username exists: an unknown username, a pending or deactivated
account and an active account of this environment all get this environment, the same answer
in the same shape. Only an active account of another environment gets its own (that is the
feature: the manual's redirect). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def offered_environment(account: Mapping[str, Any] | None, current: str) -> str:
    """The environment to offer: the account's when it is active elsewhere, else this one."""
    if account is None or account.get("status") != "active":
        return current
    return account.get("environment") or current
