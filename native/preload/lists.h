/* SPDX-License-Identifier: MIT
 * lists.h - the grammar of the environment's comma lists of names, written
 * once for libesca (config.c: ESCA_SYSCALLS, ESCA_LEVERS) and pyesca._core
 * (parse_levers(), which `esca run --levers` asks), so that the two never
 * read one list two ways (a leading "-name" once meant "no lever" to both,
 * each in its own copy).
 *
 * Entry points: esca__list_next(), esca__name_is(), esca__parse_levers().
 * No allocation; static, so each artefact has its own copy. */
#ifndef ESCA_LISTS_H
#define ESCA_LISTS_H

#include <stddef.h>
#include <string.h>

/* The comma list *s, one name at a time, blanks around it dropped (its
 * length in *n, 0 for an empty one); NULL at the end. */
static inline const char *esca__list_next(const char **s, size_t *n)
{
	const char *tok = *s, *e;
	size_t len;

	if (!*tok)
		return NULL;
	e = strchr(tok, ',');
	len = e ? (size_t)(e - tok) : strlen(tok);
	*s = tok + len + (e ? 1 : 0);
	while (len && (*tok == ' ' || *tok == '\t')) {
		tok++;
		len--;
	}
	while (len && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
		len--;
	*n = len;
	return tok;
}

static inline int esca__name_is(const char *tok, size_t n, const char *name)
{
	return strlen(name) == n && !strncmp(tok, name, n);
}

/* A list of lever names: "all" (the default set dflt), "none", or names,
 * where "-name" takes one away ("all,-compose") and "+name" adds one; a
 * list whose first name starts with "+" or "-" starts from the default set
 * ("+prefetch", "-reads"), any other from none.  names[i] is bit i.  Each
 * name that is none of these goes to unknown(ctx, name, length), and
 * changes nothing.  An empty list (or NULL): the default set. */
static inline unsigned esca__parse_levers(const char *s,
					  const char *const *names,
					  unsigned count, unsigned dflt,
					  void (*unknown)(void *ctx,
							  const char *tok,
							  size_t n),
					  void *ctx)
{
	unsigned all = count >= 32 ? ~0u : (1u << count) - 1, m = 0;
	const char *tok;
	size_t n;
	int started = 0;

	if (!s)
		return dflt;
	while ((tok = esca__list_next(&s, &n))) {
		const char *name = tok;
		size_t len = n;
		int neg = n && *tok == '-';
		unsigned bit = 0;

		if (!started && n) {
			started = 1;
			if (*tok == '+' || *tok == '-')
				m = dflt;
		}
		if (n && (neg || *tok == '+')) {
			tok++;
			n--;
		}
		if (esca__name_is(tok, n, "all")) {
			bit = dflt;
		} else if (esca__name_is(tok, n, "none")) {
			bit = all;
			neg = 1;
		}
		for (unsigned i = 0; !bit && i < count; i++)
			if (esca__name_is(tok, n, names[i]))
				bit = 1u << i;
		if (!bit && len && unknown)
			unknown(ctx, name, len);	/* as written, sign too */
		m = neg ? m & ~bit : m | bit;
	}
	return started ? m : dflt;
}

#endif
