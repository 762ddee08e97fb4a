"""systemd's runtime unit state: asked over D-Bus (jeepney), or read back from a snapshot's units.json.

The one function that touches the bus is `read_units()`; everything else builds messages, decodes
replies or parses JSON, so tests run without a bus (`query_units` takes any connection-like object).
Requests are pipelined: ListUnits once, then a window of property Gets in flight, so a few hundred
units cost a few hundred milliseconds at worst instead of one round trip each.

For a running unit that someone could have started by hand (a service, socket, timer, path or
target), systemd is also asked who pulls it in: the reverse dependencies (WantedBy, RequiredBy,
BoundBy, UpheldBy, OnFailureOf, OnSuccessOf), the trigger units (TriggeredBy: a socket, timer or
path), when it became active (ActiveEnterTimestampMonotonic, against the manager's
FinishTimestampMonotonic: during boot or after), and for a service its BusName (a D-Bus activated
service leaves no other trace of who started it). A units.json written before these were recorded
has none of them, and then nothing is concluded from their absence.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from jeepney import DBusAddress, DBusErrorResponse, HeaderFields, Message, MessageType, Properties, new_method_call

from nixdrift.live.services import (
    PULLED_BY,
    PULLED_BY_CORE,
    STARTABLE_SUFFIXES,
    RuntimeUnit,
)

BUS_NAME = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER_IFACE = "org.freedesktop.systemd1.Manager"
UNIT_IFACE = "org.freedesktop.systemd1.Unit"
SERVICE_IFACE = "org.freedesktop.systemd1.Service"
# The Unit properties read per loaded unit (load/active/sub state come with ListUnits).
PROPERTIES = ("UnitFileState", "FragmentPath", "DropInPaths", "ConditionResult")
ACTIVE_ENTER = "ActiveEnterTimestampMonotonic"
BUS_NAME_PROPERTY = "BusName"  # on the Service interface
BOOT_FINISHED = "FinishTimestampMonotonic"  # on the Manager: when the boot transaction completed
ORIGIN = (*PULLED_BY, ACTIVE_ENTER)
WINDOW = 64  # requests in flight at once: enough to hide latency, small enough for socket buffers
TIMEOUT = 30.0  # a busy host (or a TCG guest) answers a few hundred units slowly
# What talking to the bus may raise: socket errors and timeouts, authentication (a ValueError), a
# bad DBUS_SYSTEM_BUS_ADDRESS (KeyError) and error replies to Hello.
DBUS_ERRORS = (OSError, ValueError, KeyError, DBusErrorResponse)


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
    interface = SERVICE_IFACE if name == BUS_NAME_PROPERTY else UNIT_IFACE
    unit = DBusAddress(object_path, bus_name=BUS_NAME, interface=interface)
    return Properties(unit).get(name)


def boot_finished_message() -> Message:
    manager = DBusAddress(MANAGER_PATH, bus_name=BUS_NAME, interface=MANAGER_IFACE)
    return Properties(manager).get(BOOT_FINISHED)


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
    if name == "DropInPaths" or name in PULLED_BY:
        return tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()
    match name:
        case "ConditionResult":
            return bool(value) if isinstance(value, bool | int) else None
        case "ActiveEnterTimestampMonotonic" | "FinishTimestampMonotonic":
            return value if isinstance(value, int) and not isinstance(value, bool) else None
        case _:
            return str(value) if isinstance(value, str) else ""


def pulled_by_of(props: dict[str, Any]) -> tuple[tuple[str, str], ...] | None:
    """The (property, unit) pairs; None unless every core reverse dependency was answered."""
    if any(not isinstance(props.get(p), tuple) for p in PULLED_BY_CORE):
        return None
    return tuple((p, str(u)) for p in PULLED_BY for u in props.get(p) or ())


def after_boot_of(active_enter: int | None, boot_finished: int | None) -> bool | None:
    """Did the unit become active after the boot transaction finished? None when either time is
    unknown (0 means "not recorded on this boot": a boot still running has no finish time)."""
    if not active_enter or not boot_finished:
        return None
    return active_enter > boot_finished


def with_properties(unit: RuntimeUnit, props: dict[str, Any], boot_finished: int | None = None) -> RuntimeUnit:
    active_enter = props.get(ACTIVE_ENTER)
    bus_name = props.get(BUS_NAME_PROPERTY)
    return RuntimeUnit(
        unit=unit.unit,
        load_state=unit.load_state,
        active_state=unit.active_state,
        sub_state=unit.sub_state,
        unit_file_state=props.get("UnitFileState") or "",
        fragment_path=props.get("FragmentPath") or "",
        drop_in_paths=props.get("DropInPaths") or (),
        condition_result=props.get("ConditionResult"),
        pulled_by=pulled_by_of(props),
        active_enter_monotonic=active_enter,
        after_boot=after_boot_of(active_enter, boot_finished),
        bus_name=bus_name if isinstance(bus_name, str) else None,
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
    for devices (kernel state, never a file); ConditionResult only explains an inactive unit; when a
    unit someone could start became active, to tell whether that was after boot."""
    if unit.load_state == "not-found" or unit.unit.endswith(".device"):
        return ()
    if unit.active_state == "inactive":
        return PROPERTIES
    if unit.is_active and unit.unit.endswith(STARTABLE_SUFFIXES):
        return (*PROPERTIES[:-1], ACTIVE_ENTER)
    return PROPERTIES[:-1]


