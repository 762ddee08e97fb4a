"""Every imperative change an operator can make is found, in its category, with a sensible severity."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from nixdrift.demo.planters import BuiltHost
from nixdrift.demo.scenario import DRIFTS, build_demo, demo_host
from nixdrift.models import Category, Report, Severity
from nixdrift.policy import RULES

pytestmark = pytest.mark.nix


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    plant: Callable[[BuiltHost], object]
    category: Category
    rules: tuple[str, ...]  # any of these rules is a correct diagnosis
    nftables: bool = False


CASES = (
    Case("nix-env -i", lambda b: b.nix_env_install("alice", "cowsay"), Category.PACKAGES, ("imperative-package",)),
    Case("nix-env -i as root", lambda b: b.nix_env_install("root", "tmux"), Category.PACKAGES, ("imperative-package",)),
    Case(
        "nix profile install",
        lambda b: b.nix_profile_install("bob", "ripgrep"),
        Category.PACKAGES,
        ("imperative-package",),
    ),
    Case("edit managed symlink", lambda b: b.edit_etc("motd", "changed\n"), Category.ETC, ("etc-changed",)),
    Case(
        "edit managed copy",
        lambda b: b.edit_etc("sudoers.d/10-deploy", "alice ALL=(ALL) ALL\n"),
        Category.ETC,
        ("etc-sensitive",),
    ),
    Case("chmod managed copy", lambda b: b.chmod_etc("sudoers.d/10-deploy", 0o644), Category.ETC, ("etc-sensitive",)),
    Case(
        "new sudoers.d file",
        lambda b: b.add_etc_file("sudoers.d/99-x", "x ALL=(ALL) ALL\n", 0o440),
        Category.ETC,
        ("etc-sensitive",),
    ),
    Case("new /etc file", lambda b: b.add_etc_file("foo.conf", "x=1\n"), Category.ETC, ("etc-unmanaged",)),
    Case("managed file removed", lambda b: b.remove_etc("motd"), Category.ETC, ("etc-missing",)),
    Case("usermod -aG wheel", lambda b: b.add_group_member("wheel", "bob"), Category.USERS, ("wheel-member",)),
    Case("usermod -aG video", lambda b: b.add_group_member("video", "bob"), Category.USERS, ("group-member",)),
    Case("useradd", lambda b: b.add_user("mallory"), Category.USERS, ("user-unmanaged",)),
    Case("groupadd", lambda b: b.add_group("ops", 3000), Category.USERS, ("group-unmanaged",)),
    Case(
        "enable --runtime",
        lambda b: b.enable_unit_runtime("cryptominer.service"),
        Category.SERVICES,
        ("unit-enabled-by-hand", "unit-file-unmanaged"),
    ),
    Case("mask --runtime", lambda b: b.mask_unit_runtime("nginx.service"), Category.SERVICES, ("unit-masked-by-hand",)),
    Case("stop a wanted unit", lambda b: b.stop_unit("nginx.service"), Category.SERVICES, ("unit-stopped",)),
    Case("systemd-run", lambda b: b.run_transient(), Category.SERVICES, ("unit-transient",)),
    Case("runtime drop-in", lambda b: b.add_dropin("nginx.service"), Category.SERVICE_CONFIG, ("dropin-unmanaged",)),
    Case("port opened (iptables)", lambda b: b.open_port(8080), Category.FIREWALL, ("port-opened",)),
    Case("port opened (nftables)", lambda b: b.add_fw_rule(8080), Category.FIREWALL, ("port-opened",), nftables=True),
    Case("temp port (nftables)", lambda b: b.open_port(8080), Category.FIREWALL, ("port-temporary",), nftables=True),
    Case("firewall stopped", lambda b: b.stop_firewall(), Category.FIREWALL, ("firewall-disabled",)),
    Case(
        "firewall stopped (nft)", lambda b: b.stop_firewall(), Category.FIREWALL, ("firewall-disabled",), nftables=True
    ),
    Case("listener on 0.0.0.0", lambda b: b.listen("0.0.0.0", 4444), Category.EXPOSURE, ("undeclared-listener",)),
    Case("listener on ::", lambda b: b.listen("::", 4444), Category.EXPOSURE, ("undeclared-listener",)),
    Case("listener on loopback", lambda b: b.listen("127.0.0.1", 6000), Category.EXPOSURE, ("local-listener",)),
    Case("resolv.conf edited", lambda b: b.set_nameserver("8.8.8.8"), Category.NETWORK, ("dns-changed",)),
    Case("hostname changed", lambda b: b.set_hostname("oops"), Category.NETWORK, ("hostname-changed",)),
    Case("tmpfs mounted", lambda b: b.mount_tmpfs("/mnt/scratch"), Category.MOUNTS, ("mount-unmanaged",)),
    Case("nfs mounted", lambda b: b.mount("/mnt/nas", "nas:/export", "nfs4"), Category.MOUNTS, ("mount-unmanaged",)),
    Case("declared mount missing", lambda b: b.unmount("/data"), Category.MOUNTS, ("mount-missing",)),
    Case("swap added", lambda b: b.add_swap("/swapfile"), Category.MOUNTS, ("swap-unmanaged",)),
    Case("reboot pending", lambda b: b.reboot_pending(), Category.GENERATION, ("reboot-pending",)),
    Case("rolled back", lambda b: b.switch_generation(), Category.GENERATION, ("generation-not-declared",)),
    Case("uncommitted edit", lambda b: b.commit_dirty_edit(), Category.REPO, ("repo-uncommitted",)),
    Case("untracked file", lambda b: b.add_untracked(), Category.REPO, ("repo-untracked",)),
    Case("unpushed commit", lambda b: b.commit_unpushed(), Category.REPO, ("repo-unpushed",)),
)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_planted_drift_is_found(case: Case, tmp_path: Path, scan_host: Callable[..., Report]) -> None:
    tree = demo_host(tmp_path / "host")
    if case.nftables:
        tree.with_firewall(tcp=[22, 80, 443], backend="nftables")
    built = tree.build()
    case.plant(built)
    report = scan_host(built)
    status = report.categories[case.category]
    assert not status.startswith("unavailable"), f"{case.category.value} is {status}"
    found = [f for f in report.findings if f.category == case.category]
    matching = [f for f in found if f.evidence.get("rule") in case.rules]
    listing = "\n".join(f"  {f.severity.label} {f.id} ({f.evidence.get('rule')})" for f in report.findings)
    assert matching, f"no {case.rules} finding in {case.category.value}; findings:\n{listing}"
    for f in matching:
        assert f.severity == RULES[f.evidence["rule"]][0], f"{f.id} has severity {f.severity.label}"
        assert f.id.startswith(case.category.value + "/")
        assert f.message
    assert status == "drift"


def test_exposure_and_wheel_are_critical(tmp_path: Path, scan_host: Callable[..., Report]) -> None:
    built = demo_host(tmp_path / "host").build()
    built.add_group_member("wheel", "bob")
    built.open_port(4444)
    built.listen("0.0.0.0", 4444, process="nc")
    report = scan_host(built)
    critical = {f.category for f in report.findings if f.severity == Severity.CRITICAL}
    assert {Category.USERS, Category.FIREWALL, Category.EXPOSURE} <= critical


def test_the_demo_scenario_is_found_in_every_category(tmp_path: Path, scan_host: Callable[..., Report]) -> None:
    built = build_demo(tmp_path / "demo")
    report = scan_host(built)
    expected = {d.category for d in DRIFTS}
    drifted = {c.value for c, s in report.categories.items() if s == "drift"}
    assert expected <= drifted, f"missing: {sorted(expected - drifted)}"
