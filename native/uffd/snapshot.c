#define _GNU_SOURCE
#include "snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define META_BYTES 64u
#define ENTRY_BYTES 40u

static int fail(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return -1;
}

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static int is_nil(const uint8_t *id)
{
	for (int i = 0; i < 16; i++)
		if (id[i] != 0)
			return 0;
	return 1;
}

static void uuid_str(const uint8_t *id, char out[37])
{
	static const char hex[] = "0123456789abcdef";
	int o = 0;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[id[i] >> 4];
		out[o++] = hex[id[i] & 15];
	}
	out[o] = 0;
}

static int read_all(const char *path, uint8_t **buf, size_t *len, char *err, size_t err_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(err, err_len, "cannot open header %s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return fail(err, err_len, "cannot stat %s: %s", path, strerror(errno));
	}
	*len = (size_t)st.st_size;
	*buf = malloc(*len ? *len : 1);
	size_t got = 0;
	while (*buf && got < *len) {
		ssize_t n = read(fd, *buf + got, *len - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (!*buf || got != *len)
		return fail(err, err_len, "cannot read header %s", path);
	return 0;
}

static int map_file(struct snap_file *f, const char *path, char *err, size_t err_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(err, err_len, "data file %s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return fail(err, err_len, "cannot stat %s: %s", path, strerror(errno));
	}
	f->size = (uint64_t)st.st_size;
	f->map = NULL;
	if (f->size > 0) {
		void *m = mmap(NULL, f->size, PROT_READ, MAP_SHARED, fd, 0);
		if (m == MAP_FAILED) {
			close(fd);
			return fail(err, err_len, "cannot map %s: %s", path, strerror(errno));
		}
		/* Start readahead now: most of it is going to be faulted in. */
		madvise(m, f->size, MADV_WILLNEED);
		f->map = m;
	}
	close(fd);
	return 0;
}

static int load_legacy(struct snapshot *s, const char *dir, char *err, size_t err_len)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/memfile", dir);
	s->files = calloc(1, sizeof *s->files);
	s->entries = calloc(1, sizeof *s->entries);
	if (!s->files || !s->entries)
		return fail(err, err_len, "out of memory");
	if (map_file(&s->files[0], path, err, err_len) < 0)
		return -1;
	s->n_files = 1;
	s->size = s->files[0].size;
	if (s->size == 0 || s->size % SNAP_BLOCK)
		return fail(err, err_len, "legacy memory file %s has %llu bytes, not a multiple of %u",
			    path, (unsigned long long)s->size, SNAP_BLOCK);
	s->entries[0] = (struct snap_entry){ .offset = 0, .length = s->size, .file = 0, .storage = 0 };
	s->n_entries = 1;
	return 0;
}

int snapshot_load(struct snapshot *s, const char *header_path, const char *dir, char *err,
		  size_t err_len)
{
	memset(s, 0, sizeof *s);
	if (strcmp(header_path, "-") == 0)
		return load_legacy(s, dir, err, err_len);

	uint8_t *h = NULL;
	size_t len = 0;
	if (read_all(header_path, &h, &len, err, err_len) < 0)
		return -1;
	int rc = -1;
	if (len < META_BYTES) {
		fail(err, err_len, "header truncated: %zu bytes, metadata needs %u", len, META_BYTES);
		goto out;
	}
	if ((len - META_BYTES) % ENTRY_BYTES) {
		fail(err, err_len, "header truncated: the last mapping entry has %zu of %u bytes",
		     (len - META_BYTES) % ENTRY_BYTES, ENTRY_BYTES);
		goto out;
	}
	uint64_t version = le64(h), block = le64(h + 8);
	s->size = le64(h + 16);
	s->generation = le64(h + 24);
	if (version != SNAP_VERSION) {
		fail(err, err_len, "header: unknown version %llu", (unsigned long long)version);
		goto out;
	}
	if (block != SNAP_BLOCK) {
		fail(err, err_len, "header: block size %llu is not %u", (unsigned long long)block,
		     SNAP_BLOCK);
		goto out;
	}
	if (s->size == 0 || s->size % SNAP_BLOCK) {
		fail(err, err_len, "header: memory size %llu is not a positive multiple of %u",
		     (unsigned long long)s->size, SNAP_BLOCK);
		goto out;
	}
	s->n_entries = (len - META_BYTES) / ENTRY_BYTES;
	s->entries = calloc(s->n_entries ? s->n_entries : 1, sizeof *s->entries);
	s->files = calloc(s->n_entries ? s->n_entries : 1, sizeof *s->files);
	if (!s->entries || !s->files) {
		fail(err, err_len, "out of memory");
		goto out;
	}
	uint64_t end = 0;
	for (size_t i = 0; i < s->n_entries; i++) {
		const uint8_t *p = h + META_BYTES + i * ENTRY_BYTES;
		struct snap_entry *e = &s->entries[i];
		e->offset = le64(p);
		e->length = le64(p + 8);
		e->storage = le64(p + 32);
		const uint8_t *id = p + 16;
		if (e->length == 0 || e->length % SNAP_BLOCK || e->offset % SNAP_BLOCK) {
			fail(err, err_len, "header: entry %zu is not whole %u-byte blocks", i, SNAP_BLOCK);
			goto out;
		}
		if (e->offset > end) {
			fail(err, err_len, "header: gap before entry %zu, memory [%llu, %llu) is unmapped",
			     i, (unsigned long long)end, (unsigned long long)e->offset);
			goto out;
		}
		if (e->offset < end) {
			fail(err, err_len, "header: entry %zu is unsorted or overlaps the previous one", i);
			goto out;
		}
		if (e->length > s->size - e->offset) {
			fail(err, err_len, "header: entry %zu extends beyond the memory size", i);
			goto out;
		}
		end = e->offset + e->length;
		if (is_nil(id)) {
			e->file = -1;
			continue;
		}
		if (e->storage % SNAP_BLOCK) {
			fail(err, err_len, "header: entry %zu storage offset is not block-aligned", i);
			goto out;
		}
		size_t f;
		for (f = 0; f < s->n_files; f++)
			if (memcmp(s->files[f].id, id, 16) == 0)
				break;
		if (f == s->n_files) {
			char name[37], path[4096];
			uuid_str(id, name);
			snprintf(path, sizeof path, "%s/memfile.%s", dir, name);
			memcpy(s->files[f].id, id, 16);
			if (map_file(&s->files[f], path, err, err_len) < 0)
				goto out;
			s->n_files++;
		}
		e->file = (int)f;
		const struct snap_file *sf = &s->files[f];
		if (e->storage > sf->size || e->length > sf->size - e->storage) {
			char name[37];
			uuid_str(id, name);
			fail(err, err_len,
			     "data file memfile.%s is truncated: entry %zu needs bytes [%llu, %llu), "
			     "the file has %llu",
			     name, i, (unsigned long long)e->storage,
			     (unsigned long long)(e->storage + e->length), (unsigned long long)sf->size);
			goto out;
		}
	}
	if (end != s->size) {
		fail(err, err_len, "header: mapping ends at %llu, memory size is %llu",
		     (unsigned long long)end, (unsigned long long)s->size);
		goto out;
	}
	rc = 0;
out:
	free(h);
	return rc;
}

size_t snapshot_find(const struct snapshot *s, uint64_t offset)
{
	size_t lo = 0, hi = s->n_entries - 1;
	while (lo < hi) {
		size_t mid = (lo + hi + 1) / 2;
		if (s->entries[mid].offset <= offset)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}
