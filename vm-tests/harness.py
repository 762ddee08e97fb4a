#!/usr/bin/env python3
"""The VM harness: boot a Debian guest with real systemd under qemu (TCG) and run scenario.py.

    sudo python3 vm-tests/harness.py [--keep] [--workdir DIR]

1. The guest root filesystem comes from build-image.sh, cached in $NIXDRIFT_VM_CACHE (default
   /var/cache/nixdrift-vm)/<key>/rootfs, the key hashing build-image.sh and pyproject.toml's
   dependency list; it is rebuilt only when either changes.
2. Each run hard-links that tree into a work directory and stages over it (replacing files, never
   writing into them, so the cache stays pristine): the current nixdrift source, the guest agent,
   the fixture flake in /etc/nixos, the units the NixOS module generates (rendered by units.py)
   and its config.yaml; then `mkfs.ext4 -d` makes the disk.
3. qemu boots it; nixdrift-prepare.service makes the guest NixOS-shaped and takes the baseline,
   nixdrift.service starts, and scenario.run drives it through the agent (driver.Machine).
4. The guest's journal is saved to WORKDIR/journal.log (printed on failure); the guest powers off.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOP = HERE.parent
sys.path.insert(0, str(HERE))

import scenario  # noqa: E402
import units  # noqa: E402
from driver import Machine  # noqa: E402

CACHE = Path(os.environ.get("NIXDRIFT_VM_CACHE", "/var/cache/nixdrift-vm"))
BOOT_TIMEOUT = 300
PREPARE_TIMEOUT = 600

AGENT_UNIT = """[Unit]
Description=nixdrift VM harness: the test driver's agent on virtio-serial
StartLimitIntervalSec=0

[Service]
ExecStart=/usr/bin/python3 /opt/nixdrift/vm/agent.py
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
"""
PREPARE_UNIT = """[Unit]
Description=nixdrift VM harness: make this guest NixOS-shaped and take the drift baseline
Before=nixdrift.service
After=nix-daemon.socket local-fs.target

[Service]
Type=oneshot
RemainAfterExit=yes
Environment=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
ExecStart=/usr/bin/python3 /opt/nixdrift/vm/prepare.py

[Install]
WantedBy=multi-user.target
"""
# nix-bin ships no units; these are NixOS's nix-daemon units, so the hardened service (whose /nix is
# read-only) evaluates through the daemon as on NixOS
NIX_SOCKET = """[Unit]
Description=Nix Daemon Socket
Before=multi-user.target
ConditionPathIsReadWrite=/nix/var/nix/daemon-socket

[Socket]
ListenStream=/nix/var/nix/daemon-socket/socket

[Install]
WantedBy=sockets.target
"""
NIX_SERVICE = """[Unit]
Description=Nix Daemon
RequiresMountsFor=/nix/store

