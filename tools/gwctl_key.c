/*
 * gwctl key: print the keys-file entry for an API key, check a keys file.
 * The key itself is never printed, and is wiped from memory after use.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "policies/apikey.h"
#include "tools/gwctl_key.h"

#define MAX_SCOPES	64

struct hash_args {
	const char *key;		/* NULL: standard input */
	const char *consumer;
	const char *tier;
	const char *scope[MAX_SCOPES];
	int nscope;
};

static int
fail(const char *fmt, const char *arg)
{
	fputs("gwctl: key hash: ", stderr);
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	return 1;
}

static int
parse(int argc, char **argv, struct hash_args *h)
{
	const char *why;
	size_t joined = 0;
	int i, j;

	for (i = 0; i < argc; i++) {
		const char *a = argv[i];
		bool opt = strcmp(a, "--consumer") == 0 ||
		    strcmp(a, "--tier") == 0 || strcmp(a, "--scope") == 0;

		if (opt && i + 1 >= argc)
			return fail("%s needs a value", a);
		if (strcmp(a, "--consumer") == 0) {
			h->consumer = argv[++i];
			if ((why = apikey_bad_name(h->consumer)) != NULL)
				return fail("--consumer %s", why);
		} else if (strcmp(a, "--tier") == 0) {
			h->tier = argv[++i];
			if ((why = apikey_bad_name(h->tier)) != NULL)
				return fail("--tier %s", why);
		} else if (strcmp(a, "--scope") == 0) {
			a = argv[++i];
			if ((why = apikey_bad_scope(a)) != NULL)
				return fail("--scope %s", why);
			for (j = 0; j < h->nscope; j++)
				if (strcmp(h->scope[j], a) == 0)
					return fail("--scope '%s' given twice",
					    a);
			joined += (h->nscope > 0) + strlen(a);
			if (joined > APIKEY_SCOPES_MAX)
				return fail("%s", "the scopes are longer "
				    "than 4096 bytes joined");
			if (h->nscope == MAX_SCOPES)
				return fail("%s", "too many --scope options");
			h->scope[h->nscope++] = a;
		} else if (a[0] == '-') {
			return fail("unknown option '%s' (a key that starts "
			    "with '-' goes on standard input)", a);
		} else if (h->key == NULL) {
			h->key = a;
		} else {
			return fail("%s", "takes one KEY");
		}
	}
	if (h->consumer == NULL)
		h->consumer = "CHANGE-ME";
	return 0;
}

/* read_key: one line of standard input into BUF, without its newline;
 * the length, or -1 (reported). With a terminal, the key is not echoed. */
static long
read_key(char *buf, size_t cap)
{
	struct termios old, quiet;
	bool tty = isatty(STDIN_FILENO) &&
	    tcgetattr(STDIN_FILENO, &old) == 0;
	size_t len;

	if (tty) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
		fputs("API key: ", stderr);
	}
	if (fgets(buf, (int)cap, stdin) == NULL)
		buf[0] = '\0';
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	len = strlen(buf);
	if (len == 0) {
		fail("%s", "no key on standard input");
		return -1;
	}
	if (buf[len - 1] != '\n' && len == cap - 1 && !feof(stdin)) {
		fail("%s", "the key is longer than 4096 bytes");
		return -1;
	}
	if (buf[len - 1] == '\n')
		buf[--len] = '\0';
	if (len > 0 && buf[len - 1] == '\r')
		buf[--len] = '\0';
	/* More after the first line: perhaps a file of several keys, of
	 * which only one would be hashed. */
	if (!tty && getchar() != EOF) {
		fail("%s", "standard input holds more than one line (one "
		    "key at a time)");
		return -1;
	}
	return (long)len;
}

static void
put_str(const char *s)
{
	putchar('"');
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			putchar('\\');
		putchar(*s);
	}
	putchar('"');
}

static int
key_hash(int argc, char **argv)
{
	struct hash_args h = { 0 };
	char buf[APIKEY_MAX_LEN + 3];	/* key, CR, LF */
	char hex[APIKEY_HEX_LEN + 1];
	const char *key;
	size_t len;
	long n;
	int i, rc = 1;

	if (parse(argc, argv, &h) != 0)
		return 1;
	if (h.key != NULL) {
		key = h.key;
		len = strlen(key);
	} else {
		if ((n = read_key(buf, sizeof(buf))) < 0)
			goto done;
		key = buf;
		len = (size_t)n;
	}
	if (len == 0) {
		fail("%s", "the key is empty");
		goto done;
	}
	if (len > APIKEY_MAX_LEN) {
		fail("%s", "the key is longer than 4096 bytes");
		goto done;
	}
	if (!apikey_key_ok(key, len)) {
		fail("%s", "the key has bytes outside visible ASCII "
		    "(0x21-0x7e): the gateway would refuse it");
		goto done;
	}
	if (apikey_hex(key, len, hex) < 0) {
		fail("%s", "cannot compute SHA-256 (OpenSSL)");
		goto done;
	}
	printf("{ sha256 = \"%s\"; consumer = ", hex);
	put_str(h.consumer);
	printf(";");
	if (h.tier != NULL) {
		printf(" tier = ");
		put_str(h.tier);
		printf(";");
	}
	if (h.nscope > 0) {
		printf(" scopes = [");
		for (i = 0; i < h.nscope; i++)
			printf("%s\"%s\"", i > 0 ? ", " : "", h.scope[i]);
		printf("];");
	}
	printf(" }\n");
	rc = fflush(stdout) == 0 ? 0 : 1;
done:
	OPENSSL_cleanse(buf, sizeof(buf));
	return rc;
}

static int
key_check(int argc, char **argv)
{
	struct apikeys *k;
	char why[1024];
	size_t n;

	if (argc != 1) {
		fprintf(stderr, "gwctl: key check takes one FILE\n");
		return 1;
	}
	if (apikey_load(argv[0], &k, why, sizeof(why)) < 0) {
		fprintf(stderr, "%s\n", why);
		return 1;
	}
	n = apikey_count(k);
	apikey_free(k);
	printf("%s: ok (%zu key%s)\n", argv[0], n, n == 1 ? "" : "s");
	return 0;
}

int
gwctl_key(int argc, char **argv)
{
	if (argc >= 1 && strcmp(argv[0], "hash") == 0)
		return key_hash(argc - 1, argv + 1);
	if (argc >= 1 && strcmp(argv[0], "check") == 0)
		return key_check(argc - 1, argv + 1);
	fprintf(stderr, "gwctl: key needs 'hash' or 'check' (see gwctl help "
	    "key)\n");
	return 1;
}
