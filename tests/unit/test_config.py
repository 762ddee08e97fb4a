"""The YAML configuration: a valid file, and every malformed one named by file, line and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nixdrift import config
from nixdrift.errors import ConfigError
from nixdrift.models import Category, Severity

FULL = """\
flake: "git+https://example.org/infra"
hostName: web1
alertThreshold: high
exceptions:
  - "etc//etc/motd*"
  - "/var/lib/app/*"
severity:
  "network/*": medium
  "users/*/wheel": low
intervals:
  etc: 60
  repo: 3600
autoRemediate: false
realtime: false
reportDir: /var/lib/nixdrift/reports
stateDir: /var/lib/nixdrift
prometheus:
  textfileDir: /var/lib/prometheus-node-exporter
kubernetes:
  enable: true
  namespace: drift
  heartbeat: 600
explain:
  url: http://127.0.0.1:8080/v1
  model: small
  keyFile: /run/secrets/llm
  timeout: 12.5
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_full_file_sets_every_option(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, FULL))
    assert cfg.path == tmp_path / "config.yaml"
    assert cfg.flake == "git+https://example.org/infra"
    assert cfg.host_name == "web1"
    assert cfg.alert_threshold is Severity.HIGH
    assert cfg.exceptions == ("etc//etc/motd*", "/var/lib/app/*")
    assert cfg.severity == {"network/*": Severity.MEDIUM, "users/*/wheel": Severity.LOW}
    assert cfg.intervals[Category.ETC] == 60 and cfg.intervals[Category.REPO] == 3600
    assert cfg.intervals[Category.PACKAGES] == config.DEFAULT_INTERVALS[Category.PACKAGES]
    assert (cfg.auto_remediate, cfg.realtime) == (False, False)
    assert cfg.report_dir == "/var/lib/nixdrift/reports" and cfg.state_dir == "/var/lib/nixdrift"
    assert cfg.prometheus_textfile_dir == "/var/lib/prometheus-node-exporter"
    assert cfg.kubernetes == config.KubernetesConfig(enable=True, kubeconfig=None, namespace="drift", heartbeat=600)
    assert cfg.explain == config.ExplainConfig("http://127.0.0.1:8080/v1", "small", "/run/secrets/llm", 12.5)


def test_the_config_builds_the_policy(tmp_path: Path) -> None:
    policy = config.load(write(tmp_path, FULL)).policy()
    assert policy.threshold is Severity.HIGH
    assert policy.exceptions == ("etc//etc/motd*", "/var/lib/app/*")
    assert policy.severity_overrides["network/*"] is Severity.MEDIUM
    assert config.load(write(tmp_path, FULL)).policy(threshold=Severity.INFO).threshold is Severity.INFO


def test_empty_file_and_comments_only_give_defaults(tmp_path: Path) -> None:
    assert config.parse("") == config.Config()
    cfg = config.load(write(tmp_path, "# nothing here\n"))
    assert cfg.alert_threshold is Severity.MEDIUM and cfg.exceptions == () and cfg.realtime is True


def test_missing_default_file_gives_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "DEFAULT_PATH", tmp_path / "absent.yaml")
    assert config.load(None) == config.Config()


