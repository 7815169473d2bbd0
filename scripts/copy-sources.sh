#!/usr/bin/env bash
# Copies the module's sources (and nothing built from them) to DEST: the
# one list of what the module is made of, for builds in another directory
# (bench, stress, test_build.py) and in a kernel tree (in-tree.sh).
#   copy-sources.sh DEST
set -euo pipefail
. "$(dirname "$0")/common.sh"
dest=${1:?usage: copy-sources.sh DEST}
mkdir -p "$dest/bindings/helpers"
cd "$RB_ROOT"
cp Kbuild ./*.rs "$dest/"
# The layer's modules, their submodules in subdirectories included.
find virtio mm workqueue -name '*.rs' | while read -r f; do
	mkdir -p "$dest/$(dirname "$f")"
	cp "$f" "$dest/$f"
done
cp bindings/*.rs bindings/*.[ch] bindings/bindgen_parameters "$dest/bindings/"
cp bindings/helpers/*.c "$dest/bindings/helpers/"
rm -f "$dest/bindings/bindings_generated.rs"
