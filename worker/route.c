#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"
#include "../policies/hex.h"

struct route_match_data {
	pcre2_match_data *md;
};

/* Byte classes of RFC 3986 path characters. */
enum {
	C_BAD = 0,	/* refused outright */
	C_UNRES,	/* ALPHA DIGIT - . _ ~ : kept, and decoded when escaped */
	C_KEEP,		/* sub-delims ':' '@': kept literally, never decoded */
	C_PCT		/* '%': starts an escape */
};

static const uint8_t cls[256] = {
	['A'] = C_UNRES, ['B'] = C_UNRES, ['C'] = C_UNRES, ['D'] = C_UNRES,
	['E'] = C_UNRES, ['F'] = C_UNRES, ['G'] = C_UNRES, ['H'] = C_UNRES,
	['I'] = C_UNRES, ['J'] = C_UNRES, ['K'] = C_UNRES, ['L'] = C_UNRES,
	['M'] = C_UNRES, ['N'] = C_UNRES, ['O'] = C_UNRES, ['P'] = C_UNRES,
	['Q'] = C_UNRES, ['R'] = C_UNRES, ['S'] = C_UNRES, ['T'] = C_UNRES,
	['U'] = C_UNRES, ['V'] = C_UNRES, ['W'] = C_UNRES, ['X'] = C_UNRES,
	['Y'] = C_UNRES, ['Z'] = C_UNRES,
	['a'] = C_UNRES, ['b'] = C_UNRES, ['c'] = C_UNRES, ['d'] = C_UNRES,
	['e'] = C_UNRES, ['f'] = C_UNRES, ['g'] = C_UNRES, ['h'] = C_UNRES,
	['i'] = C_UNRES, ['j'] = C_UNRES, ['k'] = C_UNRES, ['l'] = C_UNRES,
	['m'] = C_UNRES, ['n'] = C_UNRES, ['o'] = C_UNRES, ['p'] = C_UNRES,
	['q'] = C_UNRES, ['r'] = C_UNRES, ['s'] = C_UNRES, ['t'] = C_UNRES,
	['u'] = C_UNRES, ['v'] = C_UNRES, ['w'] = C_UNRES, ['x'] = C_UNRES,
	['y'] = C_UNRES, ['z'] = C_UNRES,
	['0'] = C_UNRES, ['1'] = C_UNRES, ['2'] = C_UNRES, ['3'] = C_UNRES,
	['4'] = C_UNRES, ['5'] = C_UNRES, ['6'] = C_UNRES, ['7'] = C_UNRES,
	['8'] = C_UNRES, ['9'] = C_UNRES,
	['-'] = C_UNRES, ['.'] = C_UNRES, ['_'] = C_UNRES, ['~'] = C_UNRES,
	['!'] = C_KEEP, ['$'] = C_KEEP, ['&'] = C_KEEP, ['\''] = C_KEEP,
	['('] = C_KEEP, [')'] = C_KEEP, ['*'] = C_KEEP, ['+'] = C_KEEP,
	[','] = C_KEEP, [';'] = C_KEEP, ['='] = C_KEEP, [':'] = C_KEEP,
	['@'] = C_KEEP,
	['%'] = C_PCT,
};

static const char hexup[] = "0123456789ABCDEF";

/*
 * One pass over the input, writing straight into out. Each segment is
 * decoded in place after the '/' already written; once it is complete it
 * is checked for "." or ".." (so "%2E%2E" counts, being decoded first),
 * and a ".." pops back to the previous '/'. The output is never longer
 * than the input, so outcap > len always suffices; with a smaller out,
 * -2 may also come from a segment a later ".." would have removed.
 */
