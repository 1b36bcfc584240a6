#!/usr/bin/env bash
# The Python package, as a user gets it: `pip install ./python` (maturin builds the abi3 wheel)
# into a fresh virtual environment, then its pytest suite against a real `commlog serve`
# (target/release/commlog-serve, built by the workspace's tests).
#
# Exit: 0 when the tests pass, or (with a notice) when pip cannot reach a package index;
# non-zero else.
set -euo pipefail
cd "$(dirname "$0")/.."

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

skip() {
  echo "notice: check_python: $1; skipping the Python package's tests" >&2
  exit 0
}
command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
python3 -m venv "$tmp/venv" >/dev/null 2>&1 || skip "python3 cannot create a venv"
pip=("$tmp/venv/bin/python" -m pip --disable-pip-version-check)
# A package index is needed for maturin (the build backend), pytest and Flask.
"${pip[@]}" install --quiet pytest flask >/dev/null 2>&1 || skip "pip cannot reach a package index"
"${pip[@]}" install --quiet ./python

cargo build --release -p commlog-server --bin commlog-serve
export COMMLOG_SERVE_BIN="$PWD/target/release/commlog-serve"
cd python
# From python/ the source tree's `commlog` would shadow the installed package: run from tests/.
cd tests
"$tmp/venv/bin/python" -m pytest -q -p no:cacheprovider .
