/*
 * config-int: private to the configuration loader (config.c,
 * config_route.c, config_value.c). Everything else uses config.h.
 *
 * Every int function returns 0 on success and -1 on failure, having
 * written "FILE:LINE: reason" into ld->err (cfg_bad's format).
 */
#ifndef PORTICO_CONFIG_INT_H
#define PORTICO_CONFIG_INT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libconfig.h>

#include "config.h"

/* Load context: where errors go and the file text (see
 * cfg_check_literals). */
struct ld {
	struct config *cfg;
	const char *file;		/* as given on the command line */
	char *err;
	size_t errlen;
	char *text;			/* the main file's bytes, or NULL */
	size_t textlen;
	char incdir[PATH_MAX];		/* where @include looks, or "" */
};

/* ---- config_value.c ------------------------------------------------ */

bool cfg_addr_equal(const struct cfg_addr *a, const struct cfg_addr *b);
int cfg_parse_cidr(const char *s, struct cfg_cidr *c);

const char *cfg_incdir_of(const struct ld *ld, const char *file);
int cfg_bad(struct ld *ld, const config_setting_t *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int cfg_oom(struct ld *ld);
int cfg_check_literals(struct ld *ld, const config_setting_t *root);
int cfg_dup_str(struct ld *ld, const char *s, char **out);
int cfg_check_keys(struct ld *ld, const config_setting_t *g,
    const char *const *keys, const char *what);
const config_setting_t *cfg_member(const config_setting_t *g,
    const char *name);
const config_setting_t *cfg_lookup_from(const config_setting_t *root,
    const char *path);

int cfg_get_uint(struct ld *ld, const config_setting_t *g, const char *name,
    const char *what, uint64_t min, uint64_t max, uint64_t def,
    uint64_t *out);
int cfg_get_unsigned(struct ld *ld, const config_setting_t *g,
    const char *name, const char *what, unsigned min, unsigned max,
    unsigned def, unsigned *out);
int cfg_get_bool(struct ld *ld, const config_setting_t *g, const char *name,
    const char *what, bool def, bool *out);
int cfg_get_cstr(struct ld *ld, const config_setting_t *g, const char *name,
    const char *what, const config_setting_t **sp, const char **out);
int cfg_get_str(struct ld *ld, const config_setting_t *g, const char *name,
    const char *what, const char *def, char **out);
int cfg_need_str(struct ld *ld, const config_setting_t *g, const char *name,
    const char *what, char **out);
int cfg_get_group(struct ld *ld, const config_setting_t *g, const char *name,
    const char *what, const config_setting_t **out);
int cfg_get_list(struct ld *ld, const config_setting_t *g, const char *name,
    const char *what, const config_setting_t **out);
int cfg_get_strs(struct ld *ld, const config_setting_t *g, const char *name,
    const char *what, const config_setting_t **sp, char ***out, size_t *n);
void cfg_free_strv(char **v);
int cfg_resolve(struct ld *ld, char **path);

bool cfg_is_token(const char *s);
int cfg_check_tokens(struct ld *ld, const config_setting_t *s, char **v,
    const char *what);
int cfg_check_header_lines(struct ld *ld, const config_setting_t *s,
    char **v, const char *what);
int cfg_compile(struct ld *ld, const config_setting_t *s, const char *pat,
    const char *what, pcre2_code **out);
bool cfg_json_valid(const char *s);

/* ---- config.c ------------------------------------------------------ */


/* ---- config_resil.c ------------------------------------------------ */

/* cfg_parse_resilience: a service's health, breaker, retry_budget and
 * max_inflight settings (E is its group, WHAT names it). */
int cfg_parse_resilience(struct ld *ld, const config_setting_t *e,
    struct cfg_service *sv, const char *what);

/* ---- config_route.c ------------------------------------------------ */

int cfg_parse_routes(struct ld *ld, const config_setting_t *root);
int cfg_refuse_unbuilt(struct ld *ld, const config_setting_t *root);
void cfg_free_route(struct cfg_route *r);

#endif
