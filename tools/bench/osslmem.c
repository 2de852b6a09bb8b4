/*
 * osslmem: what OpenSSL itself holds on the heap, in a running server
 * (tools/bench-rss.sh preloads it into portico and into nginx).
 *
 *   OSSLMEM_DIR=/some/dir LD_PRELOAD=build/osslmem.so portico ...
 *
 * Before main, it routes OpenSSL's allocations (CRYPTO_malloc, _realloc,
 * _free) through counters, then lets glibc do the work as before. Each
 * process keeps its counters in DIR/osslmem.PID, a small file mapped
 * shared, so the bench reads a worker's figures while it runs; a forked
 * child starts a file of its own (its counters begin at zero, so only
 * differences mean anything: bytes freed in the child that the parent
 * allocated count negative).
 *
 * Bytes are what glibc really gives each allocation: malloc_usable_size
 * plus the 8-byte chunk header, so the sum is heap memory in use for
 * OpenSSL, the rounding included.
 *
 * File layout (native endianness, 64-bit fields): magic "osslmem1", live
 * bytes, live allocations, allocations made, frees made.
 */
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/crypto.h>

#define CHUNK_HEAD	8	/* glibc's size field before each chunk */

struct counts {
	char magic[8];
	int64_t live_bytes;
	int64_t live_allocs;
	int64_t allocs;
	int64_t frees;
};

static struct counts spare;		/* until the file is mapped */
static struct counts *cnt = &spare;

static void
track(void *p, int sign)
{
	int64_t n = (int64_t)(malloc_usable_size(p) + CHUNK_HEAD);

	__atomic_fetch_add(&cnt->live_bytes, sign * n, __ATOMIC_RELAXED);
	__atomic_fetch_add(&cnt->live_allocs, sign, __ATOMIC_RELAXED);
	__atomic_fetch_add(sign > 0 ? &cnt->allocs : &cnt->frees, 1,
	    __ATOMIC_RELAXED);
}

static void *
m_alloc(size_t n, const char *file, int line)
{
	void *p = malloc(n);

	(void)file;
	(void)line;
	if (p != NULL)
		track(p, 1);
	return p;
}

static void *
m_realloc(void *old, size_t n, const char *file, int line)
{
	int64_t before = 0;
	void *p;

	(void)file;
	(void)line;
	if (old != NULL)
		before = (int64_t)(malloc_usable_size(old) + CHUNK_HEAD);
	p = realloc(old, n);
	if (p == NULL)
		return NULL;	/* old is untouched (or n == 0 freed it) */
	if (old != NULL) {
		__atomic_fetch_sub(&cnt->live_bytes, before, __ATOMIC_RELAXED);
		__atomic_fetch_sub(&cnt->live_allocs, 1, __ATOMIC_RELAXED);
	}
	__atomic_fetch_add(&cnt->live_bytes,
	    (int64_t)(malloc_usable_size(p) + CHUNK_HEAD), __ATOMIC_RELAXED);
	__atomic_fetch_add(&cnt->live_allocs, 1, __ATOMIC_RELAXED);
	if (old == NULL)
		__atomic_fetch_add(&cnt->allocs, 1, __ATOMIC_RELAXED);
	return p;
}

static void
m_free(void *p, const char *file, int line)
{
	(void)file;
	(void)line;
	if (p == NULL)
		return;
	track(p, -1);
	free(p);
}

/* A file of this process's own, DIR/osslmem.PID, mapped shared. */
static void
map_file(void)
{
	const char *dir = getenv("OSSLMEM_DIR");
	char path[4096];
	struct counts *c;
	int fd;

	if (dir == NULL)
		return;
	snprintf(path, sizeof(path), "%s/osslmem.%ld", dir, (long)getpid());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || ftruncate(fd, sizeof(*c)) < 0) {
		fprintf(stderr, "osslmem: %s: cannot create\n", path);
		if (fd >= 0)
			close(fd);
		return;
	}
	c = mmap(NULL, sizeof(*c), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (c == MAP_FAILED) {
		fprintf(stderr, "osslmem: %s: cannot map\n", path);
		return;
	}
	memset(c, 0, sizeof(*c));
	memcpy(c->magic, "osslmem1", 8);
	cnt = c;
}

static void
at_fork_child(void)
{
	/* The parent's mapping is shared: the child counts apart. */
	static struct counts fresh;

	cnt = &fresh;
	map_file();
}

__attribute__((constructor)) static void
osslmem_init(void)
{
	if (getenv("OSSLMEM_DIR") == NULL)
		return;
	if (CRYPTO_set_mem_functions(m_alloc, m_realloc, m_free) != 1) {
		/* OpenSSL allocated before us: the counts would be wrong */
		fprintf(stderr, "osslmem: too late to hook OpenSSL's "
		    "allocator\n");
		return;
	}
	map_file();
	pthread_atfork(NULL, NULL, at_fork_child);
}
