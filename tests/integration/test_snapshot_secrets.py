"""`nixdrift snapshot` never copies a secret (issue 8, item 7b), and the snapshot still checks like
the host: the same findings, with the same messages, from digests where the content stayed home."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nixdrift import pipeline
from nixdrift.demo.planters import BuiltHost
from nixdrift.models import Category, Report
from nixdrift.pipeline import ScanOptions
from nixdrift.rootfs import SNAPSHOT_DIR, Root
from nixdrift.snapshot import reduce_unit_file, strip_git_config, take

pytestmark = pytest.mark.nix

SECRETS = {
    "deploy-key": "K3yMaterialNeverLeaves",
    "env": "EnvT0kenNeverLeaves",
    "nix.conf": "ghp_AccessT0kenNeverLeaves00000000000",
    "git-url": "GitPassw0rdNeverLeaves",
    "git-header": "HeaderT0kenNeverLeaves",
    "unit-env": "UnitEnvNeverLeaves",
    "unit-exec": "UnitExecNeverLeaves",
    "dropin": "DropinNeverLeaves",
    "host-key": "HostKeyNeverLeaves",
    "mount": "MountPassNeverLeaves",
    "stray-key": "StrayKeyNeverLeaves",
    "link": "LinkPassNeverLeaves",
}
PEM = "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n"


def scan(built: BuiltHost, root: Path) -> Report:
    opts = ScanOptions(flake=str(built.flake), host=built.name, root=Root.of(root), cache_dir=None)
    return pipeline.scan(opts)


def plant_secrets(built: BuiltHost) -> None:
    def write(host_path: str, text: str, mode: int = 0o644) -> None:
        path = built.path(host_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()
        path.write_text(text)
        path.chmod(mode)

    write("/etc/ssh/deploy_key", PEM.format(SECRETS["deploy-key"]), 0o600)  # a user's key, not a host key
    write("/etc/app/secret.env", f"TOKEN={SECRETS['env']}\n", 0o600)
    write("/etc/nix/nix.conf", f"access-tokens = github.com={SECRETS['nix.conf']}\n")
    write(
        "/etc/nixos/.git/config",
        f'[remote "origin"]\n\turl = https://deploy:{SECRETS["git-url"]}@git.example/cfg.git\n'
        f"[http]\n\textraheader = AUTHORIZATION: basic {SECRETS['git-header']}\n",
    )
    write("/etc/ssh/ssh_host_ed25519_key", PEM.format(SECRETS["host-key"]), 0o600)
    write("/root/.local/state/nix/profiles/stray.pem", PEM.format(SECRETS["stray-key"]))
    # a hand-made fragment that changes what nginx runs, and one that repeats postgresql's exactly
    write(
        "/run/systemd/system/nginx.service",
        "[Unit]\nDescription=Nginx Web Server\n[Service]\n"
        f"Environment=API_KEY={SECRETS['unit-env']}\nExecStart=/bin/nginx --token {SECRETS['unit-exec']}\n",
    )
    closure_unit = Root.of(built.root).read_text(f"{built.toplevel}/etc/systemd/system/postgresql.service")
    write("/run/systemd/system/postgresql.service", closure_unit)
    built.add_dropin("sshd.service", f"[Service]\nEnvironment=PW={SECRETS['dropin']}\nExecStart=\nExecStart=/bin/x\n")
    built.mount("/mnt/ftp", f"curlftpfs#ftp://bob:{SECRETS['mount']}@ftp.example", "fuse")
    built.path("/etc/app/db").symlink_to(f"postgres://admin:{SECRETS['link']}@db/prod")


def snapshot_of(built: BuiltHost, out: Path) -> dict[str, object]:
    record = take(out, built.name, Root.of(built.root), warn=pytest.fail)
    for name in ("units.json", "listening.json", "nft.json", "iptables-save.txt", "ip6tables-save.txt"):
        src = built.root / SNAPSHOT_DIR / name  # the fixture's captured non-file sources travel too
        if src.exists():
            (out / SNAPSHOT_DIR / name).write_bytes(src.read_bytes())
    return record


def comparable(report: Report) -> dict[str, tuple[str, str, str, str]]:
    return {f.id: (f.message, f.expected, f.actual, f.severity.label) for f in report.findings}


def test_a_snapshot_holds_no_secret_and_checks_like_the_host(demo_built: BuiltHost, tmp_path: Path) -> None:
    plant_secrets(demo_built)
    on_host = scan(demo_built, demo_built.root)
    out = tmp_path / "snap"
    record = snapshot_of(demo_built, out)

    every_byte = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file() and not p.is_symlink())
    every_byte += b"".join(os.fsencode(os.readlink(p)) for p in out.rglob("*") if p.is_symlink())
    for name, secret in SECRETS.items():
        assert secret.encode() not in every_byte, f"the snapshot holds the {name} secret"
    assert b"PRIVATE KEY" not in every_byte

    held = json.loads((out / SNAPSHOT_DIR / "digests.json").read_text())
    env = demo_built.path("/etc/app/secret.env")
    assert held["/etc/app/secret.env"] == {
        "sha256": hashlib.sha256(env.read_bytes()).hexdigest(),
        "size": env.stat().st_size,
        "mode": 0o600,
        "uid": 0,
        "gid": 0,
    }
    assert (out / "etc/app/secret.env").read_bytes() == b""
    assert (out / "etc/app/secret.env").stat().st_mode & 0o7777 == 0o600
    assert "/etc/ssh/ssh_host_ed25519_key" in held  # host keys: digest only
    assert "/root/.local/state/nix/profiles/stray.pem" in held  # a private key anywhere: digest only
    assert record["withheld"] == ["/etc/ssh/ssh_host_ed25519_key"]
    # kept whole where a comparison parses them, with the remote's credentials gone
    assert (out / "etc/passwd").read_bytes() == demo_built.path("/etc/passwd").read_bytes()
    git_config = (out / "etc/nixos/.git/config").read_text()
    assert "url = https://git.example/cfg.git" in git_config and "extraheader = <withheld>" in git_config
    assert "curlftpfs#ftp://ftp.example" in (out / "proc/self/mountinfo").read_text()
    unit = (out / "run/systemd/system/nginx.service").read_text()
    assert "ExecStart=nixdrift-sha256:" in unit and "Environment=nixdrift-sha256:" in unit
    assert "Description=Nginx Web Server" in unit

    in_snapshot = scan(demo_built, out)
    assert comparable(in_snapshot) == comparable(on_host)
    changed = on_host.findings[[f.id for f in on_host.findings].index("service-config/nginx.service/fragment")]
    assert "ExecStart differs: sha256 " in changed.message  # still detected from digests in the snapshot
    assert not any(f.id.startswith("service-config/postgresql") for f in in_snapshot.findings)
    assert "etc/app/secret.env" in {f.id for f in in_snapshot.findings}
    assert next(f for f in in_snapshot.findings if f.id == "etc/app/db").actual == "symlink -> postgres://db/prod"
    assert in_snapshot.categories[Category.ETC] == on_host.categories[Category.ETC] == "drift"


def test_a_damaged_digest_record_makes_etc_unavailable_not_clean(demo_built: BuiltHost, tmp_path: Path) -> None:
    demo_built.add_etc_file("app/secret.env", "TOKEN=x\n", mode=0o600)
    out = tmp_path / "snap"
    snapshot_of(demo_built, out)
    (out / SNAPSHOT_DIR / "digests.json").write_text('{"/etc/app/secret.env": {"sha256": "cut')
    report = scan(demo_built, out)
    assert report.categories[Category.ETC].startswith("unavailable: ")
    assert "digests.json cannot be read" in report.categories[Category.ETC]
    assert not any(f.category is Category.ETC for f in report.findings)


def test_snapshot_warns_about_every_file_it_could_not_capture(demo_built: BuiltHost, tmp_path: Path) -> None:
    for name in ("locked-a.conf", "sub/locked-b.conf"):
        demo_built.add_etc_file(name, "x\n")
        demo_built.path(f"/etc/{name}").chmod(0o000)
    code = (
        "import sys; from pathlib import Path; from nixdrift.rootfs import Root; from nixdrift.snapshot import take\n"
        "take(Path(sys.argv[1]), 'web1', Root.of(sys.argv[2]))\n"
    )
    # without the capabilities that let root read any file, as an unprivileged snapshot would run
    argv = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"]
    argv += [sys.executable, "-c", code, str(tmp_path / "snap"), str(demo_built.root)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, env={**os.environ}, check=False)
    assert result.returncode == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if line.startswith("nixdrift: warning: could not capture")]
    assert sorted(warned) == [
        "nixdrift: warning: could not capture /etc/locked-a.conf: Permission denied",
        "nixdrift: warning: could not capture /etc/sub/locked-b.conf: Permission denied",
    ]


def test_reduced_unit_files_keep_what_is_compared_and_nothing_secret() -> None:
    text = (
        "# the token is hunter2\n[Unit]\nDescription=App\nConditionPathExists=/x\n[Service]\nType=oneshot\n"
        "Environment=A=1 B=hunter2\nExecStart=\nExecStart=/bin/app \\\n  --password hunter2\n"
        "SetCredential=db:hunter2\n[Socket]\nListenStream=0.0.0.0:80\n"
    )
    reduced = reduce_unit_file(text)
    assert "hunter2" not in reduced
    for kept in (
        "Description=App",
        "ConditionPathExists=/x",
        "Type=oneshot",
        "ExecStart=\n",
        "ListenStream=0.0.0.0:80",
    ):
        assert kept in reduced
    assert reduce_unit_file("# only a comment\n").strip()  # never empty: an empty unit file is a mask
    assert reduce_unit_file("") == ""


def test_git_config_loses_credentials_and_keeps_the_remote() -> None:
    text = '[remote "origin"]\n\turl = https://u:p4ss@git.example/r.git\n[http]\n\textraHeader = Authorization: x\n'
    assert strip_git_config(text) == (
        '[remote "origin"]\n\turl = https://git.example/r.git\n[http]\n\textraHeader = <withheld>\n'
    )
