/*
 * uffd-server: serves a VM's guest memory page faults from a generational
 * memory snapshot, speaking Firecracker's UFFD handshake.
 *
 *   uffd-server [--cpu N] [--run-kib K] [--readahead-kib K] SOCKET HEADER DIR
 *
 * Loads and validates HEADER (or "-" for the legacy raw DIR/memfile) and
 * the data files, listens on SOCKET, prints "ready" on stdout, accepts ONE
 * connection, receives the JSON regions with the userfaultfd (SCM_RIGHTS),
 * then serves faults until the peer process (SO_PEERCRED) exits.
 *
 * Exit status: 0 the VM exited; 2 usage; 3 snapshot invalid; 4 handshake
 * failed; 5 userfaultfd error.
 */
#define _GNU_SOURCE
#include "snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#define EXIT_VM_GONE 0
#define EXIT_USAGE 2
#define EXIT_SNAPSHOT 3
#define EXIT_HANDSHAKE 4
#define EXIT_UFFD 5

#define MAX_REGIONS 64
#define HUGE_2M (2u << 20)

struct region {
	uint64_t base, size, offset, page_size;
};

static struct snapshot snap;
static struct region regions[MAX_REGIONS];
static size_t n_regions;
static int uffd = -1;
/* Per 4 KiB page of guest memory: already served / removed (reads as zeros from now on). */
static uint8_t *populated, *zeroed;
static uint64_t run_max = 256u << 10;
/*
 * Read-ahead after sequential faults, like the page cache's: a fault inside
 * the previous window doubles the window (up to readahead_max); any other
 * fault resets it. The window is filled between events, never ahead of them.
 */
static uint64_t readahead_max = 4u << 20;
static struct {
	const struct region *region;
	uint64_t start, next, end, window; /* guest memory offsets */
} ra;
static uint8_t *bounce;
static struct {
	uint64_t faults, copied, zero, eexist, removes;
} stats;

static void die(int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "uffd-server: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(status);
}

static void print_stats(const char *why)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	uint64_t cpu_us = (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
			  (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
	fprintf(stderr,
		"uffd-server: %s; faults=%" PRIu64 " copied_pages=%" PRIu64 " zero_pages=%" PRIu64
		" eexist=%" PRIu64 " removes=%" PRIu64 " cpu_us=%" PRIu64 "\n",
		why, stats.faults, stats.copied, stats.zero, stats.eexist, stats.removes, cpu_us);
}

/* ---- handshake ---------------------------------------------------------- */

static const char *skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
		p++;
	return p;
}

/*
 * Parses Firecracker's region list: [{"base_host_virt_addr":N,"size":N,
 * "offset":N,"page_size":N}, ...] ("page_size_kib" is the older name, also
 * in bytes). Unknown keys with scalar values are skipped.
 */
static int parse_regions(const char *json)
{
	const char *p = skip_ws(json);
	if (*p++ != '[')
		return -1;
	for (;;) {
		p = skip_ws(p);
		if (*p == ']')
			return 0;
		if (*p++ != '{' || n_regions == MAX_REGIONS)
			return -1;
		struct region r = { 0, 0, 0, 0 };
		int have_base = 0, have_size = 0, have_offset = 0;
		for (;;) {
			p = skip_ws(p);
			if (*p == '}') {
				p++;
				break;
			}
			if (*p++ != '"')
				return -1;
			const char *key = p;
			while (*p && *p != '"')
				p++;
			if (!*p)
				return -1;
			size_t klen = (size_t)(p - key);
			p = skip_ws(p + 1);
			if (*p++ != ':')
				return -1;
			p = skip_ws(p);
			uint64_t v = 0;
			int numeric = *p >= '0' && *p <= '9';
			if (numeric) {
				char *end;
				errno = 0;
				v = strtoull(p, &end, 10);
				if (errno)
					return -1;
				p = end;
			} else if (*p == '"') {
				for (p++; *p && *p != '"'; p++)
					if (*p == '\\' && p[1])
						p++;
				if (!*p++)
					return -1;
			} else {
				while (*p && *p != ',' && *p != '}')
					p++;
			}
#define KEY(s) (klen == sizeof(s) - 1 && memcmp(key, s, klen) == 0)
			if (numeric && KEY("base_host_virt_addr")) {
				r.base = v;
				have_base = 1;
			} else if (numeric && KEY("size")) {
				r.size = v;
				have_size = 1;
			} else if (numeric && KEY("offset")) {
				r.offset = v;
				have_offset = 1;
			} else if (numeric && (KEY("page_size") || KEY("page_size_kib"))) {
				r.page_size = v;
			}
#undef KEY
			p = skip_ws(p);
			if (*p == ',')
				p++;
		}
		if (!have_base || !have_size || !have_offset)
			return -1;
		if (r.page_size == 0)
			r.page_size = SNAP_BLOCK;
		regions[n_regions++] = r;
		p = skip_ws(p);
		if (*p == ',')
			p++;
	}
}

