"""An OpenAPI 3.1 document of the REST API, generated from the contracts.

No generator for OpenAPI 3 from `google.api.http` annotations installs from the package
registries (grpc-gateway's and gnostic's are Go binaries), so this one reads the
descriptor set protoc writes (with source info, for the comments) and describes what
Envoy's gRPC-JSON transcoder serves, by the proto3 JSON mapping:

- one operation per HTTP binding (additional bindings included) of every method of the
  public services; its summary and description are the method's comment;
- path variables (`{position.id}`) and, for bindings without a `*` body, every other
  scalar field as a query parameter (nested fields by dotted name), named as the
  transcoder reads them: the field's JSON name;
- a body of `*` is the request message without its path fields; a body naming a field
  is that field's message;
- fields by their JSON names; 64-bit integers as strings; enums by value name (REST
  clients may also write short forms, `edge/rest_inputs.py`, listed in the description);
  Timestamp as an RFC 3339 string, FieldMask as a comma-separated string; `REQUIRED`
  and `OUTPUT_ONLY` field behaviours as `required` and `readOnly`;
- server-streaming methods answer `text/event-stream`: one `data: {json}` line per
  message (`stream_sse_style_delimited` in envoy.yaml);
- errors are google.rpc.Status JSON (every status code, by `default`);
- which operations need the bearer token is read from Envoy's jwt_authn rules in
  envoy.yaml, the rules that enforce it.

`make gen` writes it to gen/openapi.json; the edge serves it at /api/openapi.json with
an explorer at /api/docs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from google.api import annotations_pb2, field_behavior_pb2, http_pb2
from google.protobuf import descriptor_pb2

TITLE = "AIFX REST API"
PUBLIC_PACKAGES = ("aifx.",)
SECURITY_SCHEME = "bearerAuth"
STATUS_REF = "#/components/schemas/google.rpc.Status"

_T = descriptor_pb2.FieldDescriptorProto
_SCALARS: dict[int, dict[str, Any]] = {
    _T.TYPE_DOUBLE: {"type": "number", "format": "double"},
    _T.TYPE_FLOAT: {"type": "number", "format": "float"},
    _T.TYPE_INT32: {"type": "integer", "format": "int32"},
    _T.TYPE_SINT32: {"type": "integer", "format": "int32"},
    _T.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    _T.TYPE_UINT32: {"type": "integer", "format": "int32", "minimum": 0},
    _T.TYPE_FIXED32: {"type": "integer", "format": "int32", "minimum": 0},
    _T.TYPE_INT64: {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"},
    _T.TYPE_SINT64: {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"},
    _T.TYPE_SFIXED64: {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"},
    _T.TYPE_UINT64: {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"},
    _T.TYPE_FIXED64: {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"},
    _T.TYPE_BOOL: {"type": "boolean"},
    _T.TYPE_STRING: {"type": "string"},
    _T.TYPE_BYTES: {"type": "string", "format": "byte"},
}
# Well-known types by their JSON mapping.
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    ".google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    ".google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?s$"},
    ".google.protobuf.FieldMask": {
        "type": "string",
        "description": "Comma-separated field paths, in JSON names.",
    },
    ".google.protobuf.Struct": {"type": "object"},
    ".google.protobuf.Value": {},
    ".google.protobuf.Empty": {"type": "object"},
    ".google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    },
}
_METHOD_FIELDS = ("get", "put", "post", "delete", "patch")
# Comment paths in SourceCodeInfo are descriptor.proto field numbers: a file's messages,
# enums and services; a message's fields, nested messages and nested enums; a service's
# methods.
_MESSAGE, _ENUM, _SERVICE = 4, 5, 6
_FIELD, _NESTED_MESSAGE, _NESTED_ENUM = 2, 3, 4
_METHOD = 2


def _comments(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    """Leading comments by SourceCodeInfo path, without the space after each `//`."""
    return {
        tuple(loc.path): _clean(loc.leading_comments)
        for loc in file.source_code_info.location
        if loc.leading_comments
    }


def _clean(comment: str) -> str:
    return "\n".join(line.removeprefix(" ") for line in comment.split("\n")).strip()


@dataclass(frozen=True)
class _Message:
    proto: descriptor_pb2.DescriptorProto
    comment: str
    field_comments: dict[str, str]


@dataclass(frozen=True)
class _Service:
    proto: descriptor_pb2.ServiceDescriptorProto
    full_name: str
    comment: str
    method_comments: list[str]


class _Contracts:
    """Every message and enum of the descriptor set by full name (".pkg.Name"), with
    their comments."""

    def __init__(self, files: descriptor_pb2.FileDescriptorSet) -> None:
        self.files = list(files.file)
        self.messages: dict[str, _Message] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        self.enum_comments: dict[str, str] = {}
        for file in self.files:
            comments = _comments(file)
            prefix = f".{file.package}" if file.package else ""
            for index, message in enumerate(file.message_type):
                self._add_message(prefix, message, (_MESSAGE, index), comments)
            for index, enum in enumerate(file.enum_type):
                self._add_enum(prefix, enum, (_ENUM, index), comments)

    def _add_message(
        self,
        prefix: str,
        message: descriptor_pb2.DescriptorProto,
        path: tuple[int, ...],
        comments: dict[tuple[int, ...], str],
    ) -> None:
        name = f"{prefix}.{message.name}"
        field_comments = {
            field.name: comments.get((*path, _FIELD, index), "")
            for index, field in enumerate(message.field)
        }
        self.messages[name] = _Message(message, comments.get(path, ""), field_comments)
        for index, nested in enumerate(message.nested_type):
            self._add_message(name, nested, (*path, _NESTED_MESSAGE, index), comments)
        for index, enum in enumerate(message.enum_type):
            self._add_enum(name, enum, (*path, _NESTED_ENUM, index), comments)

    def _add_enum(
        self,
        prefix: str,
        enum: descriptor_pb2.EnumDescriptorProto,
        path: tuple[int, ...],
        comments: dict[tuple[int, ...], str],
    ) -> None:
        name = f"{prefix}.{enum.name}"
        self.enums[name] = enum
        self.enum_comments[name] = comments.get(path, "")

    def services(self) -> Iterator[_Service]:
        """The public packages' services that have HTTP bindings."""
        for file in self.files:
            if not file.package.startswith(PUBLIC_PACKAGES):
                continue
            comments = _comments(file)
            for index, service in enumerate(file.service):
                if any(m.options.HasExtension(annotations_pb2.http) for m in service.method):
                    yield _Service(
                        service,
                        f"{file.package}.{service.name}",
                        comments.get((_SERVICE, index), ""),
                        [
                            comments.get((_SERVICE, index, _METHOD, i), "")
                            for i in range(len(service.method))
                        ],
                    )


