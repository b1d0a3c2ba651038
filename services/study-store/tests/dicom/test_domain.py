"""Unit tests of the DICOM half's domain: no infrastructure."""

from __future__ import annotations

import re
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom import Dataset
from pydicom.sequence import Sequence

from studyshare.study_store.adapters.multipart import split_multipart
from studyshare.study_store.domain.anonymize import (
    AnonymizationKey,
    anonymize_dataset,
    anonymize_json,
    anonymous_number_for,
    pseudonym_for,
)
from studyshare.study_store.domain.dicom_meta import (
    NotAnInstance,
    facts,
    initials,
    is_report_class,
    is_uid,
    parse_da,
)
from studyshare.study_store.domain.exceptions import (
    FrameListTooLong,
    ObjectNotFound,
    StudyNotFound,
    TransferInProgress,
    TransferNotFound,
)
from studyshare.study_store.domain.serving import (
    MAX_FRAME_LIST,
    date_query,
    frame_numbers,
    matches,
    prefix_pattern,
)
from studyshare.study_store.domain.study import ReceivedBatch, Study, Transfer

KEY = AnonymizationKey.for_share("s", "bkt_1", "4711", "PID-0001")


def batch(count: int = 3, series: tuple[str, ...] = ("1.2.1",)) -> ReceivedBatch:
    return ReceivedBatch(
        study_uid="1.2.3",
        series_uids=series,
        instance_count=count,
        department_id="dep_1",
        owner_id="usr_1",
        upload_batch_id="bat_1",
        received_via="stow-rs",
        patient_initials="J.D.",
    )


def test_the_first_batch_of_a_study_is_its_arrival_later_ones_add_instances():
    study = Study("1.2.3")
    [received] = study.receive(batch())
    assert received.event_type == "StudyReceived"
    assert received.department_id == "dep_1" and received.upload_batch_id == "bat_1"
    study.apply(received)
    [added] = study.receive(batch(2, ("1.2.1", "1.2.2")))
    assert added.event_type == "StudyInstancesAdded" and added.instance_count == 2
    assert study.receive(batch(0)) == []


def test_a_share_message_is_stored_once_per_bucket():
    study = Study("1.2.3")
    with pytest.raises(StudyNotFound):
        study.store_message("bkt_1", "1.2.9")
    study.apply(study.receive(batch())[0])
    [stored] = study.store_message("bkt_1", "1.2.9")
    study.apply(stored)
    assert study.store_message("bkt_1", "1.2.9") == []
    assert len(study.store_message("bkt_2", "1.2.10")) == 1


def test_a_transfer_fails_per_attempt_final_at_the_last_and_resends_only_when_ended():
    transfer = Transfer("trf_1")
    with pytest.raises(TransferNotFound):
        transfer.resend("usr_1")
    [requested] = transfer.request(
        study_uid="1.2.3",
        destination_kind="pacs",
        destination_id="dep_p",
        trigger="manual",
        requested_by="usr_1",
    )
    transfer.apply(requested)
    assert (
        transfer.request(
            study_uid="1.2.3",
            destination_kind="pacs",
            destination_id="dep_p",
            trigger="manual",
            requested_by="usr_1",
        )
        == []
    )
    with pytest.raises(TransferInProgress):
        transfer.resend("usr_1")
    [first] = transfer.attempt_failed("refused", max_attempts=2)
    assert (first.attempts, first.final) == (1, False)
    transfer.apply(first)
    assert transfer.state == "retrying"
    [last] = transfer.attempt_failed("refused", max_attempts=2)
    assert (last.attempts, last.final) == (2, True)
    transfer.apply(last)
    assert transfer.state == "failed"
    [again] = transfer.resend("usr_2")
    assert again.trigger == "resend"
    transfer.apply(again)
    assert (transfer.state, transfer.attempts, transfer.round) == ("pending", 0, 2)
    [done] = transfer.forwarded(4)
    assert done.attempts == 1 and done.instance_count == 4


def test_a_transfer_carries_the_report_only_where_the_forwarder_may_read_it():
    def requested(**kw) -> Transfer:
        transfer = Transfer("trf_r")
        [event] = transfer.request(
            study_uid="1.2.3",
            destination_kind="pacs",
            destination_id="dep_p",
            trigger="manual",
            requested_by="usr_1",
            **kw,
        )
        transfer.apply(event)
        return transfer

    assert requested().include_report
    images_only = requested(include_report=False)
    assert not images_only.include_report
    assert not requested(anonymous_number="7").include_report, "never on an anonymized copy"
    [failed] = images_only.attempt_failed("refused", max_attempts=1)
    images_only.apply(failed)
    [again] = images_only.resend("usr_2")
    assert again.include_report is False


def patient() -> Dataset:
    ds = Dataset()
    ds.PatientName = "Doe^Jane^M"
    ds.PatientID = "PID-1"
    ds.PatientBirthDate = "19800214"
    ds.PatientAddress = "Main Street 1"
    ds.OtherPatientIDs = "X"
    ds.PatientSex = "F"
    nested = Dataset()
    nested.PatientName = "Doe^Jane"
    nested.PatientBirthDate = "19800214"
    ds.ReferencedStudySequence = Sequence([nested])
    return ds


