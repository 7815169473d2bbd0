#!/usr/bin/env bash
# `make check`: from nothing to a test verdict. Installs what is missing,
# builds (or reuses) the test kernel, builds the module, boots guests.
#   check.sh [pytest args...]   (make check ARGS="...")
#
# Two phases: the tests that build kernels or modules (both cores each)
# one at a time, then the guest tests two at a time (pytest-xdist): under
# TCG each guest runs on one host thread (see guest.py), so two fill two
# cores. RB_JOBS sets the guests' parallelism. Every test has a time limit
# (pytest-timeout; a file may set a longer one); the 15 slowest are listed.
set -euo pipefail
. "$(dirname "$0")/common.sh"
"$RB_ROOT/scripts/setup.sh"
# Warm: the test kernel was built before this run (the cache of an earlier
# one). Then there is time for a test that builds the kernel tree after the
# upstream series (test_build.py); a cold run has built the kernel already.
if [ -z "${KDIR:-}" ] && "$RB_ROOT/scripts/kernel.sh" test --print > /dev/null 2>&1; then
	export RB_KERNEL_WARM=1
fi
kdir=${KDIR:-$("$RB_ROOT/scripts/kernel.sh" test)}
"$RB_ROOT/scripts/build-module.sh" "$kdir"
RB_RUN_DIR=$(mktemp -d)
trap 'rm -rf "$RB_RUN_DIR"' EXIT
# Each phase's JUnit XML (every test's time) stays in build/check/.
results=$RB_ROOT/build/check
rm -rf "$results"
mkdir -p "$results"
export RB_KDIR=$kdir RB_VENV RB_RUN_DIR
cd "$RB_ROOT/selftests/host"
common=(-v -ra -p no:cacheprovider --timeout="${RB_TEST_TIMEOUT:-900}" --durations=15)
start=$SECONDS
status=0
"$RB_VENV/bin/python" -m pytest "${common[@]}" -m serial \
	--junitxml="$results/serial.xml" "$@" . || status=$?
# 5: no test selected (ARGS picked only the other phase's tests).
[ $status -eq 5 ] && status=0
rc=0
"$RB_VENV/bin/python" -m pytest "${common[@]}" -m "not serial" \
	-n "${RB_JOBS:-2}" --dist loadgroup \
	--junitxml="$results/guests.xml" "$@" . || rc=$?
[ $rc -eq 5 ] && rc=0
[ $rc -eq 0 ] || status=$rc
echo "make check: tests took $((SECONDS - start)) s, exit status $status"
# One closing line for both phases, the last one printed.
"$RB_VENV/bin/python" - "$results"/serial.xml "$results"/guests.xml <<'PY'
import sys
import xml.etree.ElementTree as ET
total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
for path in sys.argv[1:]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        continue
    for suite in root.iter("testsuite"):
        for key in total:
            total[key] += int(suite.get(key, 0))
failed = total["failures"] + total["errors"]
passed = total["tests"] - failed - total["skipped"]
print(f"check: {passed} passed, {failed} failed, {total['skipped']} skipped")
PY
exit "$status"
