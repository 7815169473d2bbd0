#!/usr/bin/env python3
"""The upstream series (issue 20), generated from this repository.

Imports the kernel source once into a git repository (BASE, committed with
fixed dates so that its hash, and the series' index lines, do not change
from run to run), clones it into OUT/linux with only the files the series
touches checked out, commits one patch after another from the repository's
files, and writes the series with `git format-patch --cover-letter` to OUT,
with OUT/checkpatch.txt (unless --no-checkpatch).

What each patch holds, in the order a maintainer reviews:

1. rust: helpers and bindings: bindings/helpers/*.c are appended to their
   namesakes in rust/helpers/ (the repository names them as those files
   do), and bindings/bindings.h's includes and constants go into
   rust/bindings/bindings_helper.h.

2. rust: mm: mm/*.rs and workqueue/*.rs into rust/kernel/ (their mod.rs
   lines into mm.rs and workqueue.rs);
3. rust: virtio: virtio/*.rs into rust/kernel/virtio/, virtio/mod.rs as
   rust/kernel/virtio.rs, and its line in lib.rs;
4. the driver: the crate root's *.rs into drivers/virtio/rust_balloon/,
   with Kconfig, the Makefiles and the MAINTAINERS entry (which each patch
   extends with the files it adds).
"""

import argparse
import textwrap
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# One date for every commit: the series is a function of the sources.
FIXED_DATE = "2026-01-01T00:00:00+0000"
IDENT = {
    "GIT_AUTHOR_NAME": "rust-balloon",
    "GIT_AUTHOR_EMAIL": "rust-balloon@invalid",
    "GIT_COMMITTER_NAME": "rust-balloon",
    "GIT_COMMITTER_EMAIL": "rust-balloon@invalid",
    "GIT_AUTHOR_DATE": FIXED_DATE,
    "GIT_COMMITTER_DATE": FIXED_DATE,
}

# Below each patch's "---", where `git am` drops it.
SIGNOFF_NOTE = (
    "No Signed-off-by: it certifies the Developer's Certificate of Origin\n"
    "and must come from whoever submits this series (see the cover letter).\n"
)


def say(msg):
    print(f"[rust-balloon] {msg}", file=sys.stderr, flush=True)


def git(*args, cwd=None, env=None, capture=False, input=None):
    full_env = dict(os.environ, **IDENT, **(env or {}))
    res = subprocess.run(["git", *args], cwd=cwd, env=full_env, check=True, input=input,
                         text=True, stdout=subprocess.PIPE if capture else None)
    return res.stdout if capture else None


