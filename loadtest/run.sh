#!/usr/bin/env bash
# Outpost against nginx, same machine, same run: one command, several scenarios, a dated report.
#
#   bash loadtest/run.sh                     # every scenario, wrk -t1 -c64 -d10s each
#   bash loadtest/run.sh hello cache-1k      # just these
#   DURATION=30s CONNECTIONS=128 bash loadtest/run.sh
#   SMOKE=1 bash loadtest/run.sh             # 1 s per scenario, 8 connections, the tests' debug binary (CI)
#   OUTPOST_BIN=/tmp/outpost-a bash loadtest/run.sh pass   # this node binary instead of the build
#                                            # (loadtest/ab.sh interleaves two of them: an A/B)
#   BENCH=0 bash loadtest/run.sh pass        # without the in-process micro-benchmark
#   PERF=1 bash loadtest/run.sh hello        # also profile the node (perf record, CPU clock) and
#                                            # write the top symbols to loadtest/results/DATE.perf.txt
#
# Scenarios (outpost side / nginx reference):
#   ceiling     a bare pingora server answering the hello body (no guest; outpost-ceiling)
#                                                         / nginx `return 200`
#   hello       the hello guest answering itself          / nginx `return 200`
#   hello-reuse the same with instance reuse on ([reuse] defaults)
#                                                         / nginx `return 200`
#   cache-1k    origin-proxy guest, 1 KiB cache hit       / nginx proxy_cache hit
#   cache-1k-edge
#               the same behind the response cache (a hit runs no guest)
#                                                         / nginx proxy_cache hit
#   cache-100k  origin-proxy guest, 100 KiB cache hit     / nginx proxy_cache hit
#   pass        origin-proxy guest, uncacheable (origin)  / nginx proxy_pass, no cache
#   cpu         a guest doing 2,000 rounds of hashing     / nginx `return 200`
#   c1000       hello with 1,000 connections              / nginx `return 200`, 1,000 connections
#   https       hello over TLS (HTTP/1.1)                 / nginx `return 200` over TLS
#
# The node (one worker thread) and nginx (one worker) are pinned to CPU 0; wrk and the
# origin (a second nginx serving static files) to CPU 1. Traffic stays on 127.0.0.1.
# wrk runs loadtest/report.lua, and the run fails loudly on socket errors, timeouts or
# non-2xx answers. The report (requests/s, p50/p90/p99/p99.9, errors, ratios to nginx) and
# a latency-distribution plot go to loadtest/results/DATE.md and DATE.svg. Each run also
# records the server's own CPU time (user + system, from /proc/PID/stat, the process and
# its children) over the measured window; divided by completed requests it is the report's
# `µs/req` column, the steadiest figure we have with the server pinned to one core.
# Every run ends with the in-process micro-benchmark (loadtest/src/bin/bench.rs: median and
# p99 µs of the node's request path without sockets), appended to the report.
# Needs wrk, nginx, taskset, openssl and python3 (apt-get install wrk nginx-light util-linux).
set -euo pipefail
if [ -n "${OUTPOST_BIN:-}" ]; then
    [ -x "$OUTPOST_BIN" ] || { echo "loadtest: OUTPOST_BIN=$OUTPOST_BIN is not an executable node binary" >&2; exit 2; }
    OUTPOST_BIN=$(realpath "$OUTPOST_BIN")   # before the cd below
fi
cd "$(dirname "$0")/.."
if [ -n "${SMOKE:-}" ]; then
    DURATION=${DURATION:-1s}; CONNECTIONS=${CONNECTIONS:-8}; PROFILE=${PROFILE:-debug}
fi
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
PROFILE=${PROFILE:-release}
BASE_PORT=${BASE_PORT:-7780}
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(ceiling hello hello-reuse cache-1k cache-1k-edge cache-100k pass cpu c1000 https)

for tool in wrk nginx taskset openssl python3 curl; do
    command -v "$tool" >/dev/null || { echo "loadtest: $tool is missing (apt-get install wrk nginx-light util-linux openssl python3 curl)" >&2; exit 1; }
