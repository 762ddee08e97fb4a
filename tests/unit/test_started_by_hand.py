"""A unit nothing declared wants, started by hand, is reported; one pulled in by a running unit is not
(issue 8, item 8).

The runtime state is what systemd answers over D-Bus, recorded in units.json as a snapshot holds it
(WantedBy, RequiredBy, BoundBy, TriggeredBy... as `pulled_by`; ActiveEnterTimestampMonotonic
against the manager's FinishTimestampMonotonic as `after_boot`; a service's BusName), and runs
through the real collector and comparator.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jeepney import HeaderFields, Message, new_method_return

from nixdrift.capture import units_dbus
from nixdrift.compare.services import Origin, origin
from nixdrift.models import Kind, Severity
from unit.test_services import SIMPLE, SOCKET, Host, nixos_host
from unit.test_units_dbus import FakeSystemd, list_row, wire

BOOT_FINISHED = 12_000_000  # µs after the kernel started: the boot transaction's end
AFTER_BOOT = 3_600_000_000


def pulled(**props: list[str]) -> dict[str, list[str]]:
    """A unit's reverse dependencies as systemd lists them (empty lists for the ones not given)."""
    return {p: props.get(p, []) for p in units_dbus.PULLED_BY}


def record(after_boot: bool = False, bus_name: str | None = "", **props: list[str]) -> dict[str, Any]:
    """The D-Bus properties units.json records for a running unit."""
    return {
        "pulled_by": pulled(**props),
        "active_enter_monotonic": AFTER_BOOT if after_boot else BOOT_FINISHED - 1000,
        "after_boot": after_boot,
        "bus_name": bus_name,
    }


def recorded_host(tmp: Path) -> Host:
    """nixos_host with every running unit's recorded origin, as a real capture holds it."""
    host = nixos_host(tmp)
    origins: dict[str, dict[str, Any]] = {
        "multi-user.target": record(),
        "sockets.target": record(RequiredBy=["multi-user.target"]),
        "timers.target": record(WantedBy=["multi-user.target"]),
        "getty.target": record(WantedBy=["multi-user.target"]),
        # restarted after boot (nixos-rebuild switch): still wanted by a running target
        "sshd.service": record(after_boot=True, WantedBy=["multi-user.target"]),
        "nix-daemon.socket": record(WantedBy=["sockets.target"]),
        "nix-daemon.service": record(after_boot=True, TriggeredBy=["nix-daemon.socket"]),
        "logrotate.timer": record(WantedBy=["timers.target"]),
        "firewall.service": record(WantedBy=["multi-user.target"]),
        "getty@tty1.service": record(WantedBy=["getty.target"]),
    }
    assert host.runtime is not None
    for item in host.runtime:
        item.update(origins.get(item["unit"], {}))
    return host


def runtime_of(host: Host, unit: str) -> dict[str, Any]:
    assert host.runtime is not None
    return next(u for u in host.runtime if u["unit"] == unit)


def test_a_host_with_full_origins_has_no_findings(tmp_path: Path) -> None:
    host = recorded_host(tmp_path)
    assert host.findings() == {}


def test_a_declared_unit_without_wanted_by_started_by_hand_is_high(tmp_path: Path) -> None:
    """`systemctl start nginx` where the flake declares nginx but nothing wants it."""
    host = recorded_host(tmp_path)
    host.declare("nginx.service", wanted_by=(), text=SIMPLE)
    host.unit("nginx.service", **record(after_boot=True))
    f = host.findings()["services/nginx.service/running"]
    assert f.severity is Severity.HIGH and f.kind is Kind.CHANGED
    assert "started by hand" in f.message and "declared without wantedBy" in f.message
    assert f.evidence["pulled_by"] == "none"
    assert f.fix.command == "systemctl stop nginx.service"


def test_a_static_closure_unit_started_by_hand_is_reported(tmp_path: Path) -> None:
    host = recorded_host(tmp_path)
    host.ship("debug-shell.service", SIMPLE)
    host.unit("debug-shell.service", **record(after_boot=True))
    f = host.findings()["services/debug-shell.service/running"]
    assert f.severity is Severity.HIGH and "a static unit of the closure" in f.message


def test_a_service_whose_socket_is_stopped_was_started_by_hand(tmp_path: Path) -> None:
    host = recorded_host(tmp_path)
    runtime_of(host, "nix-daemon.socket").update(active_state="inactive", sub_state="dead")
    f = host.findings()["services/nix-daemon.service/running"]
    assert f.evidence["pulled_by"] == "nix-daemon.socket (inactive)"


