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
	cargo test --workspace --locked -- --test-threads=4