static void check_regions(void)
{
	if (n_regions == 0)
		die(EXIT_HANDSHAKE, "handshake: no memory regions");
	for (size_t i = 0; i < n_regions; i++) {
		const struct region *r = &regions[i];
		if (r->page_size != SNAP_BLOCK && r->page_size != HUGE_2M)
			die(EXIT_HANDSHAKE, "region %zu: page size %" PRIu64 " is not 4 KiB or 2 MiB", i,
			    r->page_size);
		if (r->size == 0 || r->size % r->page_size || r->offset % r->page_size ||
		    r->base % r->page_size)
			die(EXIT_HANDSHAKE, "region %zu is not aligned to its page size", i);
		if (r->offset > snap.size || r->size > snap.size - r->offset)
			die(EXIT_HANDSHAKE,
			    "region %zu [%" PRIu64 ", +%" PRIu64 ") lies beyond the snapshot's %" PRIu64
			    " bytes of memory",
			    i, r->offset, r->size, snap.size);
	}
}

/* Receives the regions JSON and the uffd; the JSON may arrive in more than one read. */
static void handshake(int conn)
{
	static char buf[1 << 16];
	size_t len = 0;
	int depth = 0, started = 0, complete = 0;
	while (!complete) {
		if (len == sizeof buf - 1)
			die(EXIT_HANDSHAKE, "handshake: region list larger than %zu bytes", sizeof buf);
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} ctl;
		struct iovec iov = { .iov_base = buf + len, .iov_len = sizeof buf - 1 - len };
		struct msghdr msg = { .msg_iov = &iov,
				      .msg_iovlen = 1,
				      .msg_control = ctl.buf,
				      .msg_controllen = sizeof ctl.buf };
		ssize_t n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die(EXIT_HANDSHAKE, "handshake: recvmsg: %s", strerror(errno));
		if (n == 0)
			die(EXIT_HANDSHAKE, "handshake: peer closed before sending its regions");
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
			    c->cmsg_len == CMSG_LEN(sizeof(int))) {
				if (uffd >= 0)
					die(EXIT_HANDSHAKE, "handshake: more than one fd received");
				memcpy(&uffd, CMSG_DATA(c), sizeof(int));
			}
		}
		for (ssize_t i = 0; i < n; i++) {
			char ch = buf[len + (size_t)i];
			if (ch == '[' || ch == '{') {
				depth++;
				started = 1;
			} else if (ch == ']' || ch == '}') {
				depth--;
			}
			if (started && depth == 0)
				complete = 1;
		}
		len += (size_t)n;
	}
	buf[len] = 0;
	if (uffd < 0)
		die(EXIT_HANDSHAKE, "handshake: no userfaultfd attached (SCM_RIGHTS)");
	if (parse_regions(buf) < 0)
		die(EXIT_HANDSHAKE, "handshake: cannot parse the region list: %.200s", buf);
	check_regions();
}

/* ---- fault serving -------------------------------------------------------- */

static const struct region *region_of(uint64_t addr)
{
	for (size_t i = 0; i < n_regions; i++)
		if (addr >= regions[i].base && addr - regions[i].base < regions[i].size)
			return &regions[i];
	return NULL;
}

/* Where one guest page's bytes come from: NULL = zeros. */
static const uint8_t *source_of(uint64_t off, size_t *entry)
{
	size_t i = snapshot_find(&snap, off);
	*entry = i;
	const struct snap_entry *e = &snap.entries[i];
	if (zeroed[off / SNAP_BLOCK] || e->file < 0)
		return NULL;
	return snap.files[e->file].map + e->storage + (off - e->offset);
}

static void mark(uint64_t off, uint64_t len, uint8_t *bitmap, uint8_t v)
{
	memset(bitmap + off / SNAP_BLOCK, v, len / SNAP_BLOCK);
}