int
route_normalize(const char *path, size_t len, char *out, size_t outcap)
{
	const unsigned char *p = (const unsigned char *)path;
	size_t i, o, seg, n;
	int hi, lo, v;

	if (len == 0 || len > INT_MAX || p[0] != '/')
		return -1;
	if (outcap < 2)
		return -2;
	out[0] = '/';
	o = 1;
	i = 1;
	while (i < len) {
		if (p[i] == '/') {
			/* out always ends in '/' here unless a segment
			 * was just written: this collapses "//". */
			if (out[o - 1] != '/') {
				if (o + 1 >= outcap)
					return -2;
				out[o++] = '/';
			}
			i++;
			continue;
		}
		seg = o;
		while (i < len && p[i] != '/') {
			switch (cls[p[i]]) {
			case C_UNRES:
			case C_KEEP:
				if (o + 1 >= outcap)
					return -2;
				out[o++] = (char)p[i++];
				break;
			case C_PCT:
				if (len - i < 3)
					return -1;
				hi = hexval(p[i + 1]);
				lo = hexval(p[i + 2]);
				if (hi < 0 || lo < 0)
					return -1;
				v = hi << 4 | lo;
				if (v == 0 || v == '/' || v == '\\')
					return -1;
				if (cls[v] == C_UNRES) {
					if (o + 1 >= outcap)
						return -2;
					out[o++] = (char)v;
				} else {
					if (o + 3 >= outcap)
						return -2;
					out[o++] = '%';
					out[o++] = hexup[hi];
					out[o++] = hexup[lo];
				}
				i += 3;
				break;
			default:
				return -1;
			}
		}
		n = o - seg;
		/* ".;x" and "..;x" are dot-segments to servlet containers
		 * (Tomcat drops path parameters before resolving), so a
		 * backend could climb where routing never looked: refused. */
		if ((n >= 2 && out[seg] == '.' && out[seg + 1] == ';') ||
		    (n >= 3 && out[seg] == '.' && out[seg + 1] == '.' &&
		    out[seg + 2] == ';'))
			return -1;
		if (n == 1 && out[seg] == '.') {
			o = seg;
		} else if (n == 2 && out[seg] == '.' && out[seg + 1] == '.') {
			/* out[seg - 1] is the '/' before "..": drop the
			 * segment before it, keeping its leading '/'. */
			if (seg == 1)
				return -1;
			o = seg - 1;
			while (out[o - 1] != '/')
				o--;
		}
	}
	out[o] = '\0';
	return (int)o;
}

struct route_match_data *
route_match_data_new(const struct config *cfg)
{
	struct route_match_data *rmd;
	uint32_t max = 0, n;
	size_t i;

	for (i = 0; cfg != NULL && i < cfg->nroutes; i++) {
		const struct cfg_route *r = &cfg->routes[i];

		if (r->re != NULL && pcre2_pattern_info(r->re,
		    PCRE2_INFO_CAPTURECOUNT, &n) == 0 && n > max)
			max = n;
		if (r->rewrite_re != NULL && pcre2_pattern_info(r->rewrite_re,
		    PCRE2_INFO_CAPTURECOUNT, &n) == 0 && n > max)
			max = n;
	}
	rmd = calloc(1, sizeof(*rmd));
	if (rmd == NULL)
		return NULL;
	/* One ovector pair per group plus the whole match. */
	rmd->md = pcre2_match_data_create(max + 1, NULL);
	if (rmd->md == NULL) {
		free(rmd);
		return NULL;
	}
	return rmd;
}

void
route_match_data_free(struct route_match_data *rmd)
{
	if (rmd == NULL)
		return;
	pcre2_match_data_free(rmd->md);
	free(rmd);
}

/* The JIT fast path; a pattern JIT could not compile (or a PCRE2 built
 * without JIT) answers PCRE2_ERROR_JIT_BADOPTION, and then the
 * interpreter does the work. */
static int
re_match(const pcre2_code *re, pcre2_match_data *md, const char *s,
    size_t len)
{
	int rc;

	rc = pcre2_jit_match(re, (PCRE2_SPTR)s, len, 0, 0, md, NULL);
	if (rc == PCRE2_ERROR_JIT_BADOPTION)
		rc = pcre2_match(re, (PCRE2_SPTR)s, len, 0, 0, md, NULL);
	return rc;
}

/* Callers without per-worker scratch (gwctl explain) get a temporary one;
 * the request path always passes md. */
static pcre2_match_data *
scratch(const pcre2_code *re, struct route_match_data *rmd, bool *owned)
{
	*owned = false;
	if (rmd != NULL && rmd->md != NULL)
		return rmd->md;
	*owned = true;
	return pcre2_match_data_create_from_pattern(re, NULL);
}

