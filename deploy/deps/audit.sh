#!/usr/bin/env bash
# The dependency audit: runs a command (by default `make test`) while fanotify
# (fatrace) records every file that any process opens, then fails if one of
# those files belongs to a Debian package that `make deps` would not install.
#
# Why this and not a list of files to check: a missing install step hides
# behind a machine that happens to have the package. Here the machine itself
# reports what the build and the tests really opened, whoever wrote the code
# that opened it, so a new dependency cannot slip in unlisted.
#
# A package is accounted for when it is in debian.list, is pulled in by one of
# those (Depends and Pre-Depends, recursively), or is one every Debian system
# has (Essential: yes or Priority: required). Files no package owns (our
# target/, the Rust toolchain under ~/.rustup, Go under /usr/local/go) are not
# Debian's business and are skipped.
#
# Usage: audit.sh [--report FILE] [-- COMMAND...]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
report=""
if [[ "${1:-}" == "--report" ]]; then report="$2"; shift 2; fi
[[ "${1:-}" == "--" ]] && shift
(($#)) || set -- make test

command -v fatrace >/dev/null || { echo "audit: fatrace is missing; run make deps" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Record opens (O) system-wide, deduplicated as they come so the log stays small.
fatrace -f O 2>"$work/fatrace.err" > >(awk '{ comm = $1; sub(/\([0-9]+\):$/, "", comm); sub(/^[^ ]*\([0-9]+\): [A-Z+<>]+ +/, "")
           if (!($0 in seen)) { seen[$0] = 1; print $0 "\t" comm; fflush() } }' \
  >"$work/opened") &
tracer=$!
sleep 1   # fatrace sets its marks before the command starts
status=0
"$@" || status=$?
# fatrace must have watched the whole run: if it died, the record is incomplete.
if ! kill -0 "$tracer" 2>/dev/null; then
  echo "audit: fatrace stopped during the run; its errors:" >&2; cat "$work/fatrace.err" >&2; exit 1
fi
kill -INT "$tracer" 2>/dev/null || true
wait "$tracer" 2>/dev/null || true
sleep 0.2   # the awk behind it drains the pipe
# fatrace prints a line for each event it could not resolve to a path (seen:
# open_by_handle_at failing with ENOMEM during the test run). Counted, not
# fatal: a Debian file that the build or the tests need is opened again and
# again, so a few lost events do not hide it.
if [[ -s "$work/fatrace.err" ]]; then
  echo "audit: fatrace could not resolve $(wc -l <"$work/fatrace.err") events (first: $(head -1 "$work/fatrace.err"))"
fi

# usrmerge: dpkg may list /bin/ip while the kernel reports /usr/bin/ip.
canon() { sed -E 's#^/(bin|sbin|lib|lib32|lib64|libx32)/#/usr/\1/#'; }

# path -> package, from dpkg's own file lists (one pass, not one dpkg -S per path).
for list in /var/lib/dpkg/info/*.list; do
  pkg="${list##*/}"; pkg="${pkg%.list}"; pkg="${pkg%%:*}"
  sed "s#\$#\t$pkg#" "$list"
done | canon | awk -F'\t' '!($1 in o) { o[$1] = $2; print }' >"$work/owners"

# path <TAB> the first program seen opening it. Directories are left out: many
# packages list the same directory (/etc/ssl/certs), and reading one needs none.
canon <"$work/opened" | sort -u -t$'\t' -k1,1 \
  | while IFS=$'\t' read -r path comm; do [[ -d "$path" ]] || printf '%s\t%s\n' "$path" "$comm"; done \
  >"$work/opened.canon"
# package <TAB> path <TAB> program
awk -F'\t' 'NR == FNR { used[$1] = $2; next } ($1 in used) { print $2 "\t" $1 "\t" used[$1] }' \
  "$work/opened.canon" "$work/owners" | sort -u >"$work/used"

# The packages accounted for: the listed ones, the ignored ones (opened when
# present, never needed: see audit-ignore.list), what either pulls in, and
# what every Debian system has.
names() { sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$1"; }
closure() {
  apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances "$@" 2>/dev/null \
    | sed -nE 's/^ *(Pre)?Depends: <?([^ >]+)>?$/\2/p; s/^([a-z0-9][^ ]*)$/\1/p'
}
{
  # shellcheck disable=SC2046
  closure $(names "$here/debian.list") $(names "$here/audit-ignore.list")
  dpkg-query -W -f='${Package} ${Essential} ${Priority}\n' \
    | awk '$2 == "yes" || $3 == "required" { print $1 }'
} | sed 's/:.*//' | sort -u >"$work/allowed"

awk -F'\t' 'NR == FNR { ok[$0] = 1; next } !($1 in ok)' "$work/allowed" "$work/used" >"$work/unlisted"
[[ -n "$report" ]] && cp "$work/used" "$report"

echo "audit: the command opened $(wc -l <"$work/opened.canon") distinct files, $(wc -l <"$work/used") of them from $(cut -f1 "$work/used" | sort -u | wc -l) Debian packages"
if [[ -s "$work/unlisted" ]]; then
  echo "audit: FAILED: these packages were used but make deps does not install them (add them to deploy/deps/debian.list):" >&2
  awk -F'\t' '{ n[$1]++; if (n[$1] <= 3) print "  " $1 ": " $2 " (opened by " $3 ")" }' "$work/unlisted" >&2
  exit 1
fi
echo "audit: every package used is installed by make deps"
exit "$status"
