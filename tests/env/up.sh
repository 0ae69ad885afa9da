#!/usr/bin/env bash
# Starts the local test environment (etcd + kube-apiserver + moto) on loopback
# and writes $NPO_TESTENV_DIR/env. Safe to call often: when everything is up
# and healthy it only rewrites the env file and exits.
#
# Environment knobs:
#   NPO_TESTENV_DIR  state dir (default <repo>/target/testenv)
#   NPO_CACHE        cache for built binaries (default ~/.cache/nomad-pool-operator)
#   NPO_KUBECTL      kubectl to use and advertise (default: kubectl on PATH)
#   NPO_PYTHON       python used to create the moto virtualenv (default python3)
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --- tools -------------------------------------------------------------------

apt_install() {
  # Only on a machine that lacks them; apt needs a fresh index the first time.
  [[ $(id -u) == 0 ]] || die "$* missing and not root; install: $*"
  log "installing $* with apt-get"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_tools() {
  local missing=()
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)
  command -v flock >/dev/null || missing+=(util-linux)
  ((${#missing[@]} == 0)) || apt_install "${missing[@]}"
  KUBECTL=${NPO_KUBECTL:-$(command -v kubectl || true)}
  [[ -n $KUBECTL && -x $KUBECTL ]] ||
    die "kubectl not found; install it or point NPO_KUBECTL at one"
}

# --- Go builds ---------------------------------------------------------------

go_ldflags() {
  local name=$1 env=$NPO_ENV_SCRIPTS/go/$1/build.env flags="-s -w" v key val pkg
  if [[ $name == kube-apiserver ]]; then
    v=$(read_kv "$env" VERSION)
    # Unstamped builds report v0.0.0-master and empty major/minor from
    # /version, which clients that gate on the server version trip over.
    # Both packages are stamped, like upstream's hack/lib/version.sh does.
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      for key in gitVersion:VERSION gitMajor:GIT_MAJOR gitMinor:GIT_MINOR \
                 gitCommit:GIT_COMMIT buildDate:BUILD_DATE; do
        val=$(read_kv "$env" "${key#*:}")
        [[ -n $val ]] && flags+=" -X $pkg.${key%%:*}=$val"
      done
      flags+=" -X $pkg.gitTreeState=clean"
    done
  fi
  # Other tools list their stamps in build.env (helm: its version and the
  # Kubernetes version its lint and template assume, as its Makefile sets).
  for key in $(read_kv "$env" LDFLAGS_X); do flags+=" -X $key"; done
  echo "$flags"
}

# Builds cmd from the committed wrapper module into the cache, unless a binary
# built from the very same go.mod/go.sum/flags/toolchain is already there.
ensure_go_binary() {
  local name=$1 wrapper=$NPO_ENV_SCRIPTS/go/$1 version pkg out bin ldflags stamp gover
  version=$(read_kv "$wrapper/build.env" VERSION)
  pkg=$(read_kv "$wrapper/build.env" PKG)
  out=$TESTBIN/$name-$version
  bin=$out/$name
  ldflags=$(go_ldflags "$name")
  command -v go >/dev/null || {
    [[ -x $bin ]] && return 0 # cached binary and no Go: use it as is
    die "go not found; needed once to build $name $version (PATH=$PATH)"
  }
  gover=$(GOTOOLCHAIN=local go env GOVERSION)
  # A wrapper may hold Go code of its own (kstatus): an edit rebuilds it.
  local sources=("$wrapper/go.mod" "$wrapper/go.sum" "$wrapper/build.env")
  [[ -f $wrapper/main.go ]] && sources+=("$wrapper"/*.go)
  stamp=$(cat "${sources[@]}" | sha256sum | cut -d' ' -f1)" $gover $ldflags"
  if [[ -x $bin && -f $out/.stamp && $(<"$out/.stamp") == "$stamp" ]]; then
    return 0
  fi
  mkdir -p "$out"
  # Several checkouts may share the cache; one builder per binary.
  exec 8>"$out/.build.lock"
  flock -w 3600 8 || die "could not lock $out/.build.lock"
  if [[ -x $bin && -f $out/.stamp && $(<"$out/.stamp") == "$stamp" ]]; then
    exec 8>&-
    return 0
  fi
  local blog=$LOG_DIR/build-$name.log timing=$out/build-time.txt
  log "building $name $version with $gover (cold build takes minutes; log: $blog)"
  local timer=()
  [[ -x /usr/bin/time ]] && timer=(/usr/bin/time -v -o "$timing")
  local start=$SECONDS
  # -pgo=off: a default.pgo next to a main package would otherwise be used
  #   silently and make the build slower and machine-dependent.
  # -mod=readonly: go.sum is committed; a build must not rewrite it.
  # GOWORK=off/GOTOOLCHAIN=local: ignore any go.work above us and never
  #   download a toolchain; an old Go should fail loudly instead.
  if ! (cd "$wrapper" && GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 \
        GOFLAGS="-buildvcs=false -mod=readonly" \
        "${timer[@]}" go build -trimpath -pgo=off -ldflags "$ldflags" \
        -o "$bin.tmp" "$pkg") >"$blog" 2>&1; then
    rm -f "$bin.tmp"
    [[ -f $timing ]] && cat "$timing" >>"$blog"
    die_with_log "$blog" "building $name $version failed"
  fi
  mv -f "$bin.tmp" "$bin"
  echo "$stamp" >"$out/.stamp"
  exec 8>&-
  if [[ -f $timing ]]; then
    log "built $name in $((SECONDS - start))s," \
      "peak RSS $(awk -F': ' '/Maximum resident/{printf "%d MiB", $2/1024}' "$timing")" \
      "($(du -h "$bin" | cut -f1))"
  else
    log "built $name in $((SECONDS - start))s"
  fi
}

# --- test tools ------------------------------------------------------------------

# Tools the tests run, not the environment, so they are ensured on every
# call, also when the services are already up (a checkout that adds one must
# not need a restart of the shared control plane); each returns at once when
# present:
# - kstatus (Flux, kubectl-based pipelines) built from Go modules, and
#   Lua 5.1, the Lua Argo CD embeds, for deploy/argocd/ (tests/gitops_health.rs);
# - helm (tests/helm_chart.rs) and promtool (tests/alerts.rs).
ensure_test_tools() {
  ensure_go_binary kstatus
  command -v lua5.1 >/dev/null || apt_install lua5.1
  ensure_go_binary helm
  PROMTOOL=${NPO_PROMTOOL:-$(command -v promtool || true)}
  if [[ -z $PROMTOOL ]]; then
    # Debian's prometheus ships promtool; without recommends it pulls no
    # exporters, and no service is started in a container (policy-rc.d).
    apt_install --no-install-recommends prometheus
    PROMTOOL=$(command -v promtool) || die "promtool missing after installing prometheus"
  fi
}

kstatus_bin() { echo "$TESTBIN/kstatus-$(wrapper_version kstatus)/kstatus"; }

# --- moto ----------------------------------------------------------------------

ensure_moto() {
  local venv dir stamp python
  venv=$(moto_venv)
  dir=$(dirname "$venv")
  python=${NPO_PYTHON:-python3}
  command -v "$python" >/dev/null || die "$python not found; needed for moto"
  stamp="$("$python" -c 'import sys; print(sys.version.split()[0])') $(sha256sum <"$MOTO_CONSTRAINTS" | cut -d' ' -f1)"
  if [[ -x $venv/bin/moto_server && -f $dir/.stamp && $(<"$dir/.stamp") == "$stamp" ]]; then
    return 0
  fi
  mkdir -p "$dir"
  exec 8>"$dir/.build.lock"
  flock -w 3600 8 || die "could not lock $dir/.build.lock"
  if [[ -x $venv/bin/moto_server && -f $dir/.stamp && $(<"$dir/.stamp") == "$stamp" ]]; then
    exec 8>&-
    return 0
  fi
  local blog=$LOG_DIR/build-moto.log
  log "installing moto[server]==$MOTO_VERSION into $venv (log: $blog)"
  # A virtualenv is not relocatable, so it is built in place; a half-built
  # one from an interrupted run has no stamp and is thrown away here.
  rm -rf "$venv" "$dir/.stamp"
  {
    "$python" -m venv "$venv" &&
      "$venv/bin/python" -m pip install --quiet --no-input \
        -c "$MOTO_CONSTRAINTS" "moto[server]==$MOTO_VERSION"
  } >"$blog" 2>&1 || die_with_log "$blog" "installing moto failed"
  echo "$stamp" >"$dir/.stamp"
  exec 8>&-
}

# --- pki -------------------------------------------------------------------------

pki_valid() {
  local f
  for f in ca.crt ca.key apiserver.crt apiserver.key client-ca.crt admin.crt admin.key sa.key sa.pub; do
    [[ -s $PKI_DIR/$f ]] || return 1
  done
  # Regenerate a week before expiry rather than fail mid-test-run.
  openssl x509 -checkend 604800 -noout -in "$PKI_DIR/apiserver.crt" >/dev/null &&
    openssl x509 -checkend 604800 -noout -in "$PKI_DIR/admin.crt" >/dev/null
}

# Three separate roots, as envtest does, so that a serving cert can never be
# used as a client credential and vice versa. EC P-256 keys: fast to make,
# accepted by rustls and Go. The SA key is RSA for RS256, the common default.
ensure_pki() {
  pki_valid && return 0
  log "generating certificates in $PKI_DIR"
  local tmp=$PKI_DIR.tmp days=365
  rm -rf "$tmp"
  mkdir -p "$tmp"
  (
    set -euo pipefail
    cd "$tmp"
    umask 077
    ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }

    ec ca.key
    openssl req -x509 -new -key ca.key -days $days -subj "/O=npo-testenv/CN=npo-testenv-serving-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out ca.crt
    ec apiserver.key
    openssl req -new -key apiserver.key -subj "/CN=kube-apiserver" -out apiserver.csr
    # The in-cluster names are included so a client that uses them (or the
    # service IP 10.0.0.1 of --service-cluster-ip-range) also verifies.
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days $days \
      -extfile <(printf '%s\n' \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth" \
        "subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc") \
      -out apiserver.crt 2>/dev/null

    ec client-ca.key
    openssl req -x509 -new -key client-ca.key -days $days -subj "/O=npo-testenv/CN=npo-testenv-client-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out client-ca.crt
    ec admin.key
    # O=system:masters bypasses RBAC, so tests can set up anything; other
    # identities (service accounts, impersonation) still go through RBAC.
    openssl req -new -key admin.key -subj "/O=system:masters/CN=admin" -out admin.csr
    openssl x509 -req -in admin.csr -CA client-ca.crt -CAkey client-ca.key -CAcreateserial -days $days \
      -extfile <(printf '%s\n' \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=clientAuth") \
      -out admin.crt 2>/dev/null

    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
    openssl pkey -in sa.key -pubout -out sa.pub
    rm -f ./*.csr ./*.srl
    # Readable by the user only (umask); tests run as the same user.
  ) >"$LOG_DIR/pki.log" 2>&1 || die_with_log "$LOG_DIR/pki.log" "generating certificates failed"
  rm -rf "$PKI_DIR"
  mv "$tmp" "$PKI_DIR"
}

# --- processes -------------------------------------------------------------------

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Runs "$@" detached in its own session (so the caller's terminal, pipes and
# process group do not hold it; cargo test captures our stdout) and records
# the pid of the exec'd program itself, not of a wrapper shell.
start_component() {
  local name=$1 marker=$2 port=$3; shift 3
  echo "$marker" >"$RUN_DIR/$name.marker"
  echo "$port" >"$RUN_DIR/$name.port"
  rm -f "$RUN_DIR/$name.pid"
  printf '\n==== %s starting %s on port %s\n' "$(date -Is)" "$name" "$port" >>"$LOG_DIR/$name.log"
  # fds 8/9 hold our flocks; a daemon inheriting them would keep every later
  # up.sh/down.sh waiting for as long as it runs.
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$RUN_DIR/$name.pid" "$@" \
    </dev/null >>"$LOG_DIR/$name.log" 2>&1 8>&- 9>&- &
  local i
  for ((i = 0; i < 50; i++)); do [[ -s $RUN_DIR/$name.pid ]] && break; sleep 0.1; done
  [[ -s $RUN_DIR/$name.pid ]] || die_with_log "$LOG_DIR/$name.log" "$name did not start"
}

# Polls until check succeeds; a process that already died fails at once
# instead of after the full timeout.
wait_for() {
  local name=$1 timeout=$2 check=$3 deadline=$((SECONDS + $2))
  while ! "$check"; do
    pid_alive "$name" >/dev/null || die_with_log "$LOG_DIR/$name.log" "$name exited during startup"
    ((SECONDS < deadline)) || die_with_log "$LOG_DIR/$name.log" "$name not ready after ${timeout}s"
    sleep 0.2
  done
}

start_etcd() {
  local bin client peer
  bin=$(bin_path etcd)
  client=$(free_port)
  peer=$(free_port)
  while [[ $peer == "$client" ]]; do peer=$(free_port); done
  # Fresh data on every start: the env is disposable and tests must not
  # depend on leftovers of an earlier run.
  rm -rf "$DATA_DIR/etcd"
  mkdir -p "$DATA_DIR/etcd"
  chmod 700 "$DATA_DIR/etcd"
  log "starting etcd on 127.0.0.1:$client"
  # --unsafe-no-fsync: durability is worthless for a throwaway store, and
  # fsync latency on a busy disk is what makes apiserver tests flaky.
  start_component etcd "$bin" "$client" "$bin" \
    --name=npo-testenv \
    --data-dir="$DATA_DIR/etcd" \
    --listen-client-urls="http://127.0.0.1:$client" \
    --advertise-client-urls="http://127.0.0.1:$client" \
    --listen-peer-urls="http://127.0.0.1:$peer" \
    --initial-advertise-peer-urls="http://127.0.0.1:$peer" \
    --initial-cluster="npo-testenv=http://127.0.0.1:$peer" \
    --unsafe-no-fsync=true
  wait_for etcd "$ETCD_START_TIMEOUT" etcd_healthy
}

start_apiserver() {
  local bin port etcd_port
  bin=$(bin_path kube-apiserver)
  port=$(free_port)
  etcd_port=$(port_of etcd)
  mkdir -p "$DATA_DIR/apiserver"
  log "starting kube-apiserver on https://127.0.0.1:$port"
  # --advertise-address: without a default route the apiserver cannot pick
  #   one and refuses to start ("no default routes found").
  # --disable-admission-plugins=ServiceAccount: no controller-manager runs,
  #   so nothing would ever create the default ServiceAccount pods wait for.
  # --cert-dir: only used if a serving cert were missing; must be writable.
  # --endpoint-reconciler-type=none: the default one tries every 10s to
  #   publish 127.0.0.1 as the endpoint of service "kubernetes", which
  #   validation rejects (loopback), filling the log with errors.
  start_component kube-apiserver "$bin" "$port" "$bin" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --secure-port="$port" \
    --cert-dir="$DATA_DIR/apiserver" \
    --tls-cert-file="$PKI_DIR/apiserver.crt" \
    --tls-private-key-file="$PKI_DIR/apiserver.key" \
    --client-ca-file="$PKI_DIR/client-ca.crt" \
    --authorization-mode=RBAC \
    --service-account-issuer="https://127.0.0.1:$port" \
    --service-account-key-file="$PKI_DIR/sa.pub" \
    --service-account-signing-key-file="$PKI_DIR/sa.key" \
    --disable-admission-plugins=ServiceAccount \
    --service-cluster-ip-range=10.0.0.0/24 \
    --allow-privileged=true \
    --endpoint-reconciler-type=none \
    --profiling="${NPO_APISERVER_PROFILING:-false}"
  write_kubeconfig "$port"
  wait_for kube-apiserver "$APISERVER_START_TIMEOUT" apiserver_healthy
  # /readyz can be ok a moment before the bootstrap namespaces exist; tests
  # create objects in "default" right away. Going through kubectl and the
  # kubeconfig also proves the file we hand out works.
  local deadline=$((SECONDS + 60))
  until "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" get namespace default >/dev/null 2>&1; do
    ((SECONDS < deadline)) || {
      "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" get namespace default >>"$LOG_DIR/kube-apiserver.log" 2>&1 || true
      die_with_log "$LOG_DIR/kube-apiserver.log" "namespace default did not appear"
    }
    sleep 0.2
  done
}

start_moto() {
  local venv port
  venv=$(moto_venv)
  port=$(free_port)
  log "starting moto on 127.0.0.1:$port"
  # moto with the project's corrections (tests/env/moto/README.md); the
  # wrapper's path is the marker, so a plain moto_server left running by an
  # older checkout is not taken for it.
  moto_patches_stamp >"$RUN_DIR/moto.patches"
  start_component moto "$MOTO_WRAPPER" "$port" \
    "$venv/bin/python" "$MOTO_WRAPPER" -H 127.0.0.1 -p "$port"
}

# Embedded data rather than paths: the file stays valid if copied elsewhere.
write_kubeconfig() {
  local port=$1 tmp=$KUBECONFIG_FILE.tmp
  b64() { base64 -w0 <"$1"; }
  (
    umask 077
    cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: npo-testenv
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(b64 "$PKI_DIR/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(b64 "$PKI_DIR/admin.crt")
    client-key-data: $(b64 "$PKI_DIR/admin.key")
contexts:
- name: npo-testenv
  context:
    cluster: npo-testenv
    user: admin
    namespace: default
current-context: npo-testenv
EOF
  )
  mv -f "$tmp" "$KUBECONFIG_FILE"
}

write_env() {
  local tmp=$ENV_FILE.tmp
  {
    echo "# Written by tests/env/up.sh; source it. Removed by down.sh."
    printf 'export %s=%q\n' \
      NPO_TESTENV_DIR "$NPO_TESTENV_DIR" \
      KUBECONFIG "$KUBECONFIG_FILE" \
      NPO_KUBE_SERVER "https://127.0.0.1:$(port_of kube-apiserver)" \
      NPO_KUBE_CA "$PKI_DIR/ca.crt" \
      NPO_KUBE_CLIENT_CERT "$PKI_DIR/admin.crt" \
      NPO_KUBE_CLIENT_KEY "$PKI_DIR/admin.key" \
      NPO_KUBE_SA_ISSUER "https://127.0.0.1:$(port_of kube-apiserver)" \
      NPO_KUBE_VERSION "$(wrapper_version kube-apiserver)" \
      NPO_KUBECTL "$KUBECTL" \
      NPO_ETCD_ENDPOINT "http://127.0.0.1:$(port_of etcd)" \
      NPO_ETCD_VERSION "$(wrapper_version etcd)" \
      NPO_MOTO_ENDPOINT "http://127.0.0.1:$(port_of moto)" \
      NPO_MOTO_VERSION "$MOTO_VERSION" \
      NPO_MOTO_PYTHON "$(moto_venv)/bin/python" \
      NPO_KSTATUS "$(kstatus_bin)" \
      NPO_LUA "$(command -v lua5.1)" \
      NPO_HELM "$(bin_path helm)" \
      NPO_PROMTOOL "$PROMTOOL"
  } >"$tmp"
  mv -f "$tmp" "$ENV_FILE"
}

# Restarting a component wipes the state that tests running in parallel rely
# on, so a live process gets some time to answer before it is declared
# broken: under load (Rust builds on both cores) one probe can time out.
settled() {
  local name=$1 check=$2 deadline=$((SECONDS + ${NPO_HEALTH_GRACE:-20}))
  while pid_alive "$name" >/dev/null; do
    "$check" && return 0
    ((SECONDS < deadline)) || { log "$name is running but unhealthy; restarting it"; return 1; }
    sleep 0.5
  done
  return 1
}

# If this run fails half-way, take down what it started so no orphan keeps a
# port and a half-working env is never mistaken for a healthy one.
STARTED=()
cleanup_on_error() {
  local rc=$? name
  ((rc == 0)) && return 0
  for name in "${STARTED[@]}"; do stop_component "$name" 2>/dev/null || true; done
  rm -f "$ENV_FILE"
  exit "$rc"
}

main() {
  mkdir -p "$RUN_DIR" "$LOG_DIR" "$DATA_DIR"
  take_lock
  ensure_test_tools

  if apiserver_healthy && etcd_healthy && moto_healthy && pki_valid; then
    KUBECTL=${NPO_KUBECTL:-$(command -v kubectl || true)}
    [[ -n $KUBECTL ]] || die "kubectl not found; install it or point NPO_KUBECTL at one"
    write_env
    log "already up (env: $ENV_FILE)"
    return 0
  fi

  ensure_tools
  trap cleanup_on_error EXIT

  local need_kube=0 need_moto=0
  settled etcd etcd_healthy && settled kube-apiserver apiserver_healthy && pki_valid || need_kube=1
  settled moto moto_healthy || need_moto=1

  if ((need_moto)); then
    stop_component moto
    ensure_moto
    STARTED+=(moto)
    start_moto # ready check below; it comes up while the kube side starts
  fi

  if ((need_kube)); then
    # etcd and the apiserver go together: an apiserver on a new etcd has a
    # stale watch cache, and certificates may have been regenerated.
    stop_component kube-apiserver
    stop_component etcd
    ensure_go_binary etcd
    ensure_go_binary kube-apiserver
    ensure_pki
    STARTED+=(kube-apiserver etcd)
    start_etcd
    start_apiserver
  fi

  ((need_moto)) && wait_for moto "$MOTO_START_TIMEOUT" moto_healthy

  write_env
  trap - EXIT
  log "up: kube-apiserver $(wrapper_version kube-apiserver) at https://127.0.0.1:$(port_of kube-apiserver)," \
    "etcd $(wrapper_version etcd), moto $MOTO_VERSION at http://127.0.0.1:$(port_of moto)"
  log "env: source $ENV_FILE"
}

main "$@"
