/*
 * control: the master's side of the gwctl socket. A unix stream socket
 * (mode 0600) served from the master's epoll loop; each connection sends
 * framed msgpack maps ({"cmd": NAME, ...}, see msg.h) and gets one reply
 * map per request: {"ok": true, ...} or {"ok": false, "error": TEXT}.
 * Buffers are per connection and bounded; a malformed or oversized
 * message gets an error reply and the connection closes.
 */
#ifndef PORTICO_CONTROL_H
#define PORTICO_CONTROL_H

#include <stddef.h>
#include <stdint.h>

struct master;
struct control;

/* control_open: bind PATH (creating its directory; an existing socket is
 * removed unless a live master answers on it, which is an error) and
 * register it in m->epfd. Returns the server, or NULL with a reason in
 * err. */
struct control *control_open(struct master *m, const char *path, char *err,
    size_t errlen);
/* control_adopt: take an already listening socket bound at PATH (a
 * binary upgrade hands it over): nothing is unlinked or bound, and
 * nothing is accepted until control_start, so that only one master
 * answers at a time. */
struct control *control_adopt(struct master *m, int fd, const char *path,
    char *err, size_t errlen);
/* control_start: begin accepting on an adopted socket (the old master has
 * stopped). 0, or -1 with errno set. */
int control_start(struct control *c);
/* control_listen_fd: the listening socket, to hand to a new binary. */
int control_listen_fd(const struct control *c);
/* control_detach: stop accepting and close our copy of the listening
 * socket without removing the file (a new master serves it now);
 * connections already open keep being served. */
void control_detach(struct control *c);
/* control_complete: the deferred reply to the reload or upgrade request
 * waiting for one, if its client is still there; o is taken over (and
 * freed when nobody waits). */
struct msg_out;
void control_complete(struct control *c, struct msg_out *o);
/* control_tick: close connections silent too long (about a second); call
 * every loop turn, and wake up by control_deadline. */
void control_tick(struct control *c, uint64_t now_ms);
/* control_deadline: when control_tick next has a connection to close
 * (monotonic ms), or 0 for none. */
uint64_t control_deadline(const struct control *c);
/* control_close_fds: in a freshly forked worker, close every descriptor
 * the server holds (memory is left to the process's exit). */
void control_close_fds(struct control *c);
/* control_close: close everything, remove the socket file, free. */
void control_close(struct control *c);

#endif
