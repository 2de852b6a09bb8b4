/*
 * tlsmem: a cache of freed blocks in front of malloc, for OpenSSL's
 * allocations only (CRYPTO_set_mem_functions).
 *
 * A full TLS 1.3 handshake makes some 700 allocations and frees almost all
 * of them before it ends, many of one size at a time. glibc keeps seven
 * freed blocks of a size in its per-thread cache; the rest go through its
 * bins, which cost several times more. This cache keeps up to
 * TLSMEM_CLASS_MAX freed blocks per 16-byte size class (blocks of up to
 * TLSMEM_SMALL bytes) and TLSMEM_BYTES_MAX bytes in all, per thread; what
 * does not fit, and every larger block, goes back to free(). Blocks are
 * malloc's own, so whatever the cache holds could be handed to free()
 * (and realloc works on any of them). Functions set before it (a
 * preloaded allocation counter) stay underneath: the cache calls them
 * instead of malloc and free, so they must hand out malloc's own blocks
 * (the cache reads their size with malloc_usable_size).
 *
 * Memory a worker keeps after a burst is bounded by TLSMEM_BYTES_MAX.
 * Under AddressSanitizer the cached blocks are poisoned until reused, so
 * a use after free is still caught.
 */
#ifndef PORTICO_TLSMEM_H
#define PORTICO_TLSMEM_H

#include <stdbool.h>
#include <stddef.h>

#define TLSMEM_SMALL		1024	/* larger blocks are not cached */
#define TLSMEM_CLASS_MAX	256	/* freed blocks kept per size class */
#define TLSMEM_BYTES_MAX	(1024 * 1024)	/* bytes kept in all */

/* tlsmem_init: route OpenSSL's allocations through the cache. Call it
 * before anything uses OpenSSL: false when OpenSSL has allocated already
 * (it then keeps plain malloc, which is correct, only slower). Calling it
 * again does nothing. */
bool tlsmem_init(void);

/* The cache's own calls (OpenSSL's signatures), for tests. */
void *tlsmem_malloc(size_t n, const char *file, int line);
void *tlsmem_realloc(void *p, size_t n, const char *file, int line);
void tlsmem_free(void *p, const char *file, int line);

/* tlsmem_cached: bytes (usable size) this thread's cache holds. */
size_t tlsmem_cached(void);
/* tlsmem_flush: give every block this thread's cache holds back. */
void tlsmem_flush(void);

#endif