static void wake(uint64_t addr, uint64_t len)
{
	struct uffdio_range r = { .start = addr, .len = len };
	if (ioctl(uffd, UFFDIO_WAKE, &r) < 0 && errno != ENOENT && errno != ESRCH)
		die(EXIT_UFFD, "UFFDIO_WAKE: %s", strerror(errno));
}

static void vm_gone(void)
{
	print_stats("the VM's memory is gone");
	exit(EXIT_VM_GONE);
}

/*
 * Handles the result of a copy/zeropage ioctl over [addr, +len) at guest
 * offset off. Returns 0 when the faulting page is in place, -1 to retry
 * after reading pending events (EAGAIN: the address space is changing).
 */
static int settle(int rc, int64_t done, uint64_t addr, uint64_t off, uint64_t len, uint64_t ps,
		  const char *what)
{
	if (rc == 0) {
		mark(off, len, populated, 1);
		return 0;
	}
	if (errno == EAGAIN && done > 0) {
		mark(off, (uint64_t)done, populated, 1);
		return 0;
	}
	if (errno == EAGAIN)
		return -1;
	if (errno == EEXIST) {
		/* Someone else placed the page first (a racing fault): benign, just wake the waiter. */
		stats.eexist++;
		mark(off, ps, populated, 1);
		wake(addr, ps);
		return 0;
	}
	if (errno == ESRCH || errno == ENOENT)
		vm_gone();
	die(EXIT_UFFD, "%s at 0x%" PRIx64 " (+%" PRIu64 "): %s", what, addr, len, strerror(errno));
	return 0;
}

/*
 * Serves one fault: the run the faulting page starts (wakes the vCPU), then
 * the runs after it up to run_max bytes in all, so a sequential reader
 * finds its next pages in place while the vCPU is already running again.
 */
static int serve_run(const struct region *r, uint64_t addr, uint64_t limit_off, uint64_t *next);

static int serve(uint64_t fault_addr)
{
	const struct region *r = region_of(fault_addr);
	if (!r)
		die(EXIT_UFFD, "fault at 0x%" PRIx64 " outside every registered region", fault_addr);
	uint64_t ps = r->page_size;
	uint64_t addr = fault_addr & ~(ps - 1);
	uint64_t off = r->offset + (addr - r->base);
	uint64_t limit = off + run_max;
	if (limit > r->offset + r->size)
		limit = r->offset + r->size;
	uint64_t next;
	if (serve_run(r, addr, limit, &next) < 0)
		return -1;
	while (ps == SNAP_BLOCK && next < limit && !populated[next / SNAP_BLOCK]) {
		uint64_t at = next;
		if (serve_run(r, r->base + (at - r->offset), limit, &next) < 0 || next <= at)
			break; /* prefetch only: the fault itself is already served */
	}
	if (ps == SNAP_BLOCK && readahead_max > 0) {
		int sequential = ra.region == r && off >= ra.start && off <= ra.end;
		ra.window = sequential ? ra.window * 2 : run_max;
		if (ra.window > readahead_max)
			ra.window = readahead_max;
		ra.region = r;
		ra.start = off;
		ra.next = next;
		ra.end = off + run_max + ra.window;
		if (ra.end > r->offset + r->size)
			ra.end = r->offset + r->size;
	}
	return 0;
}

/* Fills one run of the read-ahead window; returns 0 when the window is done. */
static int read_ahead(void)
{
	while (ra.next < ra.end && populated[ra.next / SNAP_BLOCK])
		ra.next += SNAP_BLOCK;
	if (ra.next >= ra.end)
		return 0;
	uint64_t limit = ra.next + run_max < ra.end ? ra.next + run_max : ra.end;
	uint64_t at = ra.next, next;
	if (serve_run(ra.region, ra.region->base + (at - ra.region->offset), limit, &next) < 0 ||
	    next <= at) {
		ra.end = at; /* the address space is changing: stop until the next fault */
		return 0;
	}
	ra.next = next;
	return 1;
}

