# SPDX-License-Identifier: GPL-2.0
"""Boots a test guest under QEMU and drives it: QMP for the balloon device,
a serial command channel for the guest, and the console log for splats."""

import base64
import os
import re
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from qemu.qmp.legacy import QEMUMonitorProtocol

PAGE = 4096
MIB = 1 << 20

# What a kernel prints when something went wrong, whatever the test did.
SPLAT = re.compile(
    r"BUG:|WARNING:|Oops|Kernel panic|kernel BUG|general protection fault"
    r"|possible recursive locking|possible circular locking"
    r"|inconsistent lock state|INFO: task .* blocked|rust_kernel: panicked"
    r"|panicked at|list_(add|del) corruption|UBSAN:|refcount_t:"
    r"|Call Trace:|Out of memory: Killed process"
    r"|KASAN:|ODEBUG:|pagealloc: memory corruption|alloc_tag was not|alloc_tag not set"
)


def without_oom_reports(lines):
    """The log without OOM-killer reports: from 'invoked oom-killer' to the
    'Killed process' line that ends each ("Out of memory: Killed process",
    or for a memory cgroup's own OOM "Memory cgroup out of memory: Killed
    process")."""
    kept, inside = [], False
    for row in lines:
        if "invoked oom-killer" in row:
            inside = True
        if not inside:
            kept.append(row)
        if inside and "ut of memory: Killed process" in row:
            inside = False
    return kept


def wait_until(what, check, timeout, interval=0.2):
    """Polls `check` until it returns something true, and returns that;
    fails with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise GuestError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def disable_thp():
    """prctl(PR_SET_THP_DISABLE): no transparent huge pages for this process
    and what it executes."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(41, 1, 0, 0, 0) != 0:  # PR_SET_THP_DISABLE
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_THP_DISABLE)")


def default_machine():
    """QEMU's machine type: q35 unless RB_MACHINE says otherwise. On pc
    (i440FX) every boot spends about 2 s in ACPI, routing the PCI interrupt
    links (its _PRT method, under TCG); q35 routes from a table.
    test_transports.py still boots pc for legacy virtio-pci."""
    return os.environ.get("RB_MACHINE", "q35")


def on_q35():
    return default_machine().startswith("q35")


def kernel_arch(kdir):
    """The architecture of the kernel built in `kdir`: "arm64" or "x86"."""
    config = (Path(kdir) / ".config").read_text()
    return "arm64" if "\nCONFIG_ARM64=y\n" in config else "x86"


def kernel_image(kdir):
    """The bootable image of the kernel built in `kdir`."""
    if kernel_arch(kdir) == "arm64":
        return Path(kdir) / "arch/arm64/boot/Image"
    return Path(kdir) / "arch/x86/boot/bzImage"


def host_tsc_khz():
    """The host's TSC frequency in kHz: under TCG the guest reads the
    host's TSC, and QEMU's microvm has no timer to calibrate it against
    (it stalls at TSC calibration without tsc_early_khz=)."""
    for row in Path("/proc/cpuinfo").read_text().splitlines():
        if row.startswith("cpu MHz"):
            return int(float(row.split(":")[1]) * 1000)
    raise GuestError("no 'cpu MHz' in /proc/cpuinfo")


HUGE_PAGE = 2 * MIB
NR_HUGEPAGES = Path("/proc/sys/vm/nr_hugepages")


class HugePagesUnavailable(Exception):
    """The host cannot provide the huge pages a guest's RAM needs."""


def host_huge_free():
    """The host's free 2 MiB pages (HugePages_Free)."""
    for row in Path("/proc/meminfo").read_text().splitlines():
        if row.startswith("HugePages_Free:"):
            return int(row.split()[1])
    raise HugePagesUnavailable("no HugePages_Free in the host's /proc/meminfo")


