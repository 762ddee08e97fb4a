"""Records every stage shares: categories, severities, findings, sections and the report."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

SCHEMA_VERSION = 1


class Category(enum.Enum):
    GENERATION = "generation"
    PACKAGES = "packages"
    SERVICES = "services"
    SERVICE_CONFIG = "service-config"
    USERS = "users"
    ETC = "etc"
    NETWORK = "network"
    FIREWALL = "firewall"
    EXPOSURE = "exposure"
    MOUNTS = "mounts"
    REPO = "repo"
    # a cluster's categories (`nixdrift kube`); a host report never lists them
    KUBE_RESOURCES = "kube-resources"
    KUBE_ENV = "kube-env"
    KUBE_SECRETS = "kube-secrets"
    KUBE_CRONJOBS = "kube-cronjobs"
    KUBE_NETWORK_POLICIES = "kube-network-policies"
    KUBE_RBAC = "kube-rbac"
    KUBE_SPEC = "kube-spec"
    KUBE_ORPHANS = "kube-orphans"
    KUBE_MANIFESTS = "kube-manifests"
    KUBE_CHECKS = "kube-checks"

    @property
    def is_kube(self) -> bool:
        return self.value.startswith("kube-")

    @classmethod
    def host(cls) -> tuple[Category, ...]:
        return tuple(c for c in cls if not c.is_kube)

    @classmethod
    def kube(cls) -> tuple[Category, ...]:
        return tuple(c for c in cls if c.is_kube)

    @classmethod
    def family(cls, present: Iterable[Category]) -> tuple[Category, ...]:
        """The categories a report covers: a cluster's when it holds one of them, else a host's."""
        return cls.kube() if any(c.is_kube for c in present) else cls.host()

    @classmethod
    def parse(cls, text: str) -> Category:
        try:
            return cls(text)
        except ValueError:
            names = ", ".join(c.value for c in cls)
            raise ValueError(f"unknown category {text!r} (one of: {names})") from None


class Severity(enum.IntEnum):
    """Ordered: a higher value is more severe."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r} (one of: {names})") from None

    def escalated(self) -> Severity:
        return Severity(min(self.value + 1, Severity.CRITICAL.value))

    @property
    def journald_priority(self) -> int:
        return {4: 2, 3: 3, 2: 4, 1: 5, 0: 6}[self.value]


class Kind(enum.Enum):
    UNMANAGED = "unmanaged"  # live but not declared
    MISSING = "missing"  # declared but not live
    CHANGED = "changed"  # both exist, they differ


class Source(enum.Enum):
    SCAN = "scan"
    REALTIME = "realtime"


@dataclass(frozen=True, slots=True)
class Fix:
    nix: str  # the snippet that would declare the live state
    command: str  # the shell command (already quoted) that would revert the live state
    safe: bool  # whether an automatic revert is safe
    reason: str = ""  # why not safe (shown in the remediation script)


@dataclass(frozen=True, slots=True)
class Finding:
    id: str  # stable, e.g. "services/nginx.service/enabled"
    category: Category
    subject: str
    kind: Kind
    expected: str
    actual: str
    message: str
    fix: Fix
    severity: Severity = Severity.MEDIUM
    evidence: Mapping[str, str] = field(default_factory=dict)
    source: Source = Source.SCAN
    first_seen: str = ""
    last_seen: str = ""
    count: int = 1
    accepted: bool = False
    impact: str = ""  # why it matters, filled by policy

    def __hash__(self) -> int:
        return hash((self.id, self.actual))

    def with_(self, **changes: Any) -> Finding:
        return replace(self, **changes)

    @property
    def path(self) -> str:
        return self.evidence.get("path", "")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "category": self.category.value,
            "subject": self.subject,
            "kind": self.kind.value,
            "expected": self.expected,
            "actual": self.actual,
            "severity": self.severity.label,
            "message": self.message,
            "impact": self.impact,
            "fix": {
                "nix": self.fix.nix,
                "command": self.fix.command,
                "safe": self.fix.safe,
                "reason": self.fix.reason,
            },
            "evidence": dict(sorted(self.evidence.items())),
            "source": self.source.value,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "count": self.count,
            "accepted": self.accepted,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Finding:
        fix = data.get("fix") or {}
        return cls(
            id=str(data["id"]),
            category=Category(data["category"]),
            subject=str(data.get("subject", "")),
            kind=Kind(data.get("kind", "changed")),
            expected=str(data.get("expected", "")),
            actual=str(data.get("actual", "")),
            message=str(data.get("message", "")),
            impact=str(data.get("impact", "")),
            fix=Fix(
                nix=str(fix.get("nix", "")),
                command=str(fix.get("command", "")),
                safe=bool(fix.get("safe", False)),
                reason=str(fix.get("reason", "")),
            ),
            severity=Severity.parse(str(data.get("severity", "medium"))),
            evidence={str(k): str(v) for k, v in (data.get("evidence") or {}).items()},
            source=Source(data.get("source", "scan")),
            first_seen=str(data.get("first_seen", "")),
            last_seen=str(data.get("last_seen", "")),
            count=int(data.get("count", 1)),
            accepted=bool(data.get("accepted", False)),
        )


