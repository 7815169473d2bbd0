// SPDX-License-Identifier: GPL-2.0
/*
 * Wakes every USEC microseconds and sleeps again at once, for ever: a task
 * that is runnable for a moment now and then and uses next to no CPU (a
 * timer-driven daemon, a poller). When it wakes on a CPU that is busy, it
 * waits on that CPU's run queue until the running task gives way (under
 * lazy preemption, the next tick): a look at the run queue then finds it
 * there although it wants almost nothing.
 *
 *   rb-tick USEC
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv)
{
	unsigned long usec;
	struct timespec ts;

	if (argc != 2 || !(usec = strtoul(argv[1], NULL, 0))) {
		fprintf(stderr, "usage: %s USEC\n", argv[0]);
		return 2;
	}
	ts.tv_sec = usec / 1000000;
	ts.tv_nsec = usec % 1000000 * 1000;
	for (;;)
		nanosleep(&ts, NULL);
}
