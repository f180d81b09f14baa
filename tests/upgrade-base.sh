#!/usr/bin/env bash
# Builds the binaries of a previous release (commit $1) that the rolling-upgrade
# test (tests/tests/e2e/upgrade.rs) starts from, once per commit: a git worktree
# of that commit and its own target dir under <target>/upgrade-base/<commit>/.
# Prints the directory of the binaries. About 4 minutes the first time on 2
# cores (its own target dir: the other commit's workspace crates would
# otherwise overwrite this build's binaries in target/debug); nothing after.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 COMMIT" >&2; exit 2; }
root=$(git rev-parse --show-toplevel)
commit=$(git -C "$root" rev-parse --verify "$1^{commit}")
base=${TARGET_DIR:-$root/target}/upgrade-base/$commit
bins="$base/target/debug"
have_all() {
    for b in railyard railyard-planner railyard-route-daemon railyard-cni railyard-ipam; do
        [ -x "$bins/$b" ] || return 1
    done
}
if ! have_all; then
    if [ ! -d "$base/src" ]; then
        git -C "$root" worktree add --detach "$base/src" "$commit" >&2
    fi
    (cd "$base/src" && ${CARGO:-cargo} build --bins --target-dir "$base/target" \
        -p railyard-route-daemon -p railyard-planner -p railyard-cli -p railyard-ipam-plugin >&2)
    have_all || { echo "$0: $commit did not build every binary into $bins" >&2; exit 1; }
fi
echo "$bins"
