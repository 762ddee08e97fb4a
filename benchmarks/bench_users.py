"""Users and groups at scale: a 1 MB /etc/group (33,000 groups) and a 100 MB /etc/passwd.

Figures, never assertions. Needs no nix: it writes the account files into a temporary root and
runs the users collector and comparator on them, as `nixdrift check --root` would.

    .venv/bin/python benchmarks/bench_users.py
    .venv/bin/python benchmarks/bench_users.py --groups 100000 --users 3000

The comparison walks every group's members once and looks up primary groups by gid, so its time
grows with the file's size; before it did, 33k groups took minutes (members x groups).
The 100 MB passwd is over the 64 MiB read limit: the category is unavailable at once, without
reading it.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "daemon"))

from nixdrift.capture import users as capture_users
from nixdrift.compare import users as compare_users
from nixdrift.declared.model import DeclaredState
from nixdrift.models import FlakeInfo
from nixdrift.rootfs import Root

R = TypeVar("R")


def write_accounts(root: Path, n_users: int, n_groups: int) -> None:
    etc = root / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    users = [f"user{i}" for i in range(n_users)]
    (etc / "passwd").write_text(
        "".join(f"{u}:x:{1000 + i}:{100000 + i % n_groups}::/home/{u}:/bin/sh\n" for i, u in enumerate(users))
    )
    lines = []
    for g in range(n_groups):
        members = ",".join(users[(g * 7 + k) % n_users] for k in range(3))
        lines.append(f"group{g}:x:{100000 + g}:{members}\n")
    (etc / "group").write_text("".join(lines))


def timed(label: str, fn: Callable[[], R]) -> R:
    start = time.perf_counter()
    result = fn()
    print(f"{label:<44} {time.perf_counter() - start:8.2f} s")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--groups", type=int, default=33000)
    parser.add_argument("--passwd-mb", type=int, default=100)
    args = parser.parse_args()
    declared = DeclaredState.from_json("web1", FlakeInfo("/etc/nixos"), {})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_accounts(root, args.users, args.groups)
        size = (root / "etc" / "group").stat().st_size
        print(f"/etc/group: {args.groups} groups, {size / 1e6:.1f} MB; /etc/passwd: {args.users} users")
        section = timed("capture (read and parse)", lambda: capture_users.capture(Root.of(root), declared))
        findings = timed("compare", lambda: compare_users.compare(declared, section))
        print(f"{'findings':<44} {len(findings):8d}")
        with (root / "etc" / "passwd").open("r+b") as handle:  # sparse: no disk used
            handle.truncate(args.passwd_mb * 1024 * 1024)
        big = timed(
            f"capture with a {args.passwd_mb} MB /etc/passwd", lambda: capture_users.capture(Root.of(root), declared)
        )
        print(f"{'  users category':<44} unavailable: {big.unavailable}")
    print(f"{'peak RSS':<44} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:8.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
