"""systemd's runtime unit state: asked over D-Bus (jeepney), or read back from a snapshot's units.json.

The one function that touches the bus is `read_units()`; everything else builds messages, decodes
replies or parses JSON, so tests run without a bus (`query_units` takes any connection-like object).
Requests are pipelined: ListUnits once, then a window of property Gets in flight, so a few hundred
units cost a few hundred milliseconds at worst instead of one round trip each.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from jeepney import DBusAddress, DBusErrorResponse, HeaderFields, Message, MessageType, Properties, new_method_call

BUS_NAME = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER_IFACE = "org.freedesktop.systemd1.Manager"
UNIT_IFACE = "org.freedesktop.systemd1.Unit"
# The Unit properties read per loaded unit (load/active/sub state come with ListUnits).
PROPERTIES = ("UnitFileState", "FragmentPath", "DropInPaths", "ConditionResult")
WINDOW = 64  # requests in flight at once: enough to hide latency, small enough for socket buffers
TIMEOUT = 30.0  # a busy host (or a TCG guest) answers a few hundred units slowly
# What talking to the bus may raise: socket errors and timeouts, authentication (a ValueError), a
# bad DBUS_SYSTEM_BUS_ADDRESS (KeyError) and error replies to Hello.
DBUS_ERRORS = (OSError, ValueError, KeyError, DBusErrorResponse)


@dataclass(frozen=True, slots=True)
class RuntimeUnit:
    unit: str
    load_state: str
    active_state: str
    sub_state: str
    unit_file_state: str = ""
    fragment_path: str = ""
    drop_in_paths: tuple[str, ...] = ()
    condition_result: bool | None = None  # None: unknown (not captured)

    @property
    def is_active(self) -> bool:
        return self.active_state in ("active", "activating", "reloading")

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "load_state": self.load_state,
            "active_state": self.active_state,
            "sub_state": self.sub_state,
            "unit_file_state": self.unit_file_state,
            "fragment_path": self.fragment_path,
            "drop_in_paths": list(self.drop_in_paths),
            "condition_result": self.condition_result,
        }


class Connection(Protocol):
    """What query_units needs of jeepney.io.blocking.DBusConnection (the seam tests fake)."""

    outgoing_serial: Any

    def send(self, message: Message, serial: int | None = None) -> None: ...

    def receive(self, *, timeout: float | None = None) -> Message: ...


# -- message building -------------------------------------------------------------------------


def list_units_message() -> Message:
    manager = DBusAddress(MANAGER_PATH, bus_name=BUS_NAME, interface=MANAGER_IFACE)
    return new_method_call(manager, "ListUnits")


def property_message(object_path: str, name: str) -> Message:
    unit = DBusAddress(object_path, bus_name=BUS_NAME, interface=UNIT_IFACE)
    return Properties(unit).get(name)


# -- reply decoding ---------------------------------------------------------------------------


def decode_list_units(body: Sequence[Any]) -> tuple[tuple[RuntimeUnit, str], ...]:
    """ListUnits' a(ssssssouso) as (unit with its states, object path) pairs."""
    rows = body[0] if body else ()
    out: list[tuple[RuntimeUnit, str]] = []
    for row in rows:
        name, _description, load, active, sub, _following, path = row[:7]
        out.append((RuntimeUnit(str(name), str(load), str(active), str(sub)), str(path)))
    return tuple(out)


def decode_property(name: str, body: Sequence[Any]) -> Any:
    """A Properties.Get reply body `((signature, value),)` as a plain value of the expected type."""
    if not body:
        return None
    variant = body[0]
    value = variant[1] if isinstance(variant, tuple) and len(variant) == 2 else variant
    match name:
        case "DropInPaths":
            return tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()
        case "ConditionResult":
            return bool(value) if isinstance(value, bool | int) else None
        case _:
            return str(value) if isinstance(value, str) else ""


def with_properties(unit: RuntimeUnit, props: dict[str, Any]) -> RuntimeUnit:
    return RuntimeUnit(
        unit=unit.unit,
        load_state=unit.load_state,
        active_state=unit.active_state,
        sub_state=unit.sub_state,
        unit_file_state=props.get("UnitFileState") or "",
        fragment_path=props.get("FragmentPath") or "",
        drop_in_paths=props.get("DropInPaths") or (),
        condition_result=props.get("ConditionResult"),
    )


# -- the conversation -------------------------------------------------------------------------


def _reply_serial(msg: Message) -> int:
    return int(msg.header.fields.get(HeaderFields.reply_serial, -1))


