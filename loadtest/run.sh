#!/usr/bin/env bash
# Outpost against nginx, same machine, same run: one command, several scenarios, a dated report.
#
#   bash loadtest/run.sh                     # every scenario, wrk -t1 -c64 -d10s each
#   bash loadtest/run.sh hello cache-1k      # just these
#   DURATION=30s CONNECTIONS=128 bash loadtest/run.sh
#   SMOKE=1 bash loadtest/run.sh             # 1 s per scenario, 8 connections (CI smoke)
#
# Scenarios (outpost side / nginx reference):
#   hello       the hello guest answering itself     / nginx `return 200`
#   cache-1k    origin-proxy guest, 1 KiB cache hit  / nginx proxy_cache hit
#   cache-100k  origin-proxy guest, 100 KiB hit      / nginx proxy_cache hit
#   pass        origin-proxy guest, uncacheable      / nginx proxy_pass, no cache
#
# Servers (node with one worker thread, nginx with one worker) are pinned to CPU 0; wrk and
# the origin (an nginx serving static files) to CPU 1. Traffic stays on 127.0.0.1. A run
# fails loudly if wrk reports socket errors or non-2xx answers. The report (requests/s,
# latency percentiles, ratio to nginx) is printed and written to
# loadtest/results/YYYY-MM-DD-HHMMSS.md. Needs wrk, nginx and taskset
# (apt-get install wrk nginx-light util-linux).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${SMOKE:-}" ]; then DURATION=${DURATION:-1s}; CONNECTIONS=${CONNECTIONS:-8}; fi
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
BASE_PORT=${BASE_PORT:-7780}
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(hello cache-1k cache-100k pass)

for tool in wrk nginx taskset python3; do
    command -v "$tool" >/dev/null || { echo "loadtest: $tool is missing (apt-get install wrk nginx-light util-linux python3)" >&2; exit 1; }
done

work=$(mktemp -d)
echo "loadtest: working in $work"
trap 'for p in "$work"/*.pid; do kill "$(cat "$p")" 2>/dev/null || true; done; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
node_port=$BASE_PORT; nginx_port=$((BASE_PORT + 1)); origin_port=$((BASE_PORT + 2))

cargo build --release -p outpost-proxy --quiet
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
guests="$PWD/guest-examples/target/wasm32-wasip2/release"

