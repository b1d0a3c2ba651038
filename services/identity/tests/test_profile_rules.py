"""Unit tests of the profile rules of issue 15, point 2 (no infrastructure): who one is
changes only with the current password, the mobile only with a code sent to it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from studyshare.identity.domain.exceptions import CurrentPasswordRequired, MobileChangeNeedsCode
from studyshare.identity.domain.user import Registration, User

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def user() -> User:
    u = User("usr_1")
    reg = Registration(
        username="jan", first_name="Jan", last_name="Peeters", mobile="+32470000001", language="nl"
    )
    for event in User.register("usr_1", reg, pending=False, registered_by=None):
        u.apply(event)
    return u


@pytest.mark.parametrize(
    "change",
    [
        {"first_name": "Mallory"},
        {"last_name": "Mallory"},
        {"email": "m@attacker.test"},
        {"physician_numbers": ()},
    ],
)
def test_who_one_is_changes_only_with_the_current_password(change):
    with pytest.raises(CurrentPasswordRequired):
        user().change_profile(change)
    [changed] = user().change_profile(change | {"language": "de"}, password_confirmed=True)
    assert changed.language == "de"


def test_language_and_visibility_change_without_the_password():
    [changed] = user().change_profile({"language": "fr", "mobile_public": True})
    assert changed.language == "fr" and changed.mobile_public is True


def test_the_mobile_never_changes_through_the_profile():
    for confirmed in (False, True):
        with pytest.raises(MobileChangeNeedsCode):
            user().change_profile({"mobile": "+32470000002"}, password_confirmed=confirmed)


def test_a_confirmed_mobile_change_tells_the_previous_number():
    u = user()
    [requested] = u.request_mobile_change("mob_1", "+32470000002", "sealed", NOW)
    assert requested.mobile == "+32470000002" and requested.language == "nl"
    assert "sealed" == requested.sealed_code
    changed, told = u.confirm_mobile_change("mob_1", "+32470000002")
    assert changed.mobile == "+32470000002"
    assert told.previous_mobile == "+32470000001" and told.change_id == "mob_1"
