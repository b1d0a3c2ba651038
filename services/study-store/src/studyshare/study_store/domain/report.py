"""The study report: read and written per the caller's access decision, versioned.

The report belongs to the Study stream (`ReportUpdated`, aggregate type Study): `StudyReport`
folds only what the report needs from it, the rest of the stream is the DICOM side's.
"""

from __future__ import annotations

from typing import Literal

from studyshare.access_policy.decision import AccessDecision
from studyshare.contracts.events.study import ReportUpdated, StudyReceived
from studyshare.plumbing.domain import Aggregate, applies
from studyshare.study_store.domain.exceptions import (
    ReportEmpty,
    ReportNotAPdf,
    ReportNotAvailableOnAnonymizedShare,
    ReportReadNotAllowed,
    ReportTooLarge,
    ReportWriteNotAllowed,
    StudyNotReceived,
)

MAX_TEXT_CHARS = 200_000
MAX_PDF_BYTES = 8 * 1024 * 1024
ReportFormat = Literal["text", "pdf"]


def check_read(decision: AccessDecision) -> None:
    if decision.anonymized:
        raise ReportNotAvailableOnAnonymizedShare("an anonymized share never shows the report")
    if decision.report not in ("read", "write"):
        raise ReportReadNotAllowed("your access does not include the report")


def check_write(decision: AccessDecision) -> None:
    if decision.anonymized:
        raise ReportNotAvailableOnAnonymizedShare("an anonymized share never shows the report")
    if decision.report != "write":
        raise ReportWriteNotAllowed("your access does not include writing the report")


def check_content(fmt: ReportFormat, content: bytes) -> None:
    if not content.strip():
        raise ReportEmpty("the report is empty")
    if fmt == "pdf":
        if len(content) > MAX_PDF_BYTES:
            raise ReportTooLarge(f"a PDF report is limited to {MAX_PDF_BYTES} bytes")
        if not content.startswith(b"%PDF-"):
            raise ReportNotAPdf("the upload is not a PDF document")
    elif len(content) > MAX_TEXT_CHARS * 4:
        raise ReportTooLarge(f"a text report is limited to {MAX_TEXT_CHARS} characters")


class StudyReport(Aggregate):
    aggregate_type = "Study"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.received = False
        self.report_version = 0

    @applies
    def when_study_received(self, e: StudyReceived) -> None:
        self.received = True

    @applies
    def when_report_updated(self, e: ReportUpdated) -> None:
        self.report_version = max(self.report_version, e.report_version)

    def update(
        self, decision: AccessDecision, author_id: str, fmt: ReportFormat
    ) -> list[ReportUpdated]:
        check_write(decision)
        if not self.received:
            raise StudyNotReceived(f"study {self.id} was not received")
        return [
            ReportUpdated(
                study_uid=self.id,
                report_version=self.report_version + 1,
                format=fmt,
                author_id=author_id,
            )
        ]
