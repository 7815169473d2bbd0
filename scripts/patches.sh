#!/usr/bin/env bash
# make patches: the upstream series (issue 20), generated from this
# repository against the Linux source `make check` builds, in OUT (default
# build/patches): numbered `git format-patch` files, a cover letter and
# checkpatch.txt (scripts/checkpatch.pl --strict on each patch).
#
#   patches.sh [OUT]
#   patches.sh --no-checkpatch OUT   the series only (for patches-check.sh
#                                    --last, after make check's checkpatch test)
#
# The source is imported once into a git repository in the cache (about
# two minutes); each run clones it, commits the series on top and formats
# it, so the series always follows the repository. See scripts/patches.py
# for what each patch holds.
set -euo pipefail
. "$(dirname "$0")/common.sh"

flags=()
if [ "${1:-}" = --no-checkpatch ]; then
	flags=(--no-checkpatch)
	shift
fi
out=${1:-$RB_ROOT/build/patches}
src=$("$RB_ROOT/scripts/kernel.sh" source)
command -v python3 >/dev/null || die "no python3"
exec python3 "$RB_ROOT/scripts/patches.py" --root "$RB_ROOT" --src "$src" \
	--base "$RB_CACHE/patches/linux-$RB_KVER.git" --kver "$RB_KVER" --out "$out" "${flags[@]}"
