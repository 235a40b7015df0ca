#!/usr/bin/env bash
# Load test of the gateway's hot path through a real Caddy, on loopback
# only, bounded in time: builds the binary, starts it with Caddyfile below,
# runs wrk (Debian package `wrk`) against it, and stops it.
#
#   bash bench/load/load.sh [seconds=10] [connections=32]
#
# Three runs: a baseline of Caddy's own `redir` answering a similar 302 with
# no gateway at all, then `session none` (parsing, signed-URL cache and
# metrics), then `session jwt` with an HS256 cookie (adds the
# verification-cache lookup). Each run uses 1,000 distinct image ids, so the
# URL cache is warm after the first second.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
conns=${2:-32}
command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install wrk" >&2; exit 1; }

work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/imagegate" ./cmd/imagegate

cat > "$work/Caddyfile" <<CADDY
{
	admin off
	persist_config off
	log {
		level WARN
	}
}
http://127.0.0.1:18181 {
	cf_images {
		account_hash emu-account-hash
		signing_key_file $PWD/dev/signing-key
		delivery_url http://127.0.0.1:8787
		variants public thumbnail
		session none
	}
}
http://127.0.0.1:18182 {
	cf_images {
		account_hash emu-account-hash
		signing_key_file $PWD/dev/signing-key
		delivery_url http://127.0.0.1:8787
		variants public thumbnail
		session jwt {
			cookie session
			secret_file $PWD/dev/jwt-secret
		}
	}
}
http://127.0.0.1:18183 {
	header Cache-Control "private, max-age=1800"
	redir http://127.0.0.1:8787/emu-account-hash{path}?exp=1800000000&sig=0000000000000000000000000000000000000000000000000000000000000000 302
}
CADDY
HOME=$work XDG_DATA_HOME=$work XDG_CONFIG_HOME=$work "$work/imagegate" run --config "$work/Caddyfile" >"$work/log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  curl -s -o /dev/null http://127.0.0.1:18182/ && break
  sleep 0.1
done

token=$("$work/imagegate" cf-images-token --secret-file dev/jwt-secret --sub loadtest --ttl 1h)
cat > "$work/ids.lua" <<'LUA'
-- 1,000 distinct UUID-shaped ids, requested round-robin.
local n = 0
request = function()
  n = (n + 1) % 1000
  return wrk.format("GET", string.format("/img/2cdc28f0-017a-49c4-9ed7-%012d/thumbnail", n))
end
LUA

echo "== baseline, Caddy's redir: $conns connections, ${secs}s"
wrk -t 2 -c "$conns" -d "${secs}s" --latency -s "$work/ids.lua" http://127.0.0.1:18183
echo
echo "== session none: $conns connections, ${secs}s"
wrk -t 2 -c "$conns" -d "${secs}s" --latency -s "$work/ids.lua" http://127.0.0.1:18181
echo
echo "== session jwt (HS256 cookie): $conns connections, ${secs}s"
wrk -t 2 -c "$conns" -d "${secs}s" --latency -s "$work/ids.lua" -H "Cookie: session=$token" http://127.0.0.1:18182
