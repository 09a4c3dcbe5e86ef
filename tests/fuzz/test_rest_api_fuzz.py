"""The REST API fuzzed through Envoy (README "Reliability and security"): schemathesis
generates requests for every operation of gen/openapi.json — valid ones, and invalid
ones (wrong types, missing fields, values out of range) — and sends them to the whole
stack as `make run` starts it, signed in as a user of its own.

Every answer must be: not a 5xx; documented (status, content type and, for 200, the
response schema); never a stack trace, SQL or a Python exception's name in the body; and
every 4xx a JSON google.rpc.Status (`code` and `message`) — what Envoy's transcoder and
local replies promise. Streaming operations (`:stream`) are left out: a stream has no
end to validate (tests/signal_streams and tests/faults cover them).

Bounded for CI: AIFX_FUZZ_EXAMPLES examples per operation and mode (default 15),
derandomised so a run is repeatable; raise it locally to search harder.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from common.settings import REPO_ROOT
from tests.envoy import unique_account
from tests.full_stack import FullStack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

OPENAPI = REPO_ROOT / "gen" / "openapi.json"
EXAMPLES = int(os.environ.get("AIFX_FUZZ_EXAMPLES", "15"))
LEAKS = re.compile(
    r"Traceback|File \"/|SELECT |INSERT INTO|UPDATE .* SET|sqlalchemy|asyncpg|aiosqlite|"
    r"psycopg|\b[A-Z][a-zA-Z]+(Error|Exception)\b: "
)
SCHEMA = schemathesis.openapi.from_path(OPENAPI)
OPERATIONS = [
    result.ok()
    for result in SCHEMA.get_all_operations()
    if not result.ok().path.endswith(":stream")
]


def sent_text(case: Case) -> str:
    """Everything the request carried, as text: what an error may rightly echo back."""
    return json.dumps(
        [case.body, case.query, case.path_parameters, case.headers], default=str, ensure_ascii=False
    ) + repr([case.body, case.query, case.path_parameters, case.headers])


def no_insides_and_json_status(ctx: CheckContext, response: Response, case: Case) -> None:
    """No trace, SQL or exception name in any body (unless the request itself carried
    that text and the error quotes it); every 4xx a google.rpc.Status."""
    del ctx
    text = response.text or ""
    sent = sent_text(case)
    leaks = [m.group(0) for m in LEAKS.finditer(text) if m.group(0).strip() not in sent]
    assert not leaks, f"the body shows the server's insides ({leaks}): {text[:500]}"
    if 400 <= response.status_code < 500:
        try:
            body = response.json()
        except ValueError as exc:
            raise AssertionError(
                f"a {response.status_code} that is not JSON: {text[:300]}"
            ) from exc
        assert isinstance(body, dict), body
        assert isinstance(body.get("code"), int) and body["code"] > 0, body
        assert isinstance(body.get("message"), str) and body["message"], body


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    no_insides_and_json_status,
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FullStack]:
    """The embedded stack, with rate limits high enough that fuzzed registrations and
    failed logins are answered rather than limited (limits have their own tests)."""
    with FullStack(
        tmp_path_factory.mktemp("fuzz") / "stack",
        bcrypt_rounds=4,
        replay_speed=3600,
        registration_limit_per_address="1000000/hour",
        login_failure_limit_per_address="1000000/minute",
    ) as full:
        yield full


def sign_in(url: str) -> str:
    """A fresh user's access token."""
    account = unique_account("fuzz")
    with httpx.Client(base_url=url, timeout=15) as http:
        registered = http.post("/api/v1/auth/register", json=account)
        assert registered.status_code == 200, registered.text
        return str(registered.json()["tokens"]["accessToken"])


@pytest.fixture(scope="module")
def token(stack: FullStack) -> str:
    return sign_in(stack.url)


def negatable(operation: schemathesis.APIOperation) -> bool:
    """Whether invalid requests exist: an operation without parameters or a body (the
    JWKS) has nothing to get wrong."""
    parts = (operation.path_parameters, operation.query, operation.headers, operation.body)
    return any(len(part) for part in parts)


CASES = [
    pytest.param(operation, mode, id=f"{operation.label}-{mode.value}")
    for operation in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or negatable(operation)
]


@pytest.mark.parametrize(("operation", "mode"), CASES)
def test_operation_answers_every_request_well(
    operation: schemathesis.APIOperation, mode: GenerationMode, stack: FullStack, token: str
) -> None:
    # Logout revokes the access token it carries: it gets a token of its own each time.
    own_token = operation.path.endswith("/logout")
    session = requests.Session()

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def answers_well(case: Case) -> None:
        bearer = sign_in(stack.url) if own_token else token
        headers = {"authorization": f"Bearer {bearer}"}
        response = case.call(base_url=stack.url, session=session, headers=headers, timeout=15)
        case.validate_response(response, checks=CHECKS)

    try:
        answers_well()
    finally:
        session.close()


def test_every_rest_binding_is_fuzzed() -> None:
    """The document lists every HTTP binding of the contracts (streams aside)."""
    bound = {(op.method.upper(), op.path) for op in OPERATIONS}
    assert ("POST", "/api/v1/positions") in bound
    assert ("PATCH", "/api/v1/positions/{position_id}") in bound
    assert ("GET", "/api/v1/trading/signal/{pair}") in bound
    assert len(bound) == len(OPERATIONS) >= 20
    assert Path(OPENAPI).is_file()
