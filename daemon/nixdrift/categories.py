"""The category table: which collector and which comparator serve each category.

Adding a category means: one collector in capture/, one comparator in compare/, one row here (and
one row in the README's table).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nixdrift.capture import (
    etc,
    exposure,
    firewall,
    generation,
    mounts,
    network,
    packages,
    repo,
    services,
    users,
)
from nixdrift.compare import etc as c_etc
from nixdrift.compare import exposure as c_exposure
from nixdrift.compare import firewall as c_firewall
from nixdrift.compare import generation as c_generation
from nixdrift.compare import mounts as c_mounts
from nixdrift.compare import network as c_network
from nixdrift.compare import packages as c_packages
from nixdrift.compare import repo as c_repo
from nixdrift.compare import service_config as c_service_config
from nixdrift.compare import services as c_services
from nixdrift.compare import users as c_users
from nixdrift.declared.model import DeclaredState
from nixdrift.models import Category, Finding, Section
from nixdrift.rootfs import Root

Collector = Callable[[Root, DeclaredState], Section[Any]]
Comparator = Callable[[DeclaredState, Section[Any]], tuple[Finding, ...]]


@dataclass(frozen=True, slots=True)
class Entry:
    collector: Collector
    comparator: Comparator
    snapshot_paths: tuple[str, ...]


TABLE: Mapping[Category, Entry] = {
    Category.GENERATION: Entry(generation.capture, c_generation.compare, generation.SNAPSHOT_PATHS),
    Category.PACKAGES: Entry(packages.capture, c_packages.compare, packages.SNAPSHOT_PATHS),
    Category.SERVICES: Entry(services.capture, c_services.compare, services.SNAPSHOT_PATHS),
    Category.SERVICE_CONFIG: Entry(services.capture, c_service_config.compare, services.SNAPSHOT_PATHS),
    Category.USERS: Entry(users.capture, c_users.compare, users.SNAPSHOT_PATHS),
    Category.ETC: Entry(etc.capture, c_etc.compare, etc.SNAPSHOT_PATHS),
    Category.NETWORK: Entry(network.capture, c_network.compare, network.SNAPSHOT_PATHS),
    Category.FIREWALL: Entry(firewall.capture, c_firewall.compare, firewall.SNAPSHOT_PATHS),
    Category.EXPOSURE: Entry(exposure.capture, c_exposure.compare, exposure.SNAPSHOT_PATHS),
    Category.MOUNTS: Entry(mounts.capture, c_mounts.compare, mounts.SNAPSHOT_PATHS),
    Category.REPO: Entry(repo.capture, c_repo.compare, repo.SNAPSHOT_PATHS),
}
