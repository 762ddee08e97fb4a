#!/usr/bin/python3
"""Turn the Debian guest into a NixOS-shaped host, then take the drift baseline (runs at boot).

Runs as nixdrift-prepare.service, ordered before nixdrift.service. It builds the flake in
/etc/nixos with the guest's real nix and does what NixOS activation would: the generation links,
/etc/static and the managed /etc symlinks (copies for entries with a mode, listed in /etc/.clean),
the declared users and groups with /var/lib/nixos's maps, the hostname, resolv.conf as resolvconf
writes it, and the nixos-fw nftables ruleset as firewall-nftables.nix builds it.

The Debian /etc, its system users and its units are not declared by the flake: one
`nixdrift check` after activation lists them, and their ids become exceptions in
/etc/nixdrift/config.yaml, so the running service alerts only on what changes afterwards.
Stdlib only: this runs with the guest's /usr/bin/python3.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

FLAKE = Path("/etc/nixos")
HOST = "vmhost"
CONFIG = Path("/etc/nixdrift/config.yaml")
NIX = ["nix", "--extra-experimental-features", "nix-command flakes"]
GIT = ["git", "-c", "user.name=vm harness", "-c", "user.email=vm@nixdrift.invalid", "-c", "init.defaultBranch=main"]
BASELINE = Path("/var/lib/nixdrift-vm/baseline.json")
# the closure's unit directory is not linked over Debian's /etc/systemd/system: the guest boots
# from Debian's units (the etc comparator's finding about it is part of the baseline)
NOT_LINKED = frozenset({"systemd/system"})


def sh(*argv: str, check: bool = True) -> str:
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    print(f"prepare: {' '.join(argv)[:120]} -> {proc.returncode} ({time.monotonic() - started:.1f}s)", flush=True)
    if check and proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"prepare: command failed: {argv}")
    return proc.stdout


def link(path: str, target: str) -> None:
    where = Path(path)
    where.parent.mkdir(parents=True, exist_ok=True)
    if where.is_symlink() or where.is_file():
        where.unlink()
    elif where.is_dir():
        shutil.rmtree(where)
    where.symlink_to(target)


def commit_flake() -> None:
    """/etc/nixos is a git checkout with everything committed, as on a tidy host."""
    if not (FLAKE / ".git").exists():
        sh(*GIT, "-C", str(FLAKE), "init", "-q")
        sh(*GIT, "-C", str(FLAKE), "add", "-A")
        sh(*GIT, "-C", str(FLAKE), "commit", "-q", "-m", "vmhost configuration")


def build() -> tuple[str, dict[str, object]]:
    ref = f"git+file://{FLAKE}#nixosConfigurations.{HOST}.config"
    out = json.loads(sh(*NIX, "build", "--no-link", "--json", f"{ref}.system.build.toplevel"))
    toplevel = str(out[0]["outputs"]["out"])
    wanted = "c: { inherit (c) networking users; }"
    declared = json.loads(sh(*NIX, "eval", "--json", ref, "--apply", wanted))
    return toplevel, declared


def setup_generation(toplevel: str) -> None:
    link("/nix/var/nix/profiles/system-1-link", toplevel)
    link("/nix/var/nix/profiles/system", "system-1-link")
    link("/run/current-system", toplevel)
    link("/run/booted-system", toplevel)


def setup_etc(toplevel: str) -> None:
    """setup-etc.pl: /etc/static, a link per entry, a copy (in /etc/.clean) for entries with a mode."""
    static = os.readlink(f"{toplevel}/etc")
    link("/etc/static", static)
    copied: list[str] = []
    for dirpath, _dirs, files in os.walk(static):
        rel_dir = os.path.relpath(dirpath, static)
        for name in sorted(files) + sorted(d for d in _dirs if Path(dirpath, d).is_symlink()):
            if name.endswith((".mode", ".uid", ".gid")):
                continue
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel in NOT_LINKED:
                continue
            mode_file = Path(dirpath, name + ".mode")
            if not mode_file.exists():
                link(f"/etc/{rel}", f"/etc/static/{rel}")
                continue
            target = Path("/etc", rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink():
                target.unlink()
            shutil.copyfile(Path(dirpath, name), target)
            target.chmod(int(mode_file.read_text().strip(), 8))
            copied.append(rel)
    Path("/etc/.clean").write_text("".join(f"{rel}\n" for rel in sorted(copied)))
    Path("/etc/NIXOS").touch()


def setup_users(declared: dict[str, object]) -> None:
    users = declared["users"]
    assert isinstance(users, dict)
    for name, g in sorted(users["groups"].items()):
        if sh("getent", "group", name, check=False) == "":
            sh("groupadd", "-g", str(g["gid"]), name)
    for name, u in sorted(users["users"].items()):
        if sh("getent", "passwd", name, check=False) == "":
            sh("useradd", "-m", "-u", str(u["uid"]), "-g", u["group"], "-d", u["home"], "-s", u["shell"], name)
    state = Path("/var/lib/nixos")
    state.mkdir(parents=True, exist_ok=True)
    (state / "uid-map").write_text(json.dumps({n: u["uid"] for n, u in users["users"].items()}, sort_keys=True))
    (state / "gid-map").write_text(json.dumps({n: g["gid"] for n, g in users["groups"].items()}, sort_keys=True))
    (state / "declarative-users").write_text(" ".join(sorted(users["users"])))
    (state / "declarative-groups").write_text(" ".join(sorted(users["groups"])))


def nft_ruleset(firewall: dict[str, list[int]]) -> str:
    """Table inet nixos-fw as nixpkgs' firewall-nftables.nix writes it (the parts that matter)."""
    tcp = ", ".join(str(p) for p in firewall.get("allowedTCPPorts", []))
    udp = ", ".join(str(p) for p in firewall.get("allowedUDPPorts", []))
    allow = (f"    tcp dport {{ {tcp} }} accept\n" if tcp else "") + (
        f"    udp dport {{ {udp} }} accept\n" if udp else ""
    )
    return (
        "table inet nixos-fw {\n"
        "  set temp-ports {\n"
        '    comment "Temporarily opened ports"\n'
        "    type inet_proto . inet_service\n"
        "    flags interval\n"
        "    auto-merge\n"
        "  }\n"
        "  chain input {\n"
        "    type filter hook input priority filter; policy drop;\n"
        '    iifname { "lo" } accept comment "trusted interfaces"\n'
        "    ct state vmap { invalid : drop, established : accept, related : accept, new : jump input-allow, "
        "untracked : jump input-allow }\n"
        "  }\n"
        "  chain input-allow {\n"
        f"{allow}"
        "    meta l4proto . th dport @temp-ports accept\n"
        '    icmp type echo-request accept comment "allow ping"\n'
        "    icmpv6 type != { nd-redirect, 139 } accept\n"
        '    ip6 daddr fe80::/64 udp dport 546 accept comment "DHCPv6 client"\n'
        "  }\n"
        "}\n"
    )


