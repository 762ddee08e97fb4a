"""systemd over D-Bus without a bus: the messages sent, the replies decoded (through jeepney's own
wire format), the pipelined conversation against a fake systemd, and units.json."""

from __future__ import annotations

import itertools
import json
from collections import deque
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jeepney import DBusAddress, HeaderFields, Message, MessageType, new_error, new_method_return, new_signal

from nixdrift.capture import services, units_dbus
from nixdrift.capture.units_dbus import RuntimeUnit


def wire(msg: Message, serial: int = 1) -> Message:
    """A message as the peer would receive it: serialised and parsed back by jeepney."""
    return Message.from_buffer(msg.serialise(serial=serial))


def test_list_units_message_addresses_the_systemd_manager() -> None:
    msg = wire(units_dbus.list_units_message())
    fields = msg.header.fields
    assert fields[HeaderFields.destination] == "org.freedesktop.systemd1"
    assert fields[HeaderFields.path] == "/org/freedesktop/systemd1"
    assert fields[HeaderFields.interface] == "org.freedesktop.systemd1.Manager"
    assert fields[HeaderFields.member] == "ListUnits"
    assert msg.body == ()


def test_property_message_is_a_properties_get_on_the_unit_interface() -> None:
    msg = wire(units_dbus.property_message("/org/freedesktop/systemd1/unit/sshd_2eservice", "FragmentPath"))
    fields = msg.header.fields
    assert fields[HeaderFields.path] == "/org/freedesktop/systemd1/unit/sshd_2eservice"
    assert fields[HeaderFields.interface] == "org.freedesktop.DBus.Properties"
    assert fields[HeaderFields.member] == "Get"
    assert msg.body == ("org.freedesktop.systemd1.Unit", "FragmentPath")


def list_row(name: str, load: str = "loaded", active: str = "active", sub: str = "running") -> tuple[Any, ...]:
    path = "/org/freedesktop/systemd1/unit/" + "".join(c if c.isalnum() else f"_{ord(c):02x}" for c in name)
    return (name, "desc", load, active, sub, "", path, 0, "", "/")


def test_decode_list_units_reads_name_states_and_object_path() -> None:
    call = wire(units_dbus.list_units_message())
    reply = wire(new_method_return(call, "a(ssssssouso)", ([list_row("sshd.service")],)))
    [(unit, path)] = units_dbus.decode_list_units(reply.body)
    assert unit == RuntimeUnit("sshd.service", "loaded", "active", "running")
    assert path == "/org/freedesktop/systemd1/unit/sshd_2eservice"


@pytest.mark.parametrize(
    ("name", "signature", "value", "expected"),
    [
        ("UnitFileState", "s", "enabled-runtime", "enabled-runtime"),
        ("FragmentPath", "s", "", ""),
        (
            "DropInPaths",
            "as",
            ["/run/systemd/system.control/a.service.d/50-x.conf"],
            ("/run/systemd/system.control/a.service.d/50-x.conf",),
        ),
        ("ConditionResult", "b", False, False),
        ("FragmentPath", "u", 7, ""),  # a type we did not expect decodes to the empty value
        ("DropInPaths", "s", "x", ()),
    ],
)
def test_decode_property(name: str, signature: str, value: Any, expected: Any) -> None:
    call = wire(units_dbus.property_message("/org/freedesktop/systemd1/unit/a", name))
    reply = wire(new_method_return(call, "v", ((signature, value),)))
    assert units_dbus.decode_property(name, reply.body) == expected


class FakeSystemd:
    """Answers what query_units sends, the way systemd would, through jeepney's wire format."""

    def __init__(self, rows: list[tuple[Any, ...]], props: dict[str, dict[str, tuple[str, Any]]]) -> None:
        self.rows, self.props = rows, props
        self.outgoing_serial = itertools.count(1)
        self.inbox: deque[Message] = deque()
        self.in_flight = 0
        self.max_in_flight = 0
        self.sent: list[Message] = []
        # The bus greets a new connection with a signal that answers nothing.
        bus = DBusAddress("/org/freedesktop/DBus", "org.freedesktop.DBus", "org.freedesktop.DBus")
        self.inbox.append(wire(new_signal(bus, "NameAcquired", "s", (":1.42",))))

    def send(self, message: Message, serial: int | None = None) -> None:
        call = wire(message, serial or 1)
        self.sent.append(call)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        member = call.header.fields[HeaderFields.member]
        if member == "ListUnits":
            self.inbox.append(wire(new_method_return(call, "a(ssssssouso)", (self.rows,))))
            return
        path = call.header.fields[HeaderFields.path]
        unit = next((r[0] for r in self.rows if r[6] == path), "")  # "": the manager itself
        value = self.props.get(unit, {}).get(call.body[1])
        if value is None:
            self.inbox.append(wire(new_error(call, "org.freedesktop.DBus.Error.UnknownObject", "s", ("gone",))))
        else:
            self.inbox.append(wire(new_method_return(call, "v", (value,))))

    def receive(self, *, timeout: float | None = None) -> Message:
        if not self.inbox:
            raise TimeoutError("no reply")
        msg = self.inbox.popleft()
        if msg.header.message_type is not MessageType.signal:
            self.in_flight -= 1
        return msg