[Service]
ExecStart=@/usr/bin/nix-daemon nix-daemon --daemon
KillMode=process
"""
# timers whose jobs would change unit states in the middle of the scenario
NOISY = ("apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer", "fstrim.timer")


def log(message: str) -> None:
    print(f"harness: {message}", flush=True)


def cache_key() -> str:
    deps = tomllib.loads((TOP / "pyproject.toml").read_text())["project"]["dependencies"]
    digest = hashlib.sha256((HERE / "build-image.sh").read_bytes())
    digest.update("\n".join(deps).encode())
    return digest.hexdigest()[:16]


def image() -> Path:
    """The cached guest root filesystem, built by build-image.sh when missing."""
    out = CACHE / cache_key()
    rootfs = out / "rootfs"
    if not rootfs.is_dir():
        log(f"building the guest image in {out} (about 3 minutes)")
        started = time.monotonic()
        subprocess.run(["bash", str(HERE / "build-image.sh"), str(out)], check=True)
        log(f"image built in {time.monotonic() - started:.0f} s")
    return rootfs


def place(root: Path, path: str, data: str | bytes, mode: int = 0o644) -> None:
    """Write a file into the staged tree; unlink first: the tree is hard-linked to the cache."""
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    target.write_bytes(data.encode() if isinstance(data, str) else data)
    target.chmod(mode)


def place_link(root: Path, path: str, target: str) -> None:
    where = root / path.lstrip("/")
    where.parent.mkdir(parents=True, exist_ok=True)
    if where.is_symlink() or where.exists():
        where.unlink()
    where.symlink_to(target)


def stage(root: Path) -> None:
    src = root / "opt/nixdrift/src"
    shutil.copytree(TOP / "daemon" / "nixdrift", src / "nixdrift", ignore=shutil.ignore_patterns("__pycache__"))
    site = next((root / "opt/nixdrift/venv/lib").glob("python3*/site-packages"))
    place(root, f"/{site.relative_to(root)}/nixdrift-src.pth", "/opt/nixdrift/src\n")
    wrapper = "#!/opt/nixdrift/venv/bin/python3\nimport sys\nfrom nixdrift.cli import main\nsys.exit(main())\n"
    place(root, "/opt/nixdrift/venv/bin/nixdrift", wrapper, 0o755)
    for name in ("agent.py", "prepare.py"):
        place(root, f"/opt/nixdrift/vm/{name}", (HERE / "guest" / name).read_bytes(), 0o755)
    for name in ("flake.nix", "flake.lock", "nixos.nix", "vmhost.nix"):
        place(root, f"/etc/nixos/{name}", (HERE / "flake" / name).read_bytes())

    rendered = units.render()
    place(root, "/etc/nixdrift/config.yaml", rendered.config)
    system = "/etc/systemd/system"
    extra = {"nixdrift-agent.service": AGENT_UNIT, "nixdrift-prepare.service": PREPARE_UNIT,
             "nix-daemon.socket": NIX_SOCKET, "nix-daemon.service": NIX_SERVICE}  # fmt: skip
    wanted = {**rendered.wanted_by, "nixdrift-agent.service": ("multi-user.target",),
              "nixdrift-prepare.service": ("multi-user.target",), "nix-daemon.socket": ("sockets.target",)}  # fmt: skip
    for name, text in {**rendered.units, **extra}.items():
        place(root, f"{system}/{name}", text)
        for target in wanted.get(name, ()):
            place_link(root, f"{system}/{target}.wants/{name}", f"{system}/{name}")
    for name in NOISY:
        (root / f"etc/systemd/system/timers.target.wants/{name}").unlink(missing_ok=True)
    (root / "nix/var/nix/daemon-socket").mkdir(parents=True, exist_ok=True)
    # the daemon builds as root, as the guest has no nixbld users; offline, no sandbox
    place(
        root,
        "/etc/nix/nix.conf",
        "substituters =\nsandbox = false\nbuild-users-group =\nexperimental-features = nix-command flakes\n",
    )
    place(root, "/etc/fstab", "/dev/vda / ext4 rw 0 1\n")


def make_disk(rootfs: Path, work: Path) -> Path:
    tree = work / "root"
    if tree.exists():
        shutil.rmtree(tree)
    subprocess.run(["cp", "-al", str(rootfs), str(tree)], check=True)
    stage(tree)
    disk = work / "root.img"
    disk.unlink(missing_ok=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "nixos", "-d", str(tree), str(disk), "4G"], check=True)
    shutil.rmtree(tree)
    return disk


def boot(rootfs: Path, disk: Path, work: Path) -> tuple[subprocess.Popen[bytes], Path]:
    sock = work / "driver.sock"
    sock.unlink(missing_ok=True)
    kernel = sorted((rootfs / "boot").glob("vmlinuz-*"))[-1]
    initrd = sorted((rootfs / "boot").glob("initrd.img-*"))[-1]
    argv = [
        "qemu-system-x86_64", "-accel", "tcg", "-smp", "2", "-m", "1536", "-display", "none", "-no-reboot",
        "-monitor", "none", "-serial", f"file:{work / 'console.log'}",
        "-kernel", str(kernel), "-initrd", str(initrd),
        "-append", "console=ttyS0 root=/dev/vda rw panic=-1 quiet systemd.show_status=0",
        "-drive", f"file={disk},format=raw,if=virtio",
        "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0",
        "-device", "virtio-serial",
        "-chardev", f"socket,path={sock},server=on,wait=off,id=c0",
        "-device", "virtserialport,chardev=c0,name=driver",
    ]  # fmt: skip
    qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not sock.exists():
        if qemu.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"qemu did not start (exit {qemu.poll()})")
        time.sleep(0.1)
    return qemu, sock


def unexplained_alerts(machine: Machine, explained: set[str], since: int) -> list[str]:
    """Every `new` alert since a time whose id no scenario step explains, with its message."""
    out = machine.succeed(
        f"journalctl --no-pager --since @{since} -o json --output-fields=NIXDRIFT_ID,NIXDRIFT_COUNT,MESSAGE "
        "SYSLOG_IDENTIFIER=nixdrift NIXDRIFT_EVENT=new"
    )
    entries = [json.loads(line) for line in out.splitlines() if line.strip()]
    # a burst is one alert with NIXDRIFT_COUNT and no NIXDRIFT_ID (its findings are in the history)
    return sorted(
        f"{e.get('NIXDRIFT_ID') or 'burst of ' + str(e.get('NIXDRIFT_COUNT', '?'))}: {e.get('MESSAGE', '')}"
        for e in entries
        if e.get("NIXDRIFT_ID") not in explained
    )


def save_journal(machine: Machine, work: Path) -> Path:
    path = work / "journal.log"
    try:
        _rc, out = machine.execute("journalctl -b --no-pager -o short-precise", timeout=120)
        path.write_text(out)
    except (OSError, TimeoutError) as exc:
        path.write_text(f"could not read the journal: {exc}\n")
    return path


def power_off(qemu: subprocess.Popen[bytes], machine: Machine) -> None:
    with contextlib.suppress(OSError, TimeoutError):
        machine.execute("systemctl poweroff --no-block", timeout=30)
    machine.close()
    try:
        qemu.wait(timeout=90)
    except subprocess.TimeoutExpired:
        log("the guest did not power off in 90 s: killing qemu")
        qemu.kill()
        qemu.wait()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default=str(CACHE / "run"), help="where the disk, console and journal go")
    p.add_argument("--keep", action="store_true", help="keep the disk image after the run")
    args = p.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    rootfs = image()
    disk = make_disk(rootfs, work)
    log(f"disk staged in {time.monotonic() - t0:.1f} s")
    qemu, sock = boot(rootfs, disk, work)
    machine = Machine(str(sock))
    ok = False
    try:
        log(f"guest agent up after {machine.wait_for_agent(BOOT_TIMEOUT):.1f} s")
        t1 = time.monotonic()
        machine.wait_for_unit("nixdrift-prepare.service", timeout=PREPARE_TIMEOUT)
        log(f"guest prepared (flake built, activated, baseline taken) in {time.monotonic() - t1:.1f} s")
        t2 = time.monotonic()
        machine.wait_for_unit("nixdrift.service", timeout=300)
        log(f"nixdrift.service ready (Type=notify, first scan done) in {time.monotonic() - t2:.1f} s")
        t3 = time.monotonic()
        before = unexplained_alerts(machine, set(), 0)
        log(f"alerts at service start that the baseline did not cover: {len(before)}")
        for line in before:
            log(f"  {line}")
        started = int(machine.succeed("date +%s"))
        timings = scenario.run(machine)
        log(f"scenario passed in {time.monotonic() - t3:.1f} s")
        for step, finding, seconds in timings:
            log(f"  {seconds:5.1f} s  {finding}  ({step})")
        others = unexplained_alerts(machine, {finding for _, finding, _ in timings}, started)
        log(f"alerts during the scenario that it did not cause (false positives): {len(others)}")
        for line in others:
            log(f"  {line}")
        ok = True
    except Exception as exc:
        log(f"FAILED: {type(exc).__name__}: {exc}")
        raise
    finally:
        journal = save_journal(machine, work)
        power_off(qemu, machine)
        if not ok:
            log(f"guest journal ({journal}), last 150 lines:")
            print("".join(journal.read_text().splitlines(keepends=True)[-150:]))
            log(f"console: {work / 'console.log'}")
        if not args.keep:
            disk.unlink(missing_ok=True)
        log(f"total {time.monotonic() - t0:.0f} s ({'passed' if ok else 'failed'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