def origin_wanted(unit: RuntimeUnit, after_boot: bool | None) -> tuple[str, ...]:
    """Who pulls it in, asked only of a unit that became active after boot: during boot the boot
    transaction started it, so the answer would change nothing, and a slow bus (a TCG guest
    answers a few hundred requests a second) need not carry a dozen requests per running unit."""
    if not (after_boot and unit.is_active and unit.unit.endswith(STARTABLE_SUFFIXES)):
        return ()
    return (*PULLED_BY, *((BUS_NAME_PROPERTY,) if unit.unit.endswith(".service") else ()))


def _answers(replies: dict[Any, Message], index: int, props: Iterable[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for prop in props:
        reply = replies.get((index, prop))
        # An error reply means the unit went away meanwhile: keep what ListUnits said.
        if reply is not None and reply.header.message_type is MessageType.method_return:
            out[prop] = decode_property(prop, reply.body)
    return out


def query_units(conn: Connection, timeout: float = TIMEOUT) -> tuple[RuntimeUnit, ...]:
    """Every unit systemd has loaded, with the properties nixdrift compares."""
    deadline = time.monotonic() + timeout
    listed = _pipelined(conn, [("list", list_units_message())], deadline)["list"]
    if listed.header.message_type is MessageType.error:
        raise OSError(f"systemd refused ListUnits: {listed.body[:1]}")
    units = decode_list_units(listed.body)
    requests: list[tuple[Any, Message]] = [("boot", boot_finished_message())]
    requests += [
        ((index, prop), property_message(path, prop))
        for index, (unit, path) in enumerate(units)
        for prop in wanted(unit)
    ]
    replies = _pipelined(conn, requests, deadline)
    boot = replies.get("boot")
    boot_finished = (
        decode_property(BOOT_FINISHED, boot.body)
        if boot is not None and boot.header.message_type is MessageType.method_return
        else None
    )
    props = [_answers(replies, index, wanted(unit)) for index, (unit, _path) in enumerate(units)]
    origins = {
        index: origin_wanted(unit, after_boot_of(props[index].get(ACTIVE_ENTER), boot_finished))
        for index, (unit, _path) in enumerate(units)
    }
    second = _pipelined(
        conn,
        [
            ((index, prop), property_message(units[index][1], prop))
            for index, names in origins.items()
            for prop in names
        ],
        deadline,
    )
    out = [
        with_properties(unit, {**props[index], **_answers(second, index, origins[index])}, boot_finished)
        for index, (unit, _path) in enumerate(units)
    ]
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
    active_enter = item.get("active_enter_monotonic")
    after_boot = item.get("after_boot")
    bus_name = item.get("bus_name")
    return RuntimeUnit(
        unit=name,
        load_state=text("load_state"),
        active_state=text("active_state"),
        sub_state=text("sub_state"),
        unit_file_state=text("unit_file_state"),
        fragment_path=text("fragment_path"),
        drop_in_paths=tuple(p for p in drop_ins if isinstance(p, str)) if isinstance(drop_ins, list) else (),
        condition_result=condition if isinstance(condition, bool) else None,
        pulled_by=_pulled_by_from_json(item.get("pulled_by")),
        active_enter_monotonic=active_enter
        if isinstance(active_enter, int) and not isinstance(active_enter, bool)
        else None,
        after_boot=after_boot if isinstance(after_boot, bool) else None,
        bus_name=bus_name if isinstance(bus_name, str) else None,
    )


def _pulled_by_from_json(value: Any) -> tuple[tuple[str, str], ...] | None:
    """{"WantedBy": [...], ...} as pairs; None (cannot tell) when absent, mistyped, or lacking a core
    property: an old units.json, or a hand-edited one, must not make a unit look unwanted."""
    if not isinstance(value, dict) or any(not isinstance(value.get(p), list) for p in PULLED_BY_CORE):
        return None
    return tuple((p, u) for p in PULLED_BY for u in value.get(p) or () if isinstance(u, str))


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
