#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "msg.h"

#define MAX_DEPTH	16

int
msg_out_init(struct msg_out *m, int nkeys)
{
	static const char zero[MSG_HDR];

	msgpack_sbuffer_init(&m->sb);
	msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
	/* Reserve the prefix now so the body never has to move. */
	if (msgpack_sbuffer_write(&m->sb, zero, sizeof(zero)) != 0)
		return -1;
	if (nkeys >= 0 && msgpack_pack_map(&m->pk, (size_t)nkeys) != 0)
		return -1;
	return 0;
}

void
msg_out_free(struct msg_out *m)
{
	msgpack_sbuffer_destroy(&m->sb);
	m->sb.data = NULL;
	m->sb.size = m->sb.alloc = 0;
}

int
msg_out_finish(struct msg_out *m, const char **data)
{
	size_t body;
	unsigned char *p;

	if (m->sb.data == NULL || m->sb.size <= MSG_HDR)
		return -1;
	body = m->sb.size - MSG_HDR;
	if (body > MSG_MAX)
		return -1;
	p = (unsigned char *)m->sb.data;
	p[0] = (unsigned char)(body >> 24);
	p[1] = (unsigned char)(body >> 16);
	p[2] = (unsigned char)(body >> 8);
	p[3] = (unsigned char)body;
	*data = m->sb.data;
	return (int)m->sb.size;
}

void
msg_pack_str(msgpack_packer *pk, const char *s)
{
	size_t n = strlen(s);

	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

void
msg_pack_kv_str(msgpack_packer *pk, const char *key, const char *val)
{
	msg_pack_str(pk, key);
	if (val == NULL)
		msgpack_pack_nil(pk);
	else
		msg_pack_str(pk, val);
}

void
msg_pack_kv_int(msgpack_packer *pk, const char *key, int64_t val)
{
	msg_pack_str(pk, key);
	msgpack_pack_int64(pk, val);
}

void
msg_pack_kv_uint(msgpack_packer *pk, const char *key, uint64_t val)
{
	msg_pack_str(pk, key);
	msgpack_pack_uint64(pk, val);
}

void
msg_pack_kv_bool(msgpack_packer *pk, const char *key, bool val)
{
	msg_pack_str(pk, key);
	if (val)
		msgpack_pack_true(pk);
	else
		msgpack_pack_false(pk);
}

int
msg_frame(const char *buf, size_t len, size_t *body_len)
{
	const unsigned char *p = (const unsigned char *)buf;
	uint32_t n;

	if (len < MSG_HDR)
		return 0;
	n = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
	if (n == 0 || n > MSG_MAX)
		return -1;
	*body_len = n;
	return len - MSG_HDR >= n ? 1 : 0;
}

/* Big-endian unsigned of N bytes at p. */
static uint64_t
be(const unsigned char *p, int n)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/*
 * check: walk one msgpack value at *off without building anything. Every
 * element takes at least one byte, so a container whose count exceeds the
 * bytes left is refused before msgpack-c sizes an allocation by it; the
 * walk is therefore linear in the input and its depth is bounded.
 */
static int
check(const unsigned char *p, size_t len, size_t *off, int depth)
{
	size_t o = *off, hdr = 1, n = 0;
	uint64_t payload = 0, count = 0;
	unsigned char b;
	bool ismap = false, iscont = false;

	if (depth > MAX_DEPTH || o >= len)
		return -1;
	b = p[o];
	if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
		/* fixint, nil, bool */
	} else if (b <= 0x8f) {
		iscont = ismap = true;
		count = b & 0x0f;
	} else if (b <= 0x9f) {
		iscont = true;
		count = b & 0x0f;
	} else if (b <= 0xbf) {
		payload = b & 0x1f;
	} else if (b == 0xc1) {
		return -1;
	} else if (b >= 0xc4 && b <= 0xc6) {		/* bin 8/16/32 */
		n = (size_t)1 << (b - 0xc4);
		hdr += n;
	} else if (b >= 0xc7 && b <= 0xc9) {		/* ext 8/16/32 */
		n = (size_t)1 << (b - 0xc7);
		hdr += n + 1;
	} else if (b == 0xca || b == 0xcb) {
		payload = b == 0xca ? 4 : 8;
	} else if (b >= 0xcc && b <= 0xd3) {		/* (u)int 8..64 */
		payload = (uint64_t)1 << ((b - 0xcc) & 3);
	} else if (b >= 0xd4 && b <= 0xd8) {		/* fixext 1..16 */
		payload = 1 + ((uint64_t)1 << (b - 0xd4));
	} else if (b >= 0xd9 && b <= 0xdb) {		/* str 8/16/32 */
		n = (size_t)1 << (b - 0xd9);
		hdr += n;
	} else if (b == 0xdc || b == 0xdd) {
		iscont = true;
		n = b == 0xdc ? 2 : 4;
		hdr += n;
	} else {					/* 0xde, 0xdf: map 16/32 */
		iscont = ismap = true;
		n = b == 0xde ? 2 : 4;
		hdr += n;
	}
	if (len - o < hdr)
		return -1;
	if (n > 0) {
		if (iscont)
			count = be(p + o + 1, (int)n);
		else
			payload = be(p + o + 1, (int)n);
	}
	o += hdr;
	if (!iscont) {
		if (payload > len - o)
			return -1;
		*off = o + payload;
		return 0;
	}
	if (ismap) {
		if (count > (len - o) / 2)
			return -1;
		count *= 2;
	} else if (count > len - o) {
		return -1;
	}
	while (count-- > 0)
		if (check(p, len, &o, depth + 1) < 0)
			return -1;
	*off = o;
	return 0;
}

