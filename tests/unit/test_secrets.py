"""Secrets in values (issue 8, item 7c): URL credentials never reach a finding, and the `explain`
payload — the one thing nixdrift sends off the host for a model to read — holds none of the common
token shapes, while the words around them stay readable."""

from __future__ import annotations

import json

import pytest

from nixdrift.compare.common import finding, sh
from nixdrift.config import ExplainConfig
from nixdrift.explain import payload, redact
from nixdrift.models import Category, FlakeInfo, Generations, Kind, Report
from nixdrift.redact import strip_userinfo
from nixdrift.report import markdown, render, script
from nixdrift.sinks import kube

PEM = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU\n-----END OPENSSH PRIVATE KEY-----"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"

# (the secret as it appears in a value, the part of it that must be gone)
SHAPES = [
    ("postgres://admin:Pg5ecret@db.example/prod", "Pg5ecret"),
    ("curlftpfs#ftp://bob:FtpPw77@ftp.example/pub", "FtpPw77"),
    ("https://x-access-token:tok9zq@github.com/org/repo.git", "tok9zq"),
    ("AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    ("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "AbCdEfGhIjKlMnOpQrStUvWx"),
    ("xoxp-98765-43210-zyxwvut", "zyxwvut"),
    ("ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", "A1b2C3d4E5f6"),
    ("gho_16C7e42F292c6912E7710c838347Ae178B4a", "16C7e42F292c"),
    ("github_pat_11ABCDEFG0_abcdefghijklmnopqrstuvwx", "abcdefghijklmnop"),
    ("glpat-Xy3_zzQQwwEErrTT99", "Xy3_zzQQ"),
    ("npm_Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78", "Ab12Cd34Ef56"),
    ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
    ("sk-proj-Zx81Lq09Mm77Nn66Bb55Vv44", "Zx81Lq09"),
    ("sk-x7", "sk-x7"),  # any length
    ("password=hunter2", "hunter2"),
    ("passwd=hunter3", "hunter3"),
    ("pw=hunter4", "hunter4"),
    ("secret=sesame-open", "sesame-open"),
    ("token=t0k3n-value", "t0k3n-value"),
    ("password: 'two words'", "two words"),
    ("access-tokens = gitlab.example=PAT:qq77rr", "qq77rr"),
    (PEM, "b3BlbnNzaC1rZXkt"),
    (JWT, "eyJzdWIiOiIxMjM0NTY3ODkwIn0"),
    ("$6$saltsalt$c2VjcmV0LWhhc2gtdGhhdA", "c2VjcmV0LWhhc2gtdGhhdA"),
    ("$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7", "X3DX6M94c7o"),
]


def report_with(value: str) -> Report:
    f = finding(
        rule_name="etc-unmanaged",
        id="etc/app.env",
        category=Category.ETC,
        subject="/etc/app.env",
        kind=Kind.UNMANAGED,
        expected="absent",
        actual=f"alpha {value} omega",
        message=f"alpha {value} omega",
    )
    return Report(
        host="web1",
        generated_at="2024-05-01T10:00:00Z",
        flake=FlakeInfo("git+file:///etc/nixos", "abc123"),
        generations=Generations(None, None, None),
        categories={Category.ETC: "drift"},
        findings=(f,),
    )


def test_the_table_covers_at_least_twenty_shapes() -> None:
    assert len(SHAPES) >= 20


@pytest.mark.parametrize(("secret", "gone"), SHAPES, ids=[s[:16] for s, _ in SHAPES])
def test_explain_payload_holds_no_secret_and_keeps_the_words_around_it(secret: str, gone: str) -> None:
    body = payload(report_with(secret), ExplainConfig(url="http://127.0.0.1:9", model="m"))
    sent = json.dumps(body, ensure_ascii=False)
    assert gone not in sent
    facts = json.loads(body["messages"][1]["content"].split("\n", 1)[1])
    (sent_finding,) = facts["groups"][0]["findings"]
    message = sent_finding["message"]
    assert message.startswith("alpha ") and message.endswith(" omega"), message
    assert gone not in redact(f"before {secret} after") and "before" in redact(f"before {secret} after")


@pytest.mark.parametrize(
    "text",
    [
        "nginx.service is enabled but not declared",
        "the password changed on 2024-05-01",
        "disk-usage of /var is 80%",
        "https://cache.nixos.org/nix-cache-info",
        "git@github.com:org/repo.git",
        "pkg@1.0 from https://registry.example/pkg@1.0",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("symlink -> postgres://admin:Pg5ecret@db/prod", "symlink -> postgres://db/prod"),
        ("curlftpfs#ftp://bob:FtpPw77@ftp.example", "curlftpfs#ftp://ftp.example"),
        ("https://u:p/w@h.example/x", "https://h.example/x"),  # a slash in the password
        ("https://tok@github.com/org/repo", "https://github.com/org/repo"),
        ("https://host/pkg@1.0", "https://host/pkg@1.0"),  # an @ in the path is no userinfo
    ],
)
def test_strip_userinfo(value: str, shown: str) -> None:
    assert strip_userinfo(value) == shown


def mount_finding() -> Report:
    """A mount whose source carries credentials, in every field a comparator could put it."""
    source = "curlftpfs#ftp://bob:FtpPw77@ftp.example"
    f = finding(
        rule_name="mount-unmanaged",
        id=f"mounts//mnt/ftp/{source}",
        category=Category.MOUNTS,
        subject="/mnt/ftp",
        kind=Kind.UNMANAGED,
        expected="not mounted",
        actual=f"{source} (fuse)",
        message=f"/mnt/ftp is mounted from {source}",
        nix=f'fileSystems."/mnt/ftp" = {{ device = "{source}"; fsType = "fuse"; }};',
        command=sh("mount", "-t", "fuse", source, "/mnt/ftp"),
        safe=True,
        evidence={"path": "/mnt/ftp", "source": source},
    )
    return Report(
        host="web1",
        generated_at="2024-05-01T10:00:00Z",
        flake=FlakeInfo("git+https://deploy:FlakeTok@git.example/cfg", "abc123"),
        generations=Generations(None, None, None),
        categories={Category.MOUNTS: "drift"},
        findings=(f,),
    )


def test_url_credentials_never_reach_a_finding_nor_any_format() -> None:
    report = mount_finding()
    (f,) = report.findings
    stored = json.dumps(f.to_json())  # what the history database and drift-report.json keep
    assert "FtpPw77" not in stored and "bob" not in stored
    assert f.actual == "curlftpfs#ftp://ftp.example (fuse)"
    assert not f.fix.safe  # a command that lost its credentials is only shown, never run
    outputs = {
        "json": render(report, "json"),
        "text": render(report, "text"),
        "markdown": markdown.render(report),
        "script": script.render(report),
        "policyreport": json.dumps(kube.policy_report(report)),
    }
    for name, out in outputs.items():
        for secret in ("FtpPw77", "FlakeTok"):
            assert secret not in out, name
    assert "\nrun mount" not in outputs["script"]
