// SPDX-License-Identifier: GPL-2.0
/*
 * Balloon pages by 2 MiB block: reads /proc/kpageflags and prints how many
 * pages are offline (KPF_OFFLINE, bit 23: the balloon's pages) and how many
 * of those lie in aligned blocks of BLOCK pages that are wholly offline;
 * with FIRST and COUNT, only the COUNT pages from PFN FIRST on (FIRST a
 * multiple of BLOCK). The count od and awk over the file gave, without
 * their seconds per read under TCG.
 *
 *   rb-offline BLOCK [FIRST COUNT]
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define KPF_OFFLINE 23

int main(int argc, char **argv)
{
	static uint64_t flags[1 << 16];
	unsigned long block, in_block = 0, offline = 0, whole = 0;
	unsigned long first = 0, left = -1ul, pfn;
	size_t want;
	ssize_t got = 0;
	int fd;

	if ((argc != 2 && argc != 4) || (block = strtoul(argv[1], NULL, 0)) == 0) {
		fprintf(stderr, "usage: rb-offline BLOCK [FIRST COUNT]\n");
		return 2;
	}
	if (argc == 4) {
		first = strtoul(argv[2], NULL, 0);
		left = strtoul(argv[3], NULL, 0);
		if (first % block) {
			fprintf(stderr, "FIRST must be a multiple of BLOCK\n");
			return 2;
		}
	}
	fd = open("/proc/kpageflags", O_RDONLY);
	if (fd < 0 || lseek(fd, first * 8, SEEK_SET) < 0) {
		perror("/proc/kpageflags");
		return 1;
	}
	pfn = first;
	for (;;) {
		want = left < sizeof(flags) / 8 ? left * 8 : sizeof(flags);
		if (want == 0)
			break;
		got = read(fd, flags, want);
		if (got <= 0)
			break;
		left -= got / 8;
		if (got % 8) {
			fprintf(stderr, "short read of /proc/kpageflags\n");
			return 1;
		}
		for (ssize_t i = 0; i < got / 8; i++, pfn++) {
			if (pfn % block == 0)
				in_block = 0;
			if (flags[i] >> KPF_OFFLINE & 1) {
				offline++;
				if (++in_block == block)
					whole += block;
			}
		}
	}
	if (got < 0) {
		perror("read /proc/kpageflags");
		return 1;
	}
	printf("%lu %lu\n", offline, whole);
	return 0;
}