def setup_network(declared: dict[str, object]) -> None:
    networking = declared["networking"]
    assert isinstance(networking, dict)
    sh("hostname", networking["hostName"])
    servers = "".join(f"nameserver {s}\n" for s in networking["nameservers"])
    resolv = Path("/etc/resolv.conf")
    if resolv.is_symlink():
        resolv.unlink()
    resolv.write_text(f"# Generated by resolvconf\n{servers}options edns0\n")
    rules = Path("/run/nixos-fw.nft")
    rules.write_text(nft_ruleset(networking["firewall"]))
    sh("nft", "-f", str(rules))


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def check() -> dict[str, Any]:
    env = {**os.environ, "NIXDRIFT_QUIET": "1"}
    # the daemon's evaluation cache: its start scan then needs no second `nix eval`
    # --fresh: a baseline is a scan of now, never an answer the daemon published before a reboot
    argv = ["/opt/nixdrift/venv/bin/nixdrift", "check", "--fresh", "--config", str(CONFIG), "--format", "json",
            "--threshold", "info", "--cache-dir", "/var/lib/nixdrift/eval-cache"]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if proc.returncode not in (0, 1):
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"prepare: baseline check failed ({proc.returncode})")
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def baseline() -> None:
    """Exceptions for everything the flake does not declare about this Debian guest.

    A scan whose D-Bus queries timed out (a busy TCG guest) lacks the units' runtime state and
    so their findings: such scans are repeated, and the ids of every scan are kept.
    """
    cfg = json.loads(CONFIG.read_text())  # the module's config.yaml is JSON (JSON is YAML)
    ids: set[str] = set()
    for attempt in range(1, 5):
        report = check()
        ids |= {f["id"] for f in report["findings"]}
        partial = [p for p in report["problems"] if "unit state unavailable" in p]
        print(f"prepare: baseline scan {attempt}: {len(report['findings'])} findings, {partial or 'complete'}")
        if not partial:
            break
    BASELINE.parent.mkdir(parents=True, exist_ok=True)
    BASELINE.write_text(json.dumps(report, indent=2, sort_keys=True))
    cfg["exceptions"] = sorted(set(cfg.get("exceptions", [])) | {glob_escape(i) for i in ids})
    CONFIG.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    unavailable = {c: s for c, s in report["categories"].items() if s.startswith("unavailable")}
    print(f"prepare: baseline of {len(ids)} findings; unavailable: {unavailable or 'none'}", flush=True)


def main() -> None:
    started = time.monotonic()
    commit_flake()
    toplevel, declared = build()
    setup_generation(toplevel)
    setup_etc(toplevel)
    setup_users(declared)
    setup_network(declared)
    baseline()
    print(f"prepare: done in {time.monotonic() - started:.1f}s, toplevel {toplevel}", flush=True)


if __name__ == "__main__":
    main()
