/*
 * msg: the control plane's one framing. A message is a 4-byte big-endian
 * length followed by exactly one msgpack map of that length; a length over
 * MSG_MAX is an error and the connection is closed. The master, the
 * workers and gwctl all speak it.
 */
#ifndef PORTICO_MSG_H
#define PORTICO_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <msgpack.h>

#define MSG_MAX		(1u << 20)	/* largest body, in bytes */
#define MSG_HDR		4		/* length prefix */

/* A message being built. The body is packed with `pk` (any msgpack-c
 * msgpack_pack_* call, or the msg_pack_* helpers below); msg_out_finish
 * fills in the length prefix. */
struct msg_out {
	msgpack_sbuffer sb;
	msgpack_packer pk;
};

/* msg_out_init: an empty message whose body starts with a map of NKEYS
 * entries (NKEYS < 0: the caller packs the top-level map itself).
 * Returns 0, or -1 when out of memory. */
int msg_out_init(struct msg_out *m, int nkeys);
void msg_out_free(struct msg_out *m);
/* msg_out_finish: write the length prefix. Returns the frame size
 * (prefix + body) with *data pointing at it, or -1 if the body is empty
 * or over MSG_MAX. The frame stays owned by m. */
int msg_out_finish(struct msg_out *m, const char **data);

/* Packing helpers: a string, and key/value pairs of a map. */
void msg_pack_str(msgpack_packer *pk, const char *s);
void msg_pack_kv_str(msgpack_packer *pk, const char *key, const char *val);
void msg_pack_kv_int(msgpack_packer *pk, const char *key, int64_t val);
void msg_pack_kv_uint(msgpack_packer *pk, const char *key, uint64_t val);
void msg_pack_kv_bool(msgpack_packer *pk, const char *key, bool val);

/* msg_frame: look at the start of a receive buffer. Returns 1 and sets
 * *body_len when a whole frame (MSG_HDR + *body_len bytes) is there, 0
 * when more bytes are needed, -1 when the announced length is 0 or over
 * MSG_MAX. */
int msg_frame(const char *buf, size_t len, size_t *body_len);

/* A decoded message: `map` points into `up` and lives until msg_in_free.
 * Strings and bins point into the body passed to msg_decode (msgpack-c
 * does not copy them), so the body must outlive the msg_in; `owned`, if
 * set, is freed by msg_in_free for callers that hand the body over. */
struct msg_in {
	msgpack_unpacked up;
	const msgpack_object *map;
	char *owned;
};

/* msg_decode: check and unpack one body (without its prefix). The body
 * must be exactly one well-formed msgpack map, nested at most 16 deep,
 * whose containers do not announce more elements than there are bytes
 * left (so a hostile 5-byte header cannot make the unpacker allocate
 * gigabytes). Returns 0, or -1 with a reason in err; msg_in_free is
 * safe after either. */
int msg_decode(const char *body, size_t len, struct msg_in *in,
    char *err, size_t errlen);
void msg_in_free(struct msg_in *in);

/* Field access on a map. msg_get returns the value under a string key,
 * or NULL. The typed getters return 0 and set *out, or -1 when the key is
 * missing or of another type. msg_get_str copies and NUL-terminates the
 * string (-1 as well if it does not fit or holds a NUL). */
const msgpack_object *msg_get(const msgpack_object *map, const char *key);
int msg_get_str(const msgpack_object *map, const char *key, char *out,
    size_t outlen);
int msg_get_int(const msgpack_object *map, const char *key, int64_t *out);
int msg_get_bool(const msgpack_object *map, const char *key, bool *out);
/* msg_str_eq: whether an object is the string S. */
bool msg_str_eq(const msgpack_object *o, const char *s);

/* Blocking helpers for a client (gwctl): send one finished frame, and
 * read one whole frame into a malloc'ed body (caller frees). Both return
 * 0, or -1 with errno set (EPROTO: bad length, ECONNRESET: the peer
 * closed early). */
int msg_send(int fd, const char *frame, size_t len);
int msg_recv(int fd, char **body, size_t *len);

/* msg_print_json: print an object as JSON (bin and ext as base-less
 * strings of hex, non-string map keys as their JSON text). */
void msg_print_json(FILE *f, const msgpack_object *o);

#endif
