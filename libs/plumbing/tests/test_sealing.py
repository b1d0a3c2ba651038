"""Sealed pincodes (pure): only identity's key opens them, for their own reference number."""

from __future__ import annotations

import pytest

from studyshare.plumbing.sealing import (
    DEV_PINCODE_PRIVATE_KEY,
    DEV_PINCODE_PUBLIC_KEY,
    DEV_PRIVATE_KEY,
    check_key,
    check_not_dev_key,
    generate_keypair,
    open_pincode,
    seal,
    seal_pincode,
)


def test_a_sealed_pincode_opens_with_identity_key_for_its_own_number_only():
    sealed = seal_pincode("AB12CD34EF", "4321", DEV_PINCODE_PUBLIC_KEY)
    assert "4321" not in sealed
    assert open_pincode(sealed, "AB12CD34EF", [DEV_PINCODE_PRIVATE_KEY]) == "4321"
    assert open_pincode(sealed, "ZZ99ZZ99ZZ", [DEV_PINCODE_PRIVATE_KEY]) is None
    assert open_pincode(sealed, "AB12CD34EF", [DEV_PRIVATE_KEY]) is None, "notify's key"


def test_sealing_twice_gives_different_boxes_of_one_length_whatever_the_pincode():
    boxes = [seal_pincode("AB12CD34EF", pin, DEV_PINCODE_PUBLIC_KEY) for pin in ("1234", "1234")]
    assert boxes[0] != boxes[1], "nothing to compare two boxes by"
    lengths = {len(seal_pincode("AB12CD34EF", "7" * n, DEV_PINCODE_PUBLIC_KEY)) for n in (4, 8)}
    assert len(lengths) == 1, "the box's length does not tell the pincode's"


def test_the_keys_are_tried_in_order_so_a_retired_key_still_opens_old_boxes():
    retired_private, retired_public = generate_keypair()
    current_private, _ = generate_keypair()
    sealed = seal_pincode("AB12CD34EF", "9876", retired_public)
    assert open_pincode(sealed, "AB12CD34EF", [current_private]) is None
    assert open_pincode(sealed, "AB12CD34EF", [current_private, retired_private]) == "9876"


@pytest.mark.parametrize(
    "sealed",
    ["", "not base64!", seal("4321", DEV_PINCODE_PUBLIC_KEY), seal("[1]", DEV_PINCODE_PUBLIC_KEY)],
    ids=["empty", "not-base64", "a-bare-pincode", "a-json-list"],  # boxes differ on every run
)
def test_anything_else_opens_to_nothing(sealed: str):
    assert open_pincode(sealed, "AB12CD34EF", [DEV_PINCODE_PRIVATE_KEY]) is None


def test_keys_must_be_32_bytes_and_not_the_development_ones_in_production():
    assert check_key(DEV_PINCODE_PUBLIC_KEY, "key") == DEV_PINCODE_PUBLIC_KEY
    for bad in ("", "c2hvcnQ=", "not a key"):
        with pytest.raises(ValueError, match="32-byte"):
            check_key(bad, "key")
    with pytest.raises(ValueError, match="pincode sealing key"):
        check_not_dev_key(DEV_PINCODE_PRIVATE_KEY, "production", "pincode sealing key")
    assert check_not_dev_key(DEV_PINCODE_PRIVATE_KEY, "test") == DEV_PINCODE_PRIVATE_KEY
