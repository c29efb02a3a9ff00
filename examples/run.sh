#!/usr/bin/env bash
# Builds Nimbus and the example functions, starts the all-in-one server with its
# embedded defaults (SQLite and a local code store in ./nimbus-data), deploys the
# Python, Node.js and Rust examples, invokes each and prints the results, then
# keeps serving until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

listen="${NIMBUS_LISTEN:-127.0.0.1:9000}"
data_dir="${NIMBUS_DATA_DIR:-./nimbus-data}"
export NIMBUS_ENDPOINT="http://$listen"
export NIMBUS_DATA_DIR="$data_dir"

cargo build --release
cargo build --release --manifest-path examples/rust-hello/Cargo.toml
nimbus=./target/release/nimbus

# The Rust example's package is its `bootstrap` binary alone.
rust_package=$(mktemp -d)
cp examples/rust-hello/target/release/bootstrap "$rust_package/"

"$nimbus" server --listen "$listen" --data-dir "$data_dir" &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; rm -rf "$rust_package"' EXIT
trap 'exit 130' INT TERM

for _ in $(seq 1 100); do
    curl -fsS "$NIMBUS_ENDPOINT/health" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { echo "nimbus server failed to start" >&2; exit 1; }
    sleep 0.1
done

# Creates the function, or updates its code when it exists from an earlier run,
# then publishes a version and points the alias `live` at it.
deploy() {
    local name=$1 runtime=$2 handler=$3 dir=$4
    if "$nimbus" function get "$name" >/dev/null 2>&1; then
        "$nimbus" function update-code "$name" --code "$dir" >/dev/null
    else
        "$nimbus" function create "$name" --runtime "$runtime" --handler "$handler" --code "$dir" \
            --memory-size 256 --timeout 10 >/dev/null
    fi
    local version
    version=$("$nimbus" --json function publish "$name" | sed -n 's/.*"version": *"\([0-9]*\)".*/\1/p')
    "$nimbus" alias update "$name" live --function-version "$version" >/dev/null
    echo "deployed $name ($runtime) version $version as alias live"
}

deploy hello-python python3.11 app.handler examples/python-hello
deploy hello-node nodejs20.x index.handler examples/node-hello
deploy hello-rust provided.al2023 bootstrap "$rust_package"

echo
echo "\$ nimbus invoke hello-python --qualifier live --payload '{\"orders\": [{\"sku\": \"ab-1\", \"quantity\": 2}, {\"sku\": \"cd-2\"}]}'"
"$nimbus" invoke hello-python --qualifier live --payload '{"orders": [{"sku": "ab-1", "quantity": 2}, {"sku": "cd-2"}]}'
echo "\$ nimbus invoke hello-python --qualifier live --payload '{\"orders\": []}'   # warm: the counter goes up"
"$nimbus" invoke hello-python --qualifier live --payload '{"orders": []}'
echo "\$ nimbus invoke hello-node --qualifier live --payload '{\"name\": \"Ada\"}'"
"$nimbus" invoke hello-node --qualifier live --payload '{"name": "Ada"}'
echo "\$ nimbus invoke hello-rust --qualifier live --payload '{\"numbers\": [1, 2, 3]}' --log-tail"
"$nimbus" invoke hello-rust --qualifier live --payload '{"numbers": [1, 2, 3]}' --log-tail

echo
"$nimbus" function list
echo
echo "Nimbus is serving on $NIMBUS_ENDPOINT (API key in $data_dir/api-key). Press Ctrl-C to stop."
wait "$server_pid"
