"""The forms REST clients may write enum fields in, derived from the contracts, and the
Lua filter that turns them into the enum names Envoy's JSON transcoder reads.

Traders and the old API write `timeframe=1h`, `"side": "buy"`, `status=open`,
`period=month`; the transcoder accepts only the contract's names (`TIMEFRAME_H1`,
`TRADE_ACTION_BUY`, ...), and refuses anything else with a message that lists nothing.
So Envoy runs `edge/rest_inputs.lua` before the transcoder, with tables generated here
from the contracts' descriptors, so they never drift from the protos:

- which request fields (by JSON name) hold which enum: every enum field of every request
  message of the REST services, nested messages included;
- the accepted forms of each value, compared case-insensitively with `-` and `_` alike:
  the contract's name (`TIMEFRAME_H1`), the name without the enum's prefix (`H1`,
  `BUY`, `OPEN`, `ALL_TIME`), and for timeframes the forms traders type (`15m`, `1h`,
  `4h`, `1d`, common.market.Timeframe); a performance period may also be `all`;
- how to name the accepted values in a refusal (`15m, 1h, 4h, 1d`).

gRPC clients keep their typed values: nothing here touches gRPC. The rendered Lua is
part of envoy.yaml; `make gen` rewrites it there and a test fails when it is stale.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from aifx.auth.v1 import auth_pb2
from aifx.position.v1 import position_pb2
from aifx.signal.v1 import signal_pb2
from common.market import Timeframe, timeframe_enum_name
from common.settings import REPO_ROOT

LUA_TEMPLATE = Path(__file__).with_name("rest_inputs.lua")
TABLES_MARKER = "--TABLES--"
REST_SERVICES = (
    auth_pb2.DESCRIPTOR.services_by_name["AuthService"],
    signal_pb2.DESCRIPTOR.services_by_name["SignalService"],
    position_pb2.DESCRIPTOR.services_by_name["PositionService"],
)
# Forms beyond the enum's own names, by value name.
EXTRA_FORMS: dict[str, tuple[str, ...]] = {
    **{timeframe_enum_name(tf): (tf.value,) for tf in Timeframe},
    "PERFORMANCE_PERIOD_ALL_TIME": ("all",),
}
# Request fields that accept only some of their enum's values (as the contract documents
# them): a position's side is a trade action, but never HOLD.
NARROWED: dict[str, tuple[str, ...]] = {"side": ("TRADE_ACTION_BUY", "TRADE_ACTION_SELL")}


@dataclass(frozen=True)
class EnumForms:
    """The accepted forms of one enum's values (normalised → value name), what the
    enum is, and its values as a trader writes them."""

    name: str
    what: str
    accepted: str
    forms: dict[str, str]


def _prefix(enum: EnumDescriptor) -> str:
    """The common prefix of the enum's value names (`TIMEFRAME_`)."""
    names = [value.name for value in enum.values]
    prefix = names[0]
    for name in names[1:]:
        while not name.startswith(prefix):
            prefix = prefix[:-1]
    return prefix[: prefix.rfind("_") + 1]


def normalise(text: str) -> str:
    """What the Lua filter compares: lower case, `-` as `_`."""
    return text.lower().replace("-", "_")


def enum_forms(enum: EnumDescriptor, only: tuple[str, ...] = ()) -> EnumForms:
    """The forms of `enum`'s values (of those named in `only`, when given)."""
    prefix = _prefix(enum)
    forms: dict[str, str] = {}
    shown = []
    for value in enum.values:
        if value.number == 0:  # UNSPECIFIED: "not given" is written by leaving it out
            continue
        if only and value.name not in only:
            continue
        short = value.name.removeprefix(prefix)
        extra = EXTRA_FORMS.get(value.name, ())
        for form in (value.name, short, *extra):
            forms[normalise(form)] = value.name
        shown.append(extra[0] if extra and enum.name == "Timeframe" else short.lower())
    return EnumForms(enum.name, _in_words(enum.name), ", ".join(shown), forms)


def _in_words(enum_name: str) -> str:
    """`PerformancePeriod` → "a performance period" (how a refusal names the field)."""
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", enum_name).lower()
    return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"


