#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

struct arena_chunk {
	struct arena_chunk *next;
	size_t size;			/* whole chunk, header included */
	alignas(max_align_t) char data[];
};

#define ALIGN		alignof(max_align_t)
#define DATA_BYTES	(ARENA_CHUNK - offsetof(struct arena_chunk, data))

void
arena_init(struct arena *a, struct arena_cache *cache)
{
	a->cache = cache;
	a->chunks = NULL;
	a->p = a->end = NULL;
	a->used = 0;
}

static struct arena_chunk *
chunk_get(struct arena *a, size_t size)
{
	struct arena_cache *c = a->cache;
	struct arena_chunk *k;

	if (size == ARENA_CHUNK && c != NULL && c->free != NULL) {
		k = c->free;
		c->free = k->next;
		c->nfree--;
	} else if ((k = malloc(size)) == NULL) {
		return NULL;
	}
	k->size = size;
	return k;
}

void *
arena_alloc(struct arena *a, size_t n)
{
	struct arena_chunk *k;
	uintptr_t at;
	size_t size;

	if (n == 0)
		n = 1;
	n = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
	if (a->p != NULL && (size_t)(a->end - a->p) >= n) {
		void *r = a->p;
		a->p += n;
		a->used += n;
		return r;
	}
	if (n > DATA_BYTES / 4) {
		/* Big: a chunk of its own, behind the current one, so the
		 * current chunk's free space stays in use. */
		if (n > SIZE_MAX - sizeof(*k))
			return NULL;
		size = offsetof(struct arena_chunk, data) + n;
		if ((k = chunk_get(a, size < ARENA_CHUNK ? ARENA_CHUNK : size))
		    == NULL)
			return NULL;
		if (a->chunks != NULL) {
			k->next = a->chunks->next;
			a->chunks->next = k;
		} else {
			k->next = NULL;
			a->chunks = k;
			a->p = a->end = k->data + n;
		}
		a->used += n;
		return k->data;
	}
	if ((k = chunk_get(a, ARENA_CHUNK)) == NULL)
		return NULL;
	k->next = a->chunks;
	a->chunks = k;
	at = (uintptr_t)k->data;
	a->p = (char *)at + n;
	a->end = (char *)k + ARENA_CHUNK;
	a->used += n;
	return k->data;
}

char *
arena_dup(struct arena *a, const char *s, size_t n)
{
	char *d = arena_alloc(a, n + 1);

	if (d == NULL)
		return NULL;
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

void
arena_reset(struct arena *a)
{
	struct arena_cache *c = a->cache;
	struct arena_chunk *k, *next;

	for (k = a->chunks; k != NULL; k = next) {
		next = k->next;
		if (k->size == ARENA_CHUNK && c != NULL &&
		    c->nfree < ARENA_KEEP) {
			k->next = c->free;
			c->free = k;
			c->nfree++;
		} else {
			free(k);
		}
	}
	a->chunks = NULL;
	a->p = a->end = NULL;
	a->used = 0;
}

void
arena_cache_free(struct arena_cache *c)
{
	struct arena_chunk *k;

	while ((k = c->free) != NULL) {
		c->free = k->next;
		free(k);
	}
	c->nfree = 0;
}
