"""The units and config file the NixOS module generates, rendered for the Debian guest.

nixos-module/default.nix is evaluated with real nix through tests/nixos_module/eval-module.nix (a
stand-in for lib, pkgs and the module system), and its `systemd.services` / `systemd.timers` are
written out as NixOS's systemd-lib writes unit files: lists become repeated lines, booleans
true/false, `path` becomes Environment=PATH. The store paths of the stand-in (`path`, coreutils'
kill) do not exist in the guest: they map to the guest's /usr/bin and /usr/sbin.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOP = Path(__file__).resolve().parent.parent
EVAL = TOP / "tests" / "nixos_module" / "eval-module.nix"
PACKAGE = "/opt/nixdrift/venv"
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STORE_BIN = re.compile(r"/nix/store/[0-9a-z]{32}-[^/\s]+/bin/")

# what the VM sets in its configuration.nix (nixos-test.nix sets the same)
VM_OPTIONS: dict[str, Any] = {
    "enable": True,
    "package": PACKAGE,
    "alertThreshold": "low",
    # polled categories (no file to watch) get short intervals so a change shows within a minute
    "intervals": {"firewall": 15, "exposure": 15, "mounts": 15, "services": 30, "packages": 60},
    # the scenario's last step: a low-severity drift with a safe revert is reverted by the service
    "autoRemediate": True,
    "settings": {"severity": {"etc/nixdrift-vm/motd": "low"}},
}


@dataclass(frozen=True, slots=True)
class Rendered:
    units: dict[str, str]  # unit file name -> text
    wanted_by: dict[str, tuple[str, ...]]  # unit file name -> targets
    config: str  # /etc/nixdrift/config.yaml


def evaluate(options: dict[str, Any], host: str) -> dict[str, Any]:
    nix_value = f"builtins.fromJSON {json.dumps(json.dumps(options))}"
    argv = ["nix-instantiate", "--eval", "--strict", "--json", "--read-write-mode", str(EVAL),
            "--arg", "user", nix_value, "--argstr", "hostName", host]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"evaluating the NixOS module failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return STORE_BIN.sub("/usr/bin/", str(v))


def section(name: str, entries: dict[str, Any]) -> str:
    lines = [f"[{name}]"]
    for key in sorted(entries):
        v = entries[key]
        for item in v if isinstance(v, list) else [v]:
            lines.append(f"{key}={value(item)}")
    return "\n".join(lines) + "\n"


def service_unit(svc: dict[str, Any]) -> str:
    unit: dict[str, Any] = {"Description": svc.get("description", "")}
    for key in ("after", "before", "wants", "requires"):
        if svc.get(key):
            unit[key.capitalize()] = " ".join(svc[key])
    # restartTriggers only tell switch-to-configuration what to restart: nothing to render here
    service = dict(svc.get("serviceConfig", {}))
    env = {"PATH": GUEST_PATH} if "path" in svc else {}
    env |= svc.get("environment", {})
    if env:
        service["Environment"] = [f'"{k}={v}"' for k, v in sorted(env.items())]
    text = section("Unit", unit) + "\n" + section("Service", service)
    if svc.get("wantedBy"):
        text += "\n" + section("Install", {"WantedBy": " ".join(svc["wantedBy"])})
    return text


def timer_unit(timer: dict[str, Any]) -> str:
    text = section("Unit", {"Description": timer.get("description", "")})
    text += "\n" + section("Timer", timer.get("timerConfig", {}))
    if timer.get("wantedBy"):
        text += "\n" + section("Install", {"WantedBy": " ".join(timer["wantedBy"])})
    return text


def render(host: str = "vmhost", options: dict[str, Any] | None = None) -> Rendered:
    cfg = evaluate(options or VM_OPTIONS, host)
    units: dict[str, str] = {}
    wanted: dict[str, tuple[str, ...]] = {}
    for name, svc in cfg["systemd"]["services"].items():
        units[f"{name}.service"] = service_unit(svc)
        wanted[f"{name}.service"] = tuple(svc.get("wantedBy", ()))
    for name, timer in cfg["systemd"].get("timers", {}).items():
        units[f"{name}.timer"] = timer_unit(timer)
        wanted[f"{name}.timer"] = tuple(timer.get("wantedBy", ()))
    for name, text in units.items():
        if "/nix/store/" in text:
            raise RuntimeError(f"{name} still names a store path the guest does not have:\n{text}")
    config = Path(cfg["environment"]["etc"]["nixdrift/config.yaml"]["source"]).read_text()
    return Rendered(units=units, wanted_by=wanted, config=config)


if __name__ == "__main__":
    rendered = render()
    for unit_name, unit_text in rendered.units.items():
        print(f"# {unit_name}\n{unit_text}")
    print(f"# /etc/nixdrift/config.yaml\n{rendered.config}")
