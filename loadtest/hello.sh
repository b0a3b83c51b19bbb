#!/usr/bin/env bash
# The `hello` benchmark: Outpost's hello guest vs nginx `return 200`, same machine, same run.
#
#   bash loadtest/hello.sh            # wrk -t1 -c64 -d10s against each
#   DURATION=30s CONNECTIONS=128 bash loadtest/hello.sh
#
# Servers are pinned to CPU 0 and wrk to CPU 1 (taskset), one node worker thread.
# Needs wrk, nginx and taskset (apt-get install wrk nginx-light util-linux). Traffic stays
# on 127.0.0.1. Prints requests/s and latency for both, their ratio, and the median guest
# instantiation time from the node's Server-Timing header (sampled after the load run).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
NODE_PORT=${NODE_PORT:-7781}
NGINX_PORT=${NGINX_PORT:-7782}
work=$(mktemp -d)
trap 'kill $(cat "$work"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT

for tool in wrk nginx taskset; do
    command -v "$tool" >/dev/null || { echo "loadtest: $tool is missing (apt-get install wrk nginx-light util-linux)" >&2; exit 1; }
done

cargo build --release -p outpost-proxy --quiet
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
hello="guest-examples/target/wasm32-wasip2/release/hello.wasm"

cat > "$work/outpost.toml" <<TOML
[server]
listen = ["127.0.0.1:$NODE_PORT"]
threads = 1
[services.hello]
domains = ["*"]
guest = "$PWD/$hello"
TOML
OUTPOST_LOG=warn taskset -c 0 "$target_dir/release/outpost" serve --config "$work/outpost.toml" >"$work/node.log" 2>&1 &
echo $! > "$work/node.pid"

cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / { return 200 "Hello, world! (from nginx)\n"; }
    }
}
NGINX
taskset -c 0 nginx -c "$work/nginx.conf" -p "$work" &
echo $! > "$work/nginx-main.pid"

for port in $NODE_PORT $NGINX_PORT; do
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
        sleep 0.1
    done
done

run() {
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "$1" > "$work/$2.wrk"
    grep -q "Socket errors\|Non-2xx" "$work/$2.wrk" && { echo "loadtest: $2 had errors:"; cat "$work/$2.wrk"; exit 1; }
    awk '/Requests\/sec/ {print $2}' "$work/$2.wrk"
}
# Warm up both, then measure.
taskset -c 1 wrk -t1 -c8 -d1s "http://127.0.0.1:$NODE_PORT/" >/dev/null
taskset -c 1 wrk -t1 -c8 -d1s "http://127.0.0.1:$NGINX_PORT/" >/dev/null
node_rps=$(run "http://127.0.0.1:$NODE_PORT/" outpost)
nginx_rps=$(run "http://127.0.0.1:$NGINX_PORT/" nginx)

instantiate=$(python3 - "$NODE_PORT" <<'PY'
import http.client, re, statistics, sys
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
samples = []
for _ in range(2000):
    conn.request("GET", "/")
    r = conn.getresponse(); r.read()
    m = re.search(r"instantiate;dur=([0-9.]+)", r.getheader("server-timing") or "")
    if m: samples.append(float(m.group(1)) * 1000)
print(f"{statistics.median(samples):.1f}")
PY
)

echo "== outpost hello (1 worker, CPU 0) =="; sed -n '/Latency/,/Requests\/sec/p' "$work/outpost.wrk"
echo "== nginx return 200 (1 worker, CPU 0) =="; sed -n '/Latency/,/Requests\/sec/p' "$work/nginx.wrk"
python3 - "$node_rps" "$nginx_rps" "$instantiate" <<'PY'
import sys
node, nginx, inst = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
print(f"\nrequests/s: outpost {node:,.0f}  nginx {nginx:,.0f}  ratio {node/nginx:.2f}x")
print(f"median guest instantiation (Server-Timing, sequential requests): {inst} us")
PY
