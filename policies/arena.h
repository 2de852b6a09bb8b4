/*
 * arena: memory for one exchange, released all at once when the exchange
 * ends (the shape of nginx's request pool and h2o's mem pool): policies
 * allocate without freeing, and a value they hand on (an identity header,
 * a rewritten body) lives exactly as long as the request.
 *
 * Chunks come from a per-worker cache, so the steady state does no
 * malloc; an arena that is never used costs nothing (no chunk is taken
 * until the first allocation). A large allocation gets a chunk of its own,
 * freed (not cached) at the reset.
 */
#ifndef PORTICO_ARENA_H
#define PORTICO_ARENA_H

#include <stddef.h>

#define ARENA_CHUNK	4096	/* bytes per cached chunk, header included */
#define ARENA_KEEP	256	/* most chunks a cache keeps */

struct arena_chunk;

/* Free chunks of one worker, shared by its arenas. Zero-initialise. */
struct arena_cache {
	struct arena_chunk *free;
	unsigned nfree;
};

struct arena {
	struct arena_cache *cache;
	struct arena_chunk *chunks;	/* the current chunk first */
	char *p, *end;			/* free space in the current chunk */
	size_t used;			/* bytes handed out (tests, stats) */
};

/* arena_init: an empty arena drawing on CACHE. */
void arena_init(struct arena *a, struct arena_cache *cache);
/* arena_alloc: N bytes aligned for any type, or NULL when out of memory. */
void *arena_alloc(struct arena *a, size_t n);
/* arena_dup: a NUL-terminated copy of s[0..n), or NULL. */
char *arena_dup(struct arena *a, const char *s, size_t n);
/* arena_reset: release everything allocated (chunks back to the cache);
 * the arena is empty and usable again. */
void arena_reset(struct arena *a);
/* arena_cache_free: free the cached chunks (worker exit). */
void arena_cache_free(struct arena_cache *c);

#endif
