/* err.h - one-line error messages into a caller-owned buffer.
 *
 * ew_errf(err, errsz, fmt, ...) formats the message into err (when err != NULL and errsz > 0,
 * truncated to errsz - 1 characters) and returns -1, so that a failing function can end with
 * `return ew_errf(err, errsz, "...: %s", why);`. Reentrant; no allocation.
 */
#ifndef EW_SIM_ERR_H
#define EW_SIM_ERR_H

#include <stddef.h>

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
int ew_errf(char *err, size_t errsz, const char *fmt, ...);

#endif
