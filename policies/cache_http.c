#include <ctype.h>
#include <string.h>
#include <time.h>

#include "cache_http.h"

static bool
ows(char c)
{
	return c == ' ' || c == '\t';
}

static bool
ieq(const char *a, size_t n, const char *lit)
{
	size_t i;

	if (strlen(lit) != n)
		return false;
	for (i = 0; i < n; i++)
		if (tolower((unsigned char)a[i]) != lit[i])
			return false;
	return true;
}

void
cache_cc_init(struct cache_cc *cc)
{
	memset(cc, 0, sizeof(*cc));
	cc->max_age = cc->s_maxage = CC_UNSET;
	cc->stale_while_revalidate = cc->stale_if_error = CC_UNSET;
}

/* Delta-seconds: digits only, capped (RFC 9111 1.2.2: a value too large
 * is taken as 2^31). -1 when malformed. */
static int64_t
delta(const char *v, size_t n)
{
	int64_t x = 0;
	size_t i;

	if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
		v++;
		n -= 2;
	}
	if (n == 0)
		return -1;
	for (i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		if (x < 2147483648LL)
			x = x * 10 + (v[i] - '0');
	}
	return x > 2147483648LL ? 2147483648LL : x;
}

static void
set_delta(int64_t *slot, const char *v, size_t n, bool has)
{
	int64_t d = has ? delta(v, n) : -1;

	*slot = d < 0 ? 0 : d;
}

void
cache_cc_parse(const char *v, size_t n, struct cache_cc *cc)
{
	size_t i = 0, ns, ne, vs, ve;
	bool q, has;

	while (i < n) {
		while (i < n && (ows(v[i]) || v[i] == ','))
			i++;
		ns = i;
		while (i < n && v[i] != '=' && v[i] != ',' && !ows(v[i]))
			i++;
		ne = i;
		while (i < n && ows(v[i]))
			i++;
		vs = ve = i;
		has = i < n && v[i] == '=';
		if (has) {
			i++;
			while (i < n && ows(v[i]))
				i++;
			vs = i;
			q = i < n && v[i] == '"';
			if (q) {
				for (i++; i < n && v[i] != '"'; i++)
					if (v[i] == '\\' && i + 1 < n)
						i++;
				if (i < n)
					i++;
			} else {
				while (i < n && v[i] != ',' && !ows(v[i]))
					i++;
			}
			ve = i;
		}
		while (i < n && v[i] != ',')
			i++;
		if (ne == ns)
			continue;
		if (ieq(v + ns, ne - ns, "no-store"))
			cc->no_store = true;
		else if (ieq(v + ns, ne - ns, "no-cache"))
			cc->no_cache = true;
		else if (ieq(v + ns, ne - ns, "private"))
			cc->private_ = true;
		else if (ieq(v + ns, ne - ns, "public"))
			cc->public_ = true;
		else if (ieq(v + ns, ne - ns, "must-revalidate"))
			cc->must_revalidate = true;
		else if (ieq(v + ns, ne - ns, "proxy-revalidate"))
			cc->proxy_revalidate = true;
		else if (ieq(v + ns, ne - ns, "max-age"))
			set_delta(&cc->max_age, v + vs, ve - vs, has);
		else if (ieq(v + ns, ne - ns, "s-maxage"))
			set_delta(&cc->s_maxage, v + vs, ve - vs, has);
		else if (ieq(v + ns, ne - ns, "stale-while-revalidate"))
			set_delta(&cc->stale_while_revalidate, v + vs,
			    ve - vs, has);
		else if (ieq(v + ns, ne - ns, "stale-if-error"))
			set_delta(&cc->stale_if_error, v + vs, ve - vs, has);
	}
}

/* ---- dates ------------------------------------------------------- */

static int
month_of(const char *s)
{
	static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	int m;

	for (m = 0; m < 12; m++)
		if (memcmp(s, names + 3 * m, 3) == 0)
			return m;
	return -1;
}

