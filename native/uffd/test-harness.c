/*
 * test-harness: plays Firecracker's part against uffd-server with a real
 * userfaultfd. Maps anonymous memory in a few regions (offsets accumulate),
 * registers it in MISSING mode, connects to the server, sends the JSON
 * regions with the uffd over SCM_RIGHTS, touches every page and compares
 * every byte with EXPECTED (the raw image the snapshot should reproduce).
 *
 *   test-harness [--regions N] [--threads N] [--random] [--huge] [--remove] [--hold] [--cpu N]
 *                SOCKET EXPECTED
 *
 * --threads touches pages from N threads at once, interleaved, as several
 *           vCPUs do (faults on pages already in flight: EEXIST, wakeups).
 * --huge    maps the regions with 2 MiB hugetlb pages (needs reserved huge pages).
 * --random  touches pages in a scattered order instead of guest-memory order.
 * --remove  afterwards drops a range with MADV_DONTNEED (the balloon's way)
 *           and checks it reads back as zeros while the rest is unchanged.
 * --hold    after reporting, waits to be killed (tests the server's exit).
 * Prints one JSON line: {"ok":true,"bytes":…,"pages":…,"touch_ns":…,"memcpy_ns":…}.
 * Exit status 0 when every byte matched.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

#define PAGE 4096u
#define HUGE (2u << 20)
#define MAX_REGIONS 16

struct region {
	uint8_t *base;
	size_t size, offset;
};

static void fail(const char *fmt, const char *arg)
{
	fprintf(stderr, "test-harness: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n");
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int new_uffd(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0)
		return fd;
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0)
		fail("no userfaultfd: %s (needs root or vm.unprivileged_userfaultfd=1)",
		     strerror(errno));
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	close(dev);
	if (fd < 0)
		fail("USERFAULTFD_IOC_NEW: %s", strerror(errno));
	return fd;
}

/* Reports the first differing byte of a region against the expected image. */
static int compare(const uint8_t *got, const uint8_t *want, size_t len, size_t offset,
		   const char *what)
{
	if (memcmp(got, want, len) == 0)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (got[i] != want[i]) {
			fprintf(stderr,
				"test-harness: %s: byte at guest offset %zu is 0x%02x, expected 0x%02x\n",
				what, offset + i, got[i], want[i]);
			break;
		}
	}
	return -1;
}

struct toucher {
	struct region *regions;
	int n_regions, index, threads, random;
	size_t pages;
	unsigned sum;
};

static volatile uint8_t *page_addr(struct region *regions, int n, size_t page)
{
	size_t off = page * PAGE;
	for (int i = 0; i < n; i++)
		if (off >= regions[i].offset && off - regions[i].offset < regions[i].size)
			return regions[i].base + (off - regions[i].offset);
	return NULL;
}

/*
 * One "vCPU": reads one byte of every threads-th page, in guest-memory order
 * or (random) in a scattered order that defeats any read-ahead.
 */
