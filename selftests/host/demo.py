# SPDX-License-Identifier: GPL-2.0
"""Live demo: boots a guest with rust_balloon and balloons it on command.

    demo.py KDIR INITRAMFS

Type a balloon size (e.g. 512M, 1G, 100000 for pages, 0 to empty it), or
'q' to quit. Without a terminal it plays a fixed script instead."""

import re
import sys
import tempfile
import time

from guest import MIB, PAGE, Guest, pick_accel


def parse_size(text):
    m = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)\s*", text)
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2).upper()
    if not unit:
        return n  # pages
    return n * {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[unit] // PAGE


def show(g, target, t0):
    mem = g.meminfo()
    print(f"{time.monotonic() - t0:7.1f}s  target {target * PAGE // MIB:5d} MiB"
          f"  actual {g.balloon_pages() * PAGE // MIB:5d} MiB"
          f"  guest MemTotal {mem['MemTotal'] // MIB:5d} MiB"
          f"  MemFree {mem['MemFree'] // MIB:5d} MiB"
          f"  host RSS {g.host_rss() // MIB:5d} MiB", flush=True)


def move_to(g, pages, t0, timeout=300):
    g.set_balloon_pages(pages)
    deadline = time.monotonic() + timeout
    while True:
        show(g, pages, t0)
        if g.balloon_pages() == pages or time.monotonic() > deadline:
            return
        time.sleep(0.5)


def main():
    kdir, initramfs = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        kernel = f"{kdir}/arch/x86/boot/bzImage"
        accel = pick_accel(kernel, initramfs, f"{tmp}/kvm-probe")
        g = Guest(kernel, initramfs, f"{tmp}/guest", accel=accel)
        print(f"booting a 1 GiB guest ({g.accel}) ...", flush=True)
        g.start()
        try:
            g.sh("insmod /lib/modules/rust_balloon.ko")
            print(g.sh("dmesg | grep rust_balloon").strip())
            print("dirtying 700 MiB in the guest so the host has memory to get back")
            g.dirty(700)
            t0 = time.monotonic()
            show(g, 0, t0)
            if sys.stdin.isatty():
                while True:
                    try:
                        line = input("balloon size (e.g. 512M, 0, q)> ")
                    except EOFError:
                        break
                    if line.strip() in ("q", "quit", "exit"):
                        break
                    pages = parse_size(line)
                    if pages is None:
                        print("sizes look like 512M, 1G or a page count")
                        continue
                    move_to(g, pages, t0)
            else:
                for size in ("512M", "256M", "768M", "0"):
                    print(f"--- host: balloon {size}")
                    move_to(g, parse_size(size), t0)
            g.sh("rmmod rust_balloon")
            print(g.sh("dmesg | grep rust_balloon | tail -n 1").strip())
            splats = g.splats()
            if splats:
                print("kernel splats:\n" + "\n".join(splats))
                sys.exit(1)
        finally:
            g.stop()


if __name__ == "__main__":
    main()