static bool
host_match(const char *want, const char *host, size_t host_len)
{
	size_t wl, k;

	if (host == NULL || host_len == 0)
		return false;
	if (host[0] == '[') {
		/* "[v6]:port": compare the address inside the brackets. */
		const char *end = memchr(host, ']', host_len);

		if (end == NULL)
			return false;
		host++;
		host_len = (size_t)(end - host);
	} else {
		const char *colon = memchr(host, ':', host_len);

		if (colon != NULL)
			host_len = (size_t)(colon - host);
		/* "example.com." names the same host as "example.com". */
		if (host_len > 0 && host[host_len - 1] == '.')
			host_len--;
	}
	wl = strlen(want);
	if (wl >= 2 && want[0] == '[' && want[wl - 1] == ']') {
		want++;
		wl -= 2;
	}
	if (wl != host_len)
		return false;
	for (k = 0; k < wl; k++) {
		unsigned char a = (unsigned char)want[k];
		unsigned char b = (unsigned char)host[k];

		if (a >= 'A' && a <= 'Z')
			a += 'a' - 'A';
		if (b >= 'A' && b <= 'Z')
			b += 'a' - 'A';
		if (a != b)
			return false;
	}
	return true;
}

static bool
path_match(const struct cfg_route *r, struct route_match_data *rmd,
    const char *path, size_t len)
{
	pcre2_match_data *md;
	size_t pl;
	bool owned;
	int rc;

	if (r->path != NULL)
		return strlen(r->path) == len && memcmp(r->path, path, len) == 0;
	if (r->prefix != NULL) {
		pl = strlen(r->prefix);
		/* Tolerate a prefix stored with its trailing '/'; "/" (or
		 * "") then matches every path. */
		if (pl > 0 && r->prefix[pl - 1] == '/')
			pl--;
		if (pl == 0)
			return true;
		return len >= pl && memcmp(r->prefix, path, pl) == 0 &&
		    (len == pl || path[pl] == '/');
	}
	if (r->re != NULL) {
		md = scratch(r->re, rmd, &owned);
		if (md == NULL)
			return false;
		/* 0 means the ovector was too small: still a match. */
		rc = re_match(r->re, md, path, len);
		if (owned)
			pcre2_match_data_free(md);
		return rc >= 0;
	}
	return false;
}

int
route_find(const struct config *cfg, struct route_match_data *md,
    enum http_method method, const char *host, size_t host_len,
    const char *path, size_t path_len, unsigned *allow)
{
	unsigned mask = 0, bit;
	bool partial = false;
	size_t i;

	bit = METHOD_BIT(method);
	/* HEAD is served wherever GET is, as nginx does. */
	if (method == M_HEAD)
		bit |= METHOD_BIT(M_GET);
	for (i = 0; i < cfg->nroutes; i++) {
		const struct cfg_route *r = &cfg->routes[i];

		if (r->host != NULL && !host_match(r->host, host, host_len))
			continue;
		if (!path_match(r, md, path, path_len))
			continue;
		if (r->methods == 0 || (r->methods & bit) != 0)
			return (int)i;
		partial = true;
		mask |= r->methods;
	}
	if (allow != NULL)
		*allow = mask;
	return partial ? -405 : -404;
}

/*
 * Substitution is done by hand over one pcre2 match rather than with
 * pcre2_substitute, whose template syntax is richer than the contract
 * ("$1".."$9"). Like sed's s///: the first match is replaced by the
 * expanded template, text before and after it is kept; with the usual
 * "^...$" pattern that is the whole path. In the template "$N" (one
 * digit) and "${N}" (up to two digits) insert group N, $0 the whole
 * match, "$$" a '$'; an unset group inserts nothing; any other '$' is
 * literal. An empty result becomes "/" so 0 keeps meaning "unchanged".
 */
static int
put(char *out, size_t outcap, size_t *o, const char *s, size_t n)
{
	if (n >= outcap - *o)
		return -1;
	memcpy(out + *o, s, n);
	*o += n;
	return 0;
}

