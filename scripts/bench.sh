#!/usr/bin/env bash
# Every benchmark under bench/ (`npm run bench`, or `npm run bench -- NAME…`).
# Each prints its figures and a ratio against a baseline taken in the same run.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
names=("$@")
# Helpers they share live in bench/lib/.
[ ${#names[@]} -gt 0 ] || names=(bench/*.ts)
status=0
for f in "${names[@]}"; do
  [ -f "$f" ] || f="bench/$f.ts"
  echo "== $f"
  node "$f" || { echo "!! $f failed"; status=1; }
done
exit $status