static int
num(const char *s, size_t n, int *out)
{
	size_t i;
	int v = 0;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

static int
make_time(int year, int mon, int day, int hh, int mm, int ss, int64_t *out)
{
	struct tm tm;
	time_t t;

	if (mon < 0 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60 ||
	    year < 1900)
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = year - 1900;
	tm.tm_mon = mon;
	tm.tm_mday = day;
	tm.tm_hour = hh;
	tm.tm_min = mm;
	tm.tm_sec = ss;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -1;
	*out = (int64_t)t;
	return 0;
}

/* "HH:MM:SS" at S. */
static int
clock_of(const char *s, int *hh, int *mm, int *ss)
{
	if (s[2] != ':' || s[5] != ':' || num(s, 2, hh) < 0 ||
	    num(s + 3, 2, mm) < 0 || num(s + 6, 2, ss) < 0)
		return -1;
	return 0;
}

int
cache_http_date(const char *s, size_t n, int64_t *out)
{
	const char *c;
	int day, year, hh, mm, ss, mon;

	while (n > 0 && ows(s[n - 1]))
		n--;
	while (n > 0 && ows(*s)) {
		s++;
		n--;
	}
	c = memchr(s, ',', n);
	if (c != NULL && c - s == 3) {
		/* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
		if (n != 29 || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' ||
		    s[16] != ' ' || s[25] != ' ' ||
		    memcmp(s + 26, "GMT", 3) != 0 ||
		    num(s + 5, 2, &day) < 0 || (mon = month_of(s + 8)) < 0 ||
		    num(s + 12, 4, &year) < 0 ||
		    clock_of(s + 17, &hh, &mm, &ss) < 0)
			return -1;
		return make_time(year, mon, day, hh, mm, ss, out);
	}
	if (c != NULL) {
		/* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
		const char *p = c + 1;
		size_t left = n - (size_t)(p - s);
		if (left != 23 || p[0] != ' ' || p[3] != '-' || p[7] != '-' ||
		    p[10] != ' ' || p[19] != ' ' ||
		    memcmp(p + 20, "GMT", 3) != 0 ||
		    num(p + 1, 2, &day) < 0 || (mon = month_of(p + 4)) < 0 ||
		    num(p + 8, 2, &year) < 0 ||
		    clock_of(p + 11, &hh, &mm, &ss) < 0)
			return -1;
		/* RFC 9110 5.6.7: a two-digit year more than 50 years
		 * ahead is in the past century; 1970-2069 serves. */
		year += year < 70 ? 2000 : 1900;
		return make_time(year, mon, day, hh, mm, ss, out);
	}
	/* asctime: "Sun Nov  6 08:49:37 1994" */
	if (n != 24 || s[3] != ' ' || s[7] != ' ' || s[10] != ' ' ||
	    s[19] != ' ' || (mon = month_of(s + 4)) < 0 ||
	    num(s + 8 + (s[8] == ' '), s[8] == ' ' ? 1 : 2, &day) < 0 ||
	    clock_of(s + 11, &hh, &mm, &ss) < 0 ||
	    num(s + 20, 4, &year) < 0)
		return -1;
	return make_time(year, mon, day, hh, mm, ss, out);
}

/* ---- entity tags ------------------------------------------------- */

/* The opaque part of an entity-tag (W/ dropped): *p, *n. */
static void
opaque(const char **p, size_t *n)
{
	if (*n >= 2 && (*p)[0] == 'W' && (*p)[1] == '/') {
		*p += 2;
		*n -= 2;
	}
}

bool
cache_etag_match(const char *list, size_t n, const char *etag, size_t elen)
{
	size_t i = 0, s, e;
	const char *t;
	size_t tl;

	opaque(&etag, &elen);
	while (i < n) {
		while (i < n && (ows(list[i]) || list[i] == ','))
			i++;
		s = i;
		if (i < n && list[i] == '*')
			return true;
		if (i + 1 < n && list[i] == 'W' && list[i + 1] == '/')
			i += 2;
		if (i < n && list[i] == '"') {
			for (i++; i < n && list[i] != '"'; i++)
				;
			if (i < n)
				i++;
		}
		e = i;
		while (i < n && list[i] != ',')
			i++;
		t = list + s;
		tl = e - s;
		opaque(&t, &tl);
		if (tl > 0 && tl == elen && memcmp(t, etag, tl) == 0)
			return true;
	}
	return false;
}

/* ---- vary -------------------------------------------------------- */

int
cache_vary_names(const char *v, size_t n, char *out, size_t *len,
    size_t cap, bool *star)
{
	size_t i = 0, s, e, k;
	char name[128];

	while (i < n) {
		while (i < n && (ows(v[i]) || v[i] == ','))
			i++;
		s = i;
		while (i < n && v[i] != ',' && !ows(v[i]))
			i++;
		e = i;
		while (i < n && v[i] != ',')
			i++;
		if (e == s)
			continue;
		if (e - s == 1 && v[s] == '*') {
			*star = true;
			continue;
		}
		if (e - s >= sizeof(name) - 1)
			return -1;
		name[0] = ',';
		for (k = 0; k < e - s; k++)
			name[k + 1] = (char)tolower((unsigned char)v[s + k]);
		k++;
		/* Already listed? (",name" followed by ',' or the end) */
		{
			const char *at = out, *end = out + *len, *f;
			bool dup = false;
			while (at < end && (f = memmem(at, (size_t)(end - at),
			    name, k)) != NULL) {
				if (f + k == end || f[k] == ',') {
					dup = true;
					break;
				}
				at = f + 1;
			}
			if (dup)
				continue;
		}
		if (*len + k > cap)
			return -1;
		memcpy(out + *len, name, k);
		*len += k;
	}
	return 0;
}

/* ---- freshness --------------------------------------------------- */

bool
cache_status_storable(int status)
{
	switch (status) {
	case 200: case 203: case 204: case 300: case 301: case 404:
	case 405: case 410: case 414: case 501:
		return true;
	default:
		return false;
	}
}

void
cache_freshness(const struct http1_header *h, size_t n, int64_t now,
    unsigned ttl_s, unsigned stale_s, struct cache_fresh *f)
{
	struct cache_cc cc;
	int64_t date = 0, expires = 0, t;
	bool has_date = false, has_expires = false, bad_expires = false;
	size_t i;

	memset(f, 0, sizeof(*f));
	cache_cc_init(&cc);
	for (i = 0; i < n; i++) {
		if (http1_header_is(&h[i], "cache-control")) {
			cache_cc_parse(h[i].value, h[i].value_len, &cc);
		} else if (http1_header_is(&h[i], "expires")) {
			if (cache_http_date(h[i].value, h[i].value_len,
			    &expires) == 0)
				has_expires = true;
			else
				bad_expires = true;
		} else if (http1_header_is(&h[i], "date")) {
			if (cache_http_date(h[i].value, h[i].value_len,
			    &t) == 0) {
				date = t;
				has_date = true;
			}
		} else if (http1_header_is(&h[i], "age")) {
			t = delta(h[i].value, h[i].value_len);
			if (t > 0)
				f->age_s = t;
		} else if (http1_header_is(&h[i], "last-modified")) {
			if (cache_http_date(h[i].value, h[i].value_len,
			    &t) == 0 && t > 0)
				f->last_modified = t;
		} else if (http1_header_is(&h[i], "etag")) {
			f->has_etag = h[i].value_len > 0;
		}
	}
	if (cc.no_store) {
		f->why = "no-store";
		return;
	}
	if (cc.private_) {
		f->why = "private";
		return;
	}
	if (cc.no_cache) {
		f->why = "no-cache";
		return;
	}
	if (cc.s_maxage != CC_UNSET) {
		f->lifetime_s = cc.s_maxage;
		f->revalidate = true;	/* s-maxage implies proxy-revalidate */
	} else if (cc.max_age != CC_UNSET) {
		f->lifetime_s = cc.max_age;
	} else if (bad_expires) {
		f->lifetime_s = 0;	/* an invalid Expires is the past */
	} else if (has_expires) {
		t = expires - (has_date ? date : now);
		f->lifetime_s = t > 0 ? t : 0;
	} else {
		f->lifetime_s = ttl_s;
	}
	if (cc.must_revalidate || cc.proxy_revalidate)
		f->revalidate = true;
	f->swr_s = cc.stale_while_revalidate != CC_UNSET ?
	    cc.stale_while_revalidate : stale_s;
	f->sie_s = cc.stale_if_error != CC_UNSET ? cc.stale_if_error : stale_s;
	if (f->revalidate)
		f->swr_s = f->sie_s = 0;
	if (f->lifetime_s <= f->age_s && f->swr_s == 0 && f->sie_s == 0) {
		f->why = "stale on arrival";
		return;
	}
	f->storable = true;
}
