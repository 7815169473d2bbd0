// SPDX-License-Identifier: GPL-2.0
/*
 * Guest memory integrity: writes a file of MIB MiB where every 64-bit word
 * is a hash of its offset and a seed, and later checks it, naming every
 * 4 KiB page that changed. A page the host discarded while the guest still
 * used it reads back as zeros; one the guest got back wrong holds another
 * page's words. Either shows here, with where it happened.
 *
 *   rb-pattern write FILE MIB SEED
 *   rb-pattern check FILE MIB SEED
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK (1u << 20)
#define WORDS (CHUNK / 8)

static uint64_t word(uint64_t seed, uint64_t index)
{
	/* splitmix64 */
	uint64_t z = seed + index * 0x9e3779b97f4a7c15ull;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

int main(int argc, char **argv)
{
	static uint64_t buf[WORDS];
	unsigned long mib, bad_pages = 0;
	uint64_t seed;
	FILE *f;

	if (argc != 5 || (strcmp(argv[1], "write") && strcmp(argv[1], "check"))) {
		fprintf(stderr, "usage: %s write|check FILE MIB SEED\n", argv[0]);
		return 2;
	}
	mib = strtoul(argv[3], NULL, 0);
	seed = strtoull(argv[4], NULL, 0);
	f = fopen(argv[2], argv[1][0] == 'w' ? "w" : "r");
	if (!f) {
		perror(argv[2]);
		return 2;
	}
	for (unsigned long c = 0; c < mib; c++) {
		uint64_t base = (uint64_t)c * WORDS;

		if (argv[1][0] == 'w') {
			for (unsigned long i = 0; i < WORDS; i++)
				buf[i] = word(seed, base + i);
			if (fwrite(buf, CHUNK, 1, f) != 1) {
				perror("write");
				return 2;
			}
			continue;
		}
		if (fread(buf, CHUNK, 1, f) != 1) {
			fprintf(stderr, "%s: short read at %lu MiB\n", argv[2], c);
			return 1;
		}
		for (unsigned long i = 0; i < WORDS; i += 512) {
			for (unsigned long j = i; j < i + 512; j++) {
				if (buf[j] != word(seed, base + j)) {
					if (bad_pages < 10)
						printf("page at offset %#llx changed: word %lu holds %#llx\n",
						       (unsigned long long)(base + i) * 8, j - i,
						       (unsigned long long)buf[j]);
					bad_pages++;
					break;
				}
			}
		}
	}
	if (fclose(f)) {
		perror("close");
		return 2;
	}
	if (bad_pages) {
		printf("%lu of %lu pages changed\n", bad_pages, mib * 256);
		return 1;
	}
	printf("%lu MiB %s\n", mib, argv[1][0] == 'w' ? "written" : "intact");
	return 0;
}
