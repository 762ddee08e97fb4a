"""`nixdrift snapshot`: a captured tree checks like the host it came from, and carries no secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from nixdrift import pipeline
from nixdrift.demo.planters import BuiltHost
from nixdrift.demo.scenario import DRIFTS
from nixdrift.pipeline import ScanOptions
from nixdrift.rootfs import SNAPSHOT_DIR, Root
from nixdrift.snapshot import HASH_MARKER, redact_shadow_line, take

pytestmark = pytest.mark.nix

SECRET_HASH = "$6$saltsalt$c2VjcmV0LWhhc2gtdGhhdC1tdXN0LW5vdC1sZWF2ZS10aGUtaG9zdA"


def ids(built: BuiltHost, root: Path) -> set[str]:
    opts = ScanOptions(flake=str(built.flake), host=built.name, root=Root.of(root), cache_dir=None)
    return {f.id for f in pipeline.scan(opts).findings}


def test_snapshot_of_a_drifted_host_reports_the_same_drift(demo_built: BuiltHost, tmp_path: Path) -> None:
    for drift in DRIFTS:
        if drift.category != "repo":  # the repo is read where nixdrift runs, not from the snapshot
            drift.plant(demo_built)
    shadow = demo_built.path("/etc/shadow")
    shadow.write_text(shadow.read_text() + f"carol:{SECRET_HASH}:19000:0:99999:7:::\n")
    original = ids(demo_built, demo_built.root)
    out = tmp_path / "snap"
    record = take(out, demo_built.name, Root.of(demo_built.root))
    assert (out / SNAPSHOT_DIR / "snapshot.json").is_file()
    assert record["host"] == demo_built.name
    assert "/etc/passwd" in record["files"]  # type: ignore[operator]
    # the captured non-file sources travel too: the fixture's .nixdrift files are copied as files
    for name in ("units.json", "listening.json"):
        src = demo_built.root / SNAPSHOT_DIR / name
        if src.exists():
            (out / SNAPSHOT_DIR / name).write_bytes(src.read_bytes())
    for name in ("nft.json", "iptables-save.txt", "ip6tables-save.txt"):
        src = demo_built.root / SNAPSHOT_DIR / name
        if src.exists():
            (out / SNAPSHOT_DIR / name).write_bytes(src.read_bytes())
    assert ids(demo_built, out) == original
    assert len(original) >= 10
    captured_shadow = (out / "etc" / "shadow").read_text()
    assert SECRET_HASH not in captured_shadow
    assert f"carol:{HASH_MARKER}:" in captured_shadow


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"alice:{SECRET_HASH}:1:0:99999:7:::", f"alice:{HASH_MARKER}:1:0:99999:7:::"),
        (f"bob:!{SECRET_HASH}:1:0:99999:7:::", f"bob:!{HASH_MARKER}:1:0:99999:7:::"),
        ("nobody:!:1::::::", "nobody:!:1::::::"),
        ("daemon:*:1::::::", "daemon:*:1::::::"),
        ("empty::1::::::", "empty::1::::::"),
        ("garbage without colons", "garbage without colons"),
    ],
)
def test_shadow_redaction_keeps_presence_only(line: str, expected: str) -> None:
    assert redact_shadow_line(line) == expected


def test_secret_files_and_shadow_backups_do_not_leave_the_host(demo_built: BuiltHost, tmp_path: Path) -> None:
    key = demo_built.path("/etc/ssh/ssh_host_ed25519_key")
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret-key-material\n")
    key.chmod(0o600)
    wifi = demo_built.path("/etc/NetworkManager/system-connections/home.nmconnection")
    wifi.parent.mkdir(parents=True, exist_ok=True)
    wifi.write_text("[wifi-security]\npsk=correct-horse-battery\n")
    demo_built.path("/etc/shadow-").write_text(f"alice:{SECRET_HASH}:19000:0:99999:7:::\n")
    out = tmp_path / "snap"
    record = take(out, demo_built.name, Root.of(demo_built.root))
    copied = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file() and not p.is_symlink())
    for secret in (b"secret-key-material", b"correct-horse-battery", SECRET_HASH.encode()):
        assert secret not in copied
    assert (out / "etc/ssh/ssh_host_ed25519_key").stat().st_mode & 0o777 == 0o600
    assert record["withheld"] == [
        "/etc/NetworkManager/system-connections/home.nmconnection",
        "/etc/ssh/ssh_host_ed25519_key",
    ]
