/*
 * gwctl token: sign a JWT for testing a JWT route (tools/gwctl_token.c).
 */
#ifndef PORTICO_GWCTL_TOKEN_H
#define PORTICO_GWCTL_TOKEN_H

#include <stdio.h>

#define GWCTL_TOKEN_USAGE "token --key FILE [--alg ALG] [--kid K] --sub NAME " \
	"[--tier T] [--scope S]... [--ttl 1h] [--iss I] [--aud A]"

/* gwctl_token: the command's arguments (after "token"); prints the token
 * and a newline on OUT, or a one-line reason on ERR. Returns the exit
 * status (0 or 1). */
int gwctl_token(int argc, char **argv, FILE *out, FILE *err);

#endif
