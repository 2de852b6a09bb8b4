#include <string.h>

#include "trace.h"

static const char hexdig[] = "0123456789abcdef";

bool
trace_id_ok(const char *v, size_t n)
{
	size_t i;

	if (n == 0 || n > 32)
		return false;
	for (i = 0; i < n; i++) {
		char ch = v[i];
		if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= 'A' && ch <= 'Z') || ch == '-' || ch == '_'))
			return false;
	}
	return true;
}

/* A lowercase hex digit's value, or -1 (uppercase is invalid here). */
static int
lhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Whether p[0..n) is lowercase hex and not all zeros. */
static bool
id_ok(const char *p, size_t n)
{
	bool zero = true;
	size_t i;

	for (i = 0; i < n; i++) {
		if (lhex(p[i]) < 0)
			return false;
		if (p[i] != '0')
			zero = false;
	}
	return !zero;
}

int
traceparent_parse(const char *v, size_t n, struct traceparent *tp)
{
	int ver, flags;

	if (n < TRACEPARENT_LEN || lhex(v[0]) < 0 || lhex(v[1]) < 0)
		return -1;
	ver = lhex(v[0]) * 16 + lhex(v[1]);
	/* ff is forbidden; 00 has exactly four fields; a later version may
	 * add fields after a '-' (the spec's rule for reading it as 00). */
	if (ver == 0xff || (ver == 0 && n != TRACEPARENT_LEN) ||
	    (n > TRACEPARENT_LEN && v[TRACEPARENT_LEN] != '-'))
		return -1;
	if (v[2] != '-' || v[35] != '-' || v[52] != '-' ||
	    !id_ok(v + 3, 32) || !id_ok(v + 36, 16) ||
	    lhex(v[53]) < 0 || lhex(v[54]) < 0)
		return -1;
	flags = lhex(v[53]) * 16 + lhex(v[54]);
	memcpy(tp->trace_id, v + 3, 32);
	memcpy(tp->parent_id, v + 36, 16);
	/* Of a later version's flags only "sampled" has a meaning we know. */
	tp->flags = ver == 0 ? (uint8_t)flags : (uint8_t)(flags & 0x01);
	return 0;
}

/* The 32 bits of V as 8 lowercase hex digits, the first in the lowest
 * byte: each nibble spread to a byte of its own, then made a digit in
 * all eight bytes at once ('0' + n, and 39 more from 'a' on). */
static uint64_t
hex8(uint32_t v)
{
	uint64_t x = v, ten;

	x = ((x & 0xffff0000u) >> 16) | ((x & 0xffffu) << 32);
	x = ((x & 0x0000ff000000ff00ull) >> 8) |
	    ((x & 0x000000ff000000ffull) << 16);
	x = ((x & 0x00f000f000f000f0ull) >> 4) |
	    ((x & 0x000f000f000f000full) << 8);
	ten = ((x + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull;
	return x + 0x3030303030303030ull + ten * 39;
}

/* V as 16 lowercase hex digits, the most significant first. */
static void
hex16(uint64_t v, char *out)
{
	uint64_t hi = hex8((uint32_t)(v >> 32)), lo = hex8((uint32_t)v);

#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	hi = __builtin_bswap64(hi);	/* the first digit in the first byte */
	lo = __builtin_bswap64(lo);
#endif

	memcpy(out, &hi, 8);
	memcpy(out + 8, &lo, 8);
}

void
trace_hex(uint64_t *rng, char *out, size_t n)
{
	uint64_t s = *rng, v;
	size_t i;

	for (i = 0; i + 16 <= n; i += 16) {
		/* xorshift64*: uniqueness is the point, not unpredictability.
		 * A non-zero state never yields 0 (the multiplier is odd). */
		s ^= s >> 12;
		s ^= s << 25;
		s ^= s >> 27;
		v = s * 2685821657736338717ull;
		hex16(v, out + i);
	}
	*rng = s;
}

/* A 32-hex-digit X-Trace-ID (any case, not all zeros) as a W3C trace id,
 * lowercased into OUT. false when it is not one. */
static bool
as_w3c_id(const char *id, size_t n, char *out)
{
	bool zero = true;
	size_t i;

	if (n != 32)
		return false;
	for (i = 0; i < n; i++) {
		char ch = id[i];
		if (ch >= 'A' && ch <= 'F')
			ch = ch - 'A' + 'a';
		if (lhex(ch) < 0)
			return false;
		if (ch != '0')
			zero = false;
		out[i] = ch;
	}
	return !zero;
}

void
trace_settle(struct xctx *cx, uint64_t *rng, const char *xt, size_t xtn,
    const char *tp, size_t tpn, unsigned ntp)
{
	struct traceparent p;
	bool valid = tp != NULL && ntp == 1 &&
	    traceparent_parse(tp, tpn, &p) == 0;
	char *o = cx->traceparent;
	bool made = false;

	if (xt != NULL) {
		memcpy(cx->trace, xt, xtn);
		cx->trace_len = (uint8_t)xtn;
	} else if (valid) {
		memcpy(cx->trace, p.trace_id, 32);
		cx->trace_len = 32;
	} else {
		trace_hex(rng, cx->trace, 32);
		cx->trace_len = 32;
		made = true;
	}
	cx->trace[cx->trace_len] = '\0';
	if (!valid) {
		/* A new trace: one id with X-Trace-ID where it can be. It is
		 * marked sampled: the gateway records every request (its
		 * access-log line), and a service with a parent-based sampler
		 * keeps its spans. */
		if (made)	/* lowercase hex, never all zeros */
			memcpy(p.trace_id, cx->trace, 32);
		else if (!as_w3c_id(cx->trace, cx->trace_len, p.trace_id))
			trace_hex(rng, p.trace_id, 32);
		p.flags = 0x01;
	}
	cx->tracestate_ok = valid;
	memcpy(o, "00-", 3);
	memcpy(o + 3, p.trace_id, 32);
	o[35] = '-';
	trace_hex(rng, o + 36, 16);	/* this hop's span */
	o[52] = '-';
	o[53] = hexdig[p.flags >> 4];
	o[54] = hexdig[p.flags & 15];
	o[55] = '\0';
}
