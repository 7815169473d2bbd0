// SPDX-License-Identifier: GPL-2.0
/*
 * A busy guest's workload, for the bench: keeps writing an anonymous
 * working set and reading a hot part of a file through a mapping (page
 * cache that reclaim could drop: touching a dropped page again is a major
 * fault), one MiB of each per round, every cache line of it, and every
 * 100 ms writes a row to OUT
 *
 *   <CLOCK_BOOTTIME ms> <rounds in the interval> <longest gap between two
 *   rounds in the interval, us> <CPU time it ran in the interval, us>
 *
 * until SECONDS have passed. A round that waits for reclaim, a major fault
 * or a CPU the balloon holds shows as a gap. The CPU time is what the
 * guest's scheduler gave it: under TCG the rounds one CPU-second bought
 * went from 0.12 to 1.75 times those before within a round (bench.py's
 * busy scenario traced: docs/benchmark.md, "the CPU the workload had"),
 * so the rounds alone do not say whether the workload lost the CPU or
 * ran slower on it.
 *
 *   rb-busy ANON_MIB FILE HOT_MIB SECONDS OUT [lock]
 *
 * With "lock", the hot part of the file is locked in memory (mlock):
 * reclaim then cannot evict it (compaction may still migrate it). Under
 * TCG the guest's accessed bits are set by QEMU's page walk
 * (mmu_translate() in target/i386/tcg/system/excp_helper.c), which runs
 * when its software TLB misses, and that TLB grows to what the guest
 * uses (accel/tcg/cputlb.c); the kernel clears the bit without a flush
 * (ptep_clear_flush_young() in arch/x86/mm/pgtable.c, whose comment allows
 * "the (mistaken) reclaim of hot pages"). So a hot page can look unused
 * to reclaim's second pass. A diagnostic (bench.py's busy-locked): what
 * the busy scenario loses apart from reclaim of its hot file. Measured
 * (docs/benchmark.md, "the workload's hot file under TCG"): the file was
 * hardly evicted, but reclaim split its huge mappings, and none locked.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MIB (1ul << 20)

static uint64_t clock_us(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t now_us(void)
{
	return clock_us(CLOCK_BOOTTIME);
}

int main(int argc, char **argv)
{
	unsigned long anon_mib, hot_mib, round = 0, rounds = 0;
	uint64_t start, end, last, interval_start, interval_cpu, max_gap = 0;
	char *anon, *hot;
	FILE *out;
	int fd;

	int lock = argc == 7 && !strcmp(argv[6], "lock");

	if (argc != 6 && !lock) {
		fprintf(stderr, "usage: %s ANON_MIB FILE HOT_MIB SECONDS OUT [lock]\n", argv[0]);
		return 2;
	}
	anon_mib = strtoul(argv[1], NULL, 0);
	hot_mib = strtoul(argv[3], NULL, 0);
	fd = open(argv[2], O_RDONLY);
	out = fopen(argv[5], "w");
	anon = mmap(NULL, anon_mib * MIB, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	hot = fd < 0 ? MAP_FAILED : mmap(NULL, hot_mib * MIB, PROT_READ, MAP_SHARED, fd, 0);
	if (!out || anon == MAP_FAILED || hot == MAP_FAILED || !anon_mib || !hot_mib) {
		perror("rb-busy");
		return 2;
	}
	if (lock && mlock(hot, hot_mib * MIB)) {
		perror("rb-busy: mlock");
		return 2;
	}
	start = last = interval_start = now_us();
	interval_cpu = clock_us(CLOCK_PROCESS_CPUTIME_ID);
	end = start + strtoul(argv[4], NULL, 0) * 1000000;
	while (last < end) {
		unsigned long mib = round++;
		uint64_t t;

		for (unsigned long off = 0; off < MIB; off += 4096) {
			volatile char *a = anon + (mib % anon_mib) * MIB + off;
			volatile char *h = hot + (mib % hot_mib) * MIB + off;
			char sum = 0;

			/*
			 * Every cache line of each page, not one byte: under
			 * TCG a round of one access per page ran 4 to 10
			 * times faster or slower with the emulator's TLB
			 * (see BUSY_ANON_MIB in bench.py), which made the
			 * rate before meaningless; with 64 accesses per page
			 * the first one's TLB miss is a small part.
			 */
			for (unsigned long line = 0; line < 4096; line += 64)
				sum += a[line] + h[line];
			a[0] = sum;
		}
		t = now_us();
		if (t - last > max_gap)
			max_gap = t - last;
		last = t;
		rounds++;
		if (t - interval_start >= 100000) {
			uint64_t cpu = clock_us(CLOCK_PROCESS_CPUTIME_ID);

			fprintf(out, "%llu %lu %llu %llu\n", (unsigned long long)(t / 1000), rounds,
				(unsigned long long)max_gap,
				(unsigned long long)(cpu - interval_cpu));
			fflush(out);
			interval_start = t;
			interval_cpu = cpu;
			rounds = 0;
			max_gap = 0;
		}
	}
	return fclose(out) ? 2 : 0;
}