def _enum_fields(message: Descriptor, found: dict[str, EnumDescriptor], seen: set[str]) -> None:
    if message.full_name in seen or message.full_name.startswith("google."):
        return
    seen.add(message.full_name)
    for field in message.fields:
        enum, nested = field.enum_type, field.message_type
        if field.type == FieldDescriptor.TYPE_ENUM and enum is not None:
            for name in {field.json_name, field.name}:
                known = found.setdefault(name, enum)
                if known.full_name != enum.full_name:
                    raise ValueError(
                        f"request field {name!r} is {known.full_name} in one message and "
                        f"{enum.full_name} in another: the REST input forms "
                        "need one enum per field name"
                    )
        elif field.type == FieldDescriptor.TYPE_MESSAGE and nested is not None:
            _enum_fields(nested, found, seen)


def enum_fields() -> dict[str, EnumDescriptor]:
    """Field name (JSON and proto spelling) → its enum, over every request message of
    the REST services."""
    found: dict[str, EnumDescriptor] = {}
    seen: set[str] = set()
    for service in REST_SERVICES:
        for method in service.methods:
            _enum_fields(method.input_type, found, seen)
    return dict(sorted(found.items()))


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid Lua string literal for ASCII


def lua_tables() -> str:
    """The FIELDS and ENUMS tables of the Lua filter."""
    fields = enum_fields()
    # A narrowed field gets a table of its own, keyed "<enum>/<field>".
    keys = {
        name: f"{e.full_name}/{name}" if name in NARROWED else e.full_name
        for name, e in fields.items()
    }
    enums = {keys[name]: enum_forms(e, NARROWED.get(name, ())) for name, e in fields.items()}
    lines = ["local FIELDS = {"]
    lines += [f"  [{_lua_string(name)}] = {_lua_string(keys[name])}," for name in fields]
    lines += ["}", "", "local ENUMS = {"]
    for full_name, forms in sorted(enums.items()):
        lines.append(f"  [{_lua_string(full_name)}] = {{")
        lines.append(f"    what = {_lua_string(forms.what)},")
        lines.append(f"    accepted = {_lua_string(forms.accepted)},")
        lines.append("    values = {")
        lines += [
            f"      [{_lua_string(form)}] = {_lua_string(name)},"
            for form, name in sorted(forms.forms.items())
        ]
        lines.append("    },")
        lines.append("  },")
    lines.append("}")
    return "\n".join(lines)


def lua_source() -> str:
    """The Lua filter with its tables: what envoy.yaml runs."""
    template = LUA_TEMPLATE.read_text()
    if TABLES_MARKER not in template:
        raise ValueError(f"{LUA_TEMPLATE} lost its {TABLES_MARKER} line")
    return template.replace(TABLES_MARKER, lua_tables())


# --- envoy.yaml --------------------------------------------------------------------------

ENVOY_YAML = REPO_ROOT / "envoy.yaml"
BLOCK_HEADER = "inline_string: |  # generated by edge/rest_inputs.py: make gen"


def with_current_lua(text: str) -> str:
    """envoy.yaml's text with the Lua filter's generated block replaced by the current
    source (the block is the lines below BLOCK_HEADER indented deeper than it)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == BLOCK_HEADER), None)
    if start is None:
        raise ValueError(f"{ENVOY_YAML.name} has no line '{BLOCK_HEADER}'")
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = start + 1
    while end < len(lines) and (
        not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent
    ):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1  # blank lines after the block belong to what follows
    body = [(" " * (indent + 2) + line) if line else "" for line in lua_source().splitlines()]
    return "\n".join([*lines[: start + 1], *body, *lines[end:]]) + "\n"


def main(argv: list[str] | None = None) -> None:
    """`python -m edge.rest_inputs` rewrites the Lua block of envoy.yaml (make gen);
    with --check it only fails when the block is stale (make lint)."""
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    current = ENVOY_YAML.read_text()
    fresh = with_current_lua(current)
    if fresh == current:
        print("envoy.yaml's REST input filter is up to date")
        return
    if check:
        raise SystemExit(
            "envoy.yaml's REST input filter is stale against the contracts: run `make gen`"
        )
    ENVOY_YAML.write_text(fresh)
    print("rewrote the REST input filter in envoy.yaml")


if __name__ == "__main__":
    main()
