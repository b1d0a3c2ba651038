"""The PS3.15 Annex E de-identification of anonymized shares, as a pure function (no infra)."""

from __future__ import annotations

import json
import re
from datetime import datetime

from pydicom import Dataset
from pydicom.datadict import dictionary_has_tag, dictionary_VR
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from studyshare.study_store.domain.anonymize import (
    KEPT_TIMES,
    SHIFTED_DATES,
    AnonymizationKey,
    anonymize_dataset,
    anonymize_json,
    may_carry_burned_in_text,
)
from studyshare.study_store.domain.confidentiality_profile import ANNEX_E, KEPT_EMPTY

SECRET = "unit-test-secret"
STUDY, SERIES, SOP = generate_uid(), generate_uid(), generate_uid()


def key(bucket: str = "bkt_a", patient_id: str = "PID-1") -> AnonymizationKey:
    return AnonymizationKey.for_share(SECRET, bucket, "4711", patient_id)


def filled(value_of_text: str = "SECRET") -> Dataset:
    """Every Annex E attribute pydicom knows, filled; a private block; a few kept ones."""
    ds = Dataset()
    for tag in sorted(ANNEX_E):
        if tag >> 16 in (0x0000, 0x0002) or not dictionary_has_tag(tag):
            continue
        vr = dictionary_VR(tag).split(" or ")[0]
        value: object = {
            "UI": generate_uid(),
            "DA": "19710203",
            "DT": "19710203101500",
            "TM": "101500",
            "AS": "042Y",
            "DS": "7.5",
            "IS": "7",
            "US": 7,
            "PN": f"{value_of_text}^Name",
            "OB": value_of_text.encode(),
            "UN": value_of_text.encode(),
            "UR": f"http://x/{value_of_text}",
        }.get(vr, f"{value_of_text}{tag:08X}"[:16])
        if vr == "SQ":
            item = Dataset()
            item.CodeMeaning = value_of_text
            value = [item]
        ds.add_new(tag, vr, value)
    ds.private_block(0x0009, "ACME", create=True).add_new(0x01, "LO", value_of_text)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = STUDY, SERIES, SOP
    ds.SOPClassUID = CTImageStorage
    ds.PatientID = "PID-1"
    ds.StudyDate = "20250917"
    ds.Modality = "CT"
    ds.Rows = ds.Columns = 2
    ds.BurnedInAnnotation = "NO"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = SOP
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.SourceApplicationEntityTitle = "SECRETAE"
    return ds


def test_no_annex_e_value_and_no_private_attribute_survives():
    original = filled()
    uids = {str(e.value) for e in original.iterall() if e.VR == "UI"} - {CTImageStorage}
    ds = anonymize_dataset(filled(), key())
    text = str(ds) + str(ds.file_meta)
    assert "SECRET" not in text and "19710203" not in text and "20250917" not in text
    assert not [u for u in uids if u in text], "every instance UID is remapped"
    assert not [e for e in ds if e.tag.is_private]
    for element in ds:
        tag = int(element.tag)
        if (
            tag in ANNEX_E
            and tag not in SHIFTED_DATES | KEPT_TIMES
            and element.keyword not in ("PatientName", "PatientID", "StudyID")
        ):
            assert element.VR == "UI" or int(element.tag) in KEPT_EMPTY, element
            assert element.VR == "UI" or not element.value, element
    assert ds.Modality == "CT" and ds.Rows == 2 and ds.BurnedInAnnotation == "NO"
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    codes = {i.CodeValue for i in ds.DeidentificationMethodCodeSequence}
    assert codes == {"113100", "113107"}
    assert "AccessionNumber" in ds and not ds.AccessionNumber, "type 2: kept empty (Z)"
    assert ds.StudyID == "ANON", "Z, as a dummy value (a DICOMDIR's STUDY record needs one)"


def test_unknown_standard_attributes_are_left_out_allow_list():
    ds = filled()
    ds.add_new(0x00181000, "LO", "SERIAL-1")  # Device Serial Number (in the table)
    ds.Manufacturer = "ACME"  # in the table (X)
    ds.add_new(0x00189999, "LO", "unlisted")  # not in the table, not on the allow-list
    out = anonymize_dataset(ds, key())
    assert not out.get("DeviceSerialNumber") and not out.get("Manufacturer")
    assert 0x00189999 not in out


def test_free_text_beside_the_kept_image_attributes_does_not_survive():
    """An explanation is text anybody may have typed (a name, say): the window and the LUT
    stay, their explanations go."""
    ds = filled()
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.WindowCenterWidthExplanation = "Patricia Secretname"
    lut = Dataset()
    lut.LUTDescriptor, lut.LUTData = [2, 0, 16], [0, 1]
    lut.LUTExplanation, lut.ModalityLUTType = "for Patricia Secretname", "HU"
    ds.ModalityLUTSequence = [lut]
    out = anonymize_dataset(ds, key())
    assert "Secretname" not in str(out)
    assert out.WindowCenter == 40 and out.WindowWidth == 400
    assert out.ModalityLUTSequence[0].ModalityLUTType == "HU"


