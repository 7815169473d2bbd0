# SPDX-License-Identifier: GPL-2.0
"""The debugfs view (/sys/kernel/debug/rust_balloon/<device>/) against what
QEMU says over QMP and what the guest's own counters say (/proc/vmstat,
sysfs)."""

from guest import PAGE

# Virtio balloon feature bits and the names the view gives them.
FEATURE_BITS = {0: "must_tell_host", 1: "stats_vq", 2: "deflate_on_oom",
                3: "free_page_hint", 4: "page_poison", 5: "reporting"}


def test_view_agrees_with_qmp_and_vmstat(boot):
    """A scripted sequence: inflate, deflate part way, ask for more than
    the guest can give, deflate to zero. After each step the view's target
    and actual are QMP's, its page counts are the guest's vmstat events,
    and the figures add up among themselves."""
    g = boot(balloon="virtio-balloon-pci,id=balloon0,deflate-on-oom=on,free-page-reporting=on")
    g.sh("insmod /lib/modules/rust_balloon.ko")
    vm0 = g.vmstat()
    view = g.balloon_view()
    # Features: exactly the negotiated bits (sysfs) the driver knows.
    assert view["features"] == {FEATURE_BITS[b] for b in g.features() if b in FEATURE_BITS}
    assert {"stats_vq", "deflate_on_oom", "reporting"} <= view["features"], view
    assert view["buffer_pfns"] == 512  # virtio-pci
    assert view["actual_pages"] == view["inflated_pages"] == 0

    def check(target):
        v, vm = g.balloon_view(), g.vmstat()
        inflated = vm.get("balloon_inflate", 0) - vm0.get("balloon_inflate", 0)
        deflated = vm.get("balloon_deflate", 0) - vm0.get("balloon_deflate", 0)
        assert v["target_pages"] == target, v
        assert v["actual_pages"] == g.balloon_pages(), v
        assert v["actual_pages"] == vm["nr_balloon_pages"], (v, vm["nr_balloon_pages"])
        assert v["inflated_pages"] == inflated, (v, inflated)
        assert v["deflated_pages"] == deflated, (v, deflated)
        assert v["inflated_pages"] - v["deflated_pages"] == v["actual_pages"], v
        assert v["huge_blocks_deflated"] <= v["huge_blocks_inflated"], v
        assert v["huge_blocks_inflated"] * 512 <= v["inflated_pages"], v
        assert v["host_wait_last_us"] <= v["host_wait_max_us"], v
        return v

    # 1: 256 MiB, free huge blocks in a fresh guest: taken whole.
    g.set_balloon_pages(65536)
    g.wait_balloon(65536)
    v = check(65536)
    assert v["huge_blocks_inflated"] >= 64, v  # at least half in blocks
    assert v["host_wait_max_us"] > 0, v
    assert v["stalls"] == 0 and v["backoff_ms"] == 1, v

    # 2: down to 64 MiB: 192 MiB back, most of it as whole blocks.
    g.set_balloon_pages(16384)
    g.wait_balloon(16384)
    v = check(16384)
    assert v["deflated_pages"] == 49152, v
    assert v["huge_blocks_deflated"] > 0, v

    # 3: all but 1 MiB of the guest (QMP takes no 0): the floor
    # (min_available_mib) stops it, and every step after that stalls and
    # backs off.
    total = g.mem_bytes // PAGE - 256
    g.set_balloon_pages(total)
    reached = g.wait_balloon_settled()
    assert reached < total
    v = check(total)
    assert v["stalls"] > 0 and v["backoff_ms"] > 1, v

    # 4: back to nothing: every page out, the counts balance.
    g.set_balloon_pages(0)
    g.wait_balloon(0)
    v = check(0)
    assert v["inflated_pages"] == v["deflated_pages"] >= reached, v
    g.sh("rmmod rust_balloon")
    assert g.sh("[ -e /sys/kernel/debug/rust_balloon ] && echo left || echo gone").strip() \
        == "gone", "the view outlived the module"
