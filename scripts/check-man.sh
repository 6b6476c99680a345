#!/usr/bin/env bash
# CI check of the generated man pages: each renders with no groff or man
# warning, and every page it refers to (SEE ALSO, COMMANDS) is one of the
# generated pages or installed on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cargo run --locked -q -p xtask -- man "$dir" >/dev/null
fail=0
pages=("$dir"/*.[18])
[ "${#pages[@]}" -ge 5 ] || { echo "expected vmrm.1, vmrm-{rm,ping,stats}.1 and vmrmd.8, got: ${pages[*]}" >&2; exit 1; }
for page in "${pages[@]}"; do
  name=$(basename "$page")
  warnings=$( { groff -man -Tutf8 -ww -z "$page"; MANWIDTH=80 man --warnings -l "$page" >/dev/null; } 2>&1 || true)
  if [ -n "$warnings" ]; then
    echo "$name: warnings:"; echo "$warnings"; fail=1
  fi
  # References such as vmrm-rm(1), in the source with its font and hyphen
  # escapes taken out.
  refs=$(sed 's/\\-/-/g; s/\\f[BIRP]//g' "$page" | grep -oE '[A-Za-z0-9_.:-]+\([1-8]\)' | sort -u || true)
  for ref in $refs; do
    ref_name=${ref%%(*}
    ref_section=${ref#*(}; ref_section=${ref_section%)}
    if [ -e "$dir/$ref_name.$ref_section" ] || man -w "$ref_section" "$ref_name" >/dev/null 2>&1; then
      continue
    fi
    echo "$name: refers to $ref, which does not exist"; fail=1
  done
  grep -q '^\.SH VERSION' "$page" || { echo "$name: no VERSION section"; fail=1; }
done
[ "$fail" -eq 0 ] || exit 1
echo "man pages check passed: ${#pages[@]} pages"
