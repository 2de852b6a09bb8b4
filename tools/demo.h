/*
 * demo: what demo.c (flags, the event loop, timers, reading requests,
 * listeners) and demo_http.c (request parsing, response staging, the
 * services) share. Private to the demo binary.
 */
#ifndef PORTICO_DEMO_H
#define PORTICO_DEMO_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#define MAX_HEADERS	100
#define MAX_LISTENERS	16
/* step results: keep going, wait for an event, or the conn was freed */
#define STEP_MORE	1
#define STEP_WAIT	0
#define STEP_GONE	(-1)

/* parse_head results besides a head length > 0 */
#define PH_NEED		(-2)
#define PH_BAD		(-1)
#define PH_TOO_MANY	(-3)

enum service { SVC_USERS, SVC_ORDERS, SVC_PRODUCTS, SVC_PAYMENTS, SVC_ECHO };

/* Failure injected on one listener by POST /_control/fail (demo_http.c). */
enum fail_mode {
	FAIL_NONE,
	FAIL_STATUS,	/* answer every request with fail_status */
	FAIL_RESET,	/* reset the connection instead of answering */
	FAIL_SLOW,	/* answer every request fail_ms late */
};
enum kind { K_LISTENER, K_CONN, K_SIGNAL };

enum conn_state {
	ST_HEAD,	/* reading a request head; no response owed */
	ST_BODY,	/* head parsed and copied to c->head; discarding the body */
	ST_DELAY,	/* response staged in out/body; held until the timer fires */
	ST_WRITE,	/* writing the response; input is not read */
	ST_LINGER,	/* final response sent, write side shut; drain until EOF */
};

enum body_mode { BM_NONE, BM_LENGTH, BM_CHUNKED };

enum chunk_state {
	CS_SIZE,	/* expecting a chunk-size line */
	CS_DATA,	/* chunk_left data bytes still to discard */
	CS_DATA_END,	/* expecting the CRLF after chunk data */
	CS_TRAILER,	/* after the last chunk: trailer lines until an empty one */
};

struct sbuf {
	char *p;
	size_t len, cap;
	int err;		/* allocation failed: contents incomplete */
};

struct demo;

struct listener {
	enum kind kind;		/* K_LISTENER; first member, see dispatch */
	int fd;
	enum service svc;
	int port;
	char host[INET6_ADDRSTRLEN];
	struct demo *d;
	enum fail_mode fail;
	int fail_status;
	unsigned fail_ms;
	int fail_health;	/* GET /health fails too */
	uint64_t requests;	/* answered or failed, /_control/ aside */
	uint64_t conns;		/* accepted */
};

struct conn {
	enum kind kind;		/* K_CONN */
	int fd;
	struct listener *l;
	enum conn_state state;
	uint32_t events;	/* what epoll currently watches */
	long timer_idx;		/* index in the timer heap, -1 when unset */
	int64_t deadline;
	int eof;		/* peer shut its write side */

	char *in;
	size_t in_off, in_len, in_cap;

	/* the request being served */
	char *head;		/* copy of the head, kept for the response */
	size_t head_len;
	size_t method, method_len, target, target_len;
	int minor, keep_alive, is_head;
	enum body_mode bmode;
	uint64_t body_left;	/* BM_LENGTH: bytes left to read */
	uint64_t body_seen;	/* decoded request body bytes */
	enum chunk_state cstate;
	uint64_t chunk_left;
	int trailers;

	/* the response being written */
	char *out;
	size_t out_off, out_len;
	struct sbuf body;	/* body bytes, or p == NULL: gen_len 'x' bytes */
	uint64_t resp_left;	/* body bytes still to stage */
	size_t resp_off;
	int resp_chunked, resp_final;	/* chunked; last chunk staged */
	size_t chunk_size;
};

struct demo {
	int ep;
	struct listener ls[MAX_LISTENERS];
	int nls;
	int listeners_off;	/* paused after EMFILE until resume_at */
	int64_t resume_at;
	int64_t now;
	struct conn **heap;
	size_t nheap, heap_cap;
	unsigned latency_ms, jitter_ms;
	double fail_rate;
	uint64_t rng;
	uint64_t orders_made;
	int stop;
};

struct hdr {
	size_t name, name_len, value, value_len;	/* offsets into the head */
};

struct req {
	size_t method, method_len, target, target_len;
	int minor;
	struct hdr *hdr;
	size_t nhdr, max_hdr;
};

extern const char *const service_names[];

/* ---- demo.c -------------------------------------------------------- */

/* timer_set: (re)arm C's deadline DELAY ms after d->now; -1 out of memory. */
int timer_set(struct demo *d, struct conn *c, int64_t delay);
/* conn_close: close and free C; every connection ends here. */
void conn_close(struct conn *c);

/* ---- demo_http.c --------------------------------------------------- */

void sb_free(struct sbuf *s);

int ieq(const char *a, size_t alen, const char *b);
/* parse_head: head length, or PH_NEED, PH_BAD, PH_TOO_MANY. */
long parse_head(const char *buf, size_t len, struct req *r);
int parse_u64(const char *p, size_t n, uint64_t *out);
int has_token(const char *p, size_t n, const char *tok);

void update_events(struct conn *c);
int out_reserve(struct conn *c);
void stage_body(struct conn *c);
/* flush_out: 1 all written, 0 on EAGAIN, STEP_GONE closed. */
int flush_out(struct conn *c);
int fail_request(struct conn *c, int status, const char *msg);
/* respond: the request is complete; stage the answer, send or delay it. */
int respond(struct conn *c);

#endif
