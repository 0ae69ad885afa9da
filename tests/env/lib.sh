# Shared by up.sh, down.sh and status.sh; sourced, never run.
# Everything here is keyed off two directories:
#   NPO_TESTENV_DIR  per-checkout state: pid files, logs, pki, etcd data, env file
#   NPO_CACHE        per-machine cache: built binaries and the moto virtualenv,
#                    kept across checkouts so only the first run pays for builds

NPO_ENV_SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NPO_REPO_ROOT=$(cd "$NPO_ENV_SCRIPTS/../.." && pwd)

NPO_TESTENV_DIR=${NPO_TESTENV_DIR:-$NPO_REPO_ROOT/target/testenv}
# Relative paths would break as soon as a caller cds, and the env file is read
# from other working directories (cargo runs tests from the crate root).
mkdir -p "$NPO_TESTENV_DIR"
NPO_TESTENV_DIR=$(cd "$NPO_TESTENV_DIR" && pwd)
NPO_CACHE=${NPO_CACHE:-$HOME/.cache/nomad-pool-operator}

TESTBIN=$NPO_CACHE/testbin
RUN_DIR=$NPO_TESTENV_DIR/run
LOG_DIR=$NPO_TESTENV_DIR/logs
PKI_DIR=$NPO_TESTENV_DIR/pki
DATA_DIR=$NPO_TESTENV_DIR/data
ENV_FILE=$NPO_TESTENV_DIR/env
KUBECONFIG_FILE=$NPO_TESTENV_DIR/kubeconfig

# Pinned in committed files so that bumping a version is a reviewed diff.
MOTO_VERSION=5.2.5
MOTO_CONSTRAINTS=$NPO_ENV_SCRIPTS/moto-constraints.txt
# moto runs through this wrapper, which applies the project's corrections
# (tests/env/moto/); a running moto started from other patch files is stale.
MOTO_WRAPPER=$NPO_ENV_SCRIPTS/moto/npo_moto_server.py
moto_patches_stamp() { cat "$NPO_ENV_SCRIPTS"/moto/*.py | sha256sum | cut -d' ' -f1; }

# Slow starts happen when the other core is busy compiling Rust; these are
# ceilings, a healthy start takes a few seconds.
ETCD_START_TIMEOUT=${NPO_ETCD_START_TIMEOUT:-60}
APISERVER_START_TIMEOUT=${NPO_APISERVER_START_TIMEOUT:-180}
MOTO_START_TIMEOUT=${NPO_MOTO_START_TIMEOUT:-60}

log() { printf 'testenv: %s\n' "$*" >&2; }
die() { printf 'testenv: ERROR: %s\n' "$*" >&2; exit 1; }

# Shows why something failed without making the caller dig for the log.
die_with_log() {
  local logfile=$1; shift
  printf 'testenv: ERROR: %s\n' "$*" >&2
  if [[ -f $logfile ]]; then
    printf 'testenv: ---- last 40 lines of %s ----\n' "$logfile" >&2
    tail -n 40 "$logfile" >&2
    printf 'testenv: ---- end of %s ----\n' "$logfile" >&2
  fi
  exit 1
}

# Reads KEY=VALUE lines without executing them; the build.env files are data.
read_kv() {
  local file=$1 key=$2
  awk -F= -v k="$key" '$1==k{sub(/^[^=]*=/,""); print; exit}' "$file"
}

wrapper_version() { read_kv "$NPO_ENV_SCRIPTS/go/$1/build.env" VERSION; }
bin_path() { local v; v=$(wrapper_version "$1"); echo "$TESTBIN/$1-$v/$1"; }
moto_venv() { echo "$TESTBIN/moto-$MOTO_VERSION/venv"; }

# A pid file alone is not proof: after a reboot or a crash the number can
# belong to an unrelated process. The marker (a path under our cache) must
# appear in its command line before we trust or signal it.
pid_alive() {
  local name=$1 pidfile=$RUN_DIR/$1.pid markerfile=$RUN_DIR/$1.marker pid marker
  [[ -s $pidfile && -s $markerfile ]] || return 1
  pid=$(<"$pidfile")
  marker=$(<"$markerfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$marker" || return 1
  echo "$pid"
}

port_of() { [[ -s $RUN_DIR/$1.port ]] && cat "$RUN_DIR/$1.port"; }

etcd_healthy() {
  local port
  pid_alive etcd >/dev/null && port=$(port_of etcd) || return 1
  curl -fsS --max-time 5 "http://127.0.0.1:$port/health" 2>/dev/null | grep -q '"health":"true"'
}

apiserver_healthy() {
  local port
  pid_alive kube-apiserver >/dev/null && port=$(port_of kube-apiserver) || return 1
  [[ -f $PKI_DIR/ca.crt && -f $PKI_DIR/admin.crt && -f $PKI_DIR/admin.key ]] || return 1
  [[ $(curl -fsS --max-time 5 --cacert "$PKI_DIR/ca.crt" \
        --cert "$PKI_DIR/admin.crt" --key "$PKI_DIR/admin.key" \
        "https://127.0.0.1:$port/readyz" 2>/dev/null) == ok ]]
}

moto_healthy() {
  local port
  pid_alive moto >/dev/null && port=$(port_of moto) || return 1
  [[ -s $RUN_DIR/moto.patches && $(<"$RUN_DIR/moto.patches") == "$(moto_patches_stamp)" ]] || return 1
  [[ $(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' \
        "http://127.0.0.1:$port/moto-api/" 2>/dev/null) == 200 ]]
}

# A zombie keeps its /proc entry but has an empty cmdline: gone for our
# purposes. (Files in /proc report size 0, so test the content, not -s.)
proc_running() {
  local cmd
  cmd=$(tr -d '\0' <"/proc/$1/cmdline" 2>/dev/null) || return 1
  [[ -n $cmd ]]
}

# Stops one component by its pid file, whole process group (setsid made the
# component a group leader), politely first. Unknown or stale pid files are
# just removed: we never signal a process we cannot prove is ours.
stop_component() {
  local name=$1 pid i
  if pid=$(pid_alive "$name"); then
    log "stopping $name (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
      proc_running "$pid" || break
      sleep 0.1
    done
    if proc_running "$pid"; then
      log "$name did not stop within 15s, sending SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$RUN_DIR/$name.pid" "$RUN_DIR/$name.marker" "$RUN_DIR/$name.port"
}

# Serializes up/down: cargo runs test binaries in parallel and each may call
# up.sh; the first one does the work, the others find it healthy.
take_lock() {
  mkdir -p "$NPO_TESTENV_DIR"
  exec 9>"$NPO_TESTENV_DIR/.lock"
  if ! flock -n 9; then
    log "waiting for another up/down on $NPO_TESTENV_DIR"
    flock -w "${NPO_LOCK_TIMEOUT:-3600}" 9 || die "could not lock $NPO_TESTENV_DIR/.lock"
  fi
}