static void *touch(void *arg)
{
	struct toucher *t = arg;
	size_t stride = 7919; /* prime: k * stride mod pages visits every page once */
	while (t->pages % stride == 0)
		stride += 2;
	for (size_t k = (size_t)t->index; k < t->pages; k += (size_t)t->threads) {
		size_t page = t->random ? (k * stride) % t->pages : k;
		t->sum += *page_addr(t->regions, t->n_regions, page);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int n_threads = 1, random_order = 0, huge = 0;
	int n_regions = 3, remove_test = 0, hold = 0, cpu = -1, argi = 1;
	while (argi < argc && strncmp(argv[argi], "--", 2) == 0) {
		if (strcmp(argv[argi], "--regions") == 0 && argi + 1 < argc) {
			n_regions = atoi(argv[++argi]);
		} else if (strcmp(argv[argi], "--threads") == 0 && argi + 1 < argc) {
			n_threads = atoi(argv[++argi]);
		} else if (strcmp(argv[argi], "--cpu") == 0 && argi + 1 < argc) {
			cpu = atoi(argv[++argi]);
		} else if (strcmp(argv[argi], "--huge") == 0) {
			huge = 1;
		} else if (strcmp(argv[argi], "--random") == 0) {
			random_order = 1;
		} else if (strcmp(argv[argi], "--remove") == 0) {
			remove_test = 1;
		} else if (strcmp(argv[argi], "--hold") == 0) {
			hold = 1;
		} else {
			fail("unknown option %s", argv[argi]);
		}
		argi++;
	}
	if (argc - argi != 2 || n_regions < 1 || n_regions > MAX_REGIONS || n_threads < 1 ||
	    n_threads > 64)
		fail("%s", "usage: test-harness [--regions N] [--threads N] [--random] [--huge] [--remove] "
			   "[--hold] [--cpu N] SOCKET EXPECTED");
	const char *sock_path = argv[argi], *expected_path = argv[argi + 1];
	if (cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		sched_setaffinity(0, sizeof set, &set);
	}

	int efd = open(expected_path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (efd < 0 || fstat(efd, &st) < 0)
		fail("cannot open expected image %s", expected_path);
	size_t total = (size_t)st.st_size;
	if (total == 0 || total % PAGE || total / PAGE < (size_t)n_regions)
		fail("expected image %s is empty or not whole pages", expected_path);
	const uint8_t *expected = mmap(NULL, total, PROT_READ, MAP_PRIVATE | MAP_POPULATE, efd, 0);
	if (expected == MAP_FAILED)
		fail("cannot map %s", expected_path);

	/* Baseline: a plain memcpy of the same bytes into already-faulted memory. */
	uint8_t *scratch = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (scratch == MAP_FAILED)
		fail("%s", "cannot map scratch memory");
	memset(scratch, 1, total);
	memcpy(scratch, expected, total);
	uint64_t t0 = now_ns();
	memcpy(scratch, expected, total);
	uint64_t memcpy_ns = now_ns() - t0;
	if (scratch[total - 1] != expected[total - 1])
		fail("%s", "memcpy baseline mismatch");
	munmap(scratch, total);

	int uffd = new_uffd();
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE };
	if (ioctl(uffd, UFFDIO_API, &api) < 0)
		fail("UFFDIO_API: %s", strerror(errno));

	/* Uneven region sizes (half, quarter, …) so offsets really accumulate. */
	struct region regions[MAX_REGIONS];
	/* --huge: 2 MiB hugetlb pages, as Firecracker's huge_pages "2M". */
	size_t unit = huge ? HUGE : PAGE;
	if (total % unit || total / unit < (size_t)n_regions)
		fail("%s", "expected image is not whole (huge) pages for the regions");
	size_t pages = total / PAGE, units = total / unit, offset = 0;
	for (int i = 0; i < n_regions; i++) {
		size_t left = units - offset / unit;
		size_t np = i == n_regions - 1 ? left : left / 2;
		if (np == 0)
			np = 1;
		regions[i].size = np * unit;
		regions[i].offset = offset;
		offset += regions[i].size;
		int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
		if (huge)
			flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | (21 << MAP_HUGE_SHIFT);
		regions[i].base = mmap(NULL, regions[i].size, PROT_READ | PROT_WRITE, flags, -1, 0);
		if (regions[i].base == MAP_FAILED)
			fail("mmap: %s", strerror(errno));
		struct uffdio_register reg = {
			.range = { .start = (uint64_t)(uintptr_t)regions[i].base, .len = regions[i].size },
			.mode = UFFDIO_REGISTER_MODE_MISSING,
		};
		if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
			fail("UFFDIO_REGISTER: %s", strerror(errno));
	}

	char json[4096];
	size_t jl = 0;
	jl += (size_t)snprintf(json + jl, sizeof json - jl, "[");
	for (int i = 0; i < n_regions; i++)
		jl += (size_t)snprintf(json + jl, sizeof json - jl,
				       "%s{\"base_host_virt_addr\":%" PRIuPTR ",\"size\":%zu,"
				       "\"offset\":%zu,\"page_size\":%u,\"page_size_kib\":%u}",
				       i ? "," : "", (uintptr_t)regions[i].base, regions[i].size,
				       regions[i].offset, (unsigned)unit, (unsigned)unit);
	jl += (size_t)snprintf(json + jl, sizeof json - jl, "]");

	int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path);
	if (sock < 0 || connect(sock, (struct sockaddr *)&sa, sizeof sa) < 0)
		fail("cannot connect to the page server: %s", strerror(errno));
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	memset(&ctl, 0, sizeof ctl);
	struct iovec iov = { .iov_base = json, .iov_len = jl };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf
	};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &uffd, sizeof(int));
	if (sendmsg(sock, &msg, 0) != (ssize_t)jl)
		fail("sendmsg: %s", strerror(errno));

	/* Touch every page, as vCPUs would, in guest-memory order. */
	t0 = now_ns();
	unsigned sum = 0;
	struct toucher touchers[64];
	pthread_t tids[64];
	for (int i = 0; i < n_threads; i++) {
		touchers[i] = (struct toucher){ regions, n_regions, i, n_threads, random_order, pages, 0 };
		if (pthread_create(&tids[i], NULL, touch, &touchers[i]) != 0)
			fail("%s", "pthread_create failed");
	}
	for (int i = 0; i < n_threads; i++) {
		pthread_join(tids[i], NULL);
		sum += touchers[i].sum;
	}
	uint64_t touch_ns = now_ns() - t0;

	int bad = 0;
	for (int i = 0; i < n_regions && !bad; i++)
		bad = compare(regions[i].base, expected + regions[i].offset, regions[i].size,
			      regions[i].offset, "after restore") < 0;

	if (!bad && remove_test) {
		struct region *r = &regions[0];
		size_t from = r->size / PAGE > 8 ? 2 * PAGE : 0;
		size_t len = r->size / PAGE > 8 ? r->size / 2 : r->size;
		if (madvise(r->base + from, len, MADV_DONTNEED) < 0)
			fail("madvise(MADV_DONTNEED): %s", strerror(errno));
		for (size_t o = 0; o < len; o += PAGE)
			sum += ((volatile uint8_t *)r->base)[from + o];
		for (size_t o = 0; o < len && !bad; o++)
			if (r->base[from + o] != 0) {
				fprintf(stderr,
					"test-harness: after remove: byte at guest offset %zu is 0x%02x, "
					"expected 0\n",
					r->offset + from + o, r->base[from + o]);
				bad = 1;
			}
		if (!bad)
			bad = compare(r->base + from + len, expected + r->offset + from + len,
				      r->size - from - len, r->offset + from + len, "after remove") < 0 ||
			      compare(r->base, expected + r->offset, from, r->offset, "after remove") < 0;
		/* A write to a removed page must stick (the server's zero page is copy-on-write). */
		if (!bad) {
			r->base[from] = 0x5a;
			bad = r->base[from] != 0x5a;
		}
	}

	printf("{\"ok\":%s,\"bytes\":%zu,\"pages\":%zu,\"touch_ns\":%" PRIu64
	       ",\"memcpy_ns\":%" PRIu64 ",\"sum\":%u}\n",
	       bad ? "false" : "true", total, pages, touch_ns, memcpy_ns, sum);
	fflush(stdout);
	if (hold)
		for (;;)
			pause();
	return bad ? 1 : 0;
}
