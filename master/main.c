/*
 * portico: the gateway's entry point. Parses the flags, loads and checks
 * the configuration, and hands it to the master.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "master.h"
#include "../worker/tlsmem.h"

#define PORTICO_VERSION	"0.1.0"
#define DEFAULT_CONF	"etc/portico.conf"

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: portico [-c FILE] [-p PREFIX] [-t] [-h] [-v]\n"
	    "  -c FILE    configuration (default: PREFIX/" DEFAULT_CONF
	    " with -p,\n"
	    "             else " DEFAULT_CONF " in the current directory)\n"
	    "  -p PREFIX  directory that relative paths in the configuration\n"
	    "             resolve against (default: the current directory)\n"
	    "  -t         check the configuration and exit (0 = valid)\n"
	    "  -h         this help\n"
	    "  -v         print the version and exit\n");
}

int
main(int argc, char **argv)
{
	const char *file = NULL, *prefix = NULL;
	char path[PATH_MAX], err[1024];
	struct config *cfg = NULL;
	bool test = false;
	int c, rc;

	/* before anything allocates through OpenSSL */
	(void)tlsmem_init();
	while ((c = getopt(argc, argv, "c:p:thv")) != -1) {
		switch (c) {
		case 'c':
			file = optarg;
			break;
		case 'p':
			prefix = optarg;
			break;
		case 't':
			test = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'v':
			printf("portico " PORTICO_VERSION "\n");
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "portico: unexpected argument '%s'\n",
		    argv[optind]);
		usage(stderr);
		return 1;
	}
	if (file == NULL) {
		/* Like nginx: with a prefix, the default file lives under it. */
		if (prefix != NULL) {
			if (snprintf(path, sizeof(path), "%s/%s", prefix,
			    DEFAULT_CONF) >= (int)sizeof(path)) {
				fprintf(stderr, "portico: prefix too long\n");
				return 1;
			}
			file = path;
		} else {
			file = DEFAULT_CONF;
		}
	}
	if (config_load(file, prefix, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (test) {
		printf("configuration %s is ok\n", file);
		config_free(cfg);
		return 0;
	}
	rc = master_run(cfg);	/* frees cfg */
	return rc;
}
