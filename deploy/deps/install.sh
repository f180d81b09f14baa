#!/usr/bin/env bash
# `make deps`: installs what `make demo` and `make test` need and this machine
# lacks. Safe to run again: it installs only what is missing.
#
# Needs root and apt (Debian or Ubuntu). The Rust toolchain (cargo) is not
# installed here; rustup owns it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

# The package names of a list file: comments and blank lines dropped.
packages() { sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$1"; }

missing=()
for p in $(packages "$here/debian.list"); do
  status="$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)"
  [[ "$status" == ii* ]] || missing+=("$p")
done

if ((${#missing[@]})); then
  if [[ $EUID -ne 0 ]]; then
    echo "make deps: missing Debian packages: ${missing[*]}; run as root to install them" >&2
    exit 1
  fi
  command -v apt-get >/dev/null || { echo "make deps: needs apt-get (Debian or Ubuntu)" >&2; exit 1; }
  echo "make deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "make deps: all Debian packages present"
fi

# The upstream components built from source (upstream.list): etcd 3.6, the
# Kubernetes control plane, Multus, current CNI plugins and cnitool.
"$here/upstream.sh"

# The fuzzing tools: a nightly toolchain and cargo-fuzz (fuzz.sh).
"$here/fuzz.sh"