def test_unreadable_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config .*nope\.yaml"):
        config.load(tmp_path / "nope.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"hostName: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"cannot read config .*latin1\.yaml"):
        config.load(bad)


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}:"), message
    return message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("flake: x\nalertTreshold: high\n", ":2: alertTreshold: unknown key (did you mean 'alertThreshold'?)"),
        ("flake: x\nexceptoins: []\n", ":2: exceptoins: unknown key (did you mean 'exceptions'?)"),
        ("kubernetes:\n  namespce: x\n", ":2: kubernetes.namespce: unknown key (did you mean 'namespace'?)"),
        ("intervals:\n  etc: 5\n  service: 10\n", ":3: intervals.service: unknown key (did you mean 'services'?)"),
        ("explain:\n  keyfile: /k\n", ":2: explain.keyfile: unknown key (did you mean 'keyFile'?)"),
        ("zzz: 1\n", ":1: zzz: unknown key (known: "),
        ("prometheus:\n  textfiledir: /x\n", ":2: prometheus.textfiledir: unknown key (did you mean 'textfileDir'?)"),
    ],
)
def test_unknown_key_names_line_and_suggests_the_near_one(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alertThreshold: severe\n", ":1: alertThreshold: unknown severity 'severe'"),
        ("realtime: maybe\n", ":1: realtime: expected true or false, got 'maybe'"),
        ("autoRemediate: 1\n", ":1: autoRemediate: expected true or false"),
        ("exceptions: /etc/motd\n", ":1: exceptions: expected a list of strings"),
        ("exceptions:\n  - ok\n  - [nested]\n", ":3: exceptions: expected a single value"),
        ("severity:\n  'etc/*': urgent\n", ":2: severity.etc/*: unknown severity 'urgent'"),
        ("severity: high\n", ":1: severity: expected a mapping"),
        ("intervals:\n  etc: 0\n", ":2: intervals.etc: expected a whole number >= 1, got 0"),
        ("intervals:\n  etc: 1.5\n", ":2: intervals.etc: expected a whole number >= 1, got 1.5"),
        ("intervals:\n  etc: true\n", ":2: intervals.etc: expected a whole number >= 1, got True"),
        ("kubernetes:\n  heartbeat: soon\n", ":2: kubernetes.heartbeat: expected a whole number"),
        ("kubernetes: true\n", ":1: kubernetes: expected a mapping"),
        ("explain:\n  timeout: -1\n", ":2: explain.timeout: expected a positive number, got -1"),
        ("hostName: [a, b]\n", ":1: hostName: expected a single value"),
        ("hostName: {a: b}\n", ":1: hostName: expected a single value"),
        ("flake: x\nflake: y\n", ":2: flake: duplicate key"),
        ("hostName: yes\n", ":1: hostName: expected a string, got True (quote it)"),
        ("exceptions:\n  - off\n", ":2: exceptions: expected a string, got False (quote it)"),
        ("flake: !!python/name:os.system x\n", ":1: flake: cannot read value"),
        ("stateDir: 2024-13-45\n", ":1: stateDir: cannot read value"),
    ],
)
def test_malformed_values_name_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, text)


def test_top_level_that_is_not_a_mapping(tmp_path: Path) -> None:
    message = error_of(tmp_path, "- flake\n- host\n")
    assert message.endswith(":1: expected a mapping"), message


@pytest.mark.parametrize(
    "text",
    ["flake: [unclosed\n", "a: b\n c: d\n  - e\n", "flake: 'x\n", "key: value\n\tbad: tab\n", "---\na: 1\n---\nb: 2\n"],
)
def test_invalid_yaml_names_file_and_line(tmp_path: Path, text: str) -> None:
    message = error_of(tmp_path, text)
    assert "not valid YAML" in message
    line = message.split(":")[1]
    assert line.isdigit() and 1 <= int(line) <= text.count("\n") + 1, message


def test_parse_without_path_says_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^<config>:1: realtime: expected true or false"):
        config.parse("realtime: perhaps\n")


def test_quoted_yes_is_a_string_and_numbers_become_text() -> None:
    cfg = config.parse("hostName: 'yes'\nflake: 42\nexceptions: [1.5, 'x']\n")
    assert cfg.host_name == "yes" and cfg.flake == "42" and cfg.exceptions == ("1.5", "x")


def test_null_values_fall_back_to_defaults() -> None:
    cfg = config.parse("flake:\nkubernetes:\n  namespace:\nprometheus:\n  textfileDir:\n")
    assert cfg.flake is None
    assert cfg.kubernetes.namespace == "nixdrift"
    assert cfg.prometheus_textfile_dir is None


KEYS = ("flake", "hostName", "exceptions", "severity", "intervals", "kubernetes", "explain", "prometheus", "etc")
KEYS += ("textfileDir", "heartbeat", "timeout", "enable", "namespace", "'users/*'", "? [a]", "<<", "&a k", "*a")
VALUES = ("", "high", "yes", "~", "1", "-3", "1.5", "[a, [b]]", "{a: 1}", "*a", "&a x", "!!binary aGk=", "2024-13-45")
VALUES += ("!!python/none ''", "'x", '"\\q"', "|", "- x", "!!set {a}", "!!omap [a: 1]", ".inf", "0x1F", "1_000")

yaml_line = st.builds(
    lambda indent, key, value: f"{' ' * indent}{key}: {value}",
    st.integers(0, 4),
    st.sampled_from(KEYS),
    st.sampled_from(VALUES),
)
yaml_ish = st.lists(st.one_of(yaml_line, st.sampled_from(("  - x", "- y", "---", "# c", "  - [z]")))).map("\n".join)


@settings(max_examples=300)
@given(st.one_of(st.text(), yaml_ish))
def test_any_text_gives_a_config_or_a_config_error(text: str) -> None:
    try:
        cfg = config.parse(text)
    except ConfigError as exc:
        assert str(exc).startswith("<config>")
    else:
        assert isinstance(cfg, config.Config)
