#!/usr/bin/env bash
# Stops what up.sh started, found through its pid files, and nothing else.
# Idempotent. Keeps logs, certificates and the kubeconfig for inspection;
# removes the env file (its endpoints are dead) and the etcd data.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

take_lock
# The apiserver first: stopping etcd under it makes it log a storm of errors
# and slows its shutdown.
for name in kube-apiserver etcd moto; do
  stop_component "$name"
done
rm -f "$ENV_FILE"
rm -rf "$DATA_DIR/etcd"
log "down ($NPO_TESTENV_DIR)"
