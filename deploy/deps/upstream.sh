#!/usr/bin/env bash
# Builds the upstream components of upstream.list from source, through the Go
# module proxy, each in a throwaway wrapper module: several of them cannot be
# built with a bare `go install mod@version` (k8s.io/kubernetes replaces its
# staging modules with local paths; the proxy refuses the version listing
# that `go install` asks for Multus). The wrapper requires the module at its
# pin and, for Kubernetes, replaces each staging module with its v0.x release.
#
# Idempotent: a component whose directory holds a stamp of exactly this build
# (its upstream.list line and this script's recipe revision) is skipped.
# Static binaries (CGO_ENABLED=0), so nothing depends on this machine's libc.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="${RAILYARD_UPSTREAM:-/opt/railyard-upstream}"
mkdir -p "$root/bin"

command -v go >/dev/null || { echo "make deps: Go is needed to build the upstream components (go 1.24 or later on PATH)" >&2; exit 1; }
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
# Bump when the recipe below changes, so every component is rebuilt.
recipe=2

# Prints a replace line per staging module of k8s.io/kubernetes@$1.
kubernetes_replaces() {
  local gomod minor
  gomod="$(go mod download -json "k8s.io/kubernetes@$1" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  minor="v0${1#v1}"   # v1.34.4 -> v0.34.4
  sed -n 's#^\s*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\1 => \1 '"$minor"'#p' "$gomod"
}

# A module's own versioned replace lines (not local paths), which a wrapper
# module does not inherit: Whereabouts pins gogo/protobuf this way.
module_replaces() {
  local gomod
  gomod="$(go mod download -json "$1@$2" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  sed -n 's#^\s*replace \(\S* => \S* v[0-9][^ ]*\)\s*$#replace \1#p' "$gomod"
}

# Go linker flags that stamp the version a binary reports. Kubernetes needs
# its own: without them it calls itself v0.0.0, and its compatibility-version
# checks take that for a very old release.
ldflags() {
  local name="$1" version="$2" minor
  case "$name" in
    kubernetes)
      minor="${version#v1.}"; minor="${minor%%.*}"
      for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        printf -- '-X %s.gitVersion=%s -X %s.gitMajor=1 -X %s.gitMinor=%s -X %s.gitTreeState=clean ' \
          "$pkg" "$version" "$pkg" "$pkg" "$minor" "$pkg"
      done ;;
  esac
  printf -- '-s'
}

build() {
  local name="$1" version="$2" module="$3"; shift 3
  local dest="$root/$name-$version"
  local stamp="recipe $recipe: $name $version $module $*"
  # Our own Go source (a package column `src:<dir>` under deploy/deps): its
  # content is part of the stamp, so an edit rebuilds it.
  local src=""
  if [[ "${1:-}" == src:* ]]; then
    src="$here/${1#src:}"
    stamp="$stamp $(cat "$src"/*.go | sha256sum | cut -c1-16)"
  fi
  if [[ "$(head -1 "$dest/.built" 2>/dev/null)" == "$stamp" ]]; then
    link "$dest"; return
  fi
  echo "make deps: building $name $version from $module (first time only; a few minutes)"
  local started=$SECONDS work
  work="$(mktemp -d)"
  {
    echo "module railyard.local/upstream/$name"
    echo "go 1.24"
    echo "require $module $version"
    [[ "$name" == kubernetes ]] && kubernetes_replaces "$version" | sed 's/^/replace /'
    [[ "$name" == whereabouts ]] && module_replaces "$module" "$version"
  } >"$work/go.mod"
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp/bin"
  if [[ -n "$src" ]]; then
    cp "$src"/*.go "$work/"
    (cd "$work" && go build -trimpath -ldflags="$(ldflags "$name" "$version")" -o "$dest.tmp/bin/railyard-$name" .)
  elif [[ "$name" == etcd ]]; then
    # etcd's own main.go sits in a module with local replaces; it is one call.
    printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' >"$work/main.go"
    (cd "$work" && go build -trimpath -ldflags="$(ldflags "$name" "$version")" -o "$dest.tmp/bin/etcd" .)
  else
    local pkgs=()
    for p in "$@"; do pkgs+=("$module/$p"); done
    (cd "$work" && go build -trimpath -ldflags="$(ldflags "$name" "$version")" -o "$dest.tmp/bin/" "${pkgs[@]}")
    # A main package at a directory named cmd (Whereabouts) is named after the component.
    if [[ -e "$dest.tmp/bin/cmd" ]]; then mv "$dest.tmp/bin/cmd" "$dest.tmp/bin/$name"; fi
  fi
  printf '%s\nbuilt in %s s\n' "$stamp" "$((SECONDS - started))" >"$dest.tmp/.built"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
  rm -rf "$work"
  link "$dest"
  echo "make deps: $name $version built in $((SECONDS - started)) s"
}

# /opt/railyard-upstream/bin/<binary> -> the pinned build.
link() {
  for b in "$1"/bin/*; do ln -sfn "$b" "$root/bin/$(basename "$b")"; done
}

while read -r name version module pkgs; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  # shellcheck disable=SC2086
  build "$name" "$version" "$module" $([[ "$pkgs" == - ]] || echo $pkgs)
done <"$here/upstream.list"
