.PHONY: test env-up env-down

# Local etcd + kube-apiserver + moto on loopback; see tests/env/README.md.
env-up:
	tests/env/up.sh

env-down:
	tests/env/down.sh

# The whole test suite: unit, contract and end-to-end tests against the real
# API server, moto and the Nomad simulator (env-up installs and starts them).
# End-to-end tests mostly wait on I/O, so run more of them than there are cores.
test: env-up
	. "$${NPO_TESTENV_DIR:-$(CURDIR)/target/testenv}/env" && cargo test --workspace --locked -- --test-threads=4

# The operator's main job end to end on local defaults (about a minute): a
# pool of 10 simulated Nomad clients in a moto Auto Scaling group scaled to 6
# while CI jobs run; PROVIDER=gce runs it on a managed instance group in
# gce-sim instead. HOOK=1 (AWS only) shows a terminating lifecycle hook: an
# instance refresh of the group replaces every VM while the jobs run, each
# held until its client is drained (a few minutes). Leaves the control plane
# running (make env-down).
PROVIDER ?= aws
HOOK ?=
.PHONY: demo
demo:
	tests/env/up.sh
	cargo build -p nomad-pool-operator --bins
	cargo run --example demo -- $(PROVIDER) $(if $(filter-out 0 no false,$(HOOK)),hook)

# Regenerate crds/ from the Rust types (a unit test checks they match), and
# the Helm chart's copy of them.
.PHONY: crds
crds:
	cargo run -q -p nomad-pool-operator -- crd | csplit -s -z -f crds/.part - '/^---$$/' '{*}'
	for f in crds/.part*; do \
	  name=$$(sed -n 's/^  name: \(.*\)$$/\1/p' $$f | head -1); \
	  sed '1{/^---$$/d}' $$f > crds/$$name.yaml; rm $$f; \
	done
	# Helm reads only files inside the chart: it keeps a copy (tests/helm_chart.rs checks it).
	cp crds/*.nomadpool.dev.yaml deploy/helm/nomad-pool-operator/crds/
