#!/usr/bin/env bash
# Regenerates moto-constraints.txt, the exact set of packages moto[server]
# resolved to, so every machine installs the same versions. Only needed when
# bumping MOTO_VERSION in lib.sh.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version=$(awk -F= '/^MOTO_VERSION=/{print $2}' "$HERE/lib.sh")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"${NPO_PYTHON:-python3}" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --no-input "moto[server]==$version"
{
  echo "# moto[server]==$version as resolved by update-moto-constraints.sh with"
  echo "# Python $("$tmp/venv/bin/python" -c 'import sys; print(sys.version.split()[0])'); used as pip -c by up.sh."
  "$tmp/venv/bin/python" -m pip freeze --all --exclude pip --exclude setuptools --exclude wheel
} >"$HERE/moto-constraints.txt"
echo "wrote $HERE/moto-constraints.txt"
