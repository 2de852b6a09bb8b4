#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>

#include <openssl/crypto.h>

#include "tlsmem.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TLSMEM_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define TLSMEM_ASAN 1
#endif

#ifdef TLSMEM_ASAN
#include <sanitizer/asan_interface.h>
/* all but the link: the leak checker follows no pointer kept in
 * poisoned memory, and would call every cached block a leak */
#define POISON(p, n)	ASAN_POISON_MEMORY_REGION((p) + 1, (n) - sizeof(*(p)))
#define UNPOISON(p, n)	ASAN_UNPOISON_MEMORY_REGION((p) + 1, (n) - sizeof(*(p)))
#else
#define POISON(p, n)	((void)(p), (void)(n))
#define UNPOISON(p, n)	((void)(p), (void)(n))
#endif

/*
 * Size classes follow malloc's chunks: a request of n bytes takes class
 * (n + 23) / 16, and a block of usable size u belongs to class
 * (u + 8) / 16. A block of class c has u >= 16c - 8 and a request of
 * class c has n <= 16c - 8, so any block of a class serves any request
 * of it, whatever the allocator; with glibc's chunks (usable = chunk - 8)
 * a block goes back to the class it was asked for. (Under ASan or
 * valgrind, whose usable size is the size asked, blocks file one class
 * lower than their requests look: fewer hits, never a wrong one.)
 */
#define NCLASS	((TLSMEM_SMALL + 23) / 16 + 1)

struct freeblk {
	struct freeblk *next;
};

struct cache {
	struct freeblk *head[NCLASS];
	uint16_t n[NCLASS];
	size_t bytes;
};

static __thread struct cache cache;

/* Functions someone set before us (a preloaded allocation counter, as
 * tools/bench/osslmem.c): what the cache does not serve or keep goes to
 * them instead of to malloc and free. NULL: malloc and free. */
static CRYPTO_malloc_fn next_malloc;
static CRYPTO_realloc_fn next_realloc;
static CRYPTO_free_fn next_free;

static void *
get(size_t n, const char *file, int line)
{
	return next_malloc != NULL ? next_malloc(n, file, line) : malloc(n);
}

static void
put(void *p, const char *file, int line)
{
	if (next_free != NULL)
		next_free(p, file, line);
	else
		free(p);
}

void *
tlsmem_malloc(size_t n, const char *file, int line)
{
	struct freeblk *b;
	size_t c;

	if (n == 0)
		return NULL;		/* as OpenSSL's own CRYPTO_malloc */
	if (n > TLSMEM_SMALL)
		return get(n, file, line);
	c = (n + 23) / 16;
	if ((b = cache.head[c]) == NULL)
		return get(n, file, line);
	UNPOISON(b, 16 * c - 8);
	cache.head[c] = b->next;
	cache.n[c]--;
	cache.bytes -= 16 * c - 8;
	return b;
}

void
tlsmem_free(void *p, const char *file, int line)
{
	struct freeblk *b = p;
	size_t u, c;

	if (p == NULL)
		return;
	u = malloc_usable_size(p);
	c = (u + 8) / 16;
	/* class 0 (under 8 bytes, which no glibc block is) cannot hold
	 * the link */
	if (c == 0 || u > TLSMEM_SMALL || c >= NCLASS ||
	    cache.n[c] >= TLSMEM_CLASS_MAX ||
	    cache.bytes + (16 * c - 8) > TLSMEM_BYTES_MAX) {
		put(p, file, line);
		return;
	}
	b->next = cache.head[c];
	cache.head[c] = b;
	cache.n[c]++;
	cache.bytes += 16 * c - 8;
	POISON(b, 16 * c - 8);
}

void *
tlsmem_realloc(void *p, size_t n, const char *file, int line)
{
	if (p == NULL)
		return tlsmem_malloc(n, file, line);
	if (n == 0) {
		tlsmem_free(p, file, line);
		return NULL;
	}
	return next_realloc != NULL ? next_realloc(p, n, file, line) :
	    realloc(p, n);
}

size_t
tlsmem_cached(void)
{
	return cache.bytes;
}

void
tlsmem_flush(void)
{
	struct freeblk *b;
	size_t c;

	for (c = 0; c < NCLASS; c++) {
		while ((b = cache.head[c]) != NULL) {
			UNPOISON(b, 16 * c - 8);
			cache.head[c] = b->next;
			put(b, __FILE__, __LINE__);
		}
		cache.n[c] = 0;
	}
	cache.bytes = 0;
}

bool
tlsmem_init(void)
{
	CRYPTO_malloc_fn m;
	CRYPTO_realloc_fn r;
	CRYPTO_free_fn f;

	CRYPTO_get_mem_functions(&m, &r, &f);
	if (m == tlsmem_malloc)
		return true;
	if (m != CRYPTO_malloc) {	/* OpenSSL's own would call us back */
		next_malloc = m;
		next_realloc = r;
		next_free = f;
	}
	if (CRYPTO_set_mem_functions(tlsmem_malloc, tlsmem_realloc,
	    tlsmem_free) == 1)
		return true;
	next_malloc = NULL;
	next_realloc = NULL;
	next_free = NULL;
	return false;
}
