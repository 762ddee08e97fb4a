"""The drift scenario, written once against the NixOS test driver's calls.

Both runners load this file and call `run(machine)`: the qemu harness here (harness.py, whose
Machine talks to a guest agent) and the NixOS VM test (nixos-test.nix, runNixOSTest's Machine).
Each step makes one imperative change, then waits until the running nixdrift service has sent a
journald alert for it (fields NIXDRIFT_EVENT=new, NIXDRIFT_CATEGORY, NIXDRIFT_ID) and prints the
latency from the change to the alert's journal timestamp. At the end the report service writes the
report set and every step's finding must be in drift-report.json.
Only machine.succeed, machine.wait_for_unit and machine.wait_until_succeeds are used.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

DEADLINE = 60  # seconds from a change to its alert, under TCG; the polled categories need their interval
REPORT = "/var/lib/nixdrift/reports/drift-report.json"

# a package built in the guest (the Debian guest's nix runs without a sandbox, so /bin/mkdir works);
# the NixOS test passes a store path of its own instead
ROGUE_PACKAGE = (
    'nix-build --no-out-link -E \'derivation { name = "rogue-tool-1.0"; pname = "rogue-tool"; '
    'version = "1.0"; system = builtins.currentSystem; builder = "/bin/sh"; '
    'args = [ "-c" "/bin/mkdir -p $out/bin && echo echo rogue > $out/bin/rogue-tool" ]; }\''
)


# declared by the flake (flake/vmhost.nix, nixos-test.nix) without wantedBy: nothing starts it,
# so running it is a start by hand. The Debian guest boots from its own units (the closure's unit
# directory is not linked over /etc/systemd/system), so there the closure's file is loaded through
# /run first, with the same content (no service-config finding); a NixOS machine already has it.
IDLE_UNIT = "nixdrift-vm-idle.service"
IDLE_START = (
    f"test -e /etc/systemd/system/{IDLE_UNIT} || "
    f"{{ cp /etc/static/systemd/system/{IDLE_UNIT} /run/systemd/system/ && systemctl daemon-reload; }}; "
    f"systemctl start {IDLE_UNIT}"
)


@dataclass(frozen=True)
class Expect:
    category: str
    needle: str  # a part of the finding's id

    def journal(self, since: float) -> str:
        """The service's `new` alerts of this category since a time (whole seconds: a second early)."""
        return (
            f"journalctl --no-pager --since @{int(since)} -o json "
            "--output-fields=NIXDRIFT_ID,NIXDRIFT_SEVERITY,_SYSTEMD_UNIT "
            f"SYSLOG_IDENTIFIER=nixdrift NIXDRIFT_EVENT=new NIXDRIFT_CATEGORY={self.category}"
        )


@dataclass(frozen=True)
class Step:
    name: str
    command: str
    expects: tuple[Expect, ...]


def steps(package: str, package_name: str) -> list[Step]:
    return [
        Step("package installed with nix-env", f"nix-env -i {shlex.quote(package)}",
             (Expect("packages", package_name),)),
        Step("unit started by hand, listening on 0.0.0.0:8088",
             "systemd-run --unit=rogue-listener --property=Type=simple "
             '"$(command -v python3)" -m http.server --bind 0.0.0.0 8088',
             (Expect("services", "rogue-listener"), Expect("exposure", "/8088"))),
        Step("declared unit that nothing wants, started by hand", IDLE_START,
             (Expect("services", f"{IDLE_UNIT}/running"),)),
        Step("user added to a group", "gpasswd -a alice deploy", (Expect("users", "deploy/member/alice"),)),
        Step("file written in /etc", "echo 'written by hand' > /etc/rogue.conf", (Expect("etc", "etc/rogue.conf"),)),
        Step("DNS edited", "echo 'nameserver 192.0.2.53' >> /etc/resolv.conf", (Expect("network", "network/dns"),)),
        Step("port opened in the firewall", "nft add rule inet nixos-fw input-allow tcp dport 8443 accept",
             (Expect("firewall", "8443"),)),
        Step("tmpfs mounted", "mkdir -p /mnt/scratch && mount -t tmpfs tmpfs /mnt/scratch",
             (Expect("mounts", "mnt/scratch"),)),
    ]  # fmt: skip