# The origin: static files with explicit freshness, plus an uncacheable path.
mkdir -p "$work/www" "$work/nginx-cache"
head -c 1024 /dev/zero | tr '\0' 'a' > "$work/www/1k"
head -c 102400 /dev/zero | tr '\0' 'b' > "$work/www/100k"
cp "$work/www/1k" "$work/www/private"
# nginx workers run as an unprivileged user when started as root.
chmod 755 "$work" "$work/www"; chmod 644 "$work"/www/*; chmod 777 "$work/nginx-cache"

cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    # The origin.
    server {
        listen 127.0.0.1:$origin_port;
        root $work/www;
        location / { add_header Cache-Control "public, max-age=3600"; }
        location /private { add_header Cache-Control "private"; }
    }
    # The reference: return 200, and a caching reverse proxy.
    proxy_cache_path $work/nginx-cache keys_zone=edge:10m max_size=256m;
    upstream origin { server 127.0.0.1:$origin_port; keepalive 64; }
    server {
        listen 127.0.0.1:$nginx_port;
        location = /hello { return 200 "Hello, world! (from nginx)\n"; }
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache edge;
            add_header X-Cache \$upstream_cache_status;
        }
    }
}
NGINX
# One nginx master runs both the reference and the origin; its single worker is pinned to
# CPU 0 with the node. The origin only works on misses, which hit scenarios do once.
taskset -c 0 nginx -c "$work/nginx.conf" -p "$work" &
echo $! > "$work/nginx-main.pid"

cat > "$work/outpost.toml" <<TOML
[server]
listen = ["127.0.0.1:$node_port"]
threads = 1
[log]
level = "warn"
[services.hello]
domains = ["hello.test"]
guest = "$guests/hello.wasm"
[services.proxy]
domains = ["*"]
guest = "$guests/origin_proxy.wasm"
server_timing = false
[services.proxy.backends.origin]
url = "http://127.0.0.1:$origin_port"
TOML
taskset -c 0 "$target_dir/release/outpost" serve --config "$work/outpost.toml" >"$work/node.log" 2>&1 &
echo $! > "$work/node.pid"

for port in $node_port $nginx_port $origin_port; do
    for _ in $(seq 300); do
        (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
        sleep 0.1
    done
done

# wrk against URL, with an optional Host header; the report line is "rps p50 p90 p99 errors".
measure() {
    local name=$1 url=$2 host=${3:-}
    local args=(-t1 -c"$CONNECTIONS" -d"$DURATION" --latency)
    [ -n "$host" ] && args+=(-H "Host: $host")
    taskset -c 1 wrk -t1 -c8 -d1s ${host:+-H "Host: $host"} "$url" >/dev/null
    taskset -c 1 wrk "${args[@]}" "$url" > "$work/$name.wrk"
    if grep -q "Socket errors\|Non-2xx" "$work/$name.wrk"; then
        echo "loadtest: $name had errors:" >&2; cat "$work/$name.wrk" >&2; exit 1
    fi
}

for scenario in "${scenarios[@]}"; do
    case $scenario in
        hello)
            measure hello-outpost "http://127.0.0.1:$node_port/" hello.test
            measure hello-nginx "http://127.0.0.1:$nginx_port/hello" ;;
        cache-1k|cache-100k)
            path=/${scenario#cache-}
            measure "$scenario-outpost" "http://127.0.0.1:$node_port$path"
            measure "$scenario-nginx" "http://127.0.0.1:$nginx_port$path"
            curl -s -o /dev/null -D - "http://127.0.0.1:$node_port$path" | grep -qi "^x-cache: HIT" \
                || { echo "loadtest: $scenario was not a cache hit on outpost" >&2; exit 1; }
            curl -s -o /dev/null -D - "http://127.0.0.1:$nginx_port$path" | grep -qi "^x-cache: HIT" \
                || { echo "loadtest: $scenario was not a cache hit on nginx" >&2; exit 1; } ;;
        pass)
            measure pass-outpost "http://127.0.0.1:$node_port/private"
            measure pass-nginx "http://127.0.0.1:$nginx_port/private" ;;
        *) echo "loadtest: unknown scenario $scenario" >&2; exit 1 ;;
    esac
done

mkdir -p loadtest/results
report="loadtest/results/$(date -u +%Y-%m-%d-%H%M%S).md"
python3 - "$work" "$report" "$DURATION" "$CONNECTIONS" "${scenarios[@]}" <<'PY'
import re, subprocess, sys
work, report, duration, connections, scenarios = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]

def ms(text):
    value, unit = re.match(r"([0-9.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

def parse(name):
    text = open(f"{work}/{name}.wrk").read()
    pct = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", text, re.M))
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", text).group(1))
    return rps, {k: ms(v) for k, v in pct.items()}

cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
lines = [
    f"# Outpost load test, {report.split('/')[-1][:-3]}",
    "",
    f"wrk -t1 -c{connections} -d{duration} per run; node (1 worker) and nginx (1 worker) on CPU 0, wrk on CPU 1. CPU: {cpu}.",
    "",
    "| scenario | server | requests/s | p50 ms | p90 ms | p99 ms | ratio to nginx (req/s) | p99 ratio |",
    "|---|---|---:|---:|---:|---:|---:|---:|",
]
for scenario in scenarios:
    o_rps, o = parse(f"{scenario}-outpost")
    n_rps, n = parse(f"{scenario}-nginx")
    lines.append(f"| {scenario} | outpost | {o_rps:,.0f} | {o['50']:.2f} | {o['90']:.2f} | {o['99']:.2f} | **{o_rps / n_rps:.2f}x** | {o['99'] / n['99']:.2f}x |")
    lines.append(f"| {scenario} | nginx | {n_rps:,.0f} | {n['50']:.2f} | {n['90']:.2f} | {n['99']:.2f} | 1.00x | 1.00x |")
text = "\n".join(lines) + "\n"
open(report, "w").write(text)
print(text)
print(f"report: {report}")
PY