def import_base(src: Path, base: Path, kver: str):
    """The kernel source as one commit, tagged v<kver>, in bare repository
    BASE (once; later runs reuse it)."""
    if subprocess.run(["git", "--git-dir", str(base), "rev-parse", "-q", "--verify",
                       f"refs/tags/v{kver}"], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode == 0:
        return
    say(f"importing {src} into {base} (once, about two minutes)")
    tmp = base.with_name(base.name + ".tmp")
    subprocess.run(["rm", "-rf", str(tmp)], check=True)
    git("init", "-q", "--bare", str(tmp))
    env = {"GIT_DIR": str(tmp), "GIT_WORK_TREE": str(src),
           "GIT_INDEX_FILE": str(tmp / "import-index")}
    # Everything the tarball holds (-f: a few tracked files match the
    # source's own .gitignore patterns), but the extraction marker, ours.
    git("add", "-A", "-f", "--", ".", ":(exclude).rust-balloon-extracted", cwd=src, env=env)
    tree = git("write-tree", env=env, capture=True).strip()
    commit = git("commit-tree", tree, "-m", f"Linux {kver}", env=env,
                 capture=True).strip()
    git("tag", f"v{kver}", commit, env=env)
    os.remove(tmp / "import-index")
    subprocess.run(["rm", "-rf", str(base)], check=True)
    tmp.rename(base)


# The uapi headers of what the driver's uapi.rs names (VIRTIO_BALLOON_*,
# VIRTIO_ID_BALLOON, VIRTIO_F_ACCESS_PLATFORM, VIRTIO_RING_F_INDIRECT_DESC).
UAPI_HEADERS = [
    "#include <uapi/linux/virtio_balloon.h>",
    "#include <uapi/linux/virtio_config.h>",
    "#include <uapi/linux/virtio_ids.h>",
    "#include <uapi/linux/virtio_ring.h>",
]


# --- patch 1: helpers and bindings ------------------------------------------

def split_c(text):
    """A helper file's parts: its comment blocks (not the SPDX line), its
    #include lines, and its body after the last #include."""
    lines = text.splitlines()
    last_inc = max(i for i, l in enumerate(lines) if l.startswith("#include"))
    head = lines[:last_inc + 1]
    includes = [l for l in head if l.startswith("#include")]
    comments = [l for l in head if not l.startswith("#include")
                and "SPDX-License-Identifier" not in l]
    comment = "\n".join(comments).strip()
    body = "\n".join(lines[last_inc + 1:]).strip()
    return comment, includes, body


def add_includes(lines, includes):
    """Inserts the includes `lines` lacks into its longest run of #include
    lines, in sorted order (the kernel keeps them sorted; what is there is
    not reordered)."""
    best, start = (0, 0), None
    for i, l in enumerate(lines + [""]):
        if l.startswith("#include "):
            start = i if start is None else start
        elif start is not None:
            if i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    block = lines[best[0]:best[1]]
    for inc in includes:
        if inc in lines or inc in block:
            continue
        # The last place where it sorts between its neighbours (a run may
        # start with a few lines out of order, as bindings_helper.h does).
        fits = [i for i in range(len(block) + 1)
                if (i == 0 or block[i - 1] < inc) and (i == len(block) or inc < block[i])]
        block.insert(fits[-1] if fits else len(block), inc)
    return lines[:best[0]] + block + lines[best[1]:]


def merge_helper(kernel_text, ours):
    comment, includes, body = split_c(ours)
    lines = add_includes(kernel_text.rstrip("\n").splitlines(), includes)
    added = ("\n" + comment + "\n" if comment else "\n") + "\n" + body + "\n"
    return "\n".join(lines) + "\n" + added


def merge_bindings(kernel_text, ours):
    """bindings/bindings.h into rust/bindings/bindings_helper.h: its
    <includes>, and its constants after the kernel's own."""
    our_lines = ours.splitlines()
    includes = [l for l in our_lines if l.startswith("#include <")]
    helpers_at = our_lines.index('#include "helpers.c"')
    consts = "\n".join(our_lines[helpers_at + 1:]).strip("\n")
    lines = add_includes(kernel_text.rstrip("\n").splitlines(), includes)
    first_const = next(i for i, l in enumerate(lines) if "RUST_CONST_HELPER_" in l)
    at = next(i for i in range(first_const, len(lines)) if lines[i].startswith("#if"))
    lines[at:at] = [consts, ""]
    return "\n".join(lines) + "\n"


def patch_bindings(root: Path, src: Path, tree: Path):
    touched = []
    for ours in sorted((root / "bindings" / "helpers").glob("*.c")):
        target = tree / "rust" / "helpers" / ours.name
        if target.exists():
            target.write_text(merge_helper(target.read_text(), ours.read_text()))
        else:
            target.write_text(ours.read_text())
            helpers = tree / "rust" / "helpers" / "helpers.c"
            lines = add_includes(helpers.read_text().splitlines(),
                                 [f'#include "{ours.name}"'])
            helpers.write_text("\n".join(lines) + "\n")
            touched.append(helpers)
        touched.append(target)
    # The driver's protocol constants (uapi.rs) come from kernel::uapi in
    # tree: the headers that define them.
    uh = tree / "rust" / "uapi" / "uapi_helper.h"
    lines = add_includes(uh.read_text().splitlines(), UAPI_HEADERS)
    uh.write_text("\n".join(lines) + "\n")
    touched.append(uh)
    bh = tree / "rust" / "bindings" / "bindings_helper.h"
    ours = (root / "bindings" / "bindings.h").read_text()
    bh.write_text(merge_bindings(bh.read_text(), ours))
    touched.append(bh)
    # A constant named after a macro bindgen evaluates wrongly (SHRINK_STOP,
    # ~0UL, comes out as an i32 -1) would be defined twice once the prefix
    # is off: the kernel blocklists the macro, as it does VM_READ and the
    # others.
    params = tree / "rust" / "bindgen_parameters"
    text = params.read_text()
    for name in re.findall(r"RUST_CONST_HELPER_(\w+)", ours):
        macro = re.compile(rf"^#\s*define\s+{name}\b", re.M)
        defined = any(macro.search(h.read_text(errors="replace"))
                      for h in (src / "include" / "linux").glob("*.h"))
        if defined and f"--blocklist-item {name}\n" not in text:
            anchor = "--blocklist-item VM_NOHUGEPAGE\n"
            if anchor not in text:
                sys.exit(f"patches.py: no '{anchor.strip()}' in {params} to add {name} after")
            text = text.replace(anchor, f"{anchor}--blocklist-item {name}\n")
    params.write_text(text)
    touched.append(params)
    names = sorted({m for f in (root / "bindings" / "helpers").glob("*.c")
                    for m in re.findall(r"rust_helper_(\w+)\(", f.read_text())})
    msg = f"""rust: bindings, helpers: add what a virtio balloon driver needs

The Rust virtio balloon driver later in this series, and the abstractions
it uses, call the kernel's virtio, balloon page list, OOM notifier, free
page reporting and shrinker APIs. Add their headers to the bindings, and
helpers for the static inline functions and macros among what they call:

{textwrap.fill(", ".join(names), 72, initial_indent="  ", subsequent_indent="  ")}

The wakeup ones are helpers only without CONFIG_PM_SLEEP, where they are
static inline no-ops. The balloon's page lists go through list_add() and
friends rather than being linked in Rust, so that CONFIG_DEBUG_LIST
checks what list_add() and list_del_init() link and unlink;
page_to_pfn(), page_address() and page_zone() keep the memory model the
kernel's business.

The constants are what bindgen cannot evaluate: SHRINK_STOP (~0UL, which
it makes an i32 -1; blocklisted, as VM_READ and the others are), the
offset of struct page's lru, and the GFP masks and block order the
balloon allocates its pages with.

The uapi bindings get the virtio headers whose constants the driver
names (feature bits, config layout, statistics tags).

The rust-balloon out-of-tree module builds and runs with these helpers
and constants under the same names (its own bindgen run, the same sed as
rust/Makefile's). The tree builds with CLIPPY=1 and CONFIG_WERROR after
this patch, and the helpers with W=1.
"""
    return touched, msg


# --- patches 2 to 4: the Rust files -----------------------------------------

# `kernel::` in code, not `::kernel::` (macros, which the kernel crate
# allows with `extern crate self as kernel`) nor `$crate::`.
KERNEL_PATH = re.compile(r"(?<![:\w$])kernel::")


def to_kernel_crate(text):
    """A layer file as the kernel crate has it: `kernel::` paths become
    `crate::` (in code, not in comments). `crate::bindings`, `crate::mm`
    and `crate::virtio` mean the same in both crates."""
    return "".join(line if line.lstrip().startswith("//") else KERNEL_PATH.sub("crate::", line)
                   for line in text.splitlines(keepends=True))


OUT_OF_TREE = re.compile(
    r"^// rust-balloon: out of tree, for `(?P<use>[^`]*)` \{\n.*?^// \} rust-balloon: out of tree\n",
    re.S | re.M)


def to_driver(text):
    """A driver file as drivers/virtio/rust_balloon/ has it: the out-of-tree
    block of the crate root (the layer's modules) becomes the `use` it
    names, and the layer's paths are the kernel crate's."""
    text = OUT_OF_TREE.sub(lambda m: m.group("use") + "\n", text)
    for ours, kernels in [("crate::virtio", "kernel::virtio"), ("crate::mm", "kernel::mm"),
                          ("crate::workqueue", "kernel::workqueue"),
                          ("crate::bindings", "kernel::uapi")]:
        text = re.sub(rf"(?<![\w$:]){re.escape(ours)}\b", kernels, text)
    return text


def module_lines(mod_rs: Path):
    """The item lines (and their attributes) of a mod.rs: what the kernel
    crate's own file of that module gets."""
    return [l for l in mod_rs.read_text().splitlines()
            if l and not l.startswith("//")]


def mod_items(lines):
    """`mod` items with the attribute lines above each, by module name."""
    items, attrs = [], []
    for line in lines:
        if line.startswith("#["):
            attrs.append(line)
            continue
        m = re.match(r"(?:pub(?:\([^)]*\))? )?mod (\w+);$", line)
        if not m:
            sys.exit(f"patches.py: not a mod item: {line!r}")
        items.append((m.group(1), attrs + [line]))
        attrs = []
    return items


def merge_mods(lines, anchor, new, what):
    """`new`'s mod items merged with the one at line `anchor` in name
    order, as rustfmt (reorder_modules) keeps a run of mod items."""
    if anchor not in lines:
        sys.exit(f"patches.py: no {anchor!r} in {what}")
    at = lines.index(anchor)
    items = sorted(mod_items([anchor]) + mod_items(new))
    return lines[:at] + [l for _, item in items for l in item] + lines[at + 1:]


def insert_before(lines, pattern, new, what):
    at = next((i for i, l in enumerate(lines) if re.match(pattern, l)), None)
    if at is None:
        sys.exit(f"patches.py: no line matching {pattern!r} in {what}")
    return lines[:at] + new + lines[at:]


def copy_rs(root: Path, tree: Path, pairs, transform):
    touched = []
    for ours, theirs in pairs:
        target = tree / theirs
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(transform((root / ours).read_text()))
        touched.append(target)
    return touched


def rustfmt(src: Path, files):
    """Formats a patch's Rust files as `make rustfmtcheck` wants them: the
    rewritten paths sort otherwise among the imports."""
    if not files:
        return
    rustfmt_bin = shutil.which("rustfmt")
    if not rustfmt_bin:
        sys.exit("patches.py: no rustfmt (scripts/setup.sh installs it)")
    subprocess.run([rustfmt_bin, "--edition", "2021", "--config-path",
                    str(src / ".rustfmt.toml"), *map(str, files)], check=True)


def rs_files(root: Path, sub: str):
    return sorted(p.relative_to(root) for p in (root / sub).rglob("*.rs")
                  if p.name != "mod.rs")


def patch_mm(root: Path, src: Path, tree: Path):
    pairs = [(p, Path("rust/kernel") / p) for p in rs_files(root, "mm")]
    pairs += [(p, Path("rust/kernel") / p) for p in rs_files(root, "workqueue")]
    touched = copy_rs(root, tree, pairs, to_kernel_crate)
    mm = tree / "rust/kernel/mm.rs"
    lines = merge_mods(mm.read_text().splitlines(), "pub mod virt;",
                       module_lines(root / "mm/mod.rs"), mm)
    mm.write_text("\n".join(lines) + "\n")
    wq = tree / "rust/kernel/workqueue.rs"
    lines = wq.read_text().splitlines()
    # After the file's `use` block, before its first macro.
    first_macro = lines.index("#[macro_export]")
    last_use = max(i for i in range(first_macro) if lines[i].endswith(";"))
    lines[last_use + 1:last_use + 1] = [""] + module_lines(root / "workqueue/mod.rs")
    wq.write_text("\n".join(lines) + "\n")
    touched += [mm, wq]
    msg = """rust: mm: add balloon pages, the OOM notifier, free page reporting and shrinkers

A memory balloon driver takes guest pages and hands them to the host,
gives them back when asked or when the guest runs out of memory, and lets
compaction migrate them. Add what it needs of the memory management
side, each where the kernel crate keeps its kind:

  mm::balloon         the balloon page list (struct balloon_dev_info)
                      with its lock, page blocks, and balloon page
                      migration (CONFIG_BALLOON)
  mm::oom             an OOM notifier (register_oom_notifier())
  mm::page_reporting  free page reporting (CONFIG_PAGE_REPORTING)
  mm::shrinker        a shrinker (shrinker_alloc())
  mm::vmstat          the vm event and node counters /proc/vmstat reads,
                      and whether another task waits for this CPU
  workqueue::cancel   cancel_work_sync() for an Arc work item, which a
                      driver that must quiesce on freeze needs:
                      flush_work() on a frozen workqueue never returns

The balloon page API speaks the virtio balloon protocol's 4 KiB frames
(mm::balloon::pfn); that part belongs in the driver and is an open
question of the cover letter.

These files are those of the rust-balloon out-of-tree module, where they
are built and tested with the driver against QEMU (KASAN, lockdep and
KUnit kernels included); here the tree builds with CLIPPY=1 and
CONFIG_WERROR after this patch.
"""
    return touched, msg


def patch_virtio(root: Path, src: Path, tree: Path):
    pairs = [(p, Path("rust/kernel") / p) for p in rs_files(root, "virtio")]
    pairs.append((Path("virtio/mod.rs"), Path("rust/kernel/virtio.rs")))
    touched = copy_rs(root, tree, pairs, to_kernel_crate)
    lib = tree / "rust/kernel/lib.rs"
    # Built in only (the kernel crate cannot call into a virtio module), as
    # usb is; its queues carry mm::balloon page blocks, and hand the device
    # their linear-map address (no highmem).
    lines = insert_before(lib.read_text().splitlines(), r"pub mod workqueue;$",
                          ['#[cfg(all(CONFIG_VIRTIO = "y", CONFIG_BALLOON, not(CONFIG_HIGHMEM)))]',
                           "pub mod virtio;"], lib)
    lib.write_text("\n".join(lines) + "\n")
    touched.append(lib)
    msg = """rust: virtio: add the bus abstraction

Add a virtio bus abstraction in the shape of pci.rs and platform.rs: a
Driver trait with its ID table (virtio_device_table!), whose probe gets
the matched entry's IdInfo and returns the driver's Data<'bound>, and an
optional unbind; an Adapter registered through driver::Registration; and
Device<Ctx> for the bus callbacks (probe, unbind, config_changed, freeze
and restore); feature bits and 32-bit config space fields checked at
build time (config_le32!); and the virtqueues of a bound device behind a
lock (Binding, BoundGuard), with buffers that a queue owns while the
device may read them, so that safe code can neither free nor change a
buffer the device still holds.

It is built in only, as usb is: the kernel crate cannot call into a
modular virtio core. Its queues carry mm::balloon page blocks (free page
hinting hands the host whole blocks) by their linear-map address, so it
needs CONFIG_BALLOON and no highmem.

These files are those of the rust-balloon out-of-tree module, where they
are built and tested with the driver against QEMU; here the tree builds
with CLIPPY=1 and CONFIG_WERROR after this patch.
"""
    return touched, msg


def patch_driver(root: Path, src: Path, tree: Path):
    driver = Path("drivers/virtio/rust_balloon")
    pairs = [(p, driver / p) for p in sorted(Path(p.name) for p in root.glob("*.rs"))]
    if len(OUT_OF_TREE.findall((root / "rust_balloon.rs").read_text())) != 1:
        sys.exit("patches.py: rust_balloon.rs has not one out-of-tree block")
    touched = copy_rs(root, tree, pairs, to_driver)
    makefile = tree / driver / "Makefile"
    makefile.write_text("# SPDX-License-Identifier: GPL-2.0\n\n"
                        "obj-$(CONFIG_VIRTIO_BALLOON_RUST) += rust_balloon.o\n")
    vmake = tree / "drivers/virtio/Makefile"
    vmake.write_text(vmake.read_text() + "obj-$(CONFIG_VIRTIO_BALLOON_RUST) += rust_balloon/\n")
    entry = (root / "Kconfig").read_text().split("\n\n", 1)[1]
    if "depends on RUST && VIRTIO\n" not in entry:
        sys.exit("patches.py: the Kconfig entry's 'depends on RUST && VIRTIO' changed")
    entry = entry.replace("depends on RUST && VIRTIO\n", "depends on RUST && VIRTIO=y\n")
    kconfig = tree / "drivers/virtio/Kconfig"
    lines = kconfig.read_text().splitlines()
    at = lines.index("config VIRTIO_BALLOON")
    end = next(i for i in range(at + 1, len(lines)) if re.match(r"[a-z]", lines[i]))
    lines[end:end] = entry.rstrip("\n").splitlines() + [""]
    kconfig.write_text("\n".join(lines) + "\n")
    touched += [makefile, vmake, kconfig]
    msg = """virtio: add a Rust balloon driver

Add a virtio memory balloon driver (device ID 5) written in Rust, on the
abstractions of the previous patches, beside the C virtio_balloon: it
does what the C driver does (inflate and deflate, the statistics queue,
deflate on OOM, free page hinting and reporting, balloon page migration)
with no unsafe code of its own, and adds pacing of inflation by the
guest's reclaim, a floor of available memory, and a debugfs view.

A device binds to whichever of the two drivers takes it first; distros
would build one.

Tested out of tree against QEMU (TCG) on x86-64 and arm64 (4K and 64K
pages): inflate, deflate, stats, OOM, hinting, reporting, migration,
hot-unplug, suspend and hibernation, on KASAN and lockdep kernels; see
the cover letter for the figures against the C driver. Here the tree
builds with the driver enabled, CLIPPY=1 and CONFIG_WERROR.
"""
    return touched, msg


MAINTAINERS_ENTRY = """VIRTIO BALLOON DRIVER [RUST]
L:	virtualization@lists.linux.dev
L:	rust-for-linux@vger.kernel.org
S:	Maintained"""


def add_maintainers(tree: Path, touched):
    """MAINTAINERS names what a patch adds (checkpatch asks for it): the
    entry (made by the first patch that adds a file), with an F: line per
    new file, or per new directory for the files in one. Returns the
    MAINTAINERS path if it changed."""
    new = [p.relative_to(tree) for p in touched
           if subprocess.run(["git", "cat-file", "-e", f"HEAD:{p.relative_to(tree)}"], cwd=tree,
                             stderr=subprocess.DEVNULL).returncode != 0]
    paths = set()
    for p in new:
        parent_is_new = subprocess.run(["git", "cat-file", "-e", f"HEAD:{p.parent}"], cwd=tree,
                                       stderr=subprocess.DEVNULL).returncode != 0
        paths.add(f"{p.parent}/" if parent_is_new else str(p))
    if not paths:
        return []
    maint = tree / "MAINTAINERS"
    lines = maint.read_text().splitlines()
    head = MAINTAINERS_ENTRY.splitlines()
    if head[0] not in lines:
        at = lines.index("VIRTIO BLOCK AND SCSI DRIVERS")
        lines[at:at] = head + [""]
    start = lines.index(head[0])
    end = lines.index("", start)
    files = sorted(set(lines[start + len(head):end]) | {f"F:\t{p}" for p in paths})
    lines[start + len(head):end] = files
    maint.write_text("\n".join(lines) + "\n")
    return [maint]



SERIES = [patch_bindings, patch_mm, patch_virtio, patch_driver]

COVER = """Subject: [RFC PATCH 0/{n}] virtio: a memory balloon driver in Rust

This series adds a virtio memory balloon driver (device ID 5) written in
Rust, with the abstractions it needs: a virtio bus abstraction in the
shape of pci.rs and platform.rs, and the memory-management side of a
balloon (the balloon page list and its migration, the OOM notifier, free
page reporting, a shrinker, the vm event counters).

Motivation: the balloon is the driver through which a host takes memory
from its guests, so it runs under memory pressure, from the OOM path,
from compaction and across suspend and hibernation, where a use after
free or a lost page is easy to write and hard to see. In Rust the page
lists, the buffers a virtqueue owns while the device reads them, and
the driver's locks are types; the driver has no unsafe code, and every
unsafe operation of the abstractions has its SAFETY comment.

 1. rust: bindings, helpers: the headers and static inline helpers
 2. rust: mm: balloon pages, the OOM notifier, page reporting, shrinkers,
    vmstat, and workqueue::cancel
 3. rust: virtio: the bus abstraction (Driver and its Adapter on
    driver::Registration, Device<Ctx>, the ID table, feature bits,
    config space, virtqueues and their buffers)
 4. virtio: the driver in drivers/virtio/rust_balloon/, its Kconfig
    entry (VIRTIO_BALLOON_RUST) and a MAINTAINERS entry

The memory-management patch comes before the bus because the bus's
queues carry page blocks (free page hinting hands the host whole
blocks, free page reporting a scatterlist of them).

Design. The driver's locks, taken in this order: the pages being
inflated (the only lock held while allocating with reclaim), the
balloon's page list (the OOM notifier and balloon page migration take
it), the device (config space and virtqueues; never held across an
allocation with reclaim nor across anything that takes the CPU hotplug
lock), and the hint blocks and the statistics buffer. The crate root's
documentation (rust_balloon.rs) gives the reasons. Unsafe code is in
rust/kernel/virtio/, rust/kernel/mm/ and rust/kernel/workqueue/ only.
Config space fields are typed (config_le32!) against a DeviceConfig
struct the bus knows (the balloon's), so a field is read only where it
exists: on a device of that type, and with its feature if it needs one.

Results. The driver is developed out of tree (the rust-balloon
repository, from which this series is generated by scripts/patches.sh
against Linux {kver}; the base-commit below is that release imported as
one commit, and a real submission would rebase onto rust-next). There it
is tested against QEMU (TCG) on x86-64 and arm64, with a KASAN and
lockdep kernel, and benchmarked against the C driver in the same runs
(make bench, medians of interleaved rounds): inflating 1 GiB takes 0.63
of the C driver's time and deflating 0.50; with 2 MiB host pages it
gives the host whole huge pages back, which the C driver does not. In
this tree (make patches-check) each patch builds with CLIPPY=1 and
CONFIG_WERROR; after the last, make rustfmtcheck and make rustdoc are
clean, and the kernels with the driver as a module and built in boot
under QEMU and pass the driver's kselftest, inflate and deflate, rmmod
while inflated, stats, deflate on OOM, the KUnit doctests and the
driver's KUnit suite.

Not done yet, and open questions:
 - doctests cover the simple parts (features, config fields, device
   IDs, the frame arithmetic, vm counters, cancelling work), pages into a
   balloon and out again, and a Driver with its registration, which
   compiles but binds nothing (binding needs a device);
 - mm::balloon speaks the virtio balloon's 4 KiB frames (pfn.rs): that
   arithmetic, the huge page order and the stats-shaped counters belong
   in the driver;
 - the virtio module needs CONFIG_BALLOON and no highmem because the
   queues carry mm::balloon page blocks by their linear-map address; a
   plain page block type and sg_set_page() would lift both;
 - the series is against the 7.2.13 release, not rust-next, and the
   MAINTAINERS entry has no M: line yet;
 - one shrinker type shared with binder's, and GFP masks from
   kernel::alloc::flags rather than bindings_helper.h.

There is no Signed-off-by in the patches: it certifies the Developer's
Certificate of Origin and must come from whoever submits them.
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--src", required=True, type=Path)
    ap.add_argument("--base", required=True, type=Path)
    ap.add_argument("--kver", required=True)
    ap.add_argument("--out", required=True, type=Path)
    # For a caller that only builds the series (patches-check.sh --last in
    # make check, whose checkpatch test has run it already).
    ap.add_argument("--no-checkpatch", action="store_true")
    args = ap.parse_args()

    import_base(args.src, args.base, args.kver)
    out = args.out
    tree = out / "linux"
    if out.exists() and any(out.iterdir()) and not tree.exists():
        sys.exit(f"patches.py: {out} is not empty and not an earlier output: not removing it")
    subprocess.run(["rm", "-rf", str(out)], check=True)
    out.mkdir(parents=True)
    git("clone", "-q", "--shared", "--no-checkout", str(args.base), str(tree))
    git("sparse-checkout", "set", "--no-cone", "/rust/helpers/", "/rust/bindings/",
        "/rust/bindgen_parameters", "/rust/kernel/", "/rust/uapi/", "/drivers/virtio/",
        "/MAINTAINERS", cwd=tree)
    git("checkout", "-q", "-b", "rust-balloon", f"v{args.kver}", cwd=tree)

    for make_patch in SERIES:
        touched, msg = make_patch(args.root, args.src, tree)
        rustfmt(args.src, [p for p in touched if p.suffix == ".rs"])
        touched += add_maintainers(tree, touched)
        git("add", "-f", "--sparse", "--", *[str(p.relative_to(tree)) for p in touched], cwd=tree)
        git("commit", "-q", "-F", "-", cwd=tree, input=msg)
        # A file a patch changed but did not list would be in no patch.
        left = git("status", "--porcelain", cwd=tree, capture=True)
        if left.strip():
            sys.exit(f"patches.py: {make_patch.__name__} changed files it did not commit:\n{left}")

    n = len(SERIES)
    git("format-patch", "-q", "--cover-letter", "--subject-prefix=RFC PATCH",
        f"--base=v{args.kver}", "-o", str(out), f"v{args.kver}..HEAD", cwd=tree)
    for patch in sorted(out.glob("[0-9][0-9][0-9][0-9]-*.patch"))[1:]:
        text = patch.read_text()
        patch.write_text(text.replace("\n---\n", "\n---\n" + SIGNOFF_NOTE + "\n", 1))
    cover = next(out.glob("0000-*.patch"))
    text = cover.read_text()
    body = COVER.format(n=n, kver=args.kver)
    text = re.sub(r"Subject: .*?\*\*\* BLURB HERE \*\*\*\n",
                  lambda _: body, text, flags=re.S)
    cover.write_text(text)
    say(f"{n} patch(es) and a cover letter in {out}")
    recipients(args.src, out, tree)
    if not args.no_checkpatch:
        sys.exit(checkpatch(args.src, out))


def recipients(src: Path, out: Path, tree: Path):
    """OUT/recipients.txt: whom scripts/get_maintainer.pl names for the
    series (maintainers, reviewers and lists of what it touches, by the
    MAINTAINERS of the patched tree, without git history), for `git
    send-email` (README, "Upstream series")."""
    patches = sorted(str(p) for p in out.glob("[0-9][0-9][0-9][0-9]-*.patch")
                     if not p.name.startswith("0000-"))
    res = subprocess.run(
        ["perl", str(src / "scripts" / "get_maintainer.pl"), "--no-tree",
         "--mpath", str(tree / "MAINTAINERS"), "--no-git", "--no-git-fallback",
         "--no-rolestats", *patches],
        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    (out / "recipients.txt").write_text(res.stdout)
    say(f"{len(res.stdout.splitlines())} recipients (get_maintainer.pl) in {out}/recipients.txt")


def checkpatch(src: Path, out: Path):
    """scripts/checkpatch.pl --strict on each patch, into
    OUT/checkpatch.txt; 1 if any has an error or warning. --no-signoff:
    the Signed-off-by is the submitter's to add (see SIGNOFF_NOTE)."""
    report, bad = [], 0
    patches = [p for p in sorted(out.glob("[0-9][0-9][0-9][0-9]-*.patch"))
               if not p.name.startswith("0000-")]
    # One checkpatch.pl per CPU at a time (each is one single-threaded perl).
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        runs = list(pool.map(lambda patch: subprocess.run(
            ["perl", str(src / "scripts" / "checkpatch.pl"), "--strict", "--no-signoff",
             "--root", str(src), "--color=never", str(patch)],
            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT), patches))
    for patch, res in zip(patches, runs):
        report.append(f"=== {patch.name}\n{res.stdout}")
        summary = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
        say(f"checkpatch {patch.name}: {summary or 'exit ' + str(res.returncode)}")
        bad |= res.returncode != 0
    (out / "checkpatch.txt").write_text("\n".join(report))
    return 1 if bad else 0


if __name__ == "__main__":
    main()
