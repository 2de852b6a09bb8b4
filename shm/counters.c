#include <stddef.h>
#include <sys/mman.h>

#include "counters.h"

struct counters *
counters_map(unsigned nslots)
{
	size_t len = sizeof(struct counters) +
	    (size_t)nslots * sizeof(struct worker_counters);
	struct counters *c;

	c = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	    -1, 0);
	if (c == MAP_FAILED)
		return NULL;
	c->nslots = nslots;
	return c;
}