def _pipelined(conn: Connection, requests: Iterable[tuple[Any, Message]], deadline: float) -> dict[Any, Message]:
    """Send requests with at most WINDOW unanswered; return replies by request key.

    Messages that answer nothing of ours (NameAcquired and other signals) are skipped.
    """
    pending: dict[int, Any] = {}
    replies: dict[Any, Message] = {}
    queue = iter(requests)
    exhausted = False
    while True:
        while not exhausted and len(pending) < WINDOW:
            item = next(queue, None)
            if item is None:
                exhausted = True
                break
            serial = next(conn.outgoing_serial)
            conn.send(item[1], serial=serial)
            pending[serial] = item[0]
        if not pending:
            return replies
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"systemd did not answer {len(pending)} request(s) in time")
        msg = conn.receive(timeout=remaining)
        key = pending.pop(_reply_serial(msg), None)
        if key is not None:
            replies[key] = msg


def wanted(unit: RuntimeUnit) -> tuple[str, ...]:
    """The properties worth a round trip for this unit: none for units systemd could not find or
    for devices (kernel state, never a file); ConditionResult only explains an inactive unit."""
    if unit.load_state == "not-found" or unit.unit.endswith(".device"):
        return ()
    return PROPERTIES if unit.active_state == "inactive" else PROPERTIES[:-1]


def query_units(conn: Connection, timeout: float = TIMEOUT) -> tuple[RuntimeUnit, ...]:
    """Every unit systemd has loaded, with the properties nixdrift compares."""
    deadline = time.monotonic() + timeout
    listed = _pipelined(conn, [("list", list_units_message())], deadline)["list"]
    if listed.header.message_type is MessageType.error:
        raise OSError(f"systemd refused ListUnits: {listed.body[:1]}")
    units = decode_list_units(listed.body)
    requests = [
        ((index, prop), property_message(path, prop))
        for index, (unit, path) in enumerate(units)
        for prop in wanted(unit)
    ]
    replies = _pipelined(conn, requests, deadline)
    out: list[RuntimeUnit] = []
    for index, (unit, _path) in enumerate(units):
        props: dict[str, Any] = {}
        for prop in wanted(unit):
            reply = replies.get((index, prop))
            # An error reply means the unit went away meanwhile: keep what ListUnits said.
            if reply is not None and reply.header.message_type is MessageType.method_return:
                props[prop] = decode_property(prop, reply.body)
        out.append(with_properties(unit, props))
    return tuple(sorted(out, key=lambda u: u.unit))


def read_units() -> tuple[RuntimeUnit, ...]:
    """Ask the running systemd over the system bus (raises OSError/TimeoutError when it cannot)."""
    from jeepney.io.blocking import open_dbus_connection

    conn = open_dbus_connection(bus="SYSTEM")
    try:
        return query_units(conn)
    finally:
        conn.close()


# -- the captured form ------------------------------------------------------------------------


def dump_units_json(units: Iterable[RuntimeUnit]) -> str:
    return json.dumps([u.to_json() for u in units], indent=1, sort_keys=True) + "\n"


def _unit_from_json(item: Any) -> RuntimeUnit:
    if not isinstance(item, dict):
        raise ValueError(f"expected an object, got {type(item).__name__}")
    name = item.get("unit")
    if not isinstance(name, str) or not name:
        raise ValueError("no unit name")

    def text(key: str) -> str:
        value = item.get(key)
        return value if isinstance(value, str) else ""

    drop_ins = item.get("drop_in_paths")
    condition = item.get("condition_result")
    return RuntimeUnit(
        unit=name,
        load_state=text("load_state"),
        active_state=text("active_state"),
        sub_state=text("sub_state"),
        unit_file_state=text("unit_file_state"),
        fragment_path=text("fragment_path"),
        drop_in_paths=tuple(p for p in drop_ins if isinstance(p, str)) if isinstance(drop_ins, list) else (),
        condition_result=condition if isinstance(condition, bool) else None,
    )


def parse_units_json(text: str) -> tuple[tuple[RuntimeUnit, ...], tuple[str, ...]]:
    """units.json (a list of unit objects) into records; a bad entry is a problem, the rest is kept."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # also absurdly deep nesting
        return (), (f"units.json: not JSON: {exc}",)
    if not isinstance(data, list):
        return (), (f"units.json: expected a list, got {type(data).__name__}",)
    units: list[RuntimeUnit] = []
    problems: list[str] = []
    for index, item in enumerate(data):
        try:
            units.append(_unit_from_json(item))
        except ValueError as exc:
            problems.append(f"units.json:{index}: {exc}")
    return tuple(units), tuple(problems)
