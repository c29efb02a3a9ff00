#!/usr/bin/env bash
# Builds Nimbus, starts the all-in-one server with its embedded defaults
# (SQLite and a local code store in ./nimbus-data), deploys the example
# functions, and keeps serving until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

listen="${NIMBUS_LISTEN:-127.0.0.1:9000}"
data_dir="${NIMBUS_DATA_DIR:-./nimbus-data}"
export NIMBUS_ENDPOINT="http://$listen"
export NIMBUS_DATA_DIR="$data_dir"

cargo build --release
nimbus=./target/release/nimbus

"$nimbus" server --listen "$listen" --data-dir "$data_dir" &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true' EXIT INT TERM

for _ in $(seq 1 100); do
    curl -fsS "$NIMBUS_ENDPOINT/health" >/dev/null 2>&1 && break
    sleep 0.1
done

# Creates the function, or updates its code when it exists from an earlier run.
deploy() {
    local name=$1 runtime=$2 handler=$3 dir=$4
    if "$nimbus" function get "$name" >/dev/null 2>&1; then
        "$nimbus" function update-code "$name" --code "$dir"
    else
        "$nimbus" function create "$name" --runtime "$runtime" --handler "$handler" --code "$dir" \
            --description "Example from $dir" --memory-size 256 --timeout 10
    fi
    "$nimbus" function publish "$name"
    "$nimbus" alias create "$name" live --function-version 1 --description "Production traffic"
}

deploy hello-python python3.11 app.handler examples/python-hello
deploy hello-node nodejs20.x index.handler examples/node-hello

echo
"$nimbus" function list
echo
echo "Nimbus is serving on $NIMBUS_ENDPOINT (API key in $data_dir/api-key). Press Ctrl-C to stop."
wait "$server_pid"