def test_uids_dates_and_pseudonym_are_stable_per_share_and_unlinkable_across_shares():
    a1, a2 = anonymize_dataset(filled(), key("bkt_a")), anonymize_dataset(filled(), key("bkt_a"))
    b = anonymize_dataset(filled(), key("bkt_b"))
    assert a1.StudyInstanceUID == a2.StudyInstanceUID != b.StudyInstanceUID
    assert a1.SOPInstanceUID == a1.file_meta.MediaStorageSOPInstanceUID
    assert re.fullmatch(r"2\.25\.[1-9][0-9]*", a1.SeriesInstanceUID)
    assert len(a1.SeriesInstanceUID) <= 64
    assert a1.PatientID == a2.PatientID != b.PatientID
    assert str(a1.PatientName) == "Anonymous^4711"
    assert a1.StudyDate == a2.StudyDate != b.StudyDate
    assert a1.StudyDate < "20250917" and a1.StudyTime == "101500"


def test_dates_of_one_share_keep_their_intervals():
    k = key()
    assert k.date("20250917") is not None and k.date("2025") is None
    first, second = (datetime.strptime(k.date(d), "%Y%m%d") for d in ("20250101", "20250111"))
    assert (second - first).days == 10, "one offset per share"
    assert k.date("20250917123000.5")[8:] == "123000.5"
    assert k.date("20250917123000-0500")[8:] == "123000-0500", "an offset is no range"
    first, second = k.date("20250101-20250111").split("-")
    assert second != "20250111", "a range's second end moves too (it once stayed)"
    assert (datetime.strptime(second, "%Y%m%d") - datetime.strptime(first, "%Y%m%d")).days == 10


def test_json_answers_follow_the_same_rules_as_the_objects():
    k = key()
    data = filled().to_json_dict()
    data["00081190"] = {
        "vr": "UR",
        "Value": [f"http://h/dicomweb/studies/{STUDY}/series/{SERIES}/instances/{SOP}"],
    }
    data["7FE00010"] = {"vr": "OW", "BulkDataURI": f"http://h/dicomweb/studies/{STUDY}/frames/1"}
    out = anonymize_json(data, k)
    text = json.dumps(out)
    assert "SECRET" not in text and STUDY not in text and SOP not in text
    ds = anonymize_dataset(filled(), k)
    assert out["0020000D"]["Value"] == [ds.StudyInstanceUID]
    assert out["00080020"]["Value"] == [ds.StudyDate]
    assert out["00100020"]["Value"] == [ds.PatientID]
    assert out["00081190"]["Value"] == [
        f"http://h/dicomweb/studies/{k.uid(STUDY)}/series/{k.uid(SERIES)}/instances/{k.uid(SOP)}"
    ]
    assert k.uid(STUDY) in out["7FE00010"]["BulkDataURI"]
    assert set(out) - {"00081190", "7FE00010"} == {f"{int(e.tag):08X}" for e in ds}


def test_a_share_message_keeps_its_text_other_objects_do_not():
    ds = filled()
    item = Dataset()
    item.ValueType = "TEXT"
    item.TextValue = "Please compare"
    ds.ContentSequence = [item]
    assert anonymize_dataset(ds, key(), message=True).ContentSequence[0].TextValue
    assert "ContentSequence" not in anonymize_dataset(filled(), key()) or not (
        anonymize_dataset(filled(), key()).ContentSequence
    )


def test_objects_that_may_carry_burned_in_text():
    def doc(modality: str, burned_in: str | None, pixels: bool = True) -> dict:
        meta = {"00080060": {"vr": "CS", "Value": [modality]}}
        if burned_in is not None:
            meta["00280301"] = {"vr": "CS", "Value": [burned_in]}
        return {"meta": meta, "has_pixels": pixels}

    assert not may_carry_burned_in_text(doc("CT", "NO"))
    assert may_carry_burned_in_text(doc("CT", None))
    assert may_carry_burned_in_text(doc("CT", "YES"))
    for modality in ("US", "SC", "OT", "DOC"):
        assert may_carry_burned_in_text(doc(modality, "NO"))
    assert not may_carry_burned_in_text(doc("SR", None, pixels=False)), "a text SR has no pixels"
    assert may_carry_burned_in_text({"modality": "US"}), "a series document"
    assert may_carry_burned_in_text(
        {"sop_class_uid": "1.2.840.10008.5.1.4.1.1.7", "has_pixels": True, "meta": {}}
    )