def alert_time(machine: Any, expect: Expect, since: float) -> tuple[float, str]:
    """The first alert's journal time (seconds) and id, from the nixdrift service."""
    out = machine.succeed(expect.journal(since))
    for line in out.splitlines():
        entry = json.loads(line)
        if expect.needle in entry.get("NIXDRIFT_ID", ""):
            unit = entry.get("_SYSTEMD_UNIT")
            assert unit == "nixdrift.service", f"alert {entry['NIXDRIFT_ID']} came from {unit}, not the service"
            return int(entry["__REALTIME_TIMESTAMP"]) / 1e6, entry["NIXDRIFT_ID"]
    raise AssertionError(f"no {expect.category} alert matching {expect.needle!r}")


def run_step(machine: Any, step: Step) -> list[tuple[str, str, float]]:
    changed = int(machine.succeed(f"date +%s%N; {{ {step.command} ; }} >&2").split()[0]) / 1e9
    timings = []
    for expect in step.expects:
        query = f"{expect.journal(changed)} | grep -F -- {shlex.quote(expect.needle)}"
        machine.wait_until_succeeds(query, timeout=DEADLINE)
        when, finding_id = alert_time(machine, expect, changed)
        timings.append((step.name, finding_id, when - changed))
        print(f"scenario: {step.name}: {finding_id} in journald after {when - changed:.1f} s", flush=True)
    return timings


# autoRemediate is on and this file's finding is lowered to low in the config (units.py,
# nixos-test.nix): replacing the managed link by a file must be reverted by the service itself
REMEDIATED = "/etc/nixdrift-vm/motd"


def remediation_step(machine: Any) -> tuple[str, str, float]:
    name = "managed /etc link replaced by hand, reverted by autoRemediate"
    changed = int(machine.succeed(f"date +%s%N; rm {REMEDIATED} && echo 'edited by hand' > {REMEDIATED}").split()[0])
    restored = f'test -L {REMEDIATED} && test "$(readlink {REMEDIATED})" = /etc/static/nixdrift-vm/motd'
    machine.wait_until_succeeds(restored, timeout=DEADLINE)
    done = int(machine.succeed("date +%s%N").strip())
    history = json.loads(machine.succeed("nixdrift history --state-dir /var/lib/nixdrift --format json"))
    kinds = {e["kind"] for e in history if e["id"] == "etc/nixdrift-vm/motd"}
    assert "remediated" in kinds, f"no remediation recorded for {REMEDIATED}: {sorted(kinds)}"
    seconds = (done - changed) / 1e9
    print(f"scenario: {name}: restored within {seconds:.1f} s", flush=True)
    return name, "etc/nixdrift-vm/motd", seconds


def package_name(path: str) -> str:
    """`hello` for /nix/store/<hash>-hello-2.12.1 (as builtins.parseDrvName splits it)."""
    parts = path.rsplit("/", 1)[-1][33:].split("-")
    name = [p for i, p in enumerate(parts) if not any(q[:1].isdigit() for q in parts[: i + 1])]
    return "-".join(name)


def run(machine: Any, package: str | None = None) -> list[tuple[str, str, float]]:
    """Drive every step; returns (step, finding id, seconds from change to journald alert)."""
    machine.wait_for_unit("nixdrift.service")
    if package is None:
        package = machine.succeed(ROGUE_PACKAGE).strip().splitlines()[-1]
    timings: list[tuple[str, str, float]] = []
    all_steps = steps(package, package_name(package))
    for step in all_steps:
        timings += run_step(machine, step)
    timings.append(remediation_step(machine))
    machine.succeed("systemctl start nixdrift-report.service")
    report = json.loads(machine.succeed(f"cat {REPORT}"))
    ids = [f["id"] for f in report["findings"]]
    for step in all_steps:
        for expect in step.expects:
            found = [i for i in ids if i.startswith(expect.category + "/") and expect.needle in i]
            assert found, f"{step.name}: no {expect.category} finding matching {expect.needle!r} in {REPORT}: {ids}"
    print(f"scenario: the report lists all {len(timings)} findings", flush=True)
    machine.succeed("systemctl is-active nixdrift.service")  # still running after all of it
    return timings
