/*
 * The generational memory snapshot, as the page server sees it: the header
 * (same bytes and same checks as packages/host-agent/src/snapshot/header.ts)
 * and the data files of every generation, mapped read-only.
 */
#ifndef WRENN_UFFD_SNAPSHOT_H
#define WRENN_UFFD_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#define SNAP_BLOCK 4096u
#define SNAP_VERSION 1u

struct snap_entry {
	uint64_t offset;
	uint64_t length;
	int file; /* index into snapshot.files, -1 = zeros */
	uint64_t storage;
};

struct snap_file {
	uint8_t id[16];
	uint64_t size;
	const uint8_t *map;
};

struct snapshot {
	uint64_t size;
	uint64_t generation;
	struct snap_entry *entries;
	size_t n_entries;
	struct snap_file *files;
	size_t n_files;
};

/*
 * Loads and validates header_path and the data files it names in dir
 * (memfile.<uuid>); header_path "-" loads the legacy raw dir/memfile.
 * On failure writes a reason into err and returns -1.
 */
int snapshot_load(struct snapshot *s, const char *header_path, const char *dir, char *err,
		  size_t err_len);

/* Index of the entry containing offset (offset < s->size). */
size_t snapshot_find(const struct snapshot *s, uint64_t offset);

#endif
