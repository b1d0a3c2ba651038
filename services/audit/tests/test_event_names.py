"""Every event type audit's code names is one a service emits (a contract event): issue 16,
point 10 found `StudyRemovedFromBucket` and `BucketRemoved` handled here but never emitted.
The manual's "remove study from bucket" and "remove full bucket" (the Access tab's choices when
withdrawing a bucket's access) are `AccessRevoked` with scope `study` and `bucket`."""

from __future__ import annotations

from studyshare.audit.domain import alerts, entries, exports
from studyshare.audit.domain.access import StudyAccessFold
from studyshare.contracts.events import registry


def named_by_audit() -> dict[str, set[str]]:
    handlers = {
        name.removeprefix("_on_") for name in dir(StudyAccessFold) if name.startswith("_on_")
    }
    return {
        "entries.CATEGORY": set(entries.CATEGORY),
        "entries.USER_IS_DOER": set(entries.USER_IS_DOER),
        "entries.RECIPIENT_IS_DOER": set(entries.RECIPIENT_IS_DOER),
        "entries.FAILURES": set(entries.FAILURES),
        "entries.ALERTS": set(entries.ALERTS),
        "exports security changes": set(exports._SECURITY_CHANGES),
        "exports logins": set(exports._LOGIN_OK | exports._LOGIN_FAILED),
        "alerts.BURST_KEYS": set(alerts.BURST_KEYS),
        "StudyAccessFold handlers": handlers,
    }


def test_every_event_type_audit_names_is_a_contract_event():
    known = {cls.__name__ for cls in registry.all()}
    unknown = {
        where: sorted(names - known) for where, names in named_by_audit().items() if names - known
    }
    assert unknown == {}