int
msg_decode(const char *body, size_t len, struct msg_in *in, char *err,
    size_t errlen)
{
	size_t off = 0;
	msgpack_unpack_return r;

	msgpack_unpacked_init(&in->up);
	in->map = NULL;
	in->owned = NULL;
	if (len == 0 || len > MSG_MAX) {
		snprintf(err, errlen, "message size %zu out of range", len);
		return -1;
	}
	if (check((const unsigned char *)body, len, &off, 0) < 0 ||
	    off != len) {
		snprintf(err, errlen, "malformed message");
		return -1;
	}
	off = 0;
	r = msgpack_unpack_next(&in->up, body, len, &off);
	if (r != MSGPACK_UNPACK_SUCCESS || off != len) {
		snprintf(err, errlen, "malformed message");
		return -1;
	}
	if (in->up.data.type != MSGPACK_OBJECT_MAP) {
		snprintf(err, errlen, "message is not a map");
		return -1;
	}
	in->map = &in->up.data;
	return 0;
}

void
msg_in_free(struct msg_in *in)
{
	msgpack_unpacked_destroy(&in->up);
	msgpack_unpacked_init(&in->up);
	in->map = NULL;
	free(in->owned);
	in->owned = NULL;
}

bool
msg_str_eq(const msgpack_object *o, const char *s)
{
	size_t n = strlen(s);

	return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
	    memcmp(o->via.str.ptr, s, n) == 0;
}

const msgpack_object *
msg_get(const msgpack_object *map, const char *key)
{
	uint32_t i;

	if (map == NULL || map->type != MSGPACK_OBJECT_MAP)
		return NULL;
	for (i = 0; i < map->via.map.size; i++)
		if (msg_str_eq(&map->via.map.ptr[i].key, key))
			return &map->via.map.ptr[i].val;
	return NULL;
}

int
msg_get_str(const msgpack_object *map, const char *key, char *out,
    size_t outlen)
{
	const msgpack_object *v = msg_get(map, key);

	if (v == NULL || v->type != MSGPACK_OBJECT_STR ||
	    v->via.str.size >= outlen ||
	    memchr(v->via.str.ptr, '\0', v->via.str.size) != NULL)
		return -1;
	memcpy(out, v->via.str.ptr, v->via.str.size);
	out[v->via.str.size] = '\0';
	return 0;
}

int
msg_get_int(const msgpack_object *map, const char *key, int64_t *out)
{
	const msgpack_object *v = msg_get(map, key);

	if (v == NULL)
		return -1;
	if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		if (v->via.u64 > INT64_MAX)
			return -1;
		*out = (int64_t)v->via.u64;
		return 0;
	}
	if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
		*out = v->via.i64;
		return 0;
	}
	return -1;
}

