#!/usr/bin/env bash
# `make check`: from nothing to a test verdict. Installs what is missing,
# builds (or reuses) the test kernel, builds the module, boots guests.
set -euo pipefail
. "$(dirname "$0")/common.sh"
"$RB_ROOT/scripts/setup.sh"
kdir=${KDIR:-$("$RB_ROOT/scripts/kernel.sh" test)}
"$RB_ROOT/scripts/build-module.sh" "$kdir"
export RB_KDIR=$kdir RB_VENV
cd "$RB_ROOT/selftests/host"
exec "$RB_VENV/bin/python" -m pytest -v -ra -p no:cacheprovider "$@" .
