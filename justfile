# nixdrift tasks. `just` alone lists them.
set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv/bin"
# the development install when there is one, else the nixdrift on PATH (the NixOS module puts it there)
nixdrift := if path_exists(".venv/bin/nixdrift") == "true" { ".venv/bin/nixdrift" } else { "nixdrift" }
flake := env_var_or_default("NIXDRIFT_FLAKE", "/etc/nixos")
host := env_var_or_default("NIXDRIFT_HOST", `hostname -s 2>/dev/null || cat /etc/hostname`)
# after a nixdrift command failed: say what its exit code means, and keep it
outcome := '{ rc=$?; case $rc in 1) echo "nixdrift: drift found (exit 1)" >&2 ;; 2) echo "nixdrift: could not check (exit 2, see above)" >&2 ;; *) echo "nixdrift: failed (exit $rc)" >&2 ;; esac; exit $rc; }'

# (the just that runs this file, not whichever is on PATH: bootstrap installs it into .venv/bin)

# list the recipes
default:
    @{{quote(just_executable())}} --justfile {{quote(justfile())}} --list

# set up .venv and the system tools (idempotent; --demo: only what the demo needs)
setup *FLAGS:
    bash scripts/bootstrap.sh {{FLAGS}}

# (on drift or error: one line saying which, instead of just's "recipe failed" message)

# the common case: this host against its flake (exit 0 none, 1 drift, 2 error)
[no-exit-message]
check-drift *ARGS:
    @{{nixdrift}} check --flake {{quote(flake)}} --host {{quote(host)}} {{ARGS}} || {{outcome}}

# write the full report set into DIR (exit 0 none, 1 drift, 2 error)
[no-exit-message]
drift-report DIR="drift-report":
    @{{nixdrift}} report --flake {{quote(flake)}} --host {{quote(host)}} --out {{quote(DIR)}} || {{outcome}}

# build the bundled demo host and print its report
demo *ARGS: (setup "--demo")
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
