"""Exposure: listening sockets and their owning units against what the closure and flake declare."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from nixdrift.capture import exposure as capture_exposure
from nixdrift.capture.exposure import parse_listening, unit_from_cgroup
from nixdrift.compare import exposure as compare_exposure
from nixdrift.declared.model import DeclaredState
from nixdrift.models import Finding, FlakeInfo, Kind, Severity
from nixdrift.rootfs import Root

TOPLEVEL = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-web-24.11"
CLOSURE_UNITS = {
    "nginx.service": "[Service]\nExecStart=/nix/store/x-nginx/bin/nginx\n",
    "sshd.socket": "[Socket]\nListenStream=22\nAccept=yes\n",
    "sshd@.service": "[Service]\nExecStart=-/nix/store/x-openssh/bin/sshd -i\n",
    "systemd-resolved.service": "[Service]\n",
    "avahi-daemon.socket": "[Socket]\nListenStream=/run/avahi-daemon/socket\n",
}

# the listeners of a host exactly as declared
DECLARED_LISTENERS: list[dict[str, Any]] = [
    {"proto": "tcp", "address": "0.0.0.0", "port": 80, "pid": 812, "process": "nginx", "unit": "nginx.service"},
    {"proto": "tcp", "address": "::", "port": 80, "pid": 812, "process": "nginx", "unit": "nginx.service"},
    {"proto": "tcp", "address": "::", "port": 22, "pid": 1, "process": "systemd", "unit": "init.scope"},
    {"proto": "udp", "address": "127.0.0.53", "port": 53, "pid": 640, "process": "systemd-resolve",
     "unit": "systemd-resolved.service"},
    {"proto": "udp", "address": "0.0.0.0", "port": 51820, "pid": None, "process": "", "unit": ""},
]  # fmt: skip


def declared(**fw: Any) -> DeclaredState:
    raw = {"toplevel": TOPLEVEL, "firewall": {"allowedUDPPorts": [51820], **fw}}
    return DeclaredState.from_json("web", FlakeInfo(reference="/etc/nixos"), raw)


def host(root: Path, listeners: list[dict[str, Any]]) -> Root:
    units = root / TOPLEVEL.lstrip("/") / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    for name, text in CLOSURE_UNITS.items():
        (units / name).write_text(text)
    (root / ".nixdrift").mkdir()
    (root / ".nixdrift" / "listening.json").write_text(json.dumps(listeners))
    return Root.of(root)


def check(root: Root, decl: DeclaredState | None = None) -> dict[str, Finding]:
    decl = decl or declared()
    section = capture_exposure.capture(root, decl)
    assert section.unavailable is None and section.problems == ()
    return {f.id: f for f in compare_exposure.compare(decl, section)}


def test_host_as_declared_has_no_drift(tmp_path: Path) -> None:
    assert check(host(tmp_path, DECLARED_LISTENERS)) == {}


def test_server_started_in_a_login_session_is_critical(tmp_path: Path) -> None:
    extra = {"proto": "tcp", "address": "0.0.0.0", "port": 8000, "pid": 4242, "process": "python3",
             "unit": "session-3.scope"}  # fmt: skip
    found = check(host(tmp_path, [*DECLARED_LISTENERS, extra]))
    f = found["exposure/tcp/8000"]
    assert list(found) == ["exposure/tcp/8000"]
    assert (f.severity, f.kind) == (Severity.CRITICAL, Kind.UNMANAGED)
    assert f.fix.command == "kill 4242" and not f.fix.safe
    assert f.evidence["unit"] == "session-3.scope" and f.evidence["process"] == "python3"


def test_undeclared_service_on_loopback_is_low(tmp_path: Path) -> None:
    extra = {"proto": "tcp", "address": "127.0.0.1", "port": 6379, "pid": 900, "process": "redis-server",
             "unit": "redis.service"}  # fmt: skip
    f = check(host(tmp_path, [*DECLARED_LISTENERS, extra]))["exposure/tcp/6379"]
    assert f.severity is Severity.LOW
    assert f.fix.command == "systemctl stop redis.service"


def test_loopback_and_wildcard_on_one_port_is_one_critical_finding(tmp_path: Path) -> None:
    extra = [
        {"proto": "tcp", "address": "127.0.0.1", "port": 9000, "pid": 5, "process": "x", "unit": "x.service"},
        {"proto": "tcp", "address": "::", "port": 9000, "pid": 5, "process": "x", "unit": "x.service"},
    ]
    found = check(host(tmp_path, [*DECLARED_LISTENERS, *extra]))
    assert found["exposure/tcp/9000"].severity is Severity.CRITICAL
    assert found["exposure/tcp/9000"].actual == "x.service on ::"


def test_instance_of_a_shipped_template_is_declared(tmp_path: Path) -> None:
    extra = {"proto": "tcp", "address": "10.0.0.5", "port": 2222, "pid": 77, "process": "sshd",
             "unit": "sshd@3-10.0.0.5:22-10.0.0.9:50000.service"}  # fmt: skip
    assert check(host(tmp_path, [*DECLARED_LISTENERS, extra])) == {}


def test_systemd_holding_a_socket_no_unit_declares_is_reported(tmp_path: Path) -> None:
    extra = {"proto": "tcp", "address": "::", "port": 2323, "pid": 1, "process": "systemd", "unit": "init.scope"}
    found = check(host(tmp_path, [*DECLARED_LISTENERS, extra]))
    assert list(found) == ["exposure/tcp/2323"]


def test_kernel_socket_on_a_port_the_firewall_does_not_open(tmp_path: Path) -> None:
    extra = {"proto": "udp", "address": "0.0.0.0", "port": 4789, "pid": None, "process": "", "unit": ""}
    found = check(host(tmp_path, [*DECLARED_LISTENERS, extra]))
    assert found["exposure/udp/4789"].fix.command == ""


def test_unit_declared_in_the_flake_counts_without_the_closure(tmp_path: Path) -> None:
    extra = {"proto": "tcp", "address": "0.0.0.0", "port": 3000, "pid": 9, "process": "grafana",
             "unit": "grafana.service"}  # fmt: skip
    root = host(tmp_path, [*DECLARED_LISTENERS, extra])
    raw = {"toplevel": TOPLEVEL, "firewall": {"allowedUDPPorts": [51820]}, "units": [{"unit": "grafana.service"}]}
    assert check(root, DeclaredState.from_json("web", FlakeInfo(reference="/etc/nixos"), raw)) == {}


def test_snapshot_without_listening_json_is_unavailable(tmp_path: Path) -> None:
    section = capture_exposure.capture(Root.of(tmp_path), declared())
    assert section.data is None and "listening.json" in (section.unavailable or "")


def test_unit_from_cgroup() -> None:
    assert unit_from_cgroup("0::/system.slice/nginx.service\n") == "nginx.service"
    assert unit_from_cgroup("0::/user.slice/user-1000.slice/session-3.scope\n") == "session-3.scope"
    assert unit_from_cgroup("12:pids:/system.slice/a.service\n1:name=systemd:/system.slice/sshd.socket\n") == (
        "sshd.socket"
    )
    assert unit_from_cgroup("0::/init.scope\n") == "init.scope"
    assert unit_from_cgroup("0::/\n") == ""
    assert unit_from_cgroup("garbage") == ""


def test_bad_listening_entries_are_problems() -> None:
    text = json.dumps([{"proto": "sctp", "address": "::", "port": 1}, {"proto": "tcp", "address": "::", "port": 22},
                       {"proto": "tcp", "port": 99999, "address": "x"}, "x"])  # fmt: skip
    records, problems = parse_listening(text)
    assert [r.port for r in records] == [22]
    assert len(problems) == 3 and all(p.startswith("listening.json:") for p in problems)


def test_live_listeners_see_a_real_socket_of_this_process() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        mine = [x for x in capture_exposure.live_listeners() if x.port == port]
    assert [(x.proto, x.address, x.pid) for x in mine] == [("tcp", "127.0.0.1", os.getpid())]


def test_snapshot_extra_writes_a_listening_json_that_reads_back(tmp_path: Path) -> None:
    assert capture_exposure.snapshot_extra(tmp_path) == ["listening.json"]
    records, problems = parse_listening((tmp_path / ".nixdrift" / "listening.json").read_text())
    assert problems == ()
    assert all(r.proto in ("tcp", "udp") for r in records)


_value = st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.floats()


@given(st.text())
def test_listening_parser_never_raises_on_text(text: str) -> None:
    parse_listening(text)


@given(st.lists(st.dictionaries(st.sampled_from(["proto", "address", "port", "pid", "process", "unit"]), _value)))
def test_listening_parser_never_raises_on_json_ish_input(entries: list[dict[str, Any]]) -> None:
    parse_listening(json.dumps(entries))


@given(st.binary())
def test_listening_parser_never_raises_on_bytes(data: bytes) -> None:
    parse_listening(data.decode("utf-8", errors="surrogateescape"))