def sort_findings(findings: list[Finding] | tuple[Finding, ...]) -> tuple[Finding, ...]:
    """Most severe first, then by id: the one order every sink uses."""
    return tuple(sorted(findings, key=lambda f: (-f.severity.value, f.id)))


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Section(Generic[T]):
    """One category's live state, or why it could not be read.

    `problems` lists the lines or entries a parser could not read; the rest was kept.
    """

    category: Category
    data: T | None
    unavailable: str | None = None
    problems: tuple[str, ...] = ()

    @classmethod
    def missing(cls, category: Category, reason: str) -> Section[T]:
        return cls(category=category, data=None, unavailable=reason)


@dataclass(frozen=True, slots=True)
class FlakeInfo:
    reference: str
    revision: str | None = None
    dirty: bool = False
    identity: str = ""


@dataclass(frozen=True, slots=True)
class Generations:
    declared: str | None
    current: str | None
    booted: str | None


@dataclass(frozen=True, slots=True)
class ScanTarget:
    """What a scan read, recorded when it ran: which machine, below which root.

    `host` is the kernel's host name on a live root (else `/etc/hostname` below the root),
    `machine_id` the root's `/etc/machine-id` and `system` where its `/run/current-system` points
    (None when absent or unreadable). Whatever acts on a report (its remediation script, `nixdrift
    remediate`, auto-remediation) checks it runs on this machine and that `live` is true.
    """

    host: str
    machine_id: str | None
    system: str | None
    root: str
    live: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "machine_id": self.machine_id,
            "system": self.system,
            "root": self.root,
            "live": self.live,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScanTarget:
        def text(key: str) -> str | None:
            value = data.get(key)
            return value if isinstance(value, str) and value else None

        return cls(
            host=text("host") or "",
            machine_id=text("machine_id"),
            system=text("system"),
            root=text("root") or "",
            live=data.get("live") is True,  # anything but a JSON true is not a live scan
        )


@dataclass(frozen=True, slots=True)
class Report:
    host: str
    generated_at: str
    flake: FlakeInfo
    generations: Generations
    categories: Mapping[Category, str]  # "ok" | "drift" | "unavailable: reason"
    findings: tuple[Finding, ...]
    threshold: Severity = Severity.LOW
    problems: tuple[str, ...] = ()  # parser problems and capture warnings
    scanned: ScanTarget | None = None  # None: not recorded (a report from before it was)
    # the NixOS layout (nixdrift.layout): etc, accounts, init as declared; live: what the host showed
    layout: Mapping[str, str] = field(default_factory=dict)

    @property
    def active(self) -> tuple[Finding, ...]:
        """Findings that count: not accepted."""
        return tuple(f for f in self.findings if not f.accepted)

    def summary(self) -> dict[str, int]:
        counts = {s.label: 0 for s in sorted(Severity, reverse=True)}
        for f in self.active:
            counts[f.severity.label] += 1
        return counts

    def at_or_above_threshold(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.active if f.severity >= self.threshold)

    def with_baselines(self, accepted: Mapping[str, str]) -> Report:
        """This report with the operator's accepted baselines (finding id -> accepted actual value)
        applied: a finding is accepted exactly when its actual value is the accepted one, and a
        category whose drift is all accepted is `ok` again (an unavailable one stays unavailable)."""
        findings = tuple(f.with_(accepted=accepted.get(f.id) == f.actual) for f in self.findings)
        drifted = {f.category for f in findings if not f.accepted}
        categories = {
            c: ("drift" if c in drifted else "ok") if status in ("ok", "drift") else status
            for c, status in self.categories.items()
        }
        return replace(self, findings=findings, categories=categories)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "host": self.host,
            "generated_at": self.generated_at,
            "flake": {
                "reference": self.flake.reference,
                "revision": self.flake.revision,
                "dirty": self.flake.dirty,
            },
            "generations": {
                "declared": self.generations.declared,
                "current": self.generations.current,
                "booted": self.generations.booted,
            },
            "threshold": self.threshold.label,
            "summary": self.summary(),
            "categories": {c.value: s for c, s in sorted(self.categories.items(), key=lambda kv: kv[0].value)},
            "findings": [f.to_json() for f in sort_findings(self.findings)],
            "problems": list(self.problems),
            "scanned": self.scanned.to_json() if self.scanned is not None else None,
            "layout": dict(sorted(self.layout.items())),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Report:
        flake = data.get("flake") or {}
        gens = data.get("generations") or {}
        return cls(
            host=str(data.get("host", "")),
            generated_at=str(data.get("generated_at", "")),
            flake=FlakeInfo(
                reference=str(flake.get("reference", "")),
                revision=flake.get("revision"),
                dirty=bool(flake.get("dirty", False)),
            ),
            generations=Generations(gens.get("declared"), gens.get("current"), gens.get("booted")),
            categories={Category(k): str(v) for k, v in (data.get("categories") or {}).items()},
            findings=sort_findings([Finding.from_json(f) for f in data.get("findings") or []]),
            threshold=Severity.parse(str(data.get("threshold", "low"))),
            problems=tuple(str(p) for p in data.get("problems") or []),
            scanned=ScanTarget.from_json(scanned) if isinstance(scanned := data.get("scanned"), Mapping) else None,
            layout={str(k): str(v) for k, v in (data.get("layout") or {}).items()},
        )
