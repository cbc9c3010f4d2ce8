#!/usr/bin/env bash
# Run a command on a two-node Ray cluster on this machine (a head and a worker node), then stop
# the cluster — also when the command fails or is interrupted.
#
#   scripts/ray-cluster.sh COMMAND [ARGS...]
#   e.g. scripts/ray-cluster.sh .venv-rllib/bin/python examples/rllib_cartpole.py --address auto
#
# RAY: the ray CLI (default .venv-rllib/bin/ray). RAY_TMP: Ray's temp dir (default /tmp/ray-rlay,
# outside the repo; its logs stay there for a look after a failure). The GCS port is a free one
# chosen here, and RAY_ADDRESS is set for COMMAND, so ray.init(address="auto") finds the cluster.
# Nodes join with Ray's token authentication, a fresh token per run (RAY_AUTH_TOKEN, passed on to
# COMMAND). Node address 127.0.0.2: a loopback address (Ray replaces 127.0.0.1 and localhost by
# the machine's outward address, so they cannot be used).
# Note: `ray stop` stops every Ray process of this user on this machine (Ray has no per-cluster stop).
set -euo pipefail
ray=${RAY:-.venv-rllib/bin/ray}
tmp=${RAY_TMP:-/tmp/ray-rlay}
ip=127.0.0.2
python=$(dirname "$ray")/python
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.2", 0)); print(s.getsockname()[1])')
export RAY_AUTH_MODE=token
RAY_AUTH_TOKEN=$("$python" -c 'import secrets; print(secrets.token_hex(32))')
export RAY_AUTH_TOKEN
common=(--node-ip-address=$ip --num-cpus=1 --object-store-memory=$((200 * 1024 * 1024)) --disable-usage-stats)
stop() { "$ray" stop --grace-period 10 >/dev/null 2>&1 || true; }
trap stop EXIT
trap 'exit 130' INT TERM
"$ray" start --head --port="$port" --temp-dir="$tmp" --include-dashboard=false "${common[@]}" >/dev/null
"$ray" start --address="$ip:$port" "${common[@]}" >/dev/null
echo "ray cluster at $ip:$port: a head and a worker node, 1 CPU each (temp dir $tmp)"
RAY_ADDRESS="$ip:$port" "$@"
