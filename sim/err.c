/* err.c - one-line error messages (contract in err.h). */
#include "sim/err.h"

#include <stdarg.h>
#include <stdio.h>

int ew_errf(char *err, size_t errsz, const char *fmt, ...) {
    if (err && errsz) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errsz, fmt, ap);
        va_end(ap);
    }
    return -1;
}
