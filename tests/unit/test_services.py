"""services and service-config on hand-built NixOS-like hosts: a closure whose unit directory links
into other store paths, /etc/systemd/system -> /etc/static/..., writable /run directories and a
captured units.json."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from nixdrift import pipeline
from nixdrift.capture import services
from nixdrift.compare import service_config as c_service_config
from nixdrift.compare import services as c_services
from nixdrift.declared.model import DeclaredState
from nixdrift.models import Category, Finding, FlakeInfo, Kind, Section
from nixdrift.rootfs import Root

TOPLEVEL = "/nix/store/" + "a" * 32 + "-nixos-system-test"
ETC = "/nix/store/" + "b" * 32 + "-etc"
UNITS = "/nix/store/" + "c" * 32 + "-system-units"

SSHD = "[Unit]\nDescription=SSH\n[Service]\nExecStart=/nix/store/x-openssh/bin/sshd -D\n"
SOCKET = "[Socket]\nListenStream=/nix/var/nix/daemon-socket/socket\n"
SIMPLE = "[Service]\nExecStart=/bin/true\n"
ONESHOT = "[Service]\nType=oneshot\nExecStart=/bin/true\n"
REMAIN = "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n"
CONDITIONAL = "[Unit]\nConditionPathExists=/etc/never\n[Service]\nExecStart=/bin/true\n"
TARGET = "[Unit]\nDescription=target\n"


class Host:
    """A NixOS-like host tree; `ship` and `want` build the closure, the rest builds live state."""

    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "root"
        self.units: list[dict[str, Any]] = []
        self.runtime: list[dict[str, Any]] | None = []
        self.link(f"{TOPLEVEL}/etc", f"{ETC}/etc")
        self.link(f"{ETC}/etc/systemd/system", UNITS)
        self.link("/etc/static", f"{ETC}/etc")
        self.link("/etc/systemd/system", "/etc/static/systemd/system")
        self.mkdir("/run/systemd/system")

    # -- files ------------------------------------------------------------------------------
    def mkdir(self, host_path: str) -> None:
        (self.root / host_path.lstrip("/")).mkdir(parents=True, exist_ok=True)

    def link(self, host_path: str, target: str) -> None:
        path = self.root / host_path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)

    def file(self, host_path: str, text: str) -> None:
        path = self.root / host_path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    # -- the closure ------------------------------------------------------------------------
    def ship(self, unit: str, text: str = SIMPLE) -> Host:
        store = f"/nix/store/{hashlib.sha256(unit.encode()).hexdigest()[:32]}-unit-{unit}"
        self.file(f"{store}/{unit}", text)
        self.link(f"{UNITS}/{unit}", f"{store}/{unit}")
        return self

    def ship_alias(self, alias: str, unit: str) -> Host:
        self.link(f"{UNITS}/{alias}", unit)
        return self

    def ship_mask(self, unit: str) -> Host:
        self.link(f"{UNITS}/{unit}", "/dev/null")
        return self

    def ship_dropin(self, unit: str, name: str, text: str) -> Host:
        self.file(f"{UNITS}/{unit}.d/{name}", text)
        return self

    def want(self, target: str, unit: str, via: str = "wants") -> Host:
        source = unit if "@" not in unit else unit.split("@")[0] + "@" + unit.rsplit(".", 1)[-1]
        self.link(f"{UNITS}/{target}.{via}/{unit}", f"../{source}")
        return self

    def declare(self, unit: str, wanted_by: tuple[str, ...] = (), text: str = SIMPLE) -> Host:
        self.ship(unit, text)
        for target in wanted_by:
            self.want(target, unit)
        self.units.append({"unit": unit, "enable": True, "wantedBy": list(wanted_by)})
        return self

    # -- runtime ----------------------------------------------------------------------------
    def unit(self, unit: str, active: str = "active", sub: str = "running", **props: Any) -> Host:
        assert self.runtime is not None
        fragment = props.pop("fragment", f"/etc/systemd/system/{unit}")
        record: dict[str, Any] = {"unit": unit, "load_state": "loaded", "active_state": active, "sub_state": sub}
        record |= {"unit_file_state": "static", "fragment_path": fragment, "drop_in_paths": []}
        self.runtime.append(record | props)
        return self

    def declared(self) -> DeclaredState:
        data = {"toplevel": TOPLEVEL, "units": self.units}
        return DeclaredState.from_json("test", FlakeInfo("path:/flake"), data)

    def capture(self) -> Section[services.ServicesLive]:
        if self.runtime is not None:
            self.file("/.nixdrift/units.json", json.dumps(self.runtime))
        return services.capture(Root.of(self.root), self.declared())

    def findings(self) -> dict[str, Finding]:
        section = self.capture()
        declared = self.declared()
        found = c_services.compare(declared, section) + c_service_config.compare(declared, section)
        return {f.id: f for f in found}


def nixos_host(tmp: Path) -> Host:
    """A small host exactly as declared, with everything systemd makes on its own at run time."""
    host = Host(tmp)
    for target in ("multi-user.target", "sockets.target", "timers.target", "getty.target", "sleep.target"):
        host.ship(target, TARGET)
    host.declare("sshd.service", ("multi-user.target",), SSHD)
    host.ship_dropin("sshd.service", "overrides.conf", "[Service]\nRestart=always\n")
    host.declare("nix-daemon.socket", ("sockets.target",), SOCKET).ship("nix-daemon.service")
    host.declare("logrotate.timer", ("timers.target",), "[Timer]\nOnCalendar=daily\n")
    host.declare("logrotate.service", (), ONESHOT)
    host.declare("firewall.service", ("multi-user.target",), REMAIN)
    host.declare("setup-once.service", ("multi-user.target",), ONESHOT)
    host.declare("maybe.service", ("multi-user.target",), CONDITIONAL)
    host.declare("on-sleep.service", ("sleep.target",), SIMPLE)
    host.ship("getty@.service").ship_alias("autovt@.service", "getty@.service").want(
        "getty.target", "autovt@tty1.service"
    )
    host.ship("user@.service").ship("user-runtime-dir@.service").ship("systemd-fsck@.service")
    host.ship("systemd-timedated.service").ship_alias(
        "dbus-org.freedesktop.timedate1.service", "systemd-timedated.service"
    )
    host.ship_mask("systemd-networkd-wait-online.service")
    for target in ("multi-user.target", "sockets.target", "timers.target", "getty.target"):
        host.unit(target, sub="active")
    host.unit("sleep.target", active="inactive", sub="dead")
    host.unit("sshd.service", drop_in_paths=["/etc/systemd/system/sshd.service.d/overrides.conf"])
    host.unit("nix-daemon.socket", sub="listening").unit("nix-daemon.service")
    host.unit("logrotate.timer", sub="waiting").unit("logrotate.service", active="inactive", sub="dead")
    host.unit("firewall.service", sub="exited")
    host.unit("setup-once.service", active="inactive", sub="dead")
    host.unit("maybe.service", active="inactive", sub="dead", condition_result=False)
    host.unit("on-sleep.service", active="inactive", sub="dead")
    host.unit("systemd-networkd-wait-online.service", active="inactive", sub="dead", load_state="masked",
              unit_file_state="masked", fragment="")  # fmt: skip
    host.unit("getty@tty1.service", fragment="/etc/systemd/system/getty@.service")
    host.unit("user@1000.service", fragment="/etc/systemd/system/user@.service")
    host.unit("user-runtime-dir@1000.service", sub="exited", fragment="/etc/systemd/system/user-runtime-dir@.service")
    host.unit("systemd-fsck@dev-disk-by\\x2dlabel-boot.service", sub="exited",
              fragment="/etc/systemd/system/systemd-fsck@.service")  # fmt: skip
    host.unit("systemd-cryptsetup@root.service", sub="exited",
              fragment="/run/systemd/generator/systemd-cryptsetup@root.service")  # fmt: skip
    for made in ("init.scope", "-.slice", "system.slice", "system-getty.slice", "user-1000.slice", "boot.mount",
                 "dev-sda1.device", "sys-kernel-debug.mount", "dev-zram0.swap"):  # fmt: skip
        host.unit(made, sub="active", fragment="")
    host.unit("session-1.scope", sub="running", fragment="/run/systemd/transient/session-1.scope",
              unit_file_state="transient")  # fmt: skip
    host.file("/run/systemd/transient/session-1.scope", "[Scope]\n")
    host.file("/run/systemd/transient/user-1000.slice", "[Slice]\n")
    # runc sets cgroup properties on the container scopes it creates: not drift.
    host.file("/run/systemd/system.control/docker-0123.scope.d/50-MemoryMax.conf", "[Scope]\nMemoryMax=1G\n")
    return host


def test_a_host_exactly_as_declared_has_no_findings(tmp_path: Path) -> None:
    host = nixos_host(tmp_path)
    section = host.capture()
    assert section.unavailable is None and section.problems == ()
    assert host.findings() == {}


def test_pipeline_serves_both_categories_from_one_capture(tmp_path: Path) -> None:
    host = nixos_host(tmp_path)
    host.file("/run/systemd/system.control/sshd.service.d/50-CPUQuota.conf", "[Service]\nCPUQuota=5%\n")
    host.link(
        "/run/systemd/system/multi-user.target.wants/nix-daemon.service", "/etc/systemd/system/nix-daemon.service"
    )
    host.file("/.nixdrift/units.json", json.dumps(host.runtime))
    root, declared = Root.of(host.root), host.declared()
    sections = pipeline.capture(root, declared, [Category.SERVICES, Category.SERVICE_CONFIG])
    found = pipeline.compare(declared, sections)
    assert {(f.category, f.id) for f in found} == {
        (Category.SERVICES, "services/nix-daemon.service/enabled"),
        (Category.SERVICE_CONFIG, "service-config/sshd.service/dropin/50-CPUQuota.conf"),
    }


def test_runtime_enable_is_reported_with_a_runtime_disable(tmp_path: Path) -> None:
    host = nixos_host(tmp_path)
    host.link(
        "/run/systemd/system/multi-user.target.wants/nix-daemon.service", "/etc/systemd/system/nix-daemon.service"
    )
    host.link("/run/systemd/system/getty.target.wants/getty@tty5.service", "/etc/systemd/system/getty@.service")
    found = host.findings()
    assert set(found) == {"services/nix-daemon.service/enabled", "services/getty@tty5.service/enabled"}
    f = found["services/nix-daemon.service/enabled"]
    assert f.kind is Kind.UNMANAGED and f.fix.safe
    assert f.fix.command == "systemctl disable --runtime nix-daemon.service"
    assert f.fix.nix == 'systemd.services.nix-daemon.wantedBy = [ "multi-user.target" ];'
    assert f.evidence["path"] == "/run/systemd/system/multi-user.target.wants/nix-daemon.service"


def test_enabled_runtime_seen_only_by_systemd_is_reported(tmp_path: Path) -> None:
    host = nixos_host(tmp_path)
    host.unit("cups.service", unit_file_state="enabled-runtime", fragment="/run/systemd/system/cups.service")
    assert "services/cups.service/enabled" in host.findings()


def test_runtime_mask_of_a_declared_unit(tmp_path: Path) -> None:
    host = nixos_host(tmp_path)
    host.link("/run/systemd/system/sshd.service", "/dev/null")
    assert host.runtime is not None
    host.runtime = [u for u in host.runtime if u["unit"] != "sshd.service"]
    host.unit("sshd.service", active="inactive", sub="dead", load_state="masked", unit_file_state="masked-runtime",
              fragment="")  # fmt: skip
    found = host.findings()
    assert set(found) == {"services/sshd.service/masked"}  # not also "stopped": the mask says why
    f = found["services/sshd.service/masked"]
    assert f.kind is Kind.CHANGED
    assert f.fix.command == "systemctl unmask --runtime sshd.service" and not f.fix.safe
    assert f.fix.nix == 'systemd.units."sshd.service".enable = false;'


def test_transient_unit_is_reported_once(tmp_path: Path) -> None:
    host = nixos_host(tmp_path)
    host.file("/run/systemd/transient/run-u42.service", "[Service]\nExecStart=/bin/sleep 1000\n")
    host.unit("run-u42.service", fragment="/run/systemd/transient/run-u42.service", unit_file_state="transient")
    found = host.findings()
    assert set(found) == {"services/run-u42.service/transient"}
    assert found["services/run-u42.service/transient"].fix.command == "systemctl stop run-u42.service"


def test_unit_file_outside_the_closure_that_runs(tmp_path: Path) -> None:
    host = nixos_host(tmp_path)
    host.file("/run/systemd/system/miner.service", "[Service]\nExecStart=/tmp/miner\n")
    host.unit("miner.service", fragment="/run/systemd/system/miner.service")
    found = host.findings()
    assert set(found) == {"services/miner.service/file", "services/miner.service/running"}
    f = found["services/miner.service/file"]
    assert f.fix.command == "rm -- /run/systemd/system/miner.service && systemctl daemon-reload"
    assert found["services/miner.service/running"].fix.command == "systemctl stop miner.service"


def test_unit_started_by_hand_that_no_file_explains(tmp_path: Path) -> None:
    host = nixos_host(tmp_path)
    host.unit("leftover.service", load_state="not-found", fragment="")
    host.unit("gone.service", active="inactive", sub="dead", load_state="not-found", fragment="")
    found = host.findings()
    assert set(found) == {"services/leftover.service/running"}


def test_declared_wanted_unit_that_is_inactive_or_failed(tmp_path: Path) -> None:
    host = nixos_host(tmp_path)
    host.declare("nginx.service", ("multi-user.target",), "[Service]\nType=notify\nExecStart=/bin/nginx\n")
    host.declare("broken.service", ("multi-user.target",), ONESHOT)
    host.unit("nginx.service", active="inactive", sub="dead")
    host.unit("broken.service", active="failed", sub="failed")
    host.declare("suspend-hook.service", ("sleep.target",))  # sleep.target is inactive: not wanted now
    host.unit("suspend-hook.service", active="inactive", sub="dead")
    host.declare("failed-hook.service", ("sleep.target",))  # but a failure stays a failure
    host.unit("failed-hook.service", active="failed", sub="failed")
    found = host.findings()
    assert set(found) == {
        "services/nginx.service/stopped",
        "services/broken.service/stopped",
        "services/failed-hook.service/stopped",
    }
    nginx, broken = found["services/nginx.service/stopped"], found["services/broken.service/stopped"]
    assert nginx.kind is Kind.MISSING and nginx.fix.command == "systemctl start nginx.service" and nginx.fix.safe
    assert broken.actual.startswith("failed") and broken.fix.command == "systemctl restart broken.service"
    assert not broken.fix.safe


def test_conditional_unit_without_condition_result_is_not_called_stopped(tmp_path: Path) -> None:
    host = nixos_host(tmp_path)
    host.declare("cond.service", ("multi-user.target",), CONDITIONAL)
    host.unit("cond.service", active="inactive", sub="dead")  # an old units.json without condition_result
    assert host.findings() == {}


def test_changed_fragment_names_the_differing_lines(tmp_path: Path) -> None:
    host = nixos_host(tmp_path)
    host.file("/run/systemd/system/sshd.service", "[Service]\nExecStart=/tmp/sshd -D -p 2222\n")
    host.file("/run/systemd/system/nix-daemon.socket", "[Socket]\nListenStream=0.0.0.0:9999\n")
    assert host.runtime is not None
    host.runtime = [u for u in host.runtime if u["unit"] != "sshd.service"]
    host.unit("sshd.service", fragment="/run/systemd/system/sshd.service")
    found = host.findings()
    assert set(found) == {"service-config/sshd.service/fragment", "service-config/nix-daemon.socket/fragment"}
    sshd = found["service-config/sshd.service/fragment"]
    assert sshd.kind is Kind.CHANGED and sshd.category is Category.SERVICE_CONFIG
    # command lines may hold secrets: only their digests are reported
    assert "ExecStart differs: sha256 " in sshd.message
    assert "/tmp/sshd" not in sshd.message and "2222" not in sshd.to_json().__repr__()
    assert "Listen: ListenStream=/nix/var/nix/daemon-socket/socket -> ListenStream=0.0.0.0:9999" in (
        found["service-config/nix-daemon.socket/fragment"].message
    )


def test_fragment_outside_the_closure_known_only_to_systemd(tmp_path: Path) -> None:
    host = nixos_host(tmp_path)
    assert host.runtime is not None
    host.runtime = [u for u in host.runtime if u["unit"] != "sshd.service"]
    host.unit("sshd.service", fragment="/usr/local/lib/systemd/system/sshd.service")
    found = host.findings()
    assert set(found) == {"service-config/sshd.service/fragment"}
    assert (
        found["service-config/sshd.service/fragment"].evidence["path"] == "/usr/local/lib/systemd/system/sshd.service"
    )


def test_dropin_outside_the_closure_seen_by_both_views_is_one_finding(tmp_path: Path) -> None:
    host = nixos_host(tmp_path)
    path = "/run/systemd/system.control/sshd.service.d/50-CPUQuota.conf"
    host.file(path, "[Service]\nCPUQuota=5%\n")
    assert host.runtime is not None
    host.runtime = [u for u in host.runtime if u["unit"] != "sshd.service"]
    host.unit("sshd.service", drop_in_paths=["/etc/systemd/system/sshd.service.d/overrides.conf", path])
    host.unit("nix-daemon.service", drop_in_paths=["/etc/systemd/system.control/nix-daemon.service.d/50-Nice.conf"])
    found = host.findings()
    assert set(found) == {
        "service-config/sshd.service/dropin/50-CPUQuota.conf",
        "service-config/nix-daemon.service/dropin/50-Nice.conf",
    }
    f = found["service-config/sshd.service/dropin/50-CPUQuota.conf"]
    assert f.kind is Kind.UNMANAGED and f.evidence["path"] == path
    assert f.fix.command == f"rm -- {path} && systemctl daemon-reload"


def test_unmanaged_etc_directory_holding_the_closure_is_clean_until_edited(tmp_path: Path) -> None:
    host = nixos_host(tmp_path)
    etc = host.root / "etc/systemd/system"
    etc.unlink()
    # A real directory holding a copy of the closure's: the same links, the same drop-ins.
    shutil.copytree(host.root / UNITS.lstrip("/"), etc, symlinks=True)
    assert host.findings() == {}
    (etc / "nix-daemon.service").unlink()
    (etc / "nix-daemon.service").write_text("[Service]\nExecStart=/bin/evil\n")
    host.link(
        "/etc/systemd/system/multi-user.target.wants/nix-daemon.service", "/etc/systemd/system/nix-daemon.service"
    )
    found = host.findings()
    assert set(found) == {"service-config/nix-daemon.service/fragment", "services/nix-daemon.service/enabled"}
    enabled = found["services/nix-daemon.service/enabled"]
    assert enabled.fix.command == "systemctl disable nix-daemon.service" and not enabled.fix.safe


def test_without_runtime_state_the_section_is_unavailable(tmp_path: Path) -> None:
    host = nixos_host(tmp_path)
    host.runtime = None
    host.link("/run/systemd/system/sshd.service", "/dev/null")
    section = host.capture()
    assert section.data is None
    assert section.unavailable == "systemd's unit state cannot be read: the snapshot has no .nixdrift/units.json"
    assert host.findings() == {}


def test_broken_units_json_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    host = nixos_host(tmp_path)
    host.runtime = None
    host.file("/.nixdrift/units.json", '[{"unit": "sshd.service", "active_state": "active"}, 7, {"x": 1}]')
    section = host.capture()
    assert section.data is not None and [u.unit for u in section.data.runtime or ()] == ["sshd.service"]
    assert section.problems == ("units.json:1: expected an object, got int", "units.json:2: no unit name")


def test_closure_not_built_here_makes_the_section_unavailable(tmp_path: Path) -> None:
    section = services.capture(Root.of(tmp_path), DeclaredState.from_json("t", FlakeInfo("x"), {"toplevel": TOPLEVEL}))
    assert section.data is None and section.unavailable is not None and "not available" in section.unavailable
    assert c_services.compare(DeclaredState.from_json("t", FlakeInfo("x"), {}), section) == ()


def test_live_bus_failure_is_a_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    socket_path = tmp_path / "system_bus_socket"
    socket_path.touch()
    monkeypatch.setattr(services, "BUS_SOCKET", str(socket_path))

    def refuse() -> tuple[Any, ...]:
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(services, "read_units", refuse)
    units, problems = services.runtime_units(Root())
    assert units is None
    assert problems[0].startswith(
        "systemd's unit state cannot be read: systemd over D-Bus failed: ConnectionRefusedError"
    )


def test_odd_bytes_in_unit_names_give_printable_ids(tmp_path: Path) -> None:
    host = nixos_host(tmp_path)
    name = os.fsdecode(b"evil\xff.service")
    (host.root / "run/systemd/system" / name).write_text("[Service]\nExecStart=/bin/true\n")
    found = host.findings()
    assert set(found) == {"services/evil\\xff.service/file"}
    assert found["services/evil\\xff.service/file"].evidence["path"] == "/run/systemd/system/evil\\xff.service"


def test_closure_unit_enabled_by_a_generator_is_the_systems_own_doing(tmp_path: Path) -> None:
    host = nixos_host(tmp_path)
    host.unit("sshd.service", unit_file_state="enabled-runtime", fragment="/etc/systemd/system/sshd.service")
    assert "services/sshd.service/enabled" not in host.findings()
