#!/usr/bin/env bash
# eventmart as `pip install .` gives it, no extras (no pandas/pytest from the test extras): the demos, an alert
# check, serve start-up and a command forwarded to it. Catches a runtime dependency missing from pyproject.toml.
set -euo pipefail
VENV=${1:-.venv-min}
EM="$VENV/bin/eventmart"
tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
"$VENV/bin/pip" check >/dev/null
"$EM" --version
"$EM" demo zen "$tmp/zen" --no-serve >/dev/null
"$EM" demo feed "$tmp/feed" --no-serve --scale 0.05 --days 10 >/dev/null
"$EM" alerts check -p "$tmp/feed" --now 2024-03-11 >/dev/null
"$EM" serve -p "$tmp/feed" --port 0 >"$tmp/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -f "$tmp/feed/.eventmart/server.json" ] && break; sleep 0.2; done
[ -f "$tmp/feed/.eventmart/server.json" ] || { cat "$tmp/serve.log"; echo "serve did not start"; exit 1; }
"$EM" status -p "$tmp/feed" >/dev/null                      # forwarded to the server
"$EM" query "select count(*) from daily_metrics" -p "$tmp/feed" --format csv | tail -1 | grep -qx 10
"$EM" alerts status -p "$tmp/feed" >/dev/null
echo "minimal install: demos, alerts, serve and forwarded commands work"
