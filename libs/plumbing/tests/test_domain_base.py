"""The aggregate base: folds dispatched by the event's class (issue 18, point 2)."""

from __future__ import annotations

import pytest

from studyshare.contracts.events.share import BucketLocked, BucketUnlocked, OTPFailed
from studyshare.plumbing.domain import Aggregate, applies


class Lockable(Aggregate):
    aggregate_type = "Lockable"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.locked = False

    @applies
    def locked_by_failures(self, e: BucketLocked) -> None:
        self.locked = True

    @applies
    def unlocked(self, e: BucketUnlocked) -> None:
        self.locked = False


class Counting(Lockable):
    """A subclass keeps its parent's folds and adds its own."""

    failures = 0

    @applies
    def failed(self, e: OTPFailed) -> None:
        self.failures = e.consecutive_failures


def test_each_event_goes_to_the_fold_of_its_class_whatever_the_method_is_called() -> None:
    a = Counting("a_1")
    a.apply(BucketLocked(bucket_id="b", recipient_id="r", failed_attempts=5))
    assert a.locked and a.version == 1
    a.apply(OTPFailed(bucket_id="b", recipient_id="r", otp_id="o", consecutive_failures=2))
    assert a.failures == 2
    a.apply(BucketUnlocked(bucket_id="b", unlocked_by="u", unlocked_as="service_desk"))
    assert not a.locked and a.version == 3


def test_an_event_without_a_fold_only_moves_the_version() -> None:
    a = Lockable("a_2")
    a.apply(OTPFailed(bucket_id="b", recipient_id="r", otp_id="o", consecutive_failures=1))
    assert a.version == 1 and not a.locked


def test_a_fold_must_name_its_event_class_and_fold_it_once() -> None:
    with pytest.raises(TypeError, match="annotate"):

        class Unannotated(Aggregate):
            aggregate_type = "X"

            @applies
            def folds(self, e) -> None:  # type: ignore[no-untyped-def]
                pass

    with pytest.raises(TypeError, match="two folds of BucketLocked"):

        class Twice(Aggregate):
            aggregate_type = "Y"

            @applies
            def one(self, e: BucketLocked) -> None:
                pass

            @applies
            def other(self, e: BucketLocked) -> None:
                pass
