"""`nixdrift explain` against a local chat endpoint: what is sent (no secret, hash or file content),
what is printed, and the clear failures when off, slow or broken."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from nixdrift import cli
from nixdrift.explain import REDACTED, redact
from nixdrift.models import Category, Finding, Fix, Kind, Report, Severity

SHADOW = "$6$rounds=5000$Zx9saltsalt$Q2hhbmdlZCBwYXNzd29yZCBoYXNoIGZvciBhbGljZQ.aB1/cD2"
DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop"
PEM = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH PRIVATE KEY-----"
TOKEN = "ghp_R4nd0mT0k3nV4lu3Th4tL00ksS3cr3tXyZ12"
FILE_CONTENT = "machine api.example.com login bot password hunter2"
STORE_HASH = "0123456789abcdfghijklmnpqrsvwxyz"


@dataclass
class ChatServer:
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    mode: str | int = "ok"
    release: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"


@pytest.fixture
def chat() -> Iterator[ChatServer]:
    state = ChatServer()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.bodies.append(body)
            state.headers.append({k.lower(): v for k, v in self.headers.items()})
            state.paths.append(self.path)
            if state.mode == "hang":
                state.release.wait(10)
                return
            status = state.mode if isinstance(state.mode, int) else 200
            answer = {"choices": [{"message": {"role": "assistant", "content": "firewall/unmanaged: cause X; fix Y"}}]}
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.block_on_close = False
    state.server = server
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()


def _secret_report(report_factory: Callable[..., Report]) -> Report:
    def f(fid: str, cat: Category, expected: str, actual: str, message: str, severity: Severity) -> Finding:
        return Finding(
            id=fid,
            category=cat,
            subject=fid.split("/")[1],
            kind=Kind.CHANGED,
            expected=expected,
            actual=actual,
            message=message,
            fix=Fix(nix=f'users.users.alice.hashedPassword = "{SHADOW}";', command=f"echo {TOKEN}", safe=False),
            severity=severity,
            evidence={"path": "/etc/netrc", "content": FILE_CONTENT, "sha256": DIGEST},
        )

    return report_factory(
        "web1",
        [
            f("users/alice/password", Category.USERS, "hash " + SHADOW[:12], SHADOW, "password changed", Severity.HIGH),
            f(
                "etc/netrc/content",
                Category.ETC,
                f"sha256:{DIGEST}",
                DIGEST,
                "edited (password hunter2)",
                Severity.MEDIUM,
            ),
            f("users/alice/keys", Category.USERS, "", SSH_KEY, f"new key {SSH_KEY}", Severity.HIGH),
            f("etc/ssh-key/content", Category.ETC, "absent", PEM, PEM, Severity.CRITICAL),
            f("services/bot.service/env", Category.SERVICES, "", f"TOKEN={TOKEN}", f"token: {TOKEN}", Severity.HIGH),
            f(
                "generation/current/toplevel",
                Category.GENERATION,
                f"/nix/store/{STORE_HASH}-nixos-system-web1",
                f"/nix/store/{STORE_HASH[::-1]}-nixos-system-web1",
                "running generation differs",
                Severity.HIGH,
            ),
        ],
    )


def _setup(tmp_path: Path, report: Report, url: str | None, timeout: float = 5.0) -> tuple[Path, Path]:
    key = tmp_path / "key"
    key.write_text("sk-test-key\n")
    config = tmp_path / "config.yaml"
    explain = f"explain:\n  url: {url}\n  model: triage-1\n  keyFile: {key}\n  timeout: {timeout}\n" if url else ""
    config.write_text(explain or "alertThreshold: medium\n")
    path = tmp_path / "drift-report.json"
    path.write_text(json.dumps(report.to_json()))
    return config, path


def test_explain_sends_no_secret_and_prints_the_answer(
    chat: ChatServer, tmp_path: Path, report_factory: Callable[..., Report], capsys: pytest.CaptureFixture[str]
) -> None:
    config, path = _setup(tmp_path, _secret_report(report_factory), chat.url)
    code = cli.main(["explain", str(path), "--config", str(config)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "firewall/unmanaged: cause X; fix Y" in out
    assert "6 findings" in out
    assert chat.paths == ["/v1/chat/completions"]
    assert chat.headers[0]["authorization"] == "Bearer sk-test-key"
    raw = chat.bodies[0].decode()
    for secret in (SHADOW, SHADOW[:12], DIGEST, "AAAAC3NzaC1lZDI1NTE5", "OPENSSH", TOKEN, "hunter2", STORE_HASH):
        assert secret not in raw, secret
    for secret in ("$6$", "/etc/netrc", "hashedPassword", "machine api.example.com"):
        assert secret not in raw, secret  # no evidence, no fix, no file content
    body = json.loads(raw)
    assert body["model"] == "triage-1"
    facts = json.loads(body["messages"][1]["content"].split("\n", 1)[1])
    ids = [f["id"] for g in facts["groups"] for f in g["findings"]]
    assert sorted(ids) == sorted(
        [
            "users/alice/password",
            "etc/netrc/content",
            "users/alice/keys",
            "etc/ssh-key/content",
            "services/bot.service/env",
            "generation/current/toplevel",
        ]
    )
    assert facts["groups"][0]["category"] == "etc"  # the most severe group first
    generation = next(g for g in facts["groups"] if g["category"] == "generation")["findings"][0]
    assert generation["expected"] == "/nix/store/…-nixos-system-web1"  # the name stays, the hash goes


def test_explain_is_off_unless_configured(
    tmp_path: Path, report_factory: Callable[..., Report], capsys: pytest.CaptureFixture[str]
) -> None:
    config, path = _setup(tmp_path, _secret_report(report_factory), None)
    code = cli.main(["explain", str(path), "--config", str(config)])
    _, err = capsys.readouterr()
    assert code == 2
    assert "explain is off" in err


def test_a_slow_endpoint_times_out(
    chat: ChatServer, tmp_path: Path, report_factory: Callable[..., Report], capsys: pytest.CaptureFixture[str]
) -> None:
    chat.mode = "hang"
    config, path = _setup(tmp_path, _secret_report(report_factory), chat.url, timeout=0.5)
    code = cli.main(["explain", str(path), "--config", str(config)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert "did not answer within 0.5s" in err


def test_an_endpoint_error_is_reported(
    chat: ChatServer, tmp_path: Path, report_factory: Callable[..., Report], capsys: pytest.CaptureFixture[str]
) -> None:
    chat.mode = 500
    config, path = _setup(tmp_path, _secret_report(report_factory), chat.url)
    code = cli.main(["explain", str(path), "--config", str(config)])
    _, err = capsys.readouterr()
    assert code == 2
    assert "HTTP 500" in err


def test_dry_run_shows_the_request_and_sends_nothing(
    chat: ChatServer, tmp_path: Path, report_factory: Callable[..., Report], capsys: pytest.CaptureFixture[str]
) -> None:
    config, path = _setup(tmp_path, _secret_report(report_factory), chat.url)
    code = cli.main(["explain", str(path), "--config", str(config), "--dry-run"])
    out, _ = capsys.readouterr()
    assert code == 0 and chat.bodies == []
    assert json.loads(out)["model"] == "triage-1"
    assert "sk-test-key" not in out and TOKEN not in out


@pytest.mark.parametrize(
    ("text", "kept", "gone"),
    [
        (f"hash {SHADOW}", "hash", "$6$"),
        ("$y$j9T$abcdefgh$ijklmnopqrstuvwxyz0123456789ABCDEF", "", "$y$"),
        (f"digest {DIGEST}", "digest", DIGEST),
        ("rev 8f3e2a1b9c0d4e5f6a7b", "rev", "8f3e2a1b9c0d4e5f6a7b"),
        ("sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "", "47DEQpj8"),
        (SSH_KEY, "", "AAAAC3"),
        (PEM, "", "b3BlbnNz"),
        ("password=hunter2 user=bob", "user=bob", "hunter2"),
        (f"/nix/store/{STORE_HASH}-htop-3.3.0/bin/htop", "-htop-3.3.0/bin/htop", STORE_HASH),
        (TOKEN, "", TOKEN),
    ],
)
def test_redact_removes_what_looks_like_a_secret(text: str, kept: str, gone: str) -> None:
    out = redact(text)
    assert gone not in out
    assert kept in out


@pytest.mark.parametrize(
    "text",
    [
        "nginx.service is enabled but not declared",
        "/etc/systemd/system/multi-user.target.wants/sshd.service",
        "port 8080/tcp opened on 0.0.0.0",
        "systemd-networkd-wait-online.service",
        'users.users.alice.extraGroups = [ "wheel" ];',
    ],
)
def test_redact_keeps_ordinary_text(text: str) -> None:
    assert redact(text) == text
    assert REDACTED not in redact(text)
