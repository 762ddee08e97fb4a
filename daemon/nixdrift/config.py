"""The YAML configuration (`--config`, default /etc/nixdrift/config.yaml when present).

Keys are camelCase, as the NixOS module renders them. A malformed file names the line and the
key; unknown keys are errors too, since a typo would silently disable an exception.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from nixdrift.errors import ConfigError
from nixdrift.models import Category, Severity
from nixdrift.policy import Policy

DEFAULT_PATH = Path("/etc/nixdrift/config.yaml")

# seconds between full scans of each category in the daemon
DEFAULT_INTERVALS: Mapping[Category, int] = {
    Category.ETC: 300,
    Category.USERS: 300,
    Category.SERVICES: 900,
    Category.SERVICE_CONFIG: 900,
    Category.FIREWALL: 900,
    Category.EXPOSURE: 900,
    Category.NETWORK: 900,
    Category.PACKAGES: 3600,
    Category.MOUNTS: 3600,
    Category.GENERATION: 21600,
    Category.REPO: 21600,
}


@dataclass(frozen=True, slots=True)
class KubernetesConfig:
    enable: bool = False
    kubeconfig: str | None = None  # None: in-cluster config
    namespace: str = "nixdrift"
    heartbeat: int = 3600
    report_format: str = "policyreport"  # the top-level `reportFormat`: policyreport | openreports | both


# seconds between runs of each cluster check in the daemon (`kube:`); "full" is the reconciliation of all
KUBE_DEFAULT_INTERVALS: Mapping[str, int] = {
    Category.KUBE_NETWORK_POLICIES.value: 300,
    Category.KUBE_RBAC.value: 300,
    Category.KUBE_SECRETS.value: 300,
    Category.KUBE_RESOURCES.value: 900,
    Category.KUBE_CRONJOBS.value: 3600,
    Category.KUBE_ENV.value: 3600,
    Category.KUBE_SPEC.value: 3600,
    Category.KUBE_MANIFESTS.value: 3600,
    Category.KUBE_ORPHANS.value: 86400,
    "full": 21600,
}
REPORT_FORMATS = ("policyreport", "openreports", "both")


@dataclass(frozen=True, slots=True)
class KubeCheckConfig:
    """`kube:`: the cluster checked against its manifests (`nixdrift kube`, and the daemon when enabled)."""

    enable: bool = False
    manifests: str | None = None
    kubeconfig: str | None = None
    namespace: str | None = None  # None: every namespace but the system ones
    cluster: str | None = None
    secret_max_age_days: int | None = 90
    intervals: Mapping[str, int] = field(default_factory=lambda: dict(KUBE_DEFAULT_INTERVALS))
    auto_remediate: bool = False


@dataclass(frozen=True, slots=True)
class ExplainConfig:
    url: str | None = None  # an OpenAI-compatible base URL; None: explain is off
    model: str = ""
    key_file: str | None = None
    timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class Config:
    path: Path | None = None
    flake: str | None = None
    host_name: str | None = None
    alert_threshold: Severity = Severity.MEDIUM
    exceptions: tuple[str, ...] = ()
    severity: Mapping[str, Severity] = field(default_factory=dict)
    intervals: Mapping[Category, int] = field(default_factory=lambda: dict(DEFAULT_INTERVALS))
    auto_remediate: bool = False
    realtime: bool = True
    report_dir: str | None = None
    state_dir: str | None = None
    prometheus_textfile_dir: str | None = None
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    kube: KubeCheckConfig = field(default_factory=KubeCheckConfig)
    report_format: str = "policyreport"  # policyreport | openreports | both (hosts and clusters alike)

    def policy(self, threshold: Severity | None = None) -> Policy:
        return Policy(
            threshold=threshold if threshold is not None else self.alert_threshold,
            exceptions=self.exceptions,
            severity_overrides=dict(self.severity),
        )


def _where(path: Path | None, node: yaml.Node, key: str) -> str:
    where = f"{path or '<config>'}:{node.start_mark.line + 1}"
    return f"{where}: {key}" if key else where


class _Reader:
    def __init__(self, path: Path | None) -> None:
        self.path = path

    def fail(self, node: yaml.Node, key: str, why: str) -> ConfigError:
        return ConfigError(f"{_where(self.path, node, key)}: {why}")

    def mapping(self, node: yaml.Node, key: str, allowed: Mapping[str, Any]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, key, "expected a mapping")
        out: dict[str, yaml.Node] = {}
        for k_node, v_node in node.value:
            name = str(k_node.value)
            if allowed and name not in allowed:
                hint = difflib.get_close_matches(name, list(allowed), n=1)
                more = f" (did you mean {hint[0]!r}?)" if hint else f" (known: {', '.join(sorted(allowed))})"
                raise self.fail(k_node, f"{key}.{name}" if key else name, "unknown key" + more)
            if name in out:  # YAML keeps the last silently; a lost exception list must not go unnoticed
                raise self.fail(k_node, f"{key}.{name}" if key else name, "duplicate key")
            out[name] = v_node
        return out

    def scalar(self, node: yaml.Node, key: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, key, "expected a single value")
        try:  # construct the node itself: re-serialising an empty value (`flake:`) does not parse back
            return yaml.SafeLoader("").construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError) as exc:  # unknown tag, impossible date, ...
            raise self.fail(node, key, f"cannot read value: {str(exc).splitlines()[0]}") from None

    def string(self, node: yaml.Node, key: str) -> str | None:
        value = self.scalar(node, key)
        if value is None:
            return None
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            # yes/no/on/off are booleans in YAML: a host named "yes" must be quoted, not read as "True"
            raise self.fail(node, key, f"expected a string, got {value!r} (quote it)")
        return str(value)

    def boolean(self, node: yaml.Node, key: str) -> bool:
        value = self.scalar(node, key)
        if not isinstance(value, bool):
            raise self.fail(node, key, f"expected true or false, got {value!r}")
        return value

    def integer(self, node: yaml.Node, key: str, minimum: int = 1) -> int:
        value = self.scalar(node, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise self.fail(node, key, f"expected a whole number >= {minimum}, got {value!r}")
        return value

    def number(self, node: yaml.Node, key: str) -> float:
        value = self.scalar(node, key)
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < math.inf:
            raise self.fail(node, key, f"expected a positive number, got {value!r}")
        return float(value)

    def severity(self, node: yaml.Node, key: str) -> Severity:
        try:
            return Severity.parse(str(self.scalar(node, key)))
        except ValueError as exc:
            raise self.fail(node, key, str(exc)) from None

    def strings(self, node: yaml.Node, key: str) -> tuple[str, ...]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, key, "expected a list of strings")
        return tuple(s for item in node.value if (s := self.string(item, key)) is not None)


def parse(text: str, path: Path | None = None) -> Config:
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path or '<config>'}{line}: not valid YAML: {problem}") from None
    if root is None:
        return Config(path=path)
    r = _Reader(path)
    handlers: dict[str, Callable[[yaml.Node, str], Any]] = {
        "flake": r.string,
        "hostName": r.string,
        "alertThreshold": r.severity,
        "exceptions": r.strings,
        "severity": lambda n, k: {pat: r.severity(v, f"{k}.{pat}") for pat, v in r.mapping(n, k, {}).items()},
        "intervals": lambda n, k: _intervals(r, n, k),
        "autoRemediate": r.boolean,
        "realtime": r.boolean,
        "reportDir": r.string,
        "stateDir": r.string,
        "prometheus": lambda n, k: (
            r.string(r.mapping(n, k, {"textfileDir": 1})["textfileDir"], k + ".textfileDir")
            if "textfileDir" in r.mapping(n, k, {"textfileDir": 1})
            else None
        ),
        "kubernetes": lambda n, k: _kubernetes(r, n, k),
        "explain": lambda n, k: _explain(r, n, k),
        "kube": lambda n, k: _kube(r, n, k),
        "reportFormat": lambda n, k: _report_format(r, n, k),
    }
    values = {key: handlers[key](node, key) for key, node in r.mapping(root, "", handlers).items()}
    names = {
        "flake": "flake",
        "hostName": "host_name",
        "alertThreshold": "alert_threshold",
        "exceptions": "exceptions",
        "severity": "severity",
        "intervals": "intervals",
        "autoRemediate": "auto_remediate",
        "realtime": "realtime",
        "reportDir": "report_dir",
        "stateDir": "state_dir",
        "prometheus": "prometheus_textfile_dir",
        "kubernetes": "kubernetes",
        "explain": "explain",
        "kube": "kube",
        "reportFormat": "report_format",
    }
    if "reportFormat" in values:  # the sink publishes in the format asked for (hosts and clusters alike)
        values["kubernetes"] = replace(
            values.get("kubernetes", KubernetesConfig()), report_format=values["reportFormat"]
        )
    return Config(path=path, **{names[k]: v for k, v in values.items()})


def _intervals(r: _Reader, node: yaml.Node, key: str) -> dict[Category, int]:
    allowed = {c.value: c for c in Category.host()}
    out = dict(DEFAULT_INTERVALS)
    for name, v in r.mapping(node, key, allowed).items():
        out[allowed[name]] = r.integer(v, f"{key}.{name}")
    return out


def _kubernetes(r: _Reader, node: yaml.Node, key: str) -> KubernetesConfig:
    fields = r.mapping(node, key, {"enable": 1, "kubeconfig": 1, "namespace": 1, "heartbeat": 1})
    base = KubernetesConfig()
    return KubernetesConfig(
        enable=r.boolean(fields["enable"], key + ".enable") if "enable" in fields else base.enable,
        kubeconfig=r.string(fields["kubeconfig"], key + ".kubeconfig") if "kubeconfig" in fields else None,
        namespace=(r.string(fields["namespace"], key + ".namespace") or base.namespace)
        if "namespace" in fields
        else base.namespace,
        heartbeat=r.integer(fields["heartbeat"], key + ".heartbeat") if "heartbeat" in fields else base.heartbeat,
    )


def _explain(r: _Reader, node: yaml.Node, key: str) -> ExplainConfig:
    fields = r.mapping(node, key, {"url": 1, "model": 1, "keyFile": 1, "timeout": 1})
    base = ExplainConfig()
    return ExplainConfig(
        url=r.string(fields["url"], key + ".url") if "url" in fields else None,
        model=(r.string(fields["model"], key + ".model") or "") if "model" in fields else base.model,
        key_file=r.string(fields["keyFile"], key + ".keyFile") if "keyFile" in fields else None,
        timeout=r.number(fields["timeout"], key + ".timeout") if "timeout" in fields else base.timeout,
    )


def _report_format(r: _Reader, node: yaml.Node, key: str) -> str:
    value = r.string(node, key)
    if value not in REPORT_FORMATS:
        raise r.fail(node, key, f"expected one of {', '.join(REPORT_FORMATS)}, got {value!r}")
    return value


def _kube(r: _Reader, node: yaml.Node, key: str) -> KubeCheckConfig:
    names = ("enable", "manifests", "kubeconfig", "namespace", "cluster", "secretMaxAgeDays", "intervals")
    fields = r.mapping(node, key, {n: 1 for n in (*names, "autoRemediate")})
    base = KubeCheckConfig()
    intervals = dict(base.intervals)
    if "intervals" in fields:
        for name, v in r.mapping(fields["intervals"], key + ".intervals", KUBE_DEFAULT_INTERVALS).items():
            intervals[name] = r.integer(v, f"{key}.intervals.{name}")

    def text(name: str) -> str | None:
        return r.string(fields[name], f"{key}.{name}") if name in fields else None

    return KubeCheckConfig(
        enable=r.boolean(fields["enable"], key + ".enable") if "enable" in fields else base.enable,
        manifests=text("manifests"),
        kubeconfig=text("kubeconfig"),
        namespace=text("namespace"),
        cluster=text("cluster"),
        secret_max_age_days=r.integer(fields["secretMaxAgeDays"], key + ".secretMaxAgeDays")
        if "secretMaxAgeDays" in fields
        else base.secret_max_age_days,
        intervals=intervals,
        auto_remediate=r.boolean(fields["autoRemediate"], key + ".autoRemediate")
        if "autoRemediate" in fields
        else base.auto_remediate,
    )


def load(path: str | Path | None) -> Config:
    """Load the config; without a path, the default file when it exists, else built-in defaults."""
    if path is None:
        if not DEFAULT_PATH.exists():
            return Config()
        path = DEFAULT_PATH
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {p}: {exc}") from None
    return parse(text, p)