int
route_rewrite(const struct cfg_route *r, struct route_match_data *rmd,
    const char *path, size_t len, char *out, size_t outcap)
{
	pcre2_match_data *md;
	PCRE2_SIZE *ov;
	const char *t;
	size_t o = 0, k, tl, g, j;
	uint32_t npairs;
	bool owned;
	int rc, ret = -1;

	if (r->rewrite_re == NULL || r->rewrite_to == NULL)
		return 0;
	if (outcap == 0)
		return -1;
	md = scratch(r->rewrite_re, rmd, &owned);
	if (md == NULL)
		return -1;
	rc = re_match(r->rewrite_re, md, path, len);
	if (rc == 0 && !owned) {
		/* The scratch has fewer pairs than the pattern has groups
		 * (an md not made from this config): match again with room
		 * for all rather than drop groups. */
		md = pcre2_match_data_create_from_pattern(r->rewrite_re, NULL);
		if (md == NULL)
			return -1;
		owned = true;
		rc = re_match(r->rewrite_re, md, path, len);
	}
	if (rc < 0) {
		ret = rc == PCRE2_ERROR_NOMATCH ? 0 : -1;
		goto done;
	}
	ov = pcre2_get_ovector_pointer(md);
	/* Groups from rc on did not take part in the match. */
	npairs = rc == 0 ? pcre2_get_ovector_count(md) : (uint32_t)rc;
	if (put(out, outcap, &o, path, ov[0]) < 0)
		goto done;
	t = r->rewrite_to;
	tl = strlen(t);
	for (k = 0; k < tl; k++) {
		if (t[k] != '$' || k + 1 == tl) {
			if (put(out, outcap, &o, t + k, 1) < 0)
				goto done;
			continue;
		}
		if (t[k + 1] == '$') {
			if (put(out, outcap, &o, "$", 1) < 0)
				goto done;
			k++;
			continue;
		}
		if (t[k + 1] >= '0' && t[k + 1] <= '9') {
			g = (size_t)(t[k + 1] - '0');
			j = k + 2;
		} else if (t[k + 1] == '{' && k + 3 < tl &&
		    t[k + 2] >= '0' && t[k + 2] <= '9') {
			g = (size_t)(t[k + 2] - '0');
			j = k + 3;
			if (t[j] >= '0' && t[j] <= '9')
				g = g * 10 + (size_t)(t[j++] - '0');
			if (j >= tl || t[j] != '}') {
				if (put(out, outcap, &o, t + k, 1) < 0)
					goto done;
				continue;
			}
			j++;
		} else {
			if (put(out, outcap, &o, t + k, 1) < 0)
				goto done;
			continue;
		}
		if (g < npairs && ov[2 * g] != PCRE2_UNSET &&
		    put(out, outcap, &o, path + ov[2 * g],
		    ov[2 * g + 1] - ov[2 * g]) < 0)
			goto done;
		k = j - 1;
	}
	/* A match ending before it starts (\K in a lookahead) keeps the
	 * rest of the path from the start instead. */
	j = ov[1] > ov[0] ? ov[1] : ov[0];
	if (put(out, outcap, &o, path + j, len - j) < 0)
		goto done;
	if (o == 0 && put(out, outcap, &o, "/", 1) < 0)
		goto done;
	out[o] = '\0';
	ret = (int)o;
done:
	if (owned)
		pcre2_match_data_free(md);
	return ret;
}

size_t
route_allow_header(unsigned mask, char *out, size_t outcap)
{
	size_t o = 0, n;
	const char *name;
	int m;

	if (outcap == 0)
		return 0;
	if (mask & METHOD_BIT(M_GET))
		mask |= METHOD_BIT(M_HEAD);
	for (m = 0; m < M__COUNT; m++) {
		if (m == M_OTHER || (mask & METHOD_BIT(m)) == 0)
			continue;
		name = method_name((enum http_method)m);
		if (name == NULL)
			continue;
		n = strlen(name);
		/* Whole names only: a cut one would be a different method. */
		if (o + (o > 0 ? 2 : 0) + n >= outcap)
			break;
		if (o > 0) {
			out[o++] = ',';
			out[o++] = ' ';
		}
		memcpy(out + o, name, n);
		o += n;
	}
	out[o] = '\0';
	return o;
}
