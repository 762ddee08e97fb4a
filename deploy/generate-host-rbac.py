#!/usr/bin/env python3
"""Print the ServiceAccount, Role (resourceNames: [<host>]), RoleBinding and token Secret of each host.

    deploy/generate-host-rbac.py web1 web2 db1 | kubectl apply -f -
    deploy/generate-host-rbac.py --namespace fleet --from-file hosts.txt > hosts-rbac.yaml

Standard library only, so it runs on any admin machine. `object_name` must stay identical to
nixdrift.sinks.kube.object_name (tests/kube check it): it is the name the host's report gets.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import string
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent / "rbac" / "host.yaml.template"


def object_name(host: str) -> str:
    if re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", host):
        return host
    digest = hashlib.sha256(host.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    cleaned = re.sub(r"[^a-z0-9-]+", "-", host.lower()).strip("-")[:54].strip("-")
    return f"{cleaned or 'host'}-{digest}"


def render(host: str, namespace: str, template: str) -> str:
    # the template's header comment is for its readers; json.dumps escapes the raw host name for
    # the double-quoted YAML scalar it sits in
    lines = template.splitlines()
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    return string.Template("\n".join(lines)).substitute(
        NAME=object_name(host), HOST=json.dumps(host)[1:-1], NAMESPACE=namespace
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("hosts", nargs="*", help="host names, as nixdrift reports them (networking.hostName)")
    p.add_argument("--from-file", type=Path, help="one host name per line (# comments allowed)")
    p.add_argument("--namespace", default="nixdrift", help="the hosts' kubernetes.namespace (default: nixdrift)")
    args = p.parse_args(argv)
    hosts = list(args.hosts)
    if args.from_file:
        lines = args.from_file.read_text(encoding="utf-8").splitlines()
        hosts += [s for line in lines if (s := line.split("#", 1)[0].strip())]
    if not hosts:
        p.error("no host given")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", args.namespace):
        p.error(f"--namespace {args.namespace!r} is not a valid namespace name")
    template = TEMPLATE.read_text(encoding="utf-8")
    body = "\n---\n".join(render(h, args.namespace, template).strip() for h in dict.fromkeys(hosts))
    sys.stdout.write(body + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