class _Schemas:
    """components/schemas, filled as messages are referenced."""

    def __init__(self, contracts: _Contracts) -> None:
        self.contracts = contracts
        self.components: dict[str, Any] = {}

    def ref(self, type_name: str) -> dict[str, Any]:
        if type_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[type_name])
        key = type_name.lstrip(".")
        if key not in self.components:
            self.components[key] = {}  # placeholder: breaks recursion
            if type_name in self.contracts.enums:
                self.components[key] = self._enum(type_name)
            else:
                self.components[key] = self.message(type_name)
        return {"$ref": f"#/components/schemas/{key}"}

    def _enum(self, type_name: str) -> dict[str, Any]:
        enum = self.contracts.enums[type_name]
        schema: dict[str, Any] = {"type": "string", "enum": [v.name for v in enum.value]}
        if self.contracts.enum_comments[type_name]:
            schema["description"] = self.contracts.enum_comments[type_name]
        return schema

    def message(self, type_name: str, without: frozenset[str] = frozenset()) -> dict[str, Any]:
        """The JSON schema of a message, leaving out the top-level fields `without`."""
        message = self.contracts.messages[type_name]
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field in message.proto.field:
            if field.name in without:
                continue
            schema = self.field(field)
            comment = message.field_comments.get(field.name)
            if comment:
                schema = (
                    {**schema, "description": comment}
                    if "$ref" not in schema
                    else {
                        "allOf": [schema],
                        "description": comment,
                    }
                )
            behaviours = list(field.options.Extensions[field_behavior_pb2.field_behavior])
            if field_behavior_pb2.OUTPUT_ONLY in behaviours:
                schema = {**schema, "readOnly": True}
            if field_behavior_pb2.REQUIRED in behaviours:
                required.append(field.json_name)
            properties[field.json_name] = schema
        result: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            result["required"] = required
        if message.comment:
            result["description"] = message.comment
        return result

    def field(self, field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
        entry = self.contracts.messages.get(field.type_name)
        if entry is not None and entry.proto.options.map_entry:
            value = next(f for f in entry.proto.field if f.name == "value")
            return {"type": "object", "additionalProperties": self.field(value)}
        single = self.single(field)
        if field.label == _T.LABEL_REPEATED:
            return {"type": "array", "items": single}
        return single

    def single(self, field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
        if field.type in (_T.TYPE_MESSAGE, _T.TYPE_ENUM):
            return self.ref(field.type_name)
        return dict(_SCALARS[field.type])


def _bindings(rule: http_pb2.HttpRule) -> Iterator[tuple[str, str, str]]:
    """(method, path template, body) of a rule and its additional bindings."""
    for one in (rule, *rule.additional_bindings):
        verb = one.WhichOneof("pattern")
        if verb in _METHOD_FIELDS:
            yield verb, getattr(one, verb), one.body


def _path_fields(template: str) -> list[str]:
    """The field paths of a template's variables: `{position.id}` → `position.id`."""
    fields = []
    for part in template.split("{")[1:]:
        fields.append(part.split("}")[0].split("=")[0])
    return fields


def _parameter_name(field_path: str) -> str:
    """A path variable's name in the document: `position.id` → `position_id` (tools
    read OpenAPI path parameters as plain names)."""
    return field_path.replace(".", "_")


def _openapi_path(template: str) -> str:
    """The template with each variable under its parameter name (and no `=pattern`)."""
    for field_path in _path_fields(template):
        start = template.index("{" + field_path)
        end = template.index("}", start)
        template = template[:start] + "{" + _parameter_name(field_path) + "}" + template[end + 1 :]
    return template


def _security(envoy_yaml: Path) -> list[tuple[str, bool]]:
    """Envoy's jwt_authn rules as (path prefix, token optional?), first match wins."""
    config = yaml.safe_load(envoy_yaml.read_text())
    rules: list[tuple[str, bool]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "providers" in node and "rules" in node:
                for rule in node["rules"]:
                    requires = rule.get("requires", {})
                    anyone = requires.get("requires_any", {}).get("requirements", [])
                    optional = any("allow_missing" in r for r in anyone)
                    rules.append((rule["match"]["prefix"], optional))
                return
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return rules


def _operation_security(path: str, rules: list[tuple[str, bool]]) -> list[dict[str, list[str]]]:
    for prefix, optional in rules:
        if path.startswith(prefix):
            return [{SECURITY_SCHEME: []}, {}] if optional else [{SECURITY_SCHEME: []}]
    return []


class _Builder:
    def __init__(self, contracts: _Contracts, rules: list[tuple[str, bool]]) -> None:
        self.contracts = contracts
        self.schemas = _Schemas(contracts)
        self.rules = rules
        self.paths: dict[str, dict[str, Any]] = {}

    def add_method(
        self, service: str, method: descriptor_pb2.MethodDescriptorProto, comment: str
    ) -> None:
        rule = method.options.Extensions[annotations_pb2.http]
        for number, (verb, template, body) in enumerate(_bindings(rule)):
            operation_id = f"{service.rsplit('.', 1)[-1]}_{method.name}"
            if number:
                operation_id += f"_{number + 1}"
            operation = self.operation(method, template, body, comment, operation_id)
            operation["tags"] = [service.rsplit(".", 1)[-1]]
            self.paths.setdefault(_openapi_path(template), {})[verb] = operation

    def operation(
        self,
        method: descriptor_pb2.MethodDescriptorProto,
        template: str,
        body: str,
        comment: str,
        operation_id: str,
    ) -> dict[str, Any]:
        request = method.input_type
        path_fields = _path_fields(template)
        parameters = [
            {
                "name": _parameter_name(name),
                "in": "path",
                "required": True,
                "schema": self.field_schema(request, name.split(".")),
                "description": f"The request's `{name}`.",
            }
            for name in path_fields
        ]
        operation: dict[str, Any] = {"operationId": operation_id}
        if comment:
            operation["summary"] = _first_sentence(comment)
            operation["description"] = comment
        top_path_fields = frozenset(p.split(".")[0] for p in path_fields)
        if body == "*":
            schema = self.schemas.message(request, without=top_path_fields)
            operation["requestBody"] = _json_body(schema)
        else:
            if body:
                field = self.field_by_name(request, body)
                operation["requestBody"] = _json_body(self.schemas.field(field))
            skip = {tuple(p.split(".")) for p in path_fields}
            skip |= {(body,)} if body else set()
            parameters += self.query_parameters(request, (), skip, set())
        if parameters:
            operation["parameters"] = parameters
        output = self.schemas.ref(method.output_type)
        if method.server_streaming:
            ok = {
                "description": "Server-Sent Events: one `data: {json}` line per message, "
                "each message as `schema` describes.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
                "x-message-schema": output,
            }
        else:
            ok = {"description": "OK", "content": {"application/json": {"schema": output}}}
        operation["responses"] = {
            "200": ok,
            "default": {
                "description": "An error: a google.rpc.Status with its details.",
                "content": {"application/json": {"schema": {"$ref": STATUS_REF}}},
            },
        }
        operation["security"] = _operation_security(template, self.rules)
        return operation

    def query_schema(self, field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
        """A query parameter's schema. An enum's zero value (`..._UNSPECIFIED`) is not
        accepted over REST (leaving the parameter out says it: edge/rest_inputs.py)."""
        if field.type != _T.TYPE_ENUM:
            return self.schemas.field(field)
        enum = self.contracts.enums[field.type_name]
        single = {"type": "string", "enum": [v.name for v in enum.value if v.number != 0]}
        return {"type": "array", "items": single} if field.label == _T.LABEL_REPEATED else single

    def field_by_name(self, type_name: str, name: str) -> descriptor_pb2.FieldDescriptorProto:
        message = self.contracts.messages[type_name].proto
        return next(f for f in message.field if f.name == name)

    def field_schema(self, type_name: str, path: list[str]) -> dict[str, Any]:
        field = self.field_by_name(type_name, path[0])
        if len(path) == 1:
            return self.schemas.field(field)
        return self.field_schema(field.type_name, path[1:])

    def query_parameters(
        self,
        type_name: str,
        prefix: tuple[str, ...],
        skip: set[tuple[str, ...]],
        seen: set[str],
        json_prefix: tuple[str, ...] = (),
    ) -> list[dict[str, Any]]:
        """Every scalar, enum and repeated-scalar field, nested ones by dotted JSON name."""
        if type_name in seen:
            return []
        entry = self.contracts.messages[type_name]
        parameters = []
        for field in entry.proto.field:
            path = (*prefix, field.name)
            if path in skip:
                continue
            if field.type == _T.TYPE_MESSAGE and field.type_name not in _WELL_KNOWN:
                if field.label != _T.LABEL_REPEATED:
                    parameters += self.query_parameters(
                        field.type_name, path, skip, seen | {type_name},
                        (*json_prefix, field.json_name),
                    )  # fmt: skip
                continue
            parameter: dict[str, Any] = {
                "name": ".".join((*json_prefix, field.json_name)),
                "in": "query",
                "schema": self.query_schema(field),
            }
            if field.label == _T.LABEL_REPEATED:
                parameter["explode"] = True
            comment = entry.field_comments.get(field.name)
            if comment:
                parameter["description"] = comment
            parameters.append(parameter)
        return parameters


def _first_sentence(comment: str) -> str:
    paragraph = " ".join(comment.split("\n\n")[0].split())
    head, dot, _rest = paragraph.partition(". ")
    return head + "." if dot else paragraph


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def build(descriptor_set: bytes, envoy_yaml: Path, version: str = "v1") -> dict[str, Any]:
    """The OpenAPI document of the services in `descriptor_set` (serialized, with source
    info), secured as `envoy_yaml`'s jwt_authn rules say."""
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
    contracts = _Contracts(files)
    builder = _Builder(contracts, _security(envoy_yaml))
    tags = []
    for service in contracts.services():
        tags.append({"name": service.proto.name, "description": service.comment})
        for method, comment in zip(service.proto.method, service.method_comments, strict=True):
            if method.options.HasExtension(annotations_pb2.http):
                builder.add_method(service.full_name, method, comment)
    builder.schemas.ref(".google.rpc.Status")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": version,
            "description": (
                "Forex signals, positions and accounts. Sign in with "
                "`POST /api/v1/auth/login` (or register), then **Authorize** with the "
                "`accessToken` it returns. Errors are google.rpc.Status JSON: `code`, "
                "`message` and `details` (field violations, retry delays). Streams "
                "(`:stream`) are Server-Sent Events; browsers may pass the token as "
                "`?access_token=`. Envoy transcodes this API from the gRPC contracts in "
                "proto/, which `make gen` turns into this document."
            ),
        },
        "servers": [{"url": "/"}],
        "tags": tags,
        "paths": dict(sorted(builder.paths.items())),
        "components": {
            "schemas": dict(sorted(builder.schemas.components.items())),
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An access token from /api/v1/auth/login.",
                }
            },
        },
    }


def render(document: dict[str, Any]) -> str:
    """Stable text: sorted where order carries no meaning, so regenerating is a no-op."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
