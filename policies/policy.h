/*
 * policy: the one interface every cross-cutting policy implements.
 *
 * A policy reads its part of a route's config once (init, in the worker
 * after fork) and then has a request hook and a response hook. Each hook
 * either lets the request continue or answers it. The pipeline order is
 * fixed (DESIGN.md): trace, auth, rate limit, cache, transform; a route's
 * config decides which of them are in its chain.
 */
#ifndef PORTICO_POLICY_H
#define PORTICO_POLICY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../master/config.h"
#include "../worker/http1.h"

#define POLICY_MAX_EDITS 32

enum policy_verdict {
	POLICY_CONTINUE = 0,	/* go on to the next policy / upstream */
	POLICY_RESPOND = 1,	/* ctx->status and ctx->error answer it */
};

/* Header edits a hook asks for; strings must outlive the request (route
 * config or policy state). Removals are by name, case-insensitive. */
struct policy_edits {
	const char *add[POLICY_MAX_EDITS];	/* "Name: value" */
	size_t add_len[POLICY_MAX_EDITS];
	unsigned nadd;
	const char *remove[POLICY_MAX_EDITS];	/* "Name" */
	size_t remove_len[POLICY_MAX_EDITS];
	unsigned nremove;
};

struct policy_ctx {
	const struct config *cfg;
	const struct cfg_route *route;
	enum http_method method;
	const char *path;		/* normalised path */
	size_t path_len;
	const struct http1_header *headers;	/* request, or response in
						 * the response hook */
	size_t nheaders;
	int peer_family;		/* AF_INET / AF_INET6 */
	const uint8_t *peer_addr;	/* 4 or 16 bytes, network order */
	uint64_t now_ms;		/* CLOCK_MONOTONIC ms, cached per turn */
	int status;			/* response status in the response hook;
					 * the answer's status on POLICY_RESPOND */
	const char *error;		/* short error code for the JSON body */
	struct policy_edits edits;	/* applied to the head being sent */
	/* Header lines ("Name: value\r\n") added to this request's response,
	 * whether it is proxied or answered by the gateway (request hooks
	 * only; see policy_resp_header). */
	char *resp_extra;
	size_t resp_extra_len, resp_extra_cap;
};

struct policy {
	const char *name;
	/* init: whether the route uses this policy and its state. Returns 1
	 * (in the chain, *state set), 0 (not used by this route) or -1. */
	int (*init)(const struct config *cfg, const struct cfg_route *r,
	    void **state);
	int (*on_request)(void *state, struct policy_ctx *ctx);
	int (*on_response)(void *state, struct policy_ctx *ctx);
	void (*free)(void *state);
};

struct policy_chain {
	unsigned n;
	const struct policy *p[8];
	void *state[8];
};

/* policy_chain_build: the chain of route R in pipeline order. 0 or -1. */
int policy_chain_build(const struct config *cfg, const struct cfg_route *r,
    struct policy_chain *chain);
void policy_chain_free(struct policy_chain *chain);
/* policy_run_request / policy_run_response: run each hook in order; stop
 * at the first POLICY_RESPOND and return it. */
int policy_run_request(const struct policy_chain *chain,
    struct policy_ctx *ctx);
int policy_run_response(const struct policy_chain *chain,
    struct policy_ctx *ctx);

/* policy_edit_add / policy_edit_remove: 0, or -1 when the list is full. */
int policy_edit_add(struct policy_edits *e, const char *line, size_t len);
int policy_edit_remove(struct policy_edits *e, const char *name, size_t len);

/* policy_resp_header: append "NAME: VALUE\r\n" (VALUE printf-formatted)
 * to the response's extra lines. 0, or -1 when they are full. */
int policy_resp_header(struct policy_ctx *ctx, const char *name,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

extern const struct policy policy_ratelimit;
extern const struct policy policy_transform;

#endif