@contextmanager
def host_huge_pages(count):
    """Raises the host's vm.nr_hugepages by `count` 2 MiB pages for the
    block and puts it back afterwards (stop the guests that use them
    first). Raises HugePagesUnavailable where the host cannot."""
    if os.geteuid() != 0:
        raise HugePagesUnavailable("raising vm.nr_hugepages needs root")
    if not NR_HUGEPAGES.exists():
        raise HugePagesUnavailable("the host kernel has no hugetlbfs (no vm.nr_hugepages)")
    import fcntl
    # One holder at a time on this host, whatever runs the tests (two
    # pytest-xdist workers, say): each puts back the value it found.
    lock = open("/tmp/rust-balloon-nr_hugepages.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    before = int(NR_HUGEPAGES.read_text())
    try:
        NR_HUGEPAGES.write_text(str(before + count))
        got = int(NR_HUGEPAGES.read_text()) - before
        if got < count:
            raise HugePagesUnavailable(
                f"the host found only {got} of {count} free 2 MiB pages for "
                "vm.nr_hugepages (memory too small or too fragmented)")
        yield
    finally:
        NR_HUGEPAGES.write_text(str(before))
        lock.close()


def hugetlb_backing(mib):
    """QEMU options that back all of a `mib` MiB guest's RAM with the host's
    2 MiB hugetlbfs pages."""
    return ["-object", f"memory-backend-memfd,id=mem0,size={mib}M,hugetlb=on,"
            "hugetlbsize=2M,share=on", "-machine", "memory-backend=mem0"]


# Folds every CPU's vmstat deltas into the global counters.
STAT_REFRESH = "echo 1 > /proc/sys/vm/stat_refresh"


def parse_zoneinfo(text):
    """(node, zone) -> {"free", "pcp", "managed"} in pages from
    /proc/zoneinfo's text (other text before it is skipped): nr_free_pages,
    the pages on the zone's per-CPU free lists (its `count:` lines, which
    nr_free_pages and MemFree leave out), and managed pages."""
    zones, key = {}, None
    for row in text.splitlines():
        m = re.match(r"Node (\d+), zone\s+(\S+)", row)
        if m:
            key = (int(m.group(1)), m.group(2))
            zones[key] = {"free": 0, "pcp": 0, "managed": 0}
        elif key and (m := re.match(r"\s+(nr_free_pages|managed|count:)\s+(\d+)", row)):
            name = {"nr_free_pages": "free", "count:": "pcp"}.get(m.group(1), m.group(1))
            zones[key][name] += int(m.group(2))
    return zones


class GuestError(Exception):
    pass


class BootHang(GuestError):
    """The guest did not get to its agent, and QEMU is still running."""


def pick_accel(kernel, initrd, workdir, timeout=30, first_output=8):
    """'kvm' if a real guest boots under KVM here, else 'tcg'.

    /dev/kvm existing is not enough: on some hosts it opens and guests then
    hang, or QEMU aborts setting up the vCPU. So boot the real test guest
    under KVM and wait for its agent. A guest that has printed nothing
    after `first_output` seconds hangs (under KVM the kernel's first line
    comes within a second; on this project's development machine, where
    /dev/kvm opens but the CPU lacks VMX, none ever comes): the probe then
    ends there, not at `timeout`. RB_ACCEL=kvm|tcg skips the probe."""
    if os.environ.get("RB_ACCEL") in ("kvm", "tcg"):
        return os.environ["RB_ACCEL"]
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    g = Guest(kernel, initrd, workdir, mem_mib=256, accel="kvm")
    try:
        g.start(timeout=timeout, attempts=1, first_output=first_output)
        return "kvm"
    except GuestError:
        return "tcg"
    finally:
        g.stop()


class Guest:
    """One QEMU guest with a virtio balloon device.

    The guest's /init (selftests/guest/init) runs a command agent on its
    second serial port; the first one carries the kernel log to a file."""

    def __init__(self, kernel, initrd, workdir, mem_mib=1024, mem_kib=None, smp=2,
                 balloon="virtio-balloon-pci,id=balloon0", accel=None,
                 extra=(), cmdline="", thp=True, share=None, s3=False, machine=None,
                 arch="x86"):
        self.kernel, self.initrd = str(kernel), str(initrd)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        # mem_kib, if given, instead of mem_mib: a size that is not a whole
        # number of MiB (see TCG_MIGRATION_KIB in test_reliability.py).
        # QEMU rounds RAM up to 8 KiB: only such sizes are exact here.
        assert mem_kib is None or mem_kib % 8 == 0, mem_kib
        self.mem_bytes = mem_kib * 1024 if mem_kib is not None else mem_mib * MIB
        self.smp = smp
        self.balloon_device = balloon
        self.accel = accel or "tcg"
        self.extra = list(extra)
        self.cmdline = cmdline
        # False: QEMU runs with PR_SET_THP_DISABLE, so guest RAM is backed by
        # 4 KiB pages whatever the host's THP setting.
        self.thp = thp
        # A host directory the guest mounts read-only at /host (9p).
        self.share = share
        # QEMU's machine: `machine`, or default_machine(). `make stress`
        # boots the debug kernel on q35, whose ACPI PCI interrupt routing
        # (_PRT) is a table: pc's is an AML loop over 128 slots, which under
        # TCG with KASAN runs into ACPICA's 30 s loop timeout, leaving the
        # balloon (INTx only) without an interrupt. "microvm" has
        # virtio-mmio only (see _qemu_args).
        self.machine = machine or default_machine()
        # arm64 guests run on QEMU's virt machine with -cpu max (TCG): one
        # PL011 serial port, so the command channel is a virtio console.
        self.arch = arch
        if arch == "arm64":
            self.machine = machine or "virt"
        # S3 (suspend to RAM) offered to the guest.
        self.s3 = s3
        self.proc = None
        self.qmp = None
        self.chan = None
        self.buf = b""
        self.seq = 0
        self.console_path = self.workdir / "console.log"
        # Where the running QEMU's sockets are (see migrate_to_new_qemu).
        self.rundir = self.workdir
        self.migrations = 0
        self.mark = 0
        # A test that provokes the OOM killer on purpose sets this: the OOM
        # report (with its call trace) is then not a splat.
        self.expect_oom_kill = False
        # What the guest had before rust_balloon was loaded (see load()).
        self.memtotal0 = None
        # RAM plugged in since boot (DIMMs): QEMU's balloon counts it.
        self.hotplugged = 0

    # -- life cycle ---------------------------------------------------------

    def accel_option(self):
        """Multi-threaded TCG lets one vCPU run into another's half-patched
        kernel text (seen here: "Oops: int3" in sched_clock_cpu while booting,
        before any module is loaded), so TCG runs its vCPUs on one thread:
        still SMP for the guest, without that race."""
        if self.accel == "tcg":
            return os.environ.get("RB_TCG", "tcg,thread=single")
        return self.accel

    def start(self, timeout=180, attempts=2, first_output=None):
        """Boots the guest and waits for its agent. A boot that hangs
        before the agent answers (seen once in many hundred TCG boots: the
        console stopped after the HPET line, QEMU spinning) is retried with
        a fresh QEMU: no module of ours is loaded by then. Its console is
        kept as console-hung<N>.log. Anything else fails at once; on every
        failure QEMU is stopped."""
        for attempt in range(1, attempts + 1):
            try:
                return self._boot(timeout, first_output)
            except BootHang as e:
                self.stop()
                if attempt == attempts:
                    raise
                hung = self.workdir / f"console-hung{attempt}.log"
                self.console_path.replace(hung)
                print(f"warning: guest boot hung, booting again (console in {hung}): "
                      + str(e).splitlines()[0], file=sys.stderr)
            except BaseException:
                self.stop()
                raise

    def microvm(self):
        return self.machine.startswith("microvm")

    def _qemu_args(self, rundir, serial):
        """QEMU's command line, with its sockets in `rundir` and the
        console on `serial` (QEMU options).

        The command channel is the second serial port; microvm has only
        one, so there it is a virtio console over virtio-mmio (/dev/hvc0,
        named to the guest's init by rb.chan=)."""
        chan = ["-serial", "chardev:cmd"]
        cmdline = [self.cmdline]
        qemu, console = ["qemu-system-x86_64"], "ttyS0"
        if self.microvm():
            chan = ["-device", "virtio-serial-device", "-device", "virtconsole,chardev=cmd"]
            cmdline += ["rb.chan=hvc0", f"tsc_early_khz={host_tsc_khz()}"]
        if self.arch == "arm64":
            qemu, console = ["qemu-system-aarch64", "-cpu", "max"], "ttyAMA0"
            chan = ["-device", "virtio-serial-pci", "-device", "virtconsole,chardev=cmd"]
            cmdline += ["rb.chan=hvc0"]
        return [
            *qemu, "-accel", self.accel_option(),
            "-m", f"{self.mem_bytes // 1024}k",
            "-smp", str(self.smp),
            "-kernel", self.kernel, "-initrd", self.initrd,
            "-append", " ".join([f"console={console} panic=-1 oops=panic loglevel=7", *cmdline,
                                 os.environ.get("RB_GUEST_CMDLINE", "")]).strip(),
            "-display", "none", "-monitor", "none", "-no-reboot",
            # Threads named by role ("CPU 0/TCG"): the bench reads the vCPU
            # threads' own host CPU time (bench.qemu_vcpu_sys_s).
            "-name", "debug-threads=on",
        ] + serial + [
            # wait=on: QEMU starts the guest only once we are connected, so
            # not a byte of the channel is lost.
            "-chardev", f"socket,id=cmd,path={rundir / 'cmd.sock'},server=on,wait=on",
            *chan,
            "-qmp", f"unix:{rundir / 'qmp.sock'},server=on,wait=off",
            # A second monitor, for a host thread that drives the balloon
            # while the test talks to the guest (see second_qmp()).
            "-qmp", f"unix:{rundir / 'qmp2.sock'},server=on,wait=off",
        ] + (
            ["-virtfs", f"local,path={self.share},mount_tag=host,security_model=none,readonly=on"]
            if self.share else []) + ["-machine", self.machine] + (
            ["-global", ("ICH9-LPC" if self.q35() else "PIIX4_PM") + ".disable_s3=0"]
            if self.s3 else []) + self.extra + (
            # After the extras: the balloon may sit on a bus one of them adds.
            ["-device", self.balloon_device] if self.balloon_device else [])

    def _start_qemu(self, rundir, serial, more=()):
        """Starts QEMU and connects the command channel (QEMU waits for
        that before it runs anything); returns (process, channel)."""
        cmd_sock = rundir / "cmd.sock"
        for p in (cmd_sock, rundir / "qmp.sock", rundir / "qmp2.sock"):
            p.unlink(missing_ok=True)
        proc = subprocess.Popen(self._qemu_args(rundir, serial) + list(more),
                                stdout=subprocess.DEVNULL,
                                stderr=open(rundir / "qemu.err", "wb"),
                                preexec_fn=None if self.thp else disable_thp)
        deadline = time.monotonic() + 30
        while not cmd_sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise GuestError("QEMU did not start: " + self._qemu_err(rundir))
            time.sleep(0.05)
        chan = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        chan.settimeout(30)
        chan.connect(str(cmd_sock))
        return proc, chan

    def _boot(self, timeout, first_output=None):
        self.rundir = self.workdir
        self.console_path.unlink(missing_ok=True)
        self.proc, self.chan = self._start_qemu(self.rundir, ["-serial", f"file:{self.console_path}"])
        if first_output is not None:
            wait_until("the guest's first console output", self.console_size, first_output)
        try:
            self._read_until(re.compile(rb"@@rb-ready\n"), timeout)
        except GuestError as e:
            if self.proc.poll() is None:
                raise BootHang(str(e)) from None
            raise
        self.qmp = QEMUMonitorProtocol(str(self.rundir / "qmp.sock"))
        self.qmp.connect()
        self.mark = self.console_size()
        return self

    def migrate_to_new_qemu(self, timeout=600):
        """Live-migrates the guest to a second QEMU with the same devices on
        this host, over a unix socket, and goes on with that one: the
        command channel, both monitors and the console (appended to the same
        file) move over; the first QEMU quits. Returns the source's final
        query-migrate answer."""
        self.migrations += 1
        rundir = self.workdir / f"migrated{self.migrations}"
        rundir.mkdir(exist_ok=True)
        incoming = rundir / "migration.sock"
        incoming.unlink(missing_ok=True)
        proc, chan = self._start_qemu(
            rundir, ["-chardev", f"file,id=console,path={self.console_path},append=on",
                     "-serial", "chardev:console"],
            ["-incoming", f"unix:{incoming}"])
        try:
            wait_until("the destination to listen", incoming.exists, 30)
            self.qmp.cmd("migrate", uri=f"unix:{incoming}")

            def completed():
                info = self.qmp.cmd("query-migrate")
                if info.get("status") in ("failed", "cancelled"):
                    raise GuestError(f"migration {info.get('status')}: {info}")
                return info if info.get("status") == "completed" else None
            info = wait_until("the migration", completed, timeout, interval=0.5)
            qmp = QEMUMonitorProtocol(str(rundir / "qmp.sock"))
            qmp.connect()
        except BaseException:
            proc.kill()
            proc.wait()
            chan.close()
            raise
        # The source stays paused; quit it and carry on with the new one.
        old_proc, old_chan, old_qmp = self.proc, self.chan, self.qmp
        self.proc, self.chan, self.qmp, self.rundir = proc, chan, qmp, rundir
        try:
            old_qmp.cmd("quit")
            old_qmp.close()
        except Exception:
            pass
        old_chan.close()
        try:
            old_proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            old_proc.kill()
            old_proc.wait()
        wait_until("the destination to run",
                   lambda: self.qmp.cmd("query-status")["status"] == "running", 60)
        return info

    def boot_again(self, cmdline="", before_cont=None, timeout=180):
        """Starts a new QEMU for this guest once the last one has exited (a
        guest that hibernated and powered off, say: its disks still hold
        the image), with `cmdline` added to the kernel's. QEMU starts
        paused: `before_cont(self)` can set up the host's side (a balloon
        target) before the guest runs. The console goes on in the same
        file; the command channel reconnects, so a command sent before
        (the one that hibernated) ends in the resumed guest."""
        if self.proc.poll() is None:
            raise GuestError("boot_again: the last QEMU is still running")
        for closing in (self.qmp, self.chan):
            try:
                closing.close()
            except Exception:
                pass
        self.qmp = self.chan = None
        self.migrations += 1
        rundir = self.workdir / f"boot{self.migrations}"
        rundir.mkdir(exist_ok=True)
        saved, self.cmdline = self.cmdline, f"{self.cmdline} {cmdline}".strip()
        try:
            self.proc, self.chan = self._start_qemu(
                rundir, ["-chardev", f"file,id=console,path={self.console_path},append=on",
                         "-serial", "chardev:console"], ["-S"])
        finally:
            self.cmdline = saved
        self.rundir, self.buf = rundir, b""

        def connected():
            qmp = QEMUMonitorProtocol(str(rundir / "qmp.sock"))
            try:
                qmp.connect()
                return qmp
            except Exception:
                return None
        self.qmp = wait_until("QEMU's monitor", connected, 30)
        if before_cont:
            before_cont(self)
        self.qmp.cmd("cont")
        return self

    def q35(self):
        return self.machine.startswith("q35")

    def second_qmp(self):
        """A connection to the second monitor, for another thread."""
        qmp = QEMUMonitorProtocol(str(self.rundir / "qmp2.sock"))
        qmp.connect()
        return qmp

    def stop(self):
        if self.proc and not self.qmp:
            # Not booted: nothing to tell QEMU, and it may be spinning.
            self.proc.kill()
        if self.qmp:
            try:
                self.qmp.cmd("quit")
            except Exception:
                pass
            try:
                self.qmp.close()
            except Exception:
                pass
            self.qmp = None
        if self.chan:
            self.chan.close()
            self.chan = None
        if self.proc:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def _qemu_err(self, rundir=None):
        try:
            return ((rundir or self.rundir) / "qemu.err").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    # -- the command channel ------------------------------------------------

    def _read_until(self, pattern, timeout):
        deadline = time.monotonic() + timeout
        while True:
            m = pattern.search(self.buf)
            if m:
                out, self.buf = self.buf[:m.start()], self.buf[m.end():]
                return out, m
            left = deadline - time.monotonic()
            if left <= 0 or (self.proc and self.proc.poll() is not None):
                raise GuestError(
                    f"guest did not answer within {timeout}s; console tail:\n"
                    + self.console()[-3000:])
            self.chan.settimeout(min(left, 1.0))
            try:
                data = self.chan.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise GuestError("guest channel closed; console tail:\n"
                                 + self.console()[-3000:])
            self.buf += data

    def send(self, script):
        """Starts a shell script in the guest; returns its id for wait()."""
        self.seq += 1
        line = f"{self.seq} {base64.b64encode(script.encode()).decode()}\n"
        self.chan.sendall(line.encode())
        return self.seq

    def poll(self, seq, timeout=0.0):
        """(status, output) of script `seq` if it ended within `timeout`
        seconds, else None."""
        pattern = re.compile(rb"@@rb-done %d (\d+)\n" % seq)
        deadline = time.monotonic() + timeout
        while True:
            m = pattern.search(self.buf)
            if m:
                out, self.buf = self.buf[:m.start()], self.buf[m.end():]
                return int(m.group(1)), out.decode(errors="replace")
            left = deadline - time.monotonic()
            self.chan.settimeout(max(left, 0.001))
            try:
                data = self.chan.recv(65536)
            except (socket.timeout, BlockingIOError):
                data = None
            if data == b"":
                raise GuestError("guest channel closed; console tail:\n"
                                 + self.console()[-3000:])
            if data:
                self.buf += data
            elif left <= 0:
                return None

    def wait(self, seq, timeout=120):
        """Waits for script `seq`; returns (status, output)."""
        out, m = self._read_until(re.compile(rb"@@rb-done %d (\d+)\n" % seq), timeout)
        return int(m.group(1)), out.decode(errors="replace")

    def run(self, script, timeout=120, check=True):
        """Runs a shell script in the guest; returns (status, output)."""
        status, text = self.wait(self.send(script), timeout)
        if check and status != 0:
            raise GuestError(f"guest command failed ({status}): {script}\n{text}")
        return status, text

    def sh(self, script, timeout=120):
        return self.run(script, timeout)[1]

    # -- guest memory figures -----------------------------------------------

    def _kv(self, path, first=None):
        """`path`'s "key value" rows as a dict, after running `first`."""
        values = {}
        for row in self.sh(f"{first}; cat {path}" if first else f"cat {path}").splitlines():
            parts = row.replace(":", " ").split()
            if len(parts) >= 2 and parts[1].isdigit():
                values[parts[0]] = int(parts[1])
        return values

    def meminfo(self):
        """/proc/meminfo, in bytes."""
        return {k: v * 1024 for k, v in self._kv("/proc/meminfo").items()}

    def free_lists(self):
        """(MemFree, the pages on the per-CPU free lists), in bytes, read
        at once (one `cat`: the lists drain into MemFree every second).
        MemFree leaves those lists out (/proc/zoneinfo's `count:`); they
        grow while a process allocates (since Linux 6.7 up to an eighth of
        a zone, shared among its node's CPUs) and shrink over the seconds
        after: right after dirty() MemFree read 46 MiB below what it
        settled at, with every page free (a failed
        test_hinting_with_a_real_migration, 2026-12-07)."""
        out = self.sh("cat /proc/meminfo /proc/zoneinfo")
        memfree = int(re.search(r"^MemFree:\s+(\d+) kB$", out, re.M).group(1)) * 1024
        return memfree, sum(z["pcp"] for z in parse_zoneinfo(out).values()) * PAGE

    def zones(self):
        """The guest's zones with memory, from /proc/zoneinfo (see
        parse_zoneinfo)."""
        return {k: v for k, v in parse_zoneinfo(self.sh("cat /proc/zoneinfo")).items()
                if v["managed"]}

    def free_bytes(self):
        """Free memory: MemFree and the per-CPU free lists (see free_lists)."""
        return sum(self.free_lists())

    def vmstat(self):
        """/proc/vmstat with every CPU's counter deltas folded in first:
        node counters such as nr_balloon_pages keep per-CPU deltas that
        reading /proc/vmstat does not fold, so a page ballooned on one CPU
        and deflated on the other could show as 8 left (a CI run failed on
        that). Events (balloon_inflate) are always summed exactly."""
        return self._kv("/proc/vmstat", first=STAT_REFRESH)

    def dirty(self, mib):
        """Writes `mib` MiB in the guest and frees it again, so the host has
        backed that memory and has something to give back: a process's
        anonymous memory, every page written (rb-touch), freed as it exits.
        Under TCG a tmpfs file (dd into /mem, as before) took five times
        as long (see rb-touch.c)."""
        if mib > 0:
            self.sh(f"rb-touch {mib}", timeout=600)

    def dirty_all(self):
        """Writes all free guest memory but a margin and frees it again, as
        in a guest that has run for a while: the host backs all of it. The
        margin (96 MiB, or 4% of RAM if more) keeps the kernel out of the
        OOM killer: there is no swap, so the anonymous memory cannot be
        reclaimed."""
        info = self.meminfo()
        margin = max(96 * MIB, info["MemTotal"] // 25)
        self.dirty(max(info["MemFree"] - margin, 0) // MIB)

    # -- the balloon, from the host -----------------------------------------

    def qom_balloon(self, prop, value=None):
        """Gets (or sets) a property of the balloon device over QMP."""
        path = "/machine/peripheral/balloon0"
        if value is None:
            return self.qmp.cmd("qom-get", path=path, property=prop)
        return self.qmp.cmd("qom-set", path=path, property=prop, value=value)

    def set_balloon_pages(self, pages):
        """Asks for a balloon of `pages` 4 KiB pages (QMP `balloon` takes the
        guest size the host wants, in bytes)."""
        self.qmp.cmd("balloon", value=self.mem_bytes + self.hotplugged - pages * PAGE)

    def balloon_pages(self):
        """The balloon size the driver reports (`actual`), in 4 KiB pages."""
        actual = self.qmp.cmd("query-balloon")["actual"]
        return (self.mem_bytes + self.hotplugged - actual) // PAGE

    def wait_balloon(self, pages, timeout=300):
        """Waits until the driver reports `pages`; returns the seconds it took."""
        start = time.monotonic()
        while True:
            now = self.balloon_pages()
            if now == pages:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise GuestError(f"balloon at {now} pages, not {pages}, after {timeout}s")
            time.sleep(0.1)

    def wait_balloon_settled(self, stable_s=2.0, timeout=300):
        """Waits until the size the driver reports has not changed for
        `stable_s` seconds (a target it cannot reach); returns it. Fails
        after `timeout` seconds of a balloon still moving."""
        start = prev_time = time.monotonic()
        prev = -1
        while True:
            now = self.balloon_pages()
            if now != prev:
                prev, prev_time = now, time.monotonic()
            elif time.monotonic() - prev_time >= stable_s:
                return now
            if time.monotonic() - start > timeout:
                raise GuestError(f"balloon still moving ({now} pages) after {timeout}s")
            time.sleep(0.2)

    def host_anon_huge(self):
        """Guest RAM the host backs with transparent huge pages, in bytes."""
        for row in Path(f"/proc/{self.proc.pid}/smaps_rollup").read_text().splitlines():
            if row.startswith("AnonHugePages:"):
                return int(row.split()[1]) * 1024
        return 0

    def host_rss(self):
        """Resident memory of the QEMU process, in bytes."""
        for row in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if row.startswith("VmRSS:"):
                return int(row.split()[1]) * 1024
        raise GuestError("no VmRSS for QEMU")

    # -- the driver, and what it must leave behind ---------------------------

    def load(self, module="/lib/modules/rust_balloon.ko", params=""):
        """Loads rust_balloon, noting MemTotal first (see unload_and_check)."""
        if self.memtotal0 is None:
            self.memtotal0 = self.meminfo()["MemTotal"]
        self.sh(f"insmod {module} {params}".strip())

    def kmemleak_clear(self):
        """Forgets what kmemleak knew (boot-time objects), where it runs."""
        self.sh("[ ! -e /sys/kernel/debug/kmemleak ] || "
                "{ echo scan > /sys/kernel/debug/kmemleak; echo clear > /sys/kernel/debug/kmemleak; }",
                timeout=600)

    def kmemleak_leaks(self):
        """Leak reports that involve rust_balloon, after two scans (kmemleak
        reports an object only once it is 5 s old and unreferenced in two
        scans). Empty where the kernel has no kmemleak."""
        text = self.sh("[ ! -e /sys/kernel/debug/kmemleak ] || { sleep 6; "
                       "echo scan > /sys/kernel/debug/kmemleak; "
                       "echo scan > /sys/kernel/debug/kmemleak; cat /sys/kernel/debug/kmemleak; }",
                       timeout=900)
        reports = re.split(r"(?m)^(?=unreferenced object)", text)
        return [r for r in reports if "rust_balloon" in r]

    def unload_and_check(self, unload=True):
        """The accounting check that ends every reliability scenario:
        rmmod returns every page (MemTotal exactly as before the module was
        loaded, vmstat balloon_inflate == balloon_deflate, no balloon page
        left, `actual` 0 on the host) and leaves no leak behind."""
        if unload:
            self.sh("rmmod rust_balloon", timeout=600)
        info, vm = self.meminfo(), self.vmstat()
        problems = []
        if self.memtotal0 is not None and info["MemTotal"] != self.memtotal0:
            problems.append(f"MemTotal {info['MemTotal']} != {self.memtotal0} before loading")
        if vm.get("balloon_inflate", 0) != vm.get("balloon_deflate", 0):
            problems.append(f"balloon_inflate {vm.get('balloon_inflate')} != "
                            f"balloon_deflate {vm.get('balloon_deflate')}")
        if vm.get("nr_balloon_pages", 0) != 0:
            problems.append(f"nr_balloon_pages {vm['nr_balloon_pages']}")
        if self.balloon_device and self.balloon_pages() != 0:
            problems.append(f"host sees actual {self.balloon_pages()} pages")
        leaks = self.kmemleak_leaks()
        if leaks:
            problems.append("kmemleak:\n" + "\n".join(leaks))
        if problems:
            raise GuestError("accounting check failed: " + "; ".join(problems))
        return vm

    def debug_kernel(self):
        """Whether the guest runs the debug kernel (KASAN and friends), on
        which freeing and touching memory is many times slower."""
        return "KernelAddressSanitizer initialized" in self.console()

    def balloon_view(self):
        """The driver's debugfs view of the (one) balloon device: each file
        of /sys/kernel/debug/rust_balloon/<device>/, numbers as ints and
        `features` as a set of names."""
        out = self.sh("cd /sys/kernel/debug/rust_balloon/virtio* && grep -r . .")
        view = {}
        for row in out.splitlines():
            name, _, value = row.removeprefix("./").partition(":")
            view[name] = set(value.split()) if name == "features" else int(value)
        return view

    def features(self):
        """The balloon device's negotiated feature bits (sysfs), as a set."""
        bits = self.sh('for d in /sys/bus/virtio/devices/*; do '
                       '[ "$(cat $d/device)" = 0x0005 ] && cat $d/features; done; true').strip()
        return {i for i, c in enumerate(bits) if c == "1"}

    def wait_event(self, name, timeout):
        """Waits for QMP event `name`; returns it, or None on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ev in self.qmp.get_events(wait=False):
                if ev.get("event") == name:
                    return ev
            try:
                ev = self.qmp.pull_event(wait=min(1.0, max(deadline - time.monotonic(), 0.01)))
            except Exception:
                ev = None
            if ev and ev.get("event") == name:
                return ev
        return None

    # -- the kernel log -----------------------------------------------------

    def console_size(self):
        try:
            return self.console_path.stat().st_size
        except OSError:
            return 0

    def console(self, since=0):
        try:
            with open(self.console_path, "rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def splats(self, since=None):
        """Excerpts of the kernel log, since `since` (default: since boot
        finished), around every line that shows something went wrong."""
        lines = self.console(self.mark if since is None else since).splitlines()
        if self.expect_oom_kill:
            lines = without_oom_reports(lines)
        found = []
        for i, row in enumerate(lines):
            if SPLAT.search(row):
                found.append("\n".join(lines[max(0, i - 2):i + 25]))
        return found
