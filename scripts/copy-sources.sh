#!/usr/bin/env bash
# Copies the module's sources (and nothing built from them) to DEST: the
# one list of what the module is made of, for builds in another directory
# (bench, stress, test_build.py) and in a kernel tree (in-tree.sh).
#   copy-sources.sh DEST
set -euo pipefail
. "$(dirname "$0")/common.sh"
dest=${1:?usage: copy-sources.sh DEST}
mkdir -p "$dest/virtio/helpers"
cd "$RB_ROOT"
cp Kbuild ./*.rs "$dest/"
cp virtio/*.rs virtio/*.[ch] virtio/bindgen_parameters "$dest/virtio/"
cp virtio/helpers/*.c "$dest/virtio/helpers/"
rm -f "$dest/virtio/bindings_generated.rs"