int
msg_get_bool(const msgpack_object *map, const char *key, bool *out)
{
	const msgpack_object *v = msg_get(map, key);

	if (v == NULL || v->type != MSGPACK_OBJECT_BOOLEAN)
		return -1;
	*out = v->via.boolean;
	return 0;
}

int
msg_send(int fd, const char *frame, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = send(fd, frame, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		frame += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read exactly len bytes; -1 with ECONNRESET on an early end. */
static int
read_full(int fd, char *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = read(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0) {
			errno = ECONNRESET;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int
msg_recv(int fd, char **body, size_t *len)
{
	char hdr[MSG_HDR];
	size_t n = 0;
	char *b;

	*body = NULL;
	*len = 0;
	if (read_full(fd, hdr, sizeof(hdr)) < 0)
		return -1;
	if (msg_frame(hdr, sizeof(hdr), &n) < 0) {
		errno = EPROTO;
		return -1;
	}
	b = malloc(n);
	if (b == NULL)
		return -1;
	if (read_full(fd, b, n) < 0) {
		free(b);
		return -1;
	}
	*body = b;
	*len = n;
	return 0;
}

static void
json_str(FILE *f, const char *s, size_t n)
{
	size_t i;
	unsigned char c;

	fputc('"', f);
	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c == '\r')
			fputs("\\r", f);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void
json_hex(FILE *f, const char *s, size_t n)
{
	size_t i;

	fputc('"', f);
	for (i = 0; i < n; i++)
		fprintf(f, "%02x", (unsigned char)s[i]);
	fputc('"', f);
}

static void
json_value(FILE *f, const msgpack_object *o, int depth)
{
	uint32_t i;

	if (depth > MAX_DEPTH + 1) {
		fputs("null", f);
		return;
	}
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		fputs("null", f);
		break;
	case MSGPACK_OBJECT_BOOLEAN:
		fputs(o->via.boolean ? "true" : "false", f);
		break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		fprintf(f, "%" PRIu64, o->via.u64);
		break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		fprintf(f, "%" PRId64, o->via.i64);
		break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		if (isfinite(o->via.f64))
			fprintf(f, "%.17g", o->via.f64);
		else
			fputs("null", f);
		break;
	case MSGPACK_OBJECT_STR:
		json_str(f, o->via.str.ptr, o->via.str.size);
		break;
	case MSGPACK_OBJECT_BIN:
		json_hex(f, o->via.bin.ptr, o->via.bin.size);
		break;
	case MSGPACK_OBJECT_EXT:
		json_hex(f, o->via.ext.ptr, o->via.ext.size);
		break;
	case MSGPACK_OBJECT_ARRAY:
		fputc('[', f);
		for (i = 0; i < o->via.array.size; i++) {
			if (i > 0)
				fputc(',', f);
			json_value(f, &o->via.array.ptr[i], depth + 1);
		}
		fputc(']', f);
		break;
	case MSGPACK_OBJECT_MAP:
		fputc('{', f);
		for (i = 0; i < o->via.map.size; i++) {
			const msgpack_object *k = &o->via.map.ptr[i].key;

			if (i > 0)
				fputc(',', f);
			if (k->type == MSGPACK_OBJECT_STR) {
				json_str(f, k->via.str.ptr, k->via.str.size);
			} else {
				/* JSON keys are strings: quote a scalar key's
				 * text; other keys have no useful spelling. */
				fputc('"', f);
				if (k->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
				    k->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ||
				    k->type == MSGPACK_OBJECT_BOOLEAN ||
				    k->type == MSGPACK_OBJECT_NIL)
					json_value(f, k, depth + 1);
				else
					fputc('?', f);
				fputc('"', f);
			}
			fputc(':', f);
			json_value(f, &o->via.map.ptr[i].val, depth + 1);
		}
		fputc('}', f);
		break;
	default:
		fputs("null", f);
		break;
	}
}

void
msg_print_json(FILE *f, const msgpack_object *o)
{
	json_value(f, o, 0);
}