/* Copies (or zeroes) one run that the mapping allows, starting at addr; *next = its end. */
static int serve_run(const struct region *r, uint64_t addr, uint64_t limit, uint64_t *next)
{
	uint64_t ps = r->page_size;
	uint64_t off = r->offset + (addr - r->base);
	*next = off + ps;

	if (ps != SNAP_BLOCK) {
		/* Huge page: assemble it (it may span entries) and copy it whole. */
		for (uint64_t o = 0; o < ps; o += SNAP_BLOCK) {
			size_t ei;
			const uint8_t *src = source_of(off + o, &ei);
			if (src)
				memcpy(bounce + o, src, SNAP_BLOCK);
			else
				memset(bounce + o, 0, SNAP_BLOCK);
		}
		struct uffdio_copy c = {
			.dst = addr, .src = (uint64_t)(uintptr_t)bounce, .len = ps, .mode = 0
		};
		int rc = ioctl(uffd, UFFDIO_COPY, &c);
		if (rc == 0)
			stats.copied += ps / SNAP_BLOCK;
		return settle(rc, c.copy, addr, off, ps, ps, "UFFDIO_COPY");
	}

	size_t ei;
	const uint8_t *src = source_of(off, &ei);
	uint64_t entry_end = snap.entries[ei].offset + snap.entries[ei].length;
	if (limit > entry_end)
		limit = entry_end;
	uint64_t len = SNAP_BLOCK;
	while (off + len < limit && !populated[(off + len) / SNAP_BLOCK] &&
	       zeroed[(off + len) / SNAP_BLOCK] == zeroed[off / SNAP_BLOCK])
		len += SNAP_BLOCK;
	*next = off + len;

	if (!src) {
		struct uffdio_zeropage z = { .range = { .start = addr, .len = len }, .mode = 0 };
		int rc = ioctl(uffd, UFFDIO_ZEROPAGE, &z);
		if (rc == 0)
			stats.zero += len / SNAP_BLOCK;
		return settle(rc, z.zeropage, addr, off, len, ps, "UFFDIO_ZEROPAGE");
	}
	struct uffdio_copy c = { .dst = addr, .src = (uint64_t)(uintptr_t)src, .len = len, .mode = 0 };
	int rc = ioctl(uffd, UFFDIO_COPY, &c);
	if (rc == 0)
		stats.copied += len / SNAP_BLOCK;
	return settle(rc, c.copy, addr, off, len, ps, "UFFDIO_COPY");
}

/* The balloon gave these pages back: they must read as zeros from now on. */
static void removed(uint64_t start, uint64_t end)
{
	stats.removes++;
	for (size_t i = 0; i < n_regions; i++) {
		const struct region *r = &regions[i];
		uint64_t s = start > r->base ? start : r->base;
		uint64_t e = end < r->base + r->size ? end : r->base + r->size;
		if (s >= e)
			continue;
		s &= ~(uint64_t)(SNAP_BLOCK - 1);
		uint64_t off = r->offset + (s - r->base);
		uint64_t len = (e - s + SNAP_BLOCK - 1) & ~(uint64_t)(SNAP_BLOCK - 1);
		mark(off, len, populated, 0);
		mark(off, len, zeroed, 1);
	}
}

#define MAX_PENDING 1024

static void serve_loop(int pidfd, pid_t pid)
{
	static uint64_t pending[MAX_PENDING];
	size_t n_pending = 0;
	struct pollfd pfd[2] = { { .fd = uffd, .events = POLLIN }, { .fd = pidfd, .events = POLLIN } };
	for (;;) {
		if (n_pending == 0) {
			int idle = ra.next < ra.end;
			int n = poll(pfd, 2, idle ? 0 : -1);
			if (n == 0 && idle) {
				read_ahead();
				continue;
			}
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				die(EXIT_UFFD, "poll: %s", strerror(errno));
			if (pfd[1].revents) {
				char why[64];
				snprintf(why, sizeof why, "VM process %d exited", (int)pid);
				print_stats(why);
				exit(EXIT_VM_GONE);
			}
			if (pfd[0].revents & (POLLERR | POLLNVAL))
				die(EXIT_UFFD, "userfaultfd reports an error (is it non-blocking?)");
		}
		struct uffd_msg msgs[64];
		ssize_t n = read(uffd, msgs, sizeof msgs);
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			die(EXIT_UFFD, "read userfaultfd: %s", strerror(errno));
		for (ssize_t i = 0; n > 0 && i < n / (ssize_t)sizeof msgs[0]; i++) {
			const struct uffd_msg *m = &msgs[i];
			if (m->event == UFFD_EVENT_PAGEFAULT) {
				stats.faults++;
				if (n_pending == MAX_PENDING)
					die(EXIT_UFFD, "more than %d faults pending", MAX_PENDING);
				pending[n_pending++] = m->arg.pagefault.address;
			} else if (m->event == UFFD_EVENT_REMOVE) {
				removed(m->arg.remove.start, m->arg.remove.end);
			}
			/* UNMAP/REMAP/FORK are not enabled by the VMM; nothing to do. */
		}
		size_t kept = 0;
		for (size_t i = 0; i < n_pending; i++)
			if (serve(pending[i]) < 0)
				pending[kept++] = pending[i];
		n_pending = kept;
		if (n_pending)
			sched_yield();
	}
}

