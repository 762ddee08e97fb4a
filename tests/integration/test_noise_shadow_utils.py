"""What the real shadow-utils leave in /etc is not drift: `useradd` and `usermod` run, in a private
mount namespace, over a fixture host's /etc (the machine's own /etc, /home and /var are untouched)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest

from hostscan import describe, in_category, in_host_namespace
from nixdrift.demo.planters import BuiltHost
from nixdrift.models import Category, Report

pytestmark = [
    pytest.mark.nix,
    pytest.mark.skipif(
        os.geteuid() != 0 or not all(shutil.which(t) for t in ("unshare", "useradd", "usermod")),
        reason="needs root, unshare and shadow-utils (useradd, usermod)",
    ),
]


def test_useradd_and_usermod_leave_backups_that_are_not_etc_drift(
    demo_built: BuiltHost, scan_host: Callable[..., Report]
) -> None:
    clean = scan_host(demo_built)
    assert in_category(clean, Category.ETC) == (), describe(in_category(clean, Category.ETC))

    in_host_namespace(demo_built, "useradd -m mallory", "usermod -aG video mallory")

    etc = demo_built.root / "etc"
    # what the tools really wrote: the test is only worth something if these are there
    for left in ("passwd-", "group-", "shadow-", "subuid-", "subgid-", ".pwd.lock"):
        assert (etc / left).is_file(), f"shadow-utils did not leave /etc/{left}"
    assert "mallory:" in (etc / "subuid").read_text()

    report = scan_host(demo_built)
    assert in_category(report, Category.ETC) == (), describe(in_category(report, Category.ETC))
    assert report.categories[Category.ETC] == "ok"
    # the change itself is drift, in its own category
    users = {f.id for f in in_category(report, Category.USERS)}
    assert "users/user/mallory" in users, users
    assert "users/group/video/member/mallory" in users, users
