.PHONY: env-up env-down

# Local etcd + kube-apiserver + moto on loopback; see tests/env/README.md.
env-up:
	tests/env/up.sh

env-down:
	tests/env/down.sh
