/*
 * libFuzzer target for worker/http1.c. The first input byte picks what to
 * feed and where to split; every parse is repeated in two pieces and the
 * results must agree with the one-piece parse. Inputs live in exactly-sized
 * heap buffers so ASan catches any over-read.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address -I. test/fuzz/fuzz_http1.c
 */
#include <stdlib.h>
#include <string.h>

#include "../../worker/http1.c"

#define NH	8

static void
check(bool ok)
{
	if (!ok)
		abort();
}

static bool
inside(const char *p, size_t n, const char *buf, size_t len)
{
	return p >= buf && p + n <= buf + len;
}

static void
check_headers(const struct http1_header *h, size_t n, const char *buf,
    size_t len)
{
	size_t i, j;

	for (i = 0; i < n; i++) {
		check(h[i].name_len > 0 && inside(h[i].name, h[i].name_len, buf,
		    len));
		check(inside(h[i].value, h[i].value_len, buf, len));
		for (j = 0; j < h[i].value_len; j++)
			check(h[i].value[j] != '\r' && h[i].value[j] != '\n' &&
			    h[i].value[j] != '\0');
	}
}

static void
fuzz_request(const char *buf, size_t len, size_t split, size_t max_head)
{
	struct http1_header h1[NH], h2[NH];
	struct http1_request r1, r2;
	struct http1_limits lim = { NH, max_head, 0, 0 };
	int a, b;

	a = http1_parse_request(buf, len, 0, &r1, h1, &lim);
	b = http1_parse_request(buf, split, 0, &r2, h2, &lim);
	if (b == HTTP1_INCOMPLETE)
		b = http1_parse_request(buf, len, split, &r2, h2, &lim);
	check(a == b);
	if (a <= 0)
		return;
	check((size_t)a <= len && (size_t)a <= max_head);
	check(r1.method == r2.method && r1.path == r2.path &&
	    r1.host_len == r2.host_len && r1.num_headers == r2.num_headers);
	check(inside(r1.method, r1.method_len, buf, (size_t)a));
	check(inside(r1.target, r1.target_len, buf, (size_t)a));
	check(inside(r1.path, r1.path_len, r1.target, r1.target_len));
	check(r1.host == NULL || inside(r1.host, r1.host_len, buf, (size_t)a));
	check(r1.minor_version == 1 ? r1.host != NULL : 1);
	check(!(r1.f.chunked && r1.f.content_length >= 0));
	check_headers(h1, r1.num_headers, buf, (size_t)a);
}

static void
fuzz_response(const char *buf, size_t len, size_t split, size_t max_head)
{
	struct http1_header h1[NH], h2[NH];
	struct http1_response r1, r2;
	struct http1_limits lim = { NH, max_head, 0, 0 };
	int a, b;

	a = http1_parse_response(buf, len, 0, &r1, h1, &lim);
	b = http1_parse_response(buf, split, 0, &r2, h2, &lim);
	if (b == HTTP1_INCOMPLETE)
		b = http1_parse_response(buf, len, split, &r2, h2, &lim);
	check(a == b);
	if (a <= 0)
		return;
	check(r1.status >= 100 && r1.status <= 599 && r1.status == r2.status);
	check(inside(r1.reason, r1.reason_len, buf, (size_t)a));
	check(!(r1.f.chunked && r1.f.content_length >= 0));
	check_headers(h1, r1.num_headers, buf, (size_t)a);
}

static void
fuzz_chunked(const char *buf, size_t len, size_t split)
{
	struct http1_chunked c1, c2, c3;
	ssize_t a, b1, b2 = 0, d;
	bool done1, done2 = false, done3;
	size_t olen = 0, o1 = 0, o2 = 0;
	char *copy = malloc(len ? len : 1), *copy2 = malloc(len ? len : 1);

	check(copy != NULL && copy2 != NULL);
	memset(&c1, 0, sizeof(c1));
	memset(&c2, 0, sizeof(c2));
	memset(&c3, 0, sizeof(c3));
	a = http1_chunked_scan(&c1, buf, len, &done1);

	/* the same in two pieces */
	b1 = http1_chunked_scan(&c2, buf, split, &done2);
	if (b1 >= 0 && !done2) {
		check((size_t)b1 == split);
		b2 = http1_chunked_scan(&c2, buf + split, len - split, &done2);
	}
	if (a < 0) {
		check(b1 < 0 || b2 < 0);
	} else {
		check(b1 >= 0 && b2 >= 0 && b1 + b2 == a && done1 == done2);
		check(c1.total == c2.total);
		check(done1 || (size_t)a == len);
	}

	/* decoding agrees with scanning, whole and split */
	memcpy(copy, buf, len);
	d = http1_chunked_decode(&c3, copy, len, &olen, &done3);
	check(d == a);
	if (d >= 0) {
		check(done3 == done1 && olen <= (size_t)d);
		check(!done3 || olen == c3.total);
		memcpy(copy2, buf, len);
		memset(&c3, 0, sizeof(c3));
		b1 = http1_chunked_decode(&c3, copy2, split, &o1, &done3);
		check(b1 >= 0);
		if (!done3) {
			b2 = http1_chunked_decode(&c3, copy2 + split,
			    len - split, &o2, &done3);
			check(b2 >= 0);
			memmove(copy2 + o1, copy2 + split, o2);
		}
		check(o1 + o2 == olen && memcmp(copy, copy2, olen) == 0);
	}

	/* stripping trailers consumes what scanning does, keeps a chunked
	 * body that scans as complete with no trailers, counts the same */
	memcpy(copy, buf, len);
	memset(&c3, 0, sizeof(c3));
	d = http1_chunked_strip(&c3, copy, len, &olen, &done3);
	check(d == a);
	if (d >= 0) {
		check(done3 == done1 && olen <= (size_t)d);
		check(c3.trailers == c1.trailers &&
		    c3.trailer_bytes == c1.trailer_bytes);
		check(olen + c3.trailer_bytes == (size_t)d);
		if (done3) {
			struct http1_chunked c4;
			bool done4;
			memset(&c4, 0, sizeof(c4));
			check(http1_chunked_scan(&c4, copy, olen, &done4) ==
			    (ssize_t)olen && done4 && c4.trailers == 0 &&
			    c4.total == c1.total);
		}
	}
	free(copy);
	free(copy2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char pre_req[] = "POST /p HTTP/1.1\r\nHost: a\r\n";
	static const char pre_res[] = "HTTP/1.1 200 OK\r\n";
	const char *pre = "";
	size_t plen = 0, len, split, max_head;
	unsigned mode;
	char *buf;

	if (size < 2)
		return 0;
	mode = data[0] % 6;
	if (mode == 1) {
		pre = pre_req;
		plen = sizeof(pre_req) - 1;
	} else if (mode == 3) {
		pre = pre_res;
		plen = sizeof(pre_res) - 1;
	}
	len = plen + size - 2;
	buf = malloc(len ? len : 1);
	if (buf == NULL)
		return 0;
	memcpy(buf, pre, plen);
	memcpy(buf + plen, data + 2, size - 2);
	split = len ? (size_t)data[1] * 7919 % (len + 1) : 0;
	/* small limits now and then, so TOO_LONG / TOO_MANY get exercised */
	max_head = (data[1] & 1) ? 64 + data[1] : 65536;

	switch (mode) {
	case 0:
	case 1:
		fuzz_request(buf, len, split, max_head);
		break;
	case 2:
	case 3:
		fuzz_response(buf, len, split, max_head);
		break;
	default:
		fuzz_chunked(buf, len, split);
		break;
	}
	free(buf);
	return 0;
}