done
# Servers on CPU 0, load on CPU 1; a one-CPU machine shares CPU 0 (and says so).
server_cpu=0; client_cpu=1
if [ "$(nproc)" -lt 2 ]; then
    client_cpu=0
    echo "loadtest: only one CPU, so wrk shares it with the servers; ratios are still comparable" >&2
fi
# 1,000 connections need more descriptors than the usual default of 1,024.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d)
echo "loadtest: working in $work ($PROFILE build, wrk -d$DURATION -c$CONNECTIONS)"
trap 'for p in "$work"/*.pid; do kill -INT "$(cat "$p")" 2>/dev/null || true; done; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
node_port=$BASE_PORT; nginx_port=$((BASE_PORT + 1)); origin_port=$((BASE_PORT + 2))
node_tls=$((BASE_PORT + 3)); nginx_tls=$((BASE_PORT + 4)); ceiling_port=$((BASE_PORT + 5))

if [ "$PROFILE" = release ]; then
    cargo build --release -p outpost-proxy -p outpost-loadtest --quiet
    node_bin=outpost
else
    # The debug node is the binary the end-to-end tests use: `cargo test --workspace` has
    # built it already (with the workspace's feature set), so this costs nothing after it.
    # The load-test tools are built by it too (loadtest/tests makes cargo build them).
    cargo test --workspace --no-run --quiet
    node_bin=outpost-under-test
fi
cargo build --release --target wasm32-wasip2 --manifest-path tests/guests/Cargo.toml -p work --quiet
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
examples="$PWD/guest-examples/target/wasm32-wasip2/release"
work_guest="$PWD/tests/guests/target/wasm32-wasip2/release/work.wasm"

# The origin's files: explicit freshness, plus an uncacheable path.
mkdir -p "$work/www" "$work/nginx-cache"
head -c 1024 /dev/zero | tr '\0' 'a' > "$work/www/1k"
head -c 102400 /dev/zero | tr '\0' 'b' > "$work/www/100k"
cp "$work/www/1k" "$work/www/private"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
# nginx workers run as an unprivileged user when started as root.
chmod 755 "$work" "$work/www"; chmod 644 "$work"/www/* "$work"/*.pem; chmod 777 "$work/nginx-cache"

nginx_conf() { # $1: name, $2: server blocks
    cat > "$work/$1.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/$1.nginx-pid;
error_log $work/$1-error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 8192; }
http {
    access_log off;
    $2
}
NGINX
}
nginx_conf origin "
    server {
        listen 127.0.0.1:$origin_port;
        root $work/www;
        location / { add_header Cache-Control \"public, max-age=3600\"; }
        location /private { add_header Cache-Control \"private\"; }
    }"
nginx_conf reference "
    proxy_cache_path $work/nginx-cache keys_zone=edge:10m max_size=256m;
    upstream origin { server 127.0.0.1:$origin_port; keepalive 64; }
    server {
        listen 127.0.0.1:$nginx_port;
        listen 127.0.0.1:$nginx_tls ssl;
        ssl_certificate $work/cert.pem;
        ssl_certificate_key $work/key.pem;
        location = /hello { return 200 \"Hello, world! (from nginx)\n\"; }
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_cache edge;
            add_header X-Cache \$upstream_cache_status;
        }
    }"
taskset -c "$client_cpu" nginx -c "$work/origin.conf" -p "$work" & echo $! > "$work/origin.pid"
taskset -c "$server_cpu" nginx -c "$work/reference.conf" -p "$work" & echo $! > "$work/reference.pid"

cat > "$work/outpost.toml" <<TOML
[server]
listen = ["127.0.0.1:$node_port"]
threads = 1
[tls]
listen = ["127.0.0.1:$node_tls"]
[[tls.certificates]]
domains = ["localhost"]
cert = "$work/cert.pem"
key = "$work/key.pem"
[log]
level = "warn"
[services.hello]
domains = ["hello.test"]
guest = "$examples/hello.wasm"
server_timing = false
[services.reuse]
domains = ["reuse.test"]
guest = "$examples/hello.wasm"
server_timing = false
[services.reuse.reuse]
[services.edge]
domains = ["edge.test"]
guest = "$examples/origin_proxy.wasm"
server_timing = false
[services.edge.response_cache]
enabled = true
[services.edge.backends.origin]
url = "http://127.0.0.1:$origin_port"
[services.work]
domains = ["work.test"]
guest = "$work_guest"
server_timing = false
[services.proxy]
domains = ["*"]
guest = "$examples/origin_proxy.wasm"
server_timing = false
[services.proxy.backends.origin]
url = "http://127.0.0.1:$origin_port"
TOML
# Under PERF=1 the node runs as perf's child (perf's own CPU then counts in µs/req: compare
# profiles with profiles, not with plain runs).
perf=()
[ -n "${PERF:-}" ] && perf=(perf record -q -F 1999 -e cpu-clock -g -o "$work/perf.data" --)
node_path=${OUTPOST_BIN:-$target_dir/$PROFILE/$node_bin}
[ -z "${OUTPOST_BIN:-}" ] || echo "loadtest: node binary $node_path (OUTPOST_BIN)"
taskset -c "$server_cpu" "${perf[@]}" "$node_path" serve --config "$work/outpost.toml" >"$work/node.log" 2>&1 &
echo $! > "$work/node.pid"
taskset -c "$server_cpu" "$target_dir/$PROFILE/outpost-ceiling" "127.0.0.1:$ceiling_port" >"$work/ceiling.log" 2>&1 &
echo $! > "$work/ceiling.pid"

for port in $node_port $nginx_port $origin_port $node_tls $nginx_tls $ceiling_port; do
    for _ in $(seq 300); do
        (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
        sleep 0.1
    done
done

# cpu_ticks PID: user + system CPU ticks of PID and its descendants (waited-for children
# included), from /proc.
cpu_ticks() {
    local pids=("$1") i=0 total=0 p
    while [ $i -lt ${#pids[@]} ]; do
        for p in $(cat /proc/"${pids[$i]}"/task/*/children 2>/dev/null); do pids+=("$p"); done
        i=$((i + 1))
    done
    for p in "${pids[@]}"; do
        # Fields after "pid (comm) ": utime, stime, cutime, cstime are the 12th to 15th.
        total=$((total + $(sed 's/^.*) //' /proc/"$p"/stat 2>/dev/null | awk '{print $12 + $13 + $14 + $15}' || echo 0)))
    done
    echo "$total"
}

