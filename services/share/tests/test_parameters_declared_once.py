"""The share parameters are declared once (`studyshare.contracts.events.share.ShareParameters`):
the API's models, the command, the domain's request, the event and the views take them from
there, and no class of the share service declares one of them again."""

from __future__ import annotations

import ast
from pathlib import Path

from studyshare.contracts.events.share import ShareParameters, StudyShared
from studyshare.share.adapters.readmodel import SHOWN_OPTIONS
from studyshare.share.domain.model import ShareRequest
from studyshare.share.entrypoints.models import (
    BucketOut,
    Confirmation,
    ShareAgainIn,
    SharedItemOut,
    ShareIn,
)
from studyshare.share.service_layer.sharing import ShareCommand

SOURCE = Path(__file__).parents[1] / "src"
PARAMETERS = set(ShareParameters.model_fields)
#: the same names, meaning something else
NOT_PARAMETERS = {
    "RecipientIn.language",  # a recipient's language, which the share's is decided from
    "RecipientInput.language",
    "ConfirmationRecipient.language",
    "BucketRecipientOut.language",
    "PreferencesOut.two_factor",  # the sender's remembered choices, the defaults of a share
    "PreferencesOut.send_mail",
    "BucketOut.reason",  # the bucket's, or null for whom may not see it
}


def test_no_class_of_the_share_service_declares_a_share_parameter_again() -> None:
    again = []
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                again += [
                    f"{node.name}.{stmt.target.id}"
                    for stmt in node.body
                    if isinstance(stmt, ast.AnnAssign)
                    and isinstance(stmt.target, ast.Name)
                    and stmt.target.id in PARAMETERS
                ]
    assert set(again) == NOT_PARAMETERS


def test_every_model_of_a_share_carries_the_declared_parameters() -> None:
    for model in (ShareIn, ShareAgainIn, ShareCommand, ShareRequest, StudyShared):
        assert PARAMETERS <= set(model.model_fields), model.__name__
    shown = set(SHOWN_OPTIONS)
    assert shown == PARAMETERS - {"reason", "patient_agreed", "hipaa_confirmed"} | {"report_access"}
    for view in (Confirmation, BucketOut, SharedItemOut):
        assert shown <= set(view.model_fields), view.__name__
    assert "reason" not in SharedItemOut.model_fields  # never shown to a recipient


def test_a_share_again_may_override_each_parameter_and_checks_it_as_a_share_does() -> None:
    body = {"recipients": [{"kind": "user", "id": "usr_r"}]}
    assert ShareAgainIn.model_validate(body).model_dump(exclude_none=True) == body
    refused = ShareAgainIn.model_json_schema()["properties"]
    assert set(refused) == PARAMETERS | {"recipients", "add_to_favorites"}
    for field, value in (("message", "x" * 4001), ("reason", "x" * 2001)):
        try:
            ShareAgainIn.model_validate(body | {field: value})
        except ValueError as error:
            assert field in str(error)
        else:
            raise AssertionError(f"{field} too long was accepted")