/* ---- main ----------------------------------------------------------------- */

static void usage(void)
{
	die(EXIT_USAGE, "usage: uffd-server [--cpu N] [--run-kib K] [--readahead-kib K] SOCKET HEADER|- DIR");
}

int main(int argc, char **argv)
{
	int cpu = -1, argi = 1;
	while (argi < argc && strncmp(argv[argi], "--", 2) == 0) {
		if (strcmp(argv[argi], "--cpu") == 0 && argi + 1 < argc) {
			cpu = atoi(argv[argi + 1]);
		} else if (strcmp(argv[argi], "--readahead-kib") == 0 && argi + 1 < argc) {
			readahead_max = strtoull(argv[argi + 1], NULL, 10) << 10;
		} else if (strcmp(argv[argi], "--run-kib") == 0 && argi + 1 < argc) {
			run_max = strtoull(argv[argi + 1], NULL, 10) << 10;
			if (run_max < SNAP_BLOCK)
				usage();
		} else {
			usage();
		}
		argi += 2;
	}
	if (argc - argi != 3)
		usage();
	const char *sock_path = argv[argi], *header = argv[argi + 1], *dir = argv[argi + 2];

	if (cpu >= 0) {
		/* The faulting vCPU waits for us: on its CPU a wakeup is ~15x cheaper. */
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		if (sched_setaffinity(0, sizeof set, &set) < 0)
			die(EXIT_USAGE, "cannot pin to CPU %d: %s", cpu, strerror(errno));
	}

	char err[512];
	if (snapshot_load(&snap, header, dir, err, sizeof err) < 0)
		die(EXIT_SNAPSHOT, "invalid memory snapshot in %s: %s", dir, err);
	populated = calloc(snap.size / SNAP_BLOCK, 1);
	zeroed = calloc(snap.size / SNAP_BLOCK, 1);
	bounce = aligned_alloc(HUGE_2M, HUGE_2M);
	if (!populated || !zeroed || !bounce)
		die(EXIT_SNAPSHOT, "out of memory for %" PRIu64 " bytes of guest memory", snap.size);

	int lsock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(sock_path) >= sizeof sa.sun_path)
		die(EXIT_USAGE, "socket path too long: %s", sock_path);
	strcpy(sa.sun_path, sock_path);
	unlink(sock_path);
	if (lsock < 0 || bind(lsock, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lsock, 1) < 0)
		die(EXIT_HANDSHAKE, "cannot listen on %s: %s", sock_path, strerror(errno));
	printf("ready\n");
	fflush(stdout);

	int conn;
	do
		conn = accept4(lsock, NULL, NULL, SOCK_CLOEXEC);
	while (conn < 0 && errno == EINTR);
	if (conn < 0)
		die(EXIT_HANDSHAKE, "accept: %s", strerror(errno));
	/* One VM per server: nobody else may connect. */
	close(lsock);
	unlink(sock_path);

	struct ucred cred;
	socklen_t cl = sizeof cred;
	if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0)
		die(EXIT_HANDSHAKE, "SO_PEERCRED: %s", strerror(errno));
	int pidfd = (int)syscall(SYS_pidfd_open, cred.pid, 0);
	if (pidfd < 0) {
		if (errno == ESRCH)
			vm_gone();
		die(EXIT_HANDSHAKE, "pidfd_open(%d): %s", (int)cred.pid, strerror(errno));
	}
	handshake(conn);
	/* A blocking uffd polls as POLLERR and faults would silently become zero pages. */
	int fl = fcntl(uffd, F_GETFL);
	if (fl < 0 || fcntl(uffd, F_SETFL, fl | O_NONBLOCK) < 0)
		die(EXIT_UFFD, "cannot make the userfaultfd non-blocking: %s", strerror(errno));
	fprintf(stderr,
		"uffd-server: serving %zu region(s) for pid %d from generation %" PRIu64
		" (%zu data file(s), %zu mapping entries)\n",
		n_regions, (int)cred.pid, snap.generation, snap.n_files, snap.n_entries);
	serve_loop(pidfd, cred.pid);
	return 0;
}
