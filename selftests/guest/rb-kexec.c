// SPDX-License-Identifier: GPL-2.0
/*
 * Loads a kernel for kexec with kexec_file_load(2), then (with -e) reboots
 * into it: the two steps of `kexec -l` and `kexec -e`, without kexec-tools,
 * for the test guest's busybox initramfs.
 *
 *   rb-kexec KERNEL INITRD CMDLINE     load
 *   rb-kexec -e                        reboot into the loaded kernel
 */
#include <fcntl.h>
#include <linux/reboot.h>
#include <stdio.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "-e")) {
		sync();
		reboot(LINUX_REBOOT_CMD_KEXEC);
		perror("reboot(LINUX_REBOOT_CMD_KEXEC)");
		return 1;
	}
	if (argc != 4) {
		fprintf(stderr, "usage: %s KERNEL INITRD CMDLINE | -e\n", argv[0]);
		return 2;
	}
	int kernel = open(argv[1], O_RDONLY);
	int initrd = open(argv[2], O_RDONLY);

	if (kernel < 0 || initrd < 0) {
		perror("open");
		return 1;
	}
	if (syscall(SYS_kexec_file_load, kernel, initrd, strlen(argv[3]) + 1,
		    argv[3], 0UL)) {
		perror("kexec_file_load");
		return 1;
	}
	return 0;
}