@pytest.mark.parametrize(
    ("puller", "props"),
    [
        ("multi-user.target", {"WantedBy": ["multi-user.target"]}),  # a declared target
        ("nginx.socket", {"TriggeredBy": ["nginx.socket"]}),  # socket activation
        ("nginx-rotate.timer", {"TriggeredBy": ["nginx-rotate.timer"]}),  # a timer
        ("app.service", {"RequiredBy": ["app.service"]}),  # a running service requires it
        ("app.service", {"BoundBy": ["app.service"]}),
        ("app.service", {"OnFailureOf": ["app.service"]}),  # v249+: OnFailure= of a running unit
    ],
)
def test_a_unit_pulled_in_by_a_running_unit_is_not_reported(
    tmp_path: Path, puller: str, props: dict[str, list[str]]
) -> None:
    host = recorded_host(tmp_path)
    host.declare("nginx.service", wanted_by=(), text=SIMPLE)
    host.unit("nginx.service", **record(after_boot=True, **props))
    if puller != "multi-user.target":
        host.declare(puller, wanted_by=("multi-user.target",), text=SOCKET if puller.endswith(".socket") else SIMPLE)
        host.unit(puller, **record(WantedBy=["multi-user.target"]))
    assert "services/nginx.service/running" not in host.findings()
    # the same unit, once its puller stops, has nothing left that pulls it in
    runtime_of(host, puller).update(active_state="inactive", sub_state="dead")
    assert "services/nginx.service/running" in host.findings()


def test_declared_wanted_by_a_running_target_is_never_started_by_hand(tmp_path: Path) -> None:
    """Even when systemd's reverse dependencies came back empty, the declaration says who wants it."""
    host = recorded_host(tmp_path)
    host.declare("nginx.service", wanted_by=("multi-user.target",), text=SIMPLE)
    host.unit("nginx.service", **record(after_boot=True))
    assert "services/nginx.service/running" not in host.findings()


@pytest.mark.parametrize(
    "missing",
    [
        {"pulled_by": None, "active_enter_monotonic": None, "after_boot": None, "bus_name": None},  # old units.json
        {"pulled_by": None},
        {"pulled_by": {"WantedBy": []}},  # the core reverse dependencies not all recorded
        {"after_boot": None},  # no boot finish time (still booting, or not recorded)
        {"bus_name": None},  # a service whose BusName was not answered
    ],
)
def test_missing_properties_accuse_nobody(tmp_path: Path, missing: dict[str, Any]) -> None:
    host = recorded_host(tmp_path)
    host.declare("nginx.service", wanted_by=(), text=SIMPLE)
    host.unit("nginx.service", **(record(after_boot=True) | missing))
    assert "services/nginx.service/running" not in host.findings()


def test_an_old_units_json_without_the_fields_loads_and_cannot_tell(tmp_path: Path) -> None:
    host = nixos_host(tmp_path)  # records written before pulled_by existed
    host.declare("nginx.service", wanted_by=(), text=SIMPLE)
    host.unit("nginx.service")
    section = host.capture()
    assert section.data is not None and section.problems == ()
    nginx = section.data.runtime_by_name()["nginx.service"]
    assert nginx.pulled_by is None and nginx.after_boot is None
    assert origin(nginx, section.data.runtime_by_name()) is Origin.UNKNOWN
    assert "services/nginx.service/running" not in host.findings()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"after_boot": False}, Origin.BOOT),  # part of the boot transaction
        ({"bus_name": "org.freedesktop.hostname1"}, Origin.BUS),  # D-Bus activation leaves no trace
    ],
)
def test_boot_and_bus_activation_are_not_by_hand(tmp_path: Path, extra: dict[str, Any], expected: Origin) -> None:
    host = recorded_host(tmp_path)
    host.declare("nginx.service", wanted_by=(), text=SIMPLE)
    host.unit("nginx.service", **(record(after_boot=True) | extra))
    section = host.capture()
    assert section.data is not None
    assert origin(section.data.runtime_by_name()["nginx.service"], section.data.runtime_by_name()) is expected
    assert "services/nginx.service/running" not in host.findings()


