"""A refusal of the API shown next to the form field it concerns.

The portal checks nothing itself: a 422 names its fields (`errors[].loc`), a broken domain
rule names itself (`rule`), and the page puts the API's words beside that field.
"""

from __future__ import annotations

from collections.abc import Mapping

from studyshare.portal.adapters.public_api import ApiProblem

#: where a refusal that names no field is shown
FORM = "form"


def field_errors(
    problem: ApiProblem,
    rules: Mapping[str, str] | None = None,
    default: str = FORM,
    fields: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """`{form field: the API's reason}`: a validation error by the body field it names (the
    first part of its location; `fields` renames body fields to form fields, and then any
    other goes under `default`), a rule by `rules` (rule name -> form field), anything else
    under `default`."""
    errors: dict[str, str] = {}
    for error in problem.body.get("errors") or []:
        if not isinstance(error, Mapping):
            continue
        loc = [str(part) for part in error.get("loc") or ()]
        name = loc[1] if len(loc) > 1 and loc[0] == "body" else default
        if fields is not None:
            name = fields.get(name, default)
        errors.setdefault(name, str(error.get("msg") or problem.detail))
    if not errors:
        errors[(rules or {}).get(problem.rule or "", default)] = problem.detail
    return errors
