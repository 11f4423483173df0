/* fsutil.c - mkdir -p; atomic rewrite of per-step CSV logs. */
#define _POSIX_C_SOURCE 200809L
#include "sim/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ew_mkdir_p(const char *dir) {
    char buf[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof buf) {
        errno = n ? ENAMETOOLONG : ENOENT;
        return -1;
    }
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
            buf[i] = c;
        }
    }
    return 0;
}

int ew_csv_keep_steps(const char *path, long last_step, char *err, int errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT) return 0;
        snprintf(err, (size_t)errlen, "%s: cannot read: %s", path, strerror(errno));
        return -1;
    }
    char *kept = NULL, line[4096];
    size_t kn = 0, kcap = 0;
    int first = 1, rc = 0;
    while (fgets(line, sizeof line, f)) {
        size_t l = strlen(line);
        int complete = l > 0 && line[l - 1] == '\n';
        long st = 0;
        int keep = complete && (first || (sscanf(line, "%ld,", &st) == 1 && st <= last_step));
        first = 0;
        if (!keep) continue;
        if (kn + l + 1 > kcap) {
            size_t nc = (kn + l + 1) * 2;
            char *nk = realloc(kept, nc);
            if (!nk) {
                snprintf(err, (size_t)errlen, "%s: out of memory while trimming", path);
                rc = -1;
                break;
            }
            kept = nk;
            kcap = nc;
        }
        memcpy(kept + kn, line, l);
        kn += l;
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, (size_t)errlen, "%s: read error", path);
        rc = -1;
    }
    fclose(f);
    if (rc == 0) {
        char tmp[4200];
        if (snprintf(tmp, sizeof tmp, "%s.trim.tmp", path) >= (int)sizeof tmp) {
            snprintf(err, (size_t)errlen, "%s: path too long", path);
            rc = -1;
        } else {
            int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            ssize_t w = fd < 0 ? -1 : (kn ? write(fd, kept, kn) : 0);
            if (fd < 0 || w != (ssize_t)kn || fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
                snprintf(err, (size_t)errlen, "%s: cannot rewrite: %s", path, strerror(errno));
                if (fd >= 0) unlink(tmp);
                rc = -1;
            }
        }
    }
    free(kept);
    return rc;
}