def test_anonymized_first_name_is_a_number_and_last_name_anonymous_everywhere():
    ds = anonymize_dataset(patient(), KEY)
    assert ds.PatientName.family_name == "Anonymous"
    assert ds.PatientName.given_name == "4711"
    assert ds.PatientID == KEY.patient_pseudonym and ds.PatientID.startswith("ANON-")
    assert not ds.get("PatientBirthDate") and "PatientAddress" not in ds
    assert "OtherPatientIDs" not in ds
    assert not ds.get("PatientSex"), "PS3.15 Annex E: Z (kept empty)"
    assert not ds.ReferencedStudySequence, "PS3.15 Annex E: X/Z (kept empty)"


def test_anonymized_json_matches_the_anonymized_dataset():
    data = anonymize_json(patient().to_json_dict(), KEY)
    assert data["00100010"]["Value"][0]["Alphabetic"] == "Anonymous^4711"
    assert data["00100020"]["Value"] == [KEY.patient_pseudonym]
    assert not data["00100030"].get("Value") and "00101040" not in data
    assert data["00081110"] == {"vr": "SQ"}, "kept empty"


def test_pseudonyms_and_numbers_are_stable_and_distinct():
    assert pseudonym_for("PID-1", "s") == pseudonym_for("PID-1", "s")
    assert pseudonym_for("PID-1", "s") != pseudonym_for("PID-2", "s")
    assert pseudonym_for("PID-1", "s") != pseudonym_for("PID-1", "other secret")
    number = anonymous_number_for("bkt_1", "1.2.3")
    assert number == anonymous_number_for("bkt_1", "1.2.3") and len(number) == 8


def test_facts_need_valid_uids_and_read_the_patient_minimum():
    ds = patient()
    with pytest.raises(NotAnInstance):
        facts(ds)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3", "1.2.3.4"
    ds.SOPInstanceUID, ds.SOPClassUID = "1.2.3.4.5", "1.2.840.10008.5.1.4.1.1.2"
    f = facts(ds)
    assert f.patient_birth_date == date(1980, 2, 14)
    with pytest.warns(UserWarning, match="Invalid value for VR UI"):
        ds.SOPInstanceUID = "../../etc/passwd"
    with pytest.raises(NotAnInstance):
        facts(ds)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Doe^Jane", "J.D."),
        ("Doe^Jane Ann", "J.A.D."),
        ("Doe", "D."),
        ("", ""),
        ("van Dijk^Pieter", "P.v.D."),
    ],
)
def test_patient_initials(name, expected):
    assert initials(name).upper() == expected.upper()


def test_helpers():
    assert is_uid("1.2.840.10008") and not is_uid("1.2.a") and not is_uid("")
    assert is_report_class("1.2.840.10008.5.1.4.1.1.88.11")
    assert is_report_class("1.2.840.10008.5.1.4.1.1.104.1")
    assert not is_report_class("1.2.840.10008.5.1.4.1.1.2")
    assert parse_da("20240230") is None and parse_da("2024") is None
    assert date_query("20240101-20240131") == {"$gte": "20240101", "$lte": "20240131"}
    assert date_query("20240101") == "20240101"
    assert matches("doe*", "Doe^Jane") and not matches("smith*", "Doe^Jane")
    assert matches(None, "anything")


def test_multipart_bodies_split_into_parts_with_or_without_headers():
    body = (
        b"preamble\r\n--xyz\r\nContent-Type: application/dicom\r\n\r\nAB\r\n--xyz\r\n"
        b"X-Note: c\r\n\r\nEF\r\n--xyz--\r\n"
    )
    parts = split_multipart(body, "xyz")
    assert parts[0] == ({"content-type": "application/dicom"}, b"AB")
    assert parts[1][1] == b"EF"
    client_style = b"\r\n--b\r\nContent-Type: application/dicom\r\n\r\n\x00\r\n--b--"
    assert split_multipart(client_style, "b") == [({"content-type": "application/dicom"}, b"\x00")]


def test_frame_lists_are_bounded_and_deduplicated():
    assert frame_numbers("3,1,3,1,2") == [3, 1, 2]
    assert frame_numbers(",".join(["1"] * MAX_FRAME_LIST)) == [1]
    with pytest.raises(FrameListTooLong):
        frame_numbers(",".join(["1"] * (MAX_FRAME_LIST + 1)))
    with pytest.raises(FrameListTooLong):
        frame_numbers("," * 5000)
    for bad in ("0", "a", "", "-1"):
        with pytest.raises(ObjectNotFound):
            frame_numbers(bad)


@given(
    st.text(alphabet="aB*?^.-( ", min_size=1, max_size=6),
    st.text(alphabet="abAB^.-( ", max_size=8),
)
def test_a_prefix_pattern_accepts_every_value_the_pattern_matches(pattern, value):
    """What the study index matches first (`prefix_pattern`) is never narrower than the match
    on the answers: it may only spare work, never lose a study."""
    regex = prefix_pattern(pattern)
    if regex is None:
        assert matches(pattern, "")
    elif matches(pattern, value):
        assert re.match(regex, value, re.IGNORECASE), (pattern, value, regex)


def test_a_prefix_pattern_is_anchored_and_takes_dicom_wildcards():
    assert prefix_pattern("doe^j*") == r"^doe\^j.*"
    assert prefix_pattern("P-4?") == r"^P\-4."
    assert prefix_pattern("*") is None and prefix_pattern("") is None
