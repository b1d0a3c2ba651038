"""Moments shown and typed in the portal's time zone, sent to the API in UTC."""

from __future__ import annotations

from datetime import time
from zoneinfo import ZoneInfo

import pytest

from studyshare.portal.settings import PortalSettings
from studyshare.portal.times import day_bound, local_day, local_time, utc_moment

BRUSSELS = ZoneInfo("Europe/Brussels")


def test_api_moments_are_shown_in_local_time_summer_and_winter() -> None:
    assert local_time("2026-12-02T09:00:00Z", BRUSSELS) == "2026-12-02 10:00"
    assert local_time("2026-07-02T09:00:00+00:00", BRUSSELS) == "2026-07-02 11:00"
    assert local_time("2026-07-02T09:00:05", BRUSSELS, seconds=True) == "2026-07-02 11:00:05"
    assert local_time(None, BRUSSELS) == "" and local_time("soon", BRUSSELS) == "soon"


def test_the_day_of_a_moment_is_the_local_day_and_a_date_stays_a_date() -> None:
    """A share valid until the end of 6 January in Brussels ends at 22:59:59 UTC that day;
    access from the start of 1 January begins at 23:00 UTC on 31 December."""
    assert local_day("2027-01-06T22:59:59Z", BRUSSELS) == "2027-01-06"
    assert local_day("2026-12-31T23:00:00Z", BRUSSELS) == "2027-01-01"
    assert local_day("2027-01-06", BRUSSELS) == "2027-01-06"
    assert local_day(None, BRUSSELS) == ""


def test_typed_times_and_days_are_local_and_reach_the_api_in_utc() -> None:
    assert utc_moment("2026-12-01T10:30", BRUSSELS) == "2026-12-01T09:30:00+00:00"
    assert utc_moment("2026-06-01", BRUSSELS) == "2026-05-31T22:00:00+00:00"
    assert utc_moment("2026-12-01T10:30:00+00:00", BRUSSELS) == "2026-12-01T10:30:00+00:00"
    assert day_bound("2027-01-31", time(23, 59, 59), BRUSSELS) == "2027-01-31T22:59:59+00:00"
    assert day_bound(" ", time(0), BRUSSELS) is None
    assert day_bound("31/01/2027", time(0), BRUSSELS) == "31/01/2027", "the API names it"


def test_the_portal_refuses_a_time_zone_it_does_not_know() -> None:
    assert PortalSettings(portal_time_zone="Europe/Paris").portal_time_zone == "Europe/Paris"
    with pytest.raises(ValueError):
        PortalSettings(portal_time_zone="Europe/Atlantis")
