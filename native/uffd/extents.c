/*
 * extents: prints the data extents of a sparse file, one "offset length"
 * line each. A Firecracker Diff memory file holds exactly the dirtied pages
 * at their offsets and holes elsewhere, so its extents are the dirty set.
 * (Node has no SEEK_DATA/SEEK_HOLE.) A file system without hole support
 * reports the whole file as data: the diff is then larger, never wrong.
 *
 *   extents FILE
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: extents FILE\n");
		return 2;
	}
	int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "extents: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	off_t pos = 0;
	while (pos < st.st_size) {
		off_t data = lseek(fd, pos, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break; /* only a hole remains */
		if (data < 0) {
			fprintf(stderr, "extents: SEEK_DATA: %s\n", strerror(errno));
			return 1;
		}
		off_t hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0) {
			fprintf(stderr, "extents: SEEK_HOLE: %s\n", strerror(errno));
			return 1;
		}
		printf("%lld %lld\n", (long long)data, (long long)(hole - data));
		pos = hole;
	}
	return fflush(stdout) == 0 ? 0 : 1;
}