# measure NAME URL [HOST] [CONNECTIONS]: a 1 s warm-up, then the measured wrk run, with the
# server's CPU time over it. The server is the one whose pid file NAME's suffix names.
measure() {
    local name=$1 url=$2 host=${3:-} connections=${4:-$CONNECTIONS}
    local header=() server=${name##*-} before after
    case $server in outpost) pidfile=node.pid ;; nginx) pidfile=reference.pid ;; *) pidfile=$server.pid ;; esac
    [ "${name%%-*}" = ceiling ] && [ "$server" = outpost ] && pidfile=ceiling.pid
    [ -n "$host" ] && header=(-H "Host: $host")
    taskset -c "$client_cpu" wrk -t1 -c8 -d1s "${header[@]}" "$url" >/dev/null
    # `pass` answers from the origin every time: its CPU counts too (the origin nginx).
    local pids=("$(cat "$work/$pidfile")")
    [ "${name%%-*}" = pass ] && pids+=("$(cat "$work/origin.pid")")
    before=0; for p in "${pids[@]}"; do before=$((before + $(cpu_ticks "$p"))); done
    taskset -c "$client_cpu" wrk -t1 -c"$connections" -d"$DURATION" --latency --timeout 10s \
        -s loadtest/report.lua "${header[@]}" "$url" > "$work/$name.wrk"
    after=0; for p in "${pids[@]}"; do after=$((after + $(cpu_ticks "$p"))); done
    echo "$((after - before)) $(getconf CLK_TCK)" > "$work/$name.cpu"
    if grep -q "Socket errors\|Non-2xx" "$work/$name.wrk"; then
        echo "loadtest: $name had errors:" >&2; cat "$work/$name.wrk" >&2; exit 1
    fi
}
expect_hit() { # URL LABEL [HOST]: the scenario must really be a cache hit
    curl -s -o /dev/null -D - ${3:+-H "Host: $3"} "$1" | grep -qi "^x-cache: HIT" \
        || { echo "loadtest: $2 was not a cache hit" >&2; exit 1; }
}

