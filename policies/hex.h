/*
 * hex: the value of one hexadecimal digit, for %XX decoding (paths,
 * queries, template values) and the hex digests of the API keys file.
 */
#ifndef PORTICO_HEX_H
#define PORTICO_HEX_H

/* 0-15 for 0-9, a-f, A-F; -1 for any other byte. */
static inline int
hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

#endif
