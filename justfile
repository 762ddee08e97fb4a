# nixdrift tasks. `just` alone lists them.
set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv/bin"
# the development install when there is one, else the nixdrift on PATH (the NixOS module puts it there)
nixdrift := if path_exists(".venv/bin/nixdrift") == "true" { ".venv/bin/nixdrift" } else { "nixdrift" }
flake := env_var_or_default("NIXDRIFT_FLAKE", "/etc/nixos")
host := env_var_or_default("NIXDRIFT_HOST", `hostname -s 2>/dev/null || cat /etc/hostname`)

default:
    @just --list

# set up .venv and the system tools (idempotent)
setup:
    bash scripts/bootstrap.sh

# the common case: this host against its flake (exit 0 none, 1 drift, 2 error)
check-drift *ARGS:
    {{nixdrift}} check --flake {{quote(flake)}} --host {{quote(host)}} {{ARGS}}

# write the full report set into DIR
drift-report DIR="drift-report":
    {{nixdrift}} report --flake {{quote(flake)}} --host {{quote(host)}} --out {{quote(DIR)}}

# build the bundled demo host and print its report
demo *ARGS: setup
    {{venv}}/nixdrift demo {{ARGS}}

# the whole test suite (what CI runs)
test *ARGS: setup
    {{venv}}/pytest -q {{ARGS}}

# benchmarks: check vs AIDE, daemon latency vs inotifywait, fleet
bench: setup
    {{venv}}/python benchmarks/bench_check.py
    {{venv}}/python benchmarks/bench_daemon.py
    {{venv}}/python benchmarks/bench_fleet.py

# the VM scenario in a qemu guest with real systemd (image cached in /var/cache/nixdrift-vm)
vm-test: setup
    {{venv}}/python vm-tests/harness.py