def test_a_getty_logind_spawns_on_a_vt_switch_is_not_reported(tmp_path: Path) -> None:
    host = recorded_host(tmp_path)
    host.unit("autovt@tty2.service", fragment="/etc/systemd/system/getty@.service", **record(after_boot=True))
    assert host.findings() == {}


# -- the D-Bus side: what is asked, and how it lands in units.json ----------------------------


class FakeWithManager(FakeSystemd):
    """FakeSystemd that also answers the manager's FinishTimestampMonotonic."""

    def send(self, message: Message, serial: int | None = None) -> None:
        call = wire(message, serial or 1)
        if call.header.fields[HeaderFields.path] == units_dbus.MANAGER_PATH and call.body[1:] == (
            units_dbus.BOOT_FINISHED,
        ):
            self.sent.append(call)
            self.in_flight += 1
            self.inbox.append(wire(new_method_return(call, "v", (("t", BOOT_FINISHED),))))
            return
        super().send(message, serial)


def dbus_props(**extra: tuple[str, Any]) -> dict[str, tuple[str, Any]]:
    base = {"UnitFileState": ("s", "static"), "FragmentPath": ("s", "/etc/systemd/system/x"), "DropInPaths": ("as", [])}
    base |= {p: ("as", []) for p in units_dbus.PULLED_BY}
    return base | extra


def test_query_units_records_who_pulls_a_running_unit_in() -> None:
    rows = [list_row("nginx.service"), list_row("sshd.service"), list_row("nix-daemon.socket", sub="listening")]
    rows.append(list_row("backup.service", active="inactive", sub="dead"))
    props = {
        "nginx.service": dbus_props(ActiveEnterTimestampMonotonic=("t", AFTER_BOOT), BusName=("s", "")),
        "sshd.service": dbus_props(
            WantedBy=("as", ["multi-user.target"]),
            ActiveEnterTimestampMonotonic=("t", BOOT_FINISHED - 5),
            BusName=("s", ""),
        ),
        "nix-daemon.socket": dbus_props(WantedBy=("as", ["sockets.target"]), ActiveEnterTimestampMonotonic=("t", 9)),
        "backup.service": dbus_props(ConditionResult=("b", True)),
    }
    fake = FakeWithManager(rows, props)
    units = {u.unit: u for u in units_dbus.query_units(fake)}
    nginx, sshd, socket = units["nginx.service"], units["sshd.service"], units["nix-daemon.socket"]
    assert nginx.pulled_by == () and nginx.after_boot is True and nginx.bus_name == ""
    # what became active during boot is not asked who pulls it in: the boot transaction did
    assert sshd.pulled_by is None and sshd.after_boot is False
    assert socket.pulled_by is None and socket.bus_name is None
    # an inactive unit is not asked who pulls it in
    assert units["backup.service"].pulled_by is None
    asked = {(m.header.fields[HeaderFields.path].rsplit("/", 1)[-1], m.body[-1]) for m in fake.sent[1:]}
    assert ("backup_2eservice", "WantedBy") not in asked and ("nginx_2eservice", "TriggeredBy") in asked
    assert ("sshd_2eservice", "WantedBy") not in asked and ("nix_2ddaemon_2esocket", "WantedBy") not in asked
    # and units.json keeps all of it
    parsed, problems = units_dbus.parse_units_json(units_dbus.dump_units_json(units.values()))
    assert problems == () and {u.unit: u for u in parsed} == units
    assert json.loads(units_dbus.dump_units_json([nginx]))[0]["pulled_by"]["TriggeredBy"] == []


def test_a_systemd_without_the_newer_reverse_dependencies_still_tells() -> None:
    """UpheldBy, OnFailureOf and OnSuccessOf came with systemd 249: older ones answer an error."""
    props = dbus_props(ActiveEnterTimestampMonotonic=("t", AFTER_BOOT), BusName=("s", ""))
    for newer in ("UpheldBy", "OnFailureOf", "OnSuccessOf"):
        del props[newer]
    [nginx] = units_dbus.query_units(FakeWithManager([list_row("nginx.service")], {"nginx.service": props}))
    assert nginx.pulled_by == () and nginx.after_boot is True


def test_without_the_boot_finish_time_nothing_is_after_boot() -> None:
    props = dbus_props(ActiveEnterTimestampMonotonic=("t", AFTER_BOOT), BusName=("s", ""))
    [nginx] = units_dbus.query_units(FakeSystemd([list_row("nginx.service")], {"nginx.service": props}))
    assert nginx.after_boot is None
