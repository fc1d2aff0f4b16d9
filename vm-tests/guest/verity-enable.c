/*
 * verity-enable: enable fs-verity (4096-byte blocks) on every file named on
 * standard input, one path per line, in one process.
 *
 *   verity-enable sha256|sha512 <list
 *
 * The disk builder guest runs it over a whole repository that was written
 * without fs-verity (mkosi/build). One fsverity(1) process per file costs
 * about 0.1 s under TCG, mostly loading its shared libraries: 15 minutes for
 * a Debian root. A file that already has fs-verity counts as done. Prints the
 * number of files done; exits 1 after the list when any file failed, each
 * failure named on standard error. Built statically by vm-tests (fast.sh).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fsverity.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct fsverity_enable_arg arg = { .version = 1, .block_size = 4096 };
	char path[4096];
	long done = 0;
	int failed = 0;

	if (argc == 2 && strcmp(argv[1], "sha256") == 0)
		arg.hash_algorithm = FS_VERITY_HASH_ALG_SHA256;
	else if (argc == 2 && strcmp(argv[1], "sha512") == 0)
		arg.hash_algorithm = FS_VERITY_HASH_ALG_SHA512;
	else {
		fputs("usage: verity-enable sha256|sha512 <list-of-files\n", stderr);
		return 2;
	}
	while (fgets(path, sizeof(path), stdin)) {
		int fd, err = 0;

		path[strcspn(path, "\n")] = '\0';
		if (path[0] == '\0')
			continue;
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			err = errno;
		else if (ioctl(fd, FS_IOC_ENABLE_VERITY, &arg) != 0 && errno != EEXIST)
			err = errno;
		if (fd >= 0)
			close(fd);
		if (err) {
			fprintf(stderr, "verity-enable: %s: %s\n", path, strerror(err));
			failed = 1;
		} else {
			done++;
		}
	}
	printf("%ld\n", done);
	return failed;
}
