/*
 * libFuzzer target for the streaming JSON scanner (policies/jsonscan.c)
 * and field stripping on it (policies/jsonstrip.c). For any input:
 *  - the scanner, fed in pieces whose sizes the input's first byte picks
 *    (each piece in an exactly-sized heap buffer, so an over-read is
 *    caught), accepts or refuses the text as it does whole (the error
 *    code may differ: a piece may end before the byte that shows it),
 *    and as the strict tree reader does (duplicate keys aside: the
 *    scanner passes them);
 *  - stripping reaches the same verdict in pieces as whole, and for a
 *    text that is JSON or is not JSON at all (anything but one that goes
 *    wrong midway, which passes on from about where it did) the same
 *    output byte for byte; when the input is valid JSON, the output is
 *    valid JSON too, and an input that is not JSON comes out unchanged;
 *  - the one-pass strip of a text in memory (jstrip_whole) reaches the
 *    stream's verdict, removes as many members, and but for an invalid
 *    text writes the same bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "../../policies/arena.c"
#include "../../policies/json.c"
#include "../../policies/jsonscan.c"
#include "../../policies/jsonstrip.c"

#define DEPTH	16

static void
check(bool ok)
{
	if (!ok)
		abort();
}

/* The scanner over p[0..n) in pieces of 1 + (seed + i) % 13 bytes. */
static int
scan_pieces(const char *p, size_t n, unsigned seed)
{
	struct jscan s;
	struct jscan_piece pc;
	size_t off = 0, k, used;
	unsigned i = 0;
	char *buf;
	int rc = 0;

	jscan_init(&s, DEPTH);
	do {
		k = 1 + (seed + i++) % 13;
		if (k > n - off)
			k = n - off;
		buf = malloc(k ? k : 1);
		check(buf != NULL);
		memcpy(buf, p + off, k);
		used = 0;
		while ((rc = jscan_next(&s, buf + used, k - used, off + k == n,
		    &pc)) == 1) {
			check(pc.len <= k - used);
			used += pc.len;
		}
		free(buf);
		if (rc < 0)
			break;
		check(used == k);
		off += k;
	} while (off < n);
	jscan_free(&s);
	return rc;
}

struct out {
	char *p;
	size_t len, cap;
};

static int
emit(void *arg, const char *p, size_t n)
{
	struct out *o = arg;

	if (o->len + n > o->cap) {
		o->cap = (o->len + n) * 2 + 16;
		o->p = realloc(o->p, o->cap);
		check(o->p != NULL);
	}
	memcpy(o->p + o->len, p, n);
	o->len += n;
	return 0;
}

static uint64_t stream_removed;

static int
strip(const struct jstrip_paths *ps, const char *p, size_t n, size_t step,
    struct out *o)
{
	struct jstrip js;
	size_t off = 0, k;
	int v = 0;

	jstrip_init(&js, ps, emit, o);
	do {
		k = step == 0 || step > n - off ? n - off : step;
		v = jstrip_feed(&js, p + off, k, off + k == n);
		check(v >= 0);
		off += k;
	} while (off < n);
	stream_removed = js.removed;
	jstrip_free(&js);
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct arena_cache cache;
	static struct jstrip_paths *ps;
	static char *fields[] = { "a", "b.c", "debug", "x.y.z" };
	struct json_limits lim = { DEPTH, 1 << 20 };
	struct json_value v;
	struct arena a;
	struct out whole = { 0 }, parts = { 0 }, one = { 0 };
	uint64_t removed;
	char *buf = malloc(size ? size : 1), err[100];
	unsigned seed = size > 0 ? data[0] : 0;
	int rc, tr, sv, pv;

	check(buf != NULL);
	memcpy(buf, data, size);
	if (ps == NULL)
		check(jstrip_compile(fields, 4, &ps, err, sizeof(err)) == 0);

	rc = jscan_validate(buf, size, DEPTH);
	check(rc <= 0);
	pv = scan_pieces(buf, size, seed);
	check(pv <= 0 && (pv == 0) == (rc == 0));
	arena_init(&a, &cache);
	tr = json_parse(buf, size, &lim, &a, &v, NULL);
	arena_reset(&a);
	/* (a duplicate key is reported where its object ends, maybe
	 * before a syntax error further on: no verdict to compare) */
	if (rc != JSON_E_SIZE && tr != JSON_E_DUPKEY)
		check((rc == 0) == (tr == 0));

	sv = strip(ps, buf, size, 0, &whole);
	pv = strip(ps, buf, size, 1 + seed % 7, &parts);
	check(sv == pv);
	if (sv != JSTRIP_INVALID)
		check(whole.len == parts.len && (whole.len == 0 ||
		    memcmp(whole.p, parts.p, whole.len) == 0));
	if (sv == JSTRIP_NOT_JSON)
		check(whole.len == size &&
		    (size == 0 || memcmp(whole.p, buf, size) == 0));
	if (rc == 0 && sv == JSTRIP_JSON)
		check(jscan_validate(whole.p, whole.len, DEPTH) == 0);
	check(jstrip_whole(ps, buf, size, emit, &one, &removed) == pv);
	if (pv == JSTRIP_JSON)
		check(removed == stream_removed);
	if (sv != JSTRIP_INVALID)
		check(one.len == whole.len && (one.len == 0 ||
		    memcmp(one.p, whole.p, one.len) == 0));
	free(one.p);
	free(whole.p);
	free(parts.p);
	free(buf);
	return 0;
}
