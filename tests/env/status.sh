#!/usr/bin/env bash
# Prints the state of each component; exits 0 only if all are healthy.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rc=0
for name in etcd kube-apiserver moto; do
  check=${name/kube-apiserver/apiserver}_healthy
  if pid=$(pid_alive "$name"); then
    if "$check"; then state=healthy; else state=unhealthy; rc=1; fi
    printf '%-15s %-9s pid %-7s port %s\n' "$name" "$state" "$pid" "$(port_of "$name")"
  else
    printf '%-15s %s\n' "$name" stopped
    rc=1
  fi
done
if [[ -f $ENV_FILE ]]; then echo "env: $ENV_FILE"; else echo "env: (none)"; fi
exit "$rc"