for scenario in "${scenarios[@]}"; do
    echo "loadtest: $scenario"
    case $scenario in
        ceiling)
            measure ceiling-outpost "http://127.0.0.1:$ceiling_port/"
            measure ceiling-nginx "http://127.0.0.1:$nginx_port/hello" ;;
        hello)
            measure hello-outpost "http://127.0.0.1:$node_port/" hello.test
            measure hello-nginx "http://127.0.0.1:$nginx_port/hello" ;;
        hello-reuse)
            measure hello-reuse-outpost "http://127.0.0.1:$node_port/" reuse.test
            measure hello-reuse-nginx "http://127.0.0.1:$nginx_port/hello" ;;
        cache-1k-edge)
            measure cache-1k-edge-outpost "http://127.0.0.1:$node_port/1k" edge.test
            measure cache-1k-edge-nginx "http://127.0.0.1:$nginx_port/1k"
            expect_hit "http://127.0.0.1:$node_port/1k" "$scenario on outpost" edge.test
            expect_hit "http://127.0.0.1:$nginx_port/1k" "$scenario on nginx" ;;
        cache-1k|cache-100k)
            path=/${scenario#cache-}
            measure "$scenario-outpost" "http://127.0.0.1:$node_port$path"
            measure "$scenario-nginx" "http://127.0.0.1:$nginx_port$path"
            expect_hit "http://127.0.0.1:$node_port$path" "$scenario on outpost"
            expect_hit "http://127.0.0.1:$nginx_port$path" "$scenario on nginx" ;;
        pass)
            measure pass-outpost "http://127.0.0.1:$node_port/private"
            measure pass-nginx "http://127.0.0.1:$nginx_port/private" ;;
        cpu)
            measure cpu-outpost "http://127.0.0.1:$node_port/?n=2000" work.test
            measure cpu-nginx "http://127.0.0.1:$nginx_port/hello" ;;
        c1000)
            measure c1000-outpost "http://127.0.0.1:$node_port/" hello.test 1000
            measure c1000-nginx "http://127.0.0.1:$nginx_port/hello" "" 1000 ;;
        https)
            measure https-outpost "https://127.0.0.1:$node_tls/" hello.test
            measure https-nginx "https://127.0.0.1:$nginx_tls/hello" ;;
        *) echo "loadtest: unknown scenario $scenario" >&2; exit 1 ;;
    esac
done

mkdir -p loadtest/results
report="loadtest/results/$(date -u +%Y-%m-%d-%H%M%S)"
if [ -n "${PERF:-}" ]; then
    # perf writes its data once the node exits: stop the node (perf's child) with SIGINT.
    pkill -INT -P "$(cat "$work/node.pid")" || true
    for _ in $(seq 100); do kill -0 "$(cat "$work/node.pid")" 2>/dev/null || break; sleep 0.1; done
    { echo "# perf report: ${scenarios[*]} (self time by shared object, then by symbol)"
      perf report -q -g none -i "$work/perf.data" --no-children --sort dso --stdio 2>/dev/null | head -15 || true
      echo
      perf report -q -g none -i "$work/perf.data" --no-children --sort dso,sym --stdio 2>/dev/null | head -60 || true
    } > "$report.perf.txt"
    echo "loadtest: profile in $report.perf.txt"
fi
python3 loadtest/report.py "$work" "$report" "$DURATION" "$CONNECTIONS" "$PROFILE" "${scenarios[@]}"
# The in-process micro-benchmark, pinned like the node (a smoke run only checks it runs;
# BENCH=0 skips it, as loadtest/ab.sh does: it measures the build, not OUTPOST_BIN).
if [ "${BENCH:-1}" != 0 ]; then
    iterations=20000; [ -n "${SMOKE:-}" ] && iterations=200
    { echo; echo "## The request path in process (outpost-bench, no sockets)"; echo
      taskset -c "$server_cpu" "$target_dir/$PROFILE/outpost-bench" --guests "$examples" --iterations "$iterations"
    } >> "$report.md"
    tail -n 8 "$report.md"
fi
