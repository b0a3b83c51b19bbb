#!/usr/bin/env bash
# Start-up time to "listening": the node with every gallery guest plus the Python and
# JavaScript guests, cold (empty compile cache: every guest compiled) and warm (every guest
# loaded from the compile cache). Prints one line per run and the median of each.
#
#   bash loadtest/startup.sh [RUNS]      # default 3 runs of each
#
# Needs the release node (cargo build --release -p outpost-proxy), the gallery
# (guest-examples, built for wasm32-wasip2) and the foreign guests that `cargo test`
# builds (tests/build.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
cargo build --release -p outpost-proxy --quiet
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
node="$target_dir/release/outpost"
gallery="$PWD/guest-examples/target/wasm32-wasip2/release"
python_guest=$(find "$target_dir" -name python_proxy.wasm -path '*outpost-tests*' | head -1)
js_guest=$(find "$target_dir" -name js_proxy.wasm -path '*outpost-tests*' | head -1)
[ -n "$python_guest" ] && [ -n "$js_guest" ] || { echo "startup: build the foreign guests first (cargo test --workspace --no-run)" >&2; exit 1; }

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
port=7895
{
    printf '[server]\nlisten = ["127.0.0.1:%s"]\n[log]\nlevel = "info"\n[runtime]\ncompile_cache = "%s/cache"\n' "$port" "$work"
    for guest in "$gallery"/*.wasm "$python_guest" "$js_guest"; do
        name=$(basename "$guest" .wasm)
        printf '[services.%s]\ndomains = ["%s.test"]\nguest = "%s"\n' "$name" "$name" "$guest"
        printf '[services.%s.backends.origin]\nurl = "http://127.0.0.1:1"\n' "$name"
    done
} > "$work/outpost.toml"
guests=$(grep -c '^guest' "$work/outpost.toml")

start_once() { # prints seconds from exec to the first accepted connection
    local begin end pid
    begin=$(date +%s.%N)
    "$node" serve --config "$work/outpost.toml" > "$work/node.log" 2>&1 &
    pid=$!
    until (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; do sleep 0.005; done
    end=$(date +%s.%N)
    kill -INT "$pid"; wait "$pid" 2>/dev/null || true
    python3 -c "print(f'{$end - $begin:.3f}')"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

cold=(); warm=()
for _ in $(seq "$runs"); do
    rm -rf "$work/cache"
    cold+=("$(start_once)")
    warm+=("$(start_once)")
done
echo "startup: $guests guests (the gallery, Python, JavaScript)"
echo "startup: cold (compiling every guest): ${cold[*]} s; median $(printf '%s\n' "${cold[@]}" | median) s"
echo "startup: warm (from the compile cache): ${warm[*]} s; median $(printf '%s\n' "${warm[@]}" | median) s"
grep -E "KiB\) (compiled|loaded)" "$work/node.log" | sed 's/^.*INFO[^:]*: //' | head -20
