#!/usr/bin/env bash
# Checks everything deploy/ ships: every Kubernetes manifest against the Kubernetes schemas
# (kubernetes-validate, offline) and every Outpost config with `outpost check`, each staged
# in the directory layout it is deployed in (guests, a token, a throw-away certificate).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "deploy: validating the Kubernetes manifests"
manifests=()
while IFS= read -r file; do
    manifests+=("$file")
done < <(find deploy/kubernetes -name '*.yaml' ! -name kustomization.yaml | sort)
kubernetes-validate --strict --quiet "${manifests[@]}"
# Kustomizations are not Kubernetes objects: check that they parse and that every file
# they name exists.
python3 - <<'PY'
import pathlib, re, sys
for kustomization in sorted(pathlib.Path("deploy/kubernetes").rglob("kustomization.yaml")):
    text = kustomization.read_text()
    for name in re.findall(r"^\s+-\s+([\w./-]+\.(?:yaml|toml))\s*$", text, re.M):
        if not (kustomization.parent / name).exists():
            sys.exit(f"{kustomization}: names {name}, which does not exist")
    for base in re.findall(r"^\s+-\s+(\.\./[\w./-]+)\s*$", text, re.M):
        if not (kustomization.parent / base / "kustomization.yaml").exists():
            sys.exit(f"{kustomization}: names {base}, which has no kustomization.yaml")
PY

guests=guest-examples/target/wasm32-wasip2/release
if ! ls "$guests"/origin_proxy.wasm >/dev/null 2>&1; then
    cargo build --release --target wasm32-wasip2 --manifest-path guest-examples/Cargo.toml
fi
# The node the tests use (same main as `outpost`): after `cargo test --workspace` this
# builds nothing, where `cargo build -p outpost-proxy` could rebuild dependencies with
# another feature set.
cargo test --workspace --no-run --quiet
outpost="${CARGO_TARGET_DIR:-target}/debug/outpost-under-test"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
certificate() { # DIR NAME: a self-signed certificate and key for the check only
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
        -subj "/CN=check.test" -keyout "$1/$2.key" -out "$1/$2.crt" 2>/dev/null
}
token() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$1"; }

# deploy/container: /etc/outpost with guests/ and secrets/ beside the config.
mkdir -p "$stage/container/guests" "$stage/container/secrets"
cp deploy/container/outpost.toml "$stage/container/"
cp "$guests"/*.wasm "$stage/container/guests/"
token "$stage/container/secrets/admin-token"

# deploy/systemd: /etc/outpost with guests/, secrets/ and tls/.
mkdir -p "$stage/systemd/guests" "$stage/systemd/secrets" "$stage/systemd/tls"
cp deploy/systemd/outpost.toml "$stage/systemd/"
cp "$guests"/*.wasm "$stage/systemd/guests/"
token "$stage/systemd/secrets/admin-token"
certificate "$stage/systemd/tls" example.com

# deploy/kubernetes: the ConfigMap at /etc/outpost/config, the rest beside it.
mkdir -p "$stage/k8s/config" "$stage/k8s/guests" "$stage/k8s/secrets" "$stage/k8s/tls"
cp deploy/kubernetes/base/outpost.toml "$stage/k8s/config/"
cp "$guests"/*.wasm "$stage/k8s/guests/"
token "$stage/k8s/secrets/admin-token"
certificate "$stage/k8s/tls" tls

for config in container/outpost.toml systemd/outpost.toml k8s/config/outpost.toml; do
    echo "deploy: outpost check $config"
    "$outpost" check --config "$stage/$config"
done
