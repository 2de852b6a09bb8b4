/*
 * gwctl key: API-key tooling that needs no master. `key hash [KEY]` prints
 * the keys-file entry for KEY (read from standard input when absent, so it
 * stays out of shell history); `key check FILE` loads a keys file the way
 * the gateway does.
 */
#ifndef PORTICO_GWCTL_KEY_H
#define PORTICO_GWCTL_KEY_H

/* gwctl_key: run `key ARGV...` (ARGV[0] is the subcommand); the exit code. */
int gwctl_key(int argc, char **argv);

#endif