def full_props(fragment: str, state: str = "static") -> dict[str, tuple[str, Any]]:
    return {
        "UnitFileState": ("s", state),
        "FragmentPath": ("s", fragment),
        "DropInPaths": ("as", []),
        "ConditionResult": ("b", True),
    }


def test_query_units_pipelines_within_the_window_and_keeps_what_it_can() -> None:
    rows = [list_row(f"unit{i}.service") for i in range(100)]
    rows.append(list_row("missing.service", load="not-found", active="inactive", sub="dead"))
    rows.append(list_row("vanished.service"))
    props = {f"unit{i}.service": full_props(f"/etc/systemd/system/unit{i}.service") for i in range(100)}
    props["unit7.service"]["DropInPaths"] = ("as", ["/run/systemd/system.control/unit7.service.d/50-Nice.conf"])
    fake = FakeSystemd(rows, props)
    units = {u.unit: u for u in units_dbus.query_units(fake)}
    assert len(units) == 102
    assert units["unit7.service"].drop_in_paths == ("/run/systemd/system.control/unit7.service.d/50-Nice.conf",)
    assert units["unit3.service"].fragment_path == "/etc/systemd/system/unit3.service"
    assert units["unit3.service"].condition_result is None  # active: no need to ask why it would not start
    assert units["vanished.service"] == RuntimeUnit("vanished.service", "loaded", "active", "running")
    # No property requests for a unit systemd could not find; at most WINDOW requests unanswered.
    assert not any(m.header.fields[HeaderFields.path].endswith("missing_2eservice") for m in fake.sent[1:])
    # ListUnits, the manager's boot finish time, and per running service: no ConditionResult (inactive
    # units only), but since when it runs; who pulls it in only for what started after boot (none here)
    assert len(fake.sent) == 2 + 101 * (len(units_dbus.PROPERTIES) - 1 + 1)
    assert 1 < fake.max_in_flight <= units_dbus.WINDOW


def test_query_units_gives_up_when_systemd_stops_answering() -> None:
    class Silent(FakeSystemd):
        def send(self, message: Message, serial: int | None = None) -> None:
            self.sent.append(message)

    with pytest.raises(TimeoutError):
        units_dbus.query_units(Silent([], {}), timeout=5)


def test_units_json_round_trip() -> None:
    units = (
        RuntimeUnit("a.service", "loaded", "active", "running", "static", "/etc/systemd/system/a.service", ("/x",)),
        RuntimeUnit("b.service", "masked", "inactive", "dead", "masked-runtime", "", (), False),
    )
    parsed, problems = units_dbus.parse_units_json(units_dbus.dump_units_json(units))
    assert parsed == units and problems == ()


def test_units_json_tolerates_missing_and_mistyped_fields() -> None:
    text = json.dumps([{"unit": "a.service", "drop_in_paths": [1, "/ok.conf"], "condition_result": "yes"}, None, {}])
    parsed, problems = units_dbus.parse_units_json(text)
    assert parsed == (RuntimeUnit("a.service", "", "", "", drop_in_paths=("/ok.conf",)),)
    assert problems == ("units.json:1: expected an object, got NoneType", "units.json:2: no unit name")
    assert units_dbus.parse_units_json("{}")[1] == ("units.json: expected a list, got dict",)
    assert units_dbus.parse_units_json("[")[1][0].startswith("units.json: not JSON")


@given(st.text())
def test_parse_units_json_never_raises_on_text(text: str) -> None:
    units, problems = units_dbus.parse_units_json(text)
    assert all(isinstance(u, RuntimeUnit) for u in units) and all(isinstance(p, str) for p in problems)


@given(st.binary())
def test_parse_units_json_never_raises_on_bytes(data: bytes) -> None:
    units_dbus.parse_units_json(data.decode("utf-8", errors="surrogateescape"))


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(), lambda c: st.lists(c) | st.dictionaries(
    st.sampled_from(["unit", "load_state", "drop_in_paths", "condition_result", "x"]), c)))  # fmt: skip
def test_parse_units_json_never_raises_on_any_json(data: Any) -> None:
    units_dbus.parse_units_json(json.dumps(data))


def test_snapshot_extra_writes_nothing_without_a_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "BUS_SOCKET", str(tmp_path / "no-such-socket"))
    assert services.snapshot_extra(tmp_path / "out") == []
    assert not (tmp_path / "out").exists()


def test_snapshot_extra_writes_units_json_from_the_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bus").touch()
    monkeypatch.setattr(services, "BUS_SOCKET", str(tmp_path / "bus"))
    unit = RuntimeUnit("sshd.service", "loaded", "active", "running", "static", "/etc/systemd/system/sshd.service")
    monkeypatch.setattr(services, "read_units", lambda: (unit,))
    assert services.snapshot_extra(tmp_path / "out") == ["units.json"]
    written = (tmp_path / "out" / ".nixdrift" / "units.json").read_text()
    assert units_dbus.parse_units_json(written) == ((unit,), ())


def test_snapshot_extra_swallows_a_bus_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bus").touch()
    monkeypatch.setattr(services, "BUS_SOCKET", str(tmp_path / "bus"))

    def refuse() -> tuple[RuntimeUnit, ...]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(services, "read_units", refuse)
    assert services.snapshot_extra(tmp_path / "out") == []
    assert not (tmp_path / "out" / ".nixdrift" / "units.json").exists()
