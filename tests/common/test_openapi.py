"""gen/openapi.json against the contracts and Envoy: every HTTP binding of every public
method is an operation with the right verb and path, every reference resolves, streams
are Server-Sent Events, and the security each operation declares is what Envoy's
jwt_authn enforces. (That the committed file is what `make gen` writes now is
scripts/check_gen_fresh.py's job, in `make lint`.)"""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.api import annotations_pb2

from aifx.auth.v1 import auth_pb2
from aifx.position.v1 import position_pb2
from aifx.signal.v1 import signal_pb2
from common.settings import REPO_ROOT

DOCUMENT: dict[str, Any] = json.loads((REPO_ROOT / "gen" / "openapi.json").read_text())
SERVICES = [
    auth_pb2.DESCRIPTOR.services_by_name["AuthService"],
    signal_pb2.DESCRIPTOR.services_by_name["SignalService"],
    position_pb2.DESCRIPTOR.services_by_name["PositionService"],
]


def bindings() -> list[tuple[str, str, str, bool]]:
    """(verb, path as documented, method name, streaming?) of every HTTP binding."""
    found = []
    for service in SERVICES:
        for method in service.methods:
            rule = method.GetOptions().Extensions[annotations_pb2.http]
            for one in (rule, *rule.additional_bindings):
                verb = one.WhichOneof("pattern")
                path = getattr(one, verb).replace("{position.id}", "{position_id}")
                found.append((verb, path, method.name, method.server_streaming))
    return found


def test_every_binding_is_an_operation_and_nothing_else() -> None:
    documented = {(verb, path) for path, ops in DOCUMENT["paths"].items() for verb in ops}
    assert documented == {(verb, path) for verb, path, _, _ in bindings()}


@pytest.mark.parametrize(("verb", "path", "name", "streaming"), bindings())
def test_operation_shape(verb: str, path: str, name: str, streaming: bool) -> None:
    operation = DOCUMENT["paths"][path][verb]
    assert operation["operationId"].split("_")[1] == name
    assert operation["summary"]
    ok = operation["responses"]["200"]["content"]
    assert list(ok) == (["text/event-stream"] if streaming else ["application/json"])
    error = operation["responses"]["default"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/google.rpc.Status"}
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            assert "{" + parameter["name"] + "}" in path


def test_every_reference_resolves() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    text = json.dumps(DOCUMENT)
    refs = {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}
    assert refs and refs <= set(schemas)


def test_fields_follow_the_json_mapping() -> None:
    position = DOCUMENT["components"]["schemas"]["aifx.position.v1.Position"]["properties"]
    assert position["openTime"]["type"] == "string"  # Timestamp, RFC 3339
    assert position["openTime"]["readOnly"] is True  # OUTPUT_ONLY
    stream = DOCUMENT["paths"]["/api/v1/positions/events:stream"]["get"]
    (resume,) = [p for p in stream["parameters"] if p["name"] == "resumeAfterId"]
    assert resume["in"] == "query"
    assert resume["schema"]["type"] == "string" and resume["schema"]["format"] == "int64"
    register = DOCUMENT["paths"]["/api/v1/auth/register"]["post"]["requestBody"]
    schema = register["content"]["application/json"]["schema"]
    assert set(schema["required"]) >= {"email", "password"}


@pytest.mark.parametrize(
    ("verb", "path", "security"),
    [
        ("post", "/api/v1/auth/login", []),
        ("post", "/api/v1/auth/register", []),
        ("get", "/.well-known/jwks.json", []),
        ("get", "/api/v1/auth/me", [{"bearerAuth": []}]),
        ("get", "/api/v1/trading/signals", [{"bearerAuth": []}]),
        ("post", "/api/v1/positions/{id}:close", [{"bearerAuth": []}]),
        ("post", "/api/v1/auth/logout", [{"bearerAuth": []}, {}]),  # token optional
    ],
)
def test_security_is_what_envoy_enforces(verb: str, path: str, security: list) -> None:
    assert DOCUMENT["paths"][path][verb]["security"] == security
