"""The gateway's merged OpenAPI holds for the whole running platform (schemathesis): no 5xx,
and every answer has a documented status, content type and schema, whoever asks.

One pytest subtest per operation. (schemathesis' own `pytest.from_fixture` would do the same,
but 4.32.5 sets `Node._nodeid`, which pytest 9 no longer has.)
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from studyshare.devstack.platform import LocalPlatform
from studyshare.plumbing.testing import fuzz_operation, httpx_request

from .gateway_world import World, build_world

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
#: generated requests per operation, each sent anonymously and as every principal
MAX_EXAMPLES = 5
#: requests per operation that its schema refuses, sent as the service desk (who may do most)
MAX_BAD_EXAMPLES = 3


@pytest.fixture(scope="module")
def world(platform: LocalPlatform) -> World:
    with httpx.Client(base_url=platform.gateway_url, timeout=60) as client:
        return build_world(client, platform.bootstrap_user, platform.bootstrap_password)


def is_stow(operation) -> bool:
    """STOW-RS upload: a generated body is never a multipart/related DICOM upload (schemathesis
    cannot make one), so the route only ever refuses it; uploads are tested in study-store."""
    return operation.method.upper() == "POST" and operation.path.startswith("/dicomweb/studies")


@pytest.mark.timeout(900)  # the platform may start here; the run itself is bounded by examples
def test_every_documented_answer_holds_for_every_principal(
    platform: LocalPlatform, world: World, subtests: pytest.Subtests
):
    gateway = platform.gateway_url
    schema = schemathesis.openapi.from_url(f"{gateway}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    fuzzed = [op for op in operations if not is_stow(op)]
    assert len(operations) - len(fuzzed) == 2 and len(fuzzed) >= 100, "every service is in"

    with httpx.Client(timeout=60) as http:
        for operation in fuzzed:
            with subtests.test(f"{operation.method.upper()} {operation.path}"):
                failures = fuzz_operation(
                    operation,
                    caller(http),
                    senders=world.senders,
                    aim=world.aim,
                    max_examples=MAX_EXAMPLES,
                    checks=CHECKS,
                    base_url=gateway,
                )
                assert not failures, "\n".join(failures)


@pytest.mark.timeout(900)
def test_bad_requests_are_refused_as_documented(
    platform: LocalPlatform, world: World, subtests: pytest.Subtests
):
    """Requests the schema refuses (wrong types, out-of-range numbers, missing fields) are 4xx
    problems, never a 5xx."""
    gateway = platform.gateway_url
    schema = schemathesis.openapi.from_url(f"{gateway}/openapi.json")

    def as_service_desk(case) -> dict[str, dict[str, str]]:
        senders = world.senders(case)  # its spare session for logout; logins stay anonymous
        return {"service_desk": senders["service_desk"]} if "service_desk" in senders else senders

    with httpx.Client(timeout=60) as http:
        for operation in (result.ok() for result in schema.get_all_operations()):
            if is_stow(operation):
                continue
            with subtests.test(f"{operation.method.upper()} {operation.path}"):
                failures = fuzz_operation(
                    operation,
                    caller(http),
                    senders=as_service_desk,
                    aim=world.aim,
                    max_examples=MAX_BAD_EXAMPLES,
                    checks=CHECKS,
                    base_url=gateway,
                    negative=True,
                )
                assert not failures, "\n".join(failures)


def caller(http: httpx.Client):
    def call(kwargs: dict) -> httpx.Response:
        return http.request(**httpx_request(kwargs))

    return call
