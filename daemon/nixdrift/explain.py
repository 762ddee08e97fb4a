"""Optional LLM triage: a redacted summary of one report to an OpenAI-compatible chat endpoint.

Only ids, categories, kinds, severities, subjects, short expected/actual values and messages leave
the host, each passed through `redact`, which removes anything that looks like a password hash, a
key, a token (vendor prefixes, JWTs, `Bearer ...`, `password=`/`token=` settings), URL credentials,
a digest or a store hash. Evidence, fixes and paths are never sent.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nixdrift.config import ExplainConfig
from nixdrift.errors import NixdriftError
from nixdrift.models import Finding, Report, sort_findings
from nixdrift.redact import strip_userinfo

REDACTED = "<redacted>"
MAX_PER_GROUP = 20
MAX_FINDINGS = 100
_VALUE = 80  # longest expected/actual sent
_MESSAGE = 300

SYSTEM_PROMPT = (
    "You help an operator triage configuration drift on a NixOS host. nixdrift compared what the "
    "host's flake declares with the live system and grouped the differences by category and kind "
    "(unmanaged: live but not declared; missing: declared but not live; changed: both differ). "
    "For each group answer in plain text with a title line naming the group, then 'Likely cause:' "
    "in one or two sentences and 'Fix:' in one or two sentences (declare the change in the flake, "
    "or revert it on the host). Be brief and concrete; do not repeat the input."
)

# Order matters: whole structures first, then tokens. Each entry names the shape it removes.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM blocks: private keys, certificates (a block cut short by the length limit too)
    (re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(-----END [A-Z0-9 ]+-----|$)", re.S), REDACTED),
    # OpenSSH public keys (security-key types included) with their base64 body
    (re.compile(r"\b(?:ssh-(?:rsa|ed25519|dss)|ecdsa-sha2-\S+|sk-ssh-\S+)\s+\S+"), REDACTED),
    # JSON Web Tokens: header.payload.signature, base64url, the header starting {" -> eyJ
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), REDACTED),
    # HTTP bearer tokens: "Authorization: Bearer <token>"
    (re.compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9._~+/=-]+"), r"\1\2" + REDACTED),
    # vendor tokens with a known prefix: AWS access key ids, Slack, GitHub, GitLab, npm, OpenAI-style
    (re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b"), REDACTED),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]+"), REDACTED),
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{10,}|github_pat_[A-Za-z0-9_]{10,})"), REDACTED),
    (re.compile(r"\bglpat-[A-Za-z0-9_-]{8,}"), REDACTED),
    (re.compile(r"\bnpm_[A-Za-z0-9]{16,}"), REDACTED),
    (re.compile(r"\bsk-[A-Za-z0-9_-]+"), REDACTED),  # any length: "sk-proj-...", "sk-ant-...", short test keys
    # key=value and key: value settings whose value is a secret
    (
        re.compile(
            r"(?i)\b(password|passwd|passphrase|pwd|pw|pass|secret|client[_-]?secret|token|access[_-]?tokens?"
            r"|api[_-]?key|private[_-]?key|hash|psk)(\s*[=:]\s*)(?:\"[^\"]*\"|'[^']*'|\S+)"
        ),
        r"\1\2" + REDACTED,
    ),
    (  # netrc style "password hunter2"; a plain lowercase word ("password changed") stays
        re.compile(r"(?i:\b(password|passwd|secret|token))(\s+)(?![a-z]+[.,;]?(?:\s|$))\S+"),
        r"\1\2" + REDACTED,
    ),
    (re.compile(r"\$(?:1|2[abxy]?|5|6|7|y|gy|sha1|md5)\$[^\s:;,'\"]*"), REDACTED),  # crypt(3) hashes
    (re.compile(r"(/nix/store/)[0-9a-z]{32}-"), r"\1…-"),  # keep the name, drop the hash
    (re.compile(r"(?i)\b(?:sha1|sha256|sha512|md5|blake2b?)[-:][A-Za-z0-9+/=_-]{8,}"), REDACTED),
    (re.compile(r"\b[0-9a-fA-F]{16,}\b"), REDACTED),  # hex digests, git revisions, key ids
)
_TOKEN = re.compile(r"[A-Za-z0-9+/=_.-]{20,}")


def _looks_secret(token: str) -> bool:
    """A long token mixing digits with letters of both cases (base64 keys, API tokens), or a long
    lowercase-and-digits run without separators (nix base32 hashes)."""
    has_digit = any(c.isdigit() for c in token)
    if not has_digit:
        return False
    mixed = any(c.isupper() for c in token) and any(c.islower() for c in token)
    plain = token.isalnum() and token.lower() == token and len(token) >= 26
    return mixed or plain


def redact(text: str, limit: int | None = None) -> str:
    text = strip_userinfo(text)  # scheme://user:password@host -> scheme://host
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    text = _TOKEN.sub(lambda m: REDACTED if _looks_secret(m.group(0)) else m.group(0), text)
    text = "".join(c if c.isprintable() else " " for c in text)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def _finding(f: Finding) -> dict[str, str]:
    return {
        "id": redact(f.id, 200),
        "subject": redact(f.subject, 120),
        "severity": f.severity.label,
        "expected": redact(f.expected, _VALUE),
        "actual": redact(f.actual, _VALUE),
        "message": redact(f.message, _MESSAGE),
    }


def groups(report: Report) -> list[dict[str, Any]]:
    """Active findings grouped by (category, kind), most severe group first, bounded in size."""
    by_key: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for f in sort_findings(report.active):
        by_key[(f.category.value, f.kind.value)].append(f)
    ordered = sorted(by_key.items(), key=lambda kv: (-kv[1][0].severity.value, kv[0]))
    out: list[dict[str, Any]] = []
    budget = MAX_FINDINGS
    for (category, kind), members in ordered:
        shown = members[: max(0, min(MAX_PER_GROUP, budget))]
        budget -= len(shown)
        out.append(
            {
                "category": category,
                "kind": kind,
                "count": len(members),
                "findings": [_finding(f) for f in shown],
                "omitted": len(members) - len(shown),
            }
        )
    return out


def payload(report: Report, cfg: ExplainConfig) -> dict[str, Any]:
    facts = {
        "host": redact(report.host, 100),
        "threshold": report.threshold.label,
        "summary": report.summary(),
        "unavailable_categories": sorted(
            c.value for c, state in report.categories.items() if state.startswith("unavailable")
        ),
        "groups": groups(report),
    }
    user = "Drift report (secrets, hashes and file contents removed):\n" + json.dumps(facts, indent=1, sort_keys=True)
    return {
        "model": cfg.model,
        "temperature": 0.2,
        "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}],
    }


def _key(cfg: ExplainConfig) -> str | None:
    if not cfg.key_file:
        return None
    try:
        key = Path(cfg.key_file).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise NixdriftError(f"explain: cannot read keyFile {cfg.key_file}: {exc.__class__.__name__}") from None
    if not key:
        raise NixdriftError(f"explain: keyFile {cfg.key_file} is empty")
    return key


def ask(cfg: ExplainConfig, body: Mapping[str, Any]) -> str:
    """POST {url}/chat/completions and return the answer's text; any failure is a NixdriftError."""
    if not cfg.url:
        raise NixdriftError("explain is off: set explain.url (and explain.model, explain.keyFile) in the config")
    url = cfg.url.rstrip("/") + "/chat/completions"
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    key = _key(cfg)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=cfg.timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise NixdriftError(f"explain: {url} answered HTTP {exc.code} {exc.reason}") from None
    except TimeoutError:
        raise NixdriftError(f"explain: {url} did not answer within {cfg.timeout:g}s") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            raise NixdriftError(f"explain: {url} did not answer within {cfg.timeout:g}s") from None
        raise NixdriftError(f"explain: cannot reach {url}: {reason}") from None
    try:
        answer = json.loads(raw)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise NixdriftError(f"explain: {url} sent an answer that is not a chat completion") from None
    if not isinstance(answer, str) or not answer.strip():
        raise NixdriftError(f"explain: {url} sent an empty answer")
    return answer.strip()
