#!/usr/bin/env bash
# One-time set-up on a fresh Debian/Ubuntu machine (idempotent): the system tools nixdrift uses
# and a virtual environment .venv/ with the package.
#
#   bash scripts/bootstrap.sh --demo   only what `nixdrift demo` needs: nix-bin and git, and the package
#   bash scripts/bootstrap.sh          everything the test suite needs, the VM tier's qemu and
#                                      debootstrap included, and the package with its test extras
#
# It says what it is doing as it goes (the first run downloads for a minute or two).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
for arg in "$@"; do
  case $arg in
    --demo) mode=demo ;;
    -h | --help)
      sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "bootstrap: unknown option $arg (use --demo, or nothing for the full set)" >&2
      exit 2
      ;;
  esac
done

say() { echo "bootstrap: $*" >&2; }

# Debian packages, in groups: "what they are for|package ..."
groups=("the demo: real nix builds and the flake's git repository|nix-bin git")
if [ "$mode" = full ]; then
  groups+=(
    "integration and daemon tests: AIDE for the benchmark, inotify, nftables and iptables|aide inotify-tools nftables iptables"
    "the overlay /etc fixtures: mkfs.erofs for the metadata image|erofs-utils"
    "the VM tier: qemu and debootstrap for the guest image|qemu-system-x86 qemu-utils debootstrap e2fsprogs"
  )
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
updated=no
for group in "${groups[@]}"; do
  why=${group%%|*}
  missing=()
  for pkg in ${group#*|}; do
    installed "$pkg" || missing+=("$pkg")
  done
  ((${#missing[@]})) || continue
  if [ "$updated" = no ]; then
    say "updating the package lists (apt-get update)"
    "${sudo_cmd[@]}" apt-get update -qq
    updated=yes
  fi
  say "installing ${missing[*]} ($why)"
  start=$SECONDS
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  say "  installed in $((SECONDS - start)) s"
done

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  say "creating the virtual environment .venv ($python -m venv)"
  "$python" -m venv .venv
fi
if [ "$mode" = full ]; then
  say "installing nixdrift and its test tools into .venv (pip install -e '.[test]')"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
else
  say "installing nixdrift into .venv (pip install -e .)"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e .
fi
say "ready ($mode set-up: .venv/bin/nixdrift, nix $(nix --version | awk '{print $3}'))"
