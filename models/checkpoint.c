/* checkpoint.c - see checkpoint.h. */
#define _POSIX_C_SOURCE 200809L

#include "models/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/json.h"

#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define EW_BIG_ENDIAN 1
#else
#define EW_BIG_ENDIAN 0
#endif

struct ew_checkpoint {
    char *label;
    uint8_t *owned;          /* file bytes when opened from a file */
    const uint8_t *data;     /* start of the data section */
    size_t data_len;
    ew_json_doc doc;         /* owns the decoded names and metadata strings */
    ew_ckpt_tensor *t;
    int nt;
    int *by_name;            /* tensor indices sorted by name */
    const char **mk, **mv;
    int nm;
};

typedef struct {
    const char *name;
    int size;
} dtype_info;

static const dtype_info k_dtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
    {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"I64", 8},     {"U64", 8}, {"F64", 8},
};

static void errf(char *err, size_t errsz, const char *label, const char *fmt, ...) {
    if (!err || !errsz) return;
    int w = snprintf(err, errsz, "%s: ", label ? label : "<buffer>");
    if (w < 0 || (size_t)w >= errsz) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + w, errsz - (size_t)w, fmt, ap);
    va_end(ap);
    for (char *c = err; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' '; /* one line, always */
}

/* Printable, bounded rendering of a (possibly hostile) name for error messages. */
static const char *shown(const char *s, size_t n, char *buf, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 4 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[o++] = (c >= 0x20 && c < 0x7F) ? (char)c : '?';
    }
    if (n > 0 && o + 4 >= cap) {
        buf[o++] = '.';
        buf[o++] = '.';
        buf[o++] = '.';
    }
    buf[o] = '\0';
    return buf;
}

static uint64_t le64(const uint8_t *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | b[i];
    return v;
}

void ew_checkpoint_close(ew_checkpoint *ck) {
    if (!ck) return;
    free(ck->label);
    free(ck->owned);
    ew_json_free(&ck->doc);
    free(ck->t);
    free(ck->by_name);
    free(ck->mk);
    free(ck->mv);
    free(ck);
}

static int cmp_offsets(const void *a, const void *b) {
    const ew_ckpt_tensor *x = *(const ew_ckpt_tensor *const *)a, *y = *(const ew_ckpt_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

typedef struct {
    const ew_ckpt_tensor *t;
    int idx;
} name_ref;

static int cmp_names(const void *a, const void *b) {
    return strcmp(((const name_ref *)a)->t->name, ((const name_ref *)b)->t->name);
}

static int parse_tensor(const ew_json_doc *doc, const ew_json_node *n, ew_ckpt_tensor *t, const char *label,
                        char *err, size_t errsz) {
    char nb[96];
    const char *nm = shown(n->key, n->key_len, nb, sizeof nb);
    if (n->type != EW_JSON_OBJECT) {
        errf(err, errsz, label, "tensor \"%s\": entry is not an object", nm);
        return -1;
    }
    const ew_json_node *dt = NULL, *sh = NULL, *off = NULL;
    for (const ew_json_node *c = ew_json_first(doc, n); c; c = ew_json_next(doc, c)) {
        if (c->key_len == 5 && memcmp(c->key, "dtype", 5) == 0) dt = c;
        else if (c->key_len == 5 && memcmp(c->key, "shape", 5) == 0) sh = c;
        else if (c->key_len == 12 && memcmp(c->key, "data_offsets", 12) == 0) off = c;
        else {
            char kb[64];
            errf(err, errsz, label, "tensor \"%s\": unknown field \"%s\"", nm, shown(c->key, c->key_len, kb, sizeof kb));
            return -1;
        }
    }
    if (!dt || !sh || !off) {
        errf(err, errsz, label, "tensor \"%s\": missing \"%s\"", nm, !dt ? "dtype" : !sh ? "shape" : "data_offsets");
        return -1;
    }
    t->name = n->key;
    if (dt->type != EW_JSON_STRING) {
        errf(err, errsz, label, "tensor \"%s\": dtype is not a string", nm);
        return -1;
    }
    t->dtype = NULL;
    for (size_t i = 0; i < sizeof k_dtypes / sizeof k_dtypes[0]; i++) {
        if (strlen(k_dtypes[i].name) == dt->str_len && memcmp(k_dtypes[i].name, dt->str, dt->str_len) == 0) {
            t->dtype = k_dtypes[i].name;
            t->dtype_size = k_dtypes[i].size;
        }
    }
    if (!t->dtype) {
        char db[32];
        errf(err, errsz, label, "tensor \"%s\": unknown dtype \"%s\"", nm, shown(dt->str, dt->str_len, db, sizeof db));
        return -1;
    }
    if (sh->type != EW_JSON_ARRAY) {
        errf(err, errsz, label, "tensor \"%s\": shape is not an array", nm);
        return -1;
    }
    if (sh->count > EW_CKPT_MAX_DIMS) {
        errf(err, errsz, label, "tensor \"%s\": %d dimensions (at most %d supported)", nm, sh->count, EW_CKPT_MAX_DIMS);
        return -1;
    }
    t->ndim = 0;
    for (const ew_json_node *c = ew_json_first(doc, sh); c; c = ew_json_next(doc, c)) {
        if (c->type != EW_JSON_NUMBER || !c->is_u64) {
            errf(err, errsz, label, "tensor \"%s\": shape entry %d is not a non-negative integer", nm, t->ndim);
            return -1;
        }
        t->shape[t->ndim++] = c->u64;
    }
    uint64_t numel = 1;
    int has_zero = 0;
    for (int d = 0; d < t->ndim; d++) has_zero |= t->shape[d] == 0;
    for (int d = 0; !has_zero && d < t->ndim; d++) {
        if (numel > UINT64_MAX / t->shape[d]) {
            errf(err, errsz, label, "tensor \"%s\": element count overflows", nm);
            return -1;
        }
        numel *= t->shape[d];
    }
    if (has_zero) numel = 0;
    t->numel = numel;
    if (off->type != EW_JSON_ARRAY || off->count != 2) {
        errf(err, errsz, label, "tensor \"%s\": data_offsets is not a [begin, end] pair", nm);
        return -1;
    }
    const ew_json_node *b = ew_json_first(doc, off), *e = ew_json_next(doc, b);
    if (b->type != EW_JSON_NUMBER || !b->is_u64 || e->type != EW_JSON_NUMBER || !e->is_u64) {
        errf(err, errsz, label, "tensor \"%s\": data_offsets are not non-negative integers", nm);
        return -1;
    }
    t->begin = b->u64;
    t->end = e->u64;
    if (t->begin > t->end) {
        errf(err, errsz, label, "tensor \"%s\": data_offsets [%llu, %llu] end before they begin", nm,
             (unsigned long long)t->begin, (unsigned long long)t->end);
        return -1;
    }
    if (numel > UINT64_MAX / (uint64_t)t->dtype_size || numel * (uint64_t)t->dtype_size != t->end - t->begin) {
        errf(err, errsz, label, "tensor \"%s\": shape (%llu elements of %s) does not match data_offsets [%llu, %llu]",
             nm, (unsigned long long)numel, t->dtype, (unsigned long long)t->begin, (unsigned long long)t->end);
        return -1;
    }
    return 0;
}

static int parse_into(ew_checkpoint *ck, const uint8_t *buf, size_t len, const char *label, char *err, size_t errsz) {
    if (len < 8) {
        errf(err, errsz, label, "file too short (%zu bytes) for the 8-byte header length", len);
        return -1;
    }
    uint64_t n = le64(buf);
    if (n > EW_CKPT_MAX_HEADER) {
        errf(err, errsz, label, "header length %llu exceeds the limit of %llu bytes", (unsigned long long)n,
             (unsigned long long)EW_CKPT_MAX_HEADER);
        return -1;
    }
    if (n > len - 8) {
        errf(err, errsz, label, "header length %llu runs past the end of the file (%zu bytes)", (unsigned long long)n, len);
        return -1;
    }
    if (n == 0 || buf[8] != '{') {
        errf(err, errsz, label, "header does not start with '{'");
        return -1;
    }
    char jerr[200];
    ew_json_limits lim = {64, 4 << 20}; /* ~285k tensors; bounds memory on hostile headers */
    if (ew_json_parse((const char *)buf + 8, (size_t)n, &lim, &ck->doc, jerr, sizeof jerr)) {
        errf(err, errsz, label, "header: %s", jerr);
        return -1;
    }
    ck->data = buf + 8 + n;
    ck->data_len = len - 8 - (size_t)n;
    const ew_json_doc *doc = &ck->doc;
    const ew_json_node *root = ew_json_root(doc);
    if (!root || root->type != EW_JSON_OBJECT) {
        errf(err, errsz, label, "header is not a JSON object");
        return -1;
    }
    int cap = root->count > 0 ? root->count : 1;
    ck->t = calloc((size_t)cap, sizeof *ck->t);
    ck->by_name = calloc((size_t)cap, sizeof *ck->by_name);
    if (!ck->t || !ck->by_name) {
        errf(err, errsz, label, "out of memory");
        return -1;
    }
    for (const ew_json_node *m = ew_json_first(doc, root); m; m = ew_json_next(doc, m)) {
        if (memchr(m->key, '\0', m->key_len)) {
            errf(err, errsz, label, "a tensor name contains a NUL character");
            return -1;
        }
        if (strcmp(m->key, "__metadata__") == 0) {
            if (m->type != EW_JSON_OBJECT) {
                errf(err, errsz, label, "__metadata__ is not an object");
                return -1;
            }
            int mc = m->count > 0 ? m->count : 1;
            ck->mk = calloc((size_t)mc, sizeof *ck->mk);
            ck->mv = calloc((size_t)mc, sizeof *ck->mv);
            if (!ck->mk || !ck->mv) {
                errf(err, errsz, label, "out of memory");
                return -1;
            }
            for (const ew_json_node *e = ew_json_first(doc, m); e; e = ew_json_next(doc, e)) {
                char kb[64];
                if (e->type != EW_JSON_STRING) {
                    errf(err, errsz, label, "__metadata__ value of \"%s\" is not a string",
                         shown(e->key, e->key_len, kb, sizeof kb));
                    return -1;
                }
                if (memchr(e->key, '\0', e->key_len) || memchr(e->str, '\0', e->str_len)) {
                    errf(err, errsz, label, "__metadata__ entry \"%s\" contains a NUL character",
                         shown(e->key, e->key_len, kb, sizeof kb));
                    return -1;
                }
                ck->mk[ck->nm] = e->key;
                ck->mv[ck->nm] = e->str;
                ck->nm++;
            }
            continue;
        }
        if (parse_tensor(doc, m, &ck->t[ck->nt], label, err, errsz)) return -1;
        ck->nt++;
    }
    /* Offsets: sorted, they must tile [0, data_len) exactly. */
    if (ck->nt > 0) {
        const ew_ckpt_tensor **order = malloc((size_t)ck->nt * sizeof *order);
        if (!order) {
            errf(err, errsz, label, "out of memory");
            return -1;
        }
        for (int i = 0; i < ck->nt; i++) order[i] = &ck->t[i];
        qsort(order, (size_t)ck->nt, sizeof *order, cmp_offsets);
        uint64_t at = 0;
        for (int i = 0; i < ck->nt; i++) {
            if (order[i]->begin != at) {
                char nb[96];
                errf(err, errsz, label, "tensor \"%s\": data_offsets [%llu, %llu] %s (expected to begin at %llu)",
                     shown(order[i]->name, strlen(order[i]->name), nb, sizeof nb), (unsigned long long)order[i]->begin,
                     (unsigned long long)order[i]->end, order[i]->begin < at ? "overlap another tensor" : "leave a gap",
                     (unsigned long long)at);
                free(order);
                return -1;
            }
            at = order[i]->end;
        }
        free(order);
        if (at != (uint64_t)ck->data_len) {
            errf(err, errsz, label, "tensors cover %llu bytes but the data section has %zu", (unsigned long long)at,
                 ck->data_len);
            return -1;
        }
    } else if (ck->data_len != 0) {
        errf(err, errsz, label, "no tensors but %zu bytes of data", ck->data_len);
        return -1;
    }
    name_ref *refs = malloc((size_t)cap * sizeof *refs);
    if (!refs) {
        errf(err, errsz, label, "out of memory");
        return -1;
    }
    for (int i = 0; i < ck->nt; i++) {
        refs[i].t = &ck->t[i];
        refs[i].idx = i;
    }
    qsort(refs, (size_t)ck->nt, sizeof *refs, cmp_names);
    for (int i = 0; i < ck->nt; i++) ck->by_name[i] = refs[i].idx;
    free(refs);
    return 0;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

int ew_checkpoint_parse_buffer(const uint8_t *buf, size_t len, const char *label, ew_checkpoint **out,
                               char *err, size_t errsz) {
    if (out) *out = NULL;
    if (!label) label = "<buffer>";
    if (err && errsz) err[0] = '\0';
    if (!buf && len) {
        errf(err, errsz, label, "NULL buffer");
        return -1;
    }
    ew_checkpoint *ck = calloc(1, sizeof *ck);
    if (!ck || !(ck->label = dup_str(label))) {
        free(ck);
        errf(err, errsz, label, "out of memory");
        return -1;
    }
    if (parse_into(ck, buf ? buf : (const uint8_t *)"", len, label, err, errsz)) {
        ew_checkpoint_close(ck);
        return -1;
    }
    if (out) *out = ck;
    else ew_checkpoint_close(ck);
    return 0;
}

static void sys_err(char *err, size_t errsz, const char *path, const char *what, int e) {
    char msg[128];
    if (strerror_r(e, msg, sizeof msg) != 0) snprintf(msg, sizeof msg, "errno %d", e);
    errf(err, errsz, path, "%s (%s)", what, msg);
}

int ew_checkpoint_open(const char *path, ew_checkpoint **out, char *err, size_t errsz) {
    if (out) *out = NULL;
    if (!path || !out) {
        errf(err, errsz, path ? path : "<null>", "invalid arguments");
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        sys_err(err, errsz, path, "cannot open", errno);
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        sys_err(err, errsz, path, "cannot stat", errno);
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        errf(err, errsz, path, "not a regular file");
        close(fd);
        return -1;
    }
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX - 1) {
        errf(err, errsz, path, "file too large");
        close(fd);
        return -1;
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        errf(err, errsz, path, "out of memory reading %zu bytes", len);
        close(fd);
        return -1;
    }
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            sys_err(err, errsz, path, "read failed", errno);
            free(buf);
            close(fd);
            return -1;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != len) {
        errf(err, errsz, path, "file shrank while reading (%zu of %zu bytes)", got, len);
        free(buf);
        return -1;
    }
    ew_checkpoint *ck = NULL;
    if (ew_checkpoint_parse_buffer(buf, len, path, &ck, err, errsz)) {
        free(buf);
        return -1;
    }
    ck->owned = buf;
    *out = ck;
    return 0;
}

int ew_checkpoint_count(const ew_checkpoint *ck) { return ck ? ck->nt : 0; }

const ew_ckpt_tensor *ew_checkpoint_tensor(const ew_checkpoint *ck, int i) {
    return (ck && i >= 0 && i < ck->nt) ? &ck->t[i] : NULL;
}

int ew_checkpoint_find(const ew_checkpoint *ck, const char *name) {
    if (!ck || !name) return -1;
    int lo = 0, hi = ck->nt - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(ck->t[ck->by_name[mid]].name, name);
        if (c == 0) return ck->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

int ew_checkpoint_meta_count(const ew_checkpoint *ck) { return ck ? ck->nm : 0; }
const char *ew_checkpoint_meta_key(const ew_checkpoint *ck, int i) {
    return (ck && i >= 0 && i < ck->nm) ? ck->mk[i] : NULL;
}
const char *ew_checkpoint_meta_value(const ew_checkpoint *ck, int i) {
    return (ck && i >= 0 && i < ck->nm) ? ck->mv[i] : NULL;
}
const char *ew_checkpoint_meta(const ew_checkpoint *ck, const char *key) {
    if (!ck || !key) return NULL;
    for (int i = 0; i < ck->nm; i++)
        if (strcmp(ck->mk[i], key) == 0) return ck->mv[i];
    return NULL;
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else { /* subnormal: normalise */
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while (!(man & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3FF) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static uint64_t load_le(const uint8_t *p, int size) {
    uint64_t v = 0;
    for (int i = size - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

int ew_checkpoint_read_f32(const ew_checkpoint *ck, int i, float *dst, size_t n, char *err, size_t errsz) {
    const ew_ckpt_tensor *t = ew_checkpoint_tensor(ck, i);
    if (!t) {
        errf(err, errsz, ck ? ck->label : "<null>", "no tensor %d", i);
        return -1;
    }
    if (n != t->numel) {
        errf(err, errsz, ck->label, "tensor \"%s\" has %llu elements, %zu requested", t->name,
             (unsigned long long)t->numel, n);
        return -1;
    }
    const uint8_t *src = ck->data + t->begin; /* begin/end validated against data_len */
    if (strcmp(t->dtype, "F32") == 0) {
        if (!EW_BIG_ENDIAN) {
            if (n) memcpy(dst, src, n * sizeof(float));
        } else {
            for (size_t k = 0; k < n; k++) {
                uint32_t b = (uint32_t)load_le(src + 4 * k, 4);
                memcpy(&dst[k], &b, 4);
            }
        }
    } else if (strcmp(t->dtype, "F16") == 0) {
        for (size_t k = 0; k < n; k++) dst[k] = half_to_float((uint16_t)load_le(src + 2 * k, 2));
    } else if (strcmp(t->dtype, "BF16") == 0) {
        for (size_t k = 0; k < n; k++) {
            uint32_t b = (uint32_t)load_le(src + 2 * k, 2) << 16;
            memcpy(&dst[k], &b, 4);
        }
    } else if (strcmp(t->dtype, "F64") == 0) {
        for (size_t k = 0; k < n; k++) {
            uint64_t b = load_le(src + 8 * k, 8);
            double d;
            memcpy(&d, &b, 8);
            dst[k] = (float)d;
        }
    } else {
        errf(err, errsz, ck->label, "tensor \"%s\": dtype %s cannot be read as F32", t->name, t->dtype);
        return -1;
    }
    return 0;
}

/* Bounded, truncating appender for name lists in error messages. */
typedef struct {
    char buf[512];
    size_t len;
    int count;
} namelist;

static void namelist_add(namelist *l, const char *name) {
    char nb[80];
    shown(name, strlen(name), nb, sizeof nb);
    if (l->count < 8) {
        int w = snprintf(l->buf + l->len, sizeof l->buf - l->len, "%s\"%s\"", l->count ? ", " : "", nb);
        if (w > 0) l->len = l->len + (size_t)w < sizeof l->buf ? l->len + (size_t)w : sizeof l->buf - 1;
    } else if (l->count == 8) {
        int w = snprintf(l->buf + l->len, sizeof l->buf - l->len, ", ...");
        if (w > 0) l->len = l->len + (size_t)w < sizeof l->buf ? l->len + (size_t)w : sizeof l->buf - 1;
    }
    l->count++;
}

int ew_checkpoint_load_params(const ew_checkpoint *ck, ew_param *params, int nparams, unsigned flags,
                              const char *ignore_prefix, char *err, size_t errsz) {
    if (!ck || nparams < 0 || (nparams > 0 && !params)) {
        errf(err, errsz, ck ? ck->label : "<null>", "invalid arguments");
        return -1;
    }
    unsigned char *used = calloc(ck->nt > 0 ? (size_t)ck->nt : 1, 1);
    int *idx = malloc((nparams > 0 ? (size_t)nparams : 1) * sizeof *idx);
    namelist missing = {{0}, 0, 0}, unexpected = {{0}, 0, 0};
    int rc = -1;
    if (!used || !idx) {
        errf(err, errsz, ck->label, "out of memory");
        goto out;
    }
    for (int i = 0; i < nparams; i++) {
        ew_param *p = &params[i];
        if (!memchr(p->name, '\0', sizeof p->name)) {
            errf(err, errsz, ck->label, "param %d has an unterminated name", i);
            goto out;
        }
        idx[i] = ew_checkpoint_find(ck, p->name);
        if (idx[i] < 0) {
            namelist_add(&missing, p->name);
            continue;
        }
        const ew_ckpt_tensor *t = &ck->t[idx[i]];
        used[idx[i]] = 1;
        int same = t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = p->shape[d] >= 0 && t->shape[d] == (uint64_t)p->shape[d];
        if (!same) {
            char fs[160], ps[160];
            size_t a = 0, b = 0;
            a += (size_t)snprintf(fs, sizeof fs, "[");
            for (int d = 0; d < t->ndim; d++)
                a += (size_t)snprintf(fs + a, sizeof fs - a, "%s%llu", d ? ", " : "", (unsigned long long)t->shape[d]);
            snprintf(fs + a, sizeof fs - a, "]");
            b += (size_t)snprintf(ps, sizeof ps, "[");
            for (int d = 0; d < p->ndim && d < EW_PARAM_MAX_DIMS; d++)
                b += (size_t)snprintf(ps + b, sizeof ps - b, "%s%d", d ? ", " : "", p->shape[d]);
            snprintf(ps + b, sizeof ps - b, "]");
            char nb[96];
            errf(err, errsz, ck->label, "tensor \"%s\" has shape %s, the model expects %s",
                 shown(p->name, strlen(p->name), nb, sizeof nb), fs, ps);
            goto out;
        }
        if (!p->data && t->numel) {
            errf(err, errsz, ck->label, "param \"%s\" has no data storage", p->name);
            goto out;
        }
        if (strcmp(t->dtype, "F32") && strcmp(t->dtype, "F16") && strcmp(t->dtype, "BF16") && strcmp(t->dtype, "F64")) {
            errf(err, errsz, ck->label, "tensor \"%s\": dtype %s cannot be read as F32", t->name, t->dtype);
            goto out;
        }
    }
    size_t plen = ignore_prefix ? strlen(ignore_prefix) : 0;
    for (int i = 0; i < ck->nt; i++) {
        if (used[i]) continue;
        if (plen && strncmp(ck->t[i].name, ignore_prefix, plen) == 0) continue;
        namelist_add(&unexpected, ck->t[i].name);
    }
    int bad_missing = missing.count && !(flags & EW_CKPT_ALLOW_MISSING);
    int bad_unexpected = unexpected.count && !(flags & EW_CKPT_ALLOW_UNEXPECTED);
    if (bad_missing || bad_unexpected) {
        char a[600] = "", b[600] = "";
        if (bad_missing) snprintf(a, sizeof a, "%d missing (%s)", missing.count, missing.buf);
        if (bad_unexpected) snprintf(b, sizeof b, "%d unexpected (%s)", unexpected.count, unexpected.buf);
        errf(err, errsz, ck->label, "%s%s%s", a, (bad_missing && bad_unexpected) ? ", " : "", b);
        goto out;
    }
    for (int i = 0; i < nparams; i++) {
        if (idx[i] < 0) continue;
        if (ew_checkpoint_read_f32(ck, idx[i], params[i].data, ew_param_numel(&params[i]), err, errsz)) goto out;
    }
    rc = 0;
out:
    free(used);
    free(idx);
    return rc;
}

/* ---- writing ---------------------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_reserve(sbuf *b, size_t extra) {
    if (b->oom) return;
    if (b->len + extra + 1 <= b->cap) return;
    size_t nc = b->cap ? b->cap : 1024;
    while (nc < b->len + extra + 1) nc *= 2;
    char *np = realloc(b->p, nc);
    if (!np) {
        b->oom = 1;
        return;
    }
    b->p = np;
    b->cap = nc;
}

static void sb_put(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char tmp[128];
    int w = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (w < 0 || (size_t)w >= sizeof tmp) {
        b->oom = 1;
        return;
    }
    sb_reserve(b, (size_t)w);
    if (b->oom) return;
    memcpy(b->p + b->len, tmp, (size_t)w + 1);
    b->len += (size_t)w;
}

static void sb_str(sbuf *b, const char *s) {
    size_t n = strlen(s), need = ew_json_escape(s, n, NULL, 0);
    sb_reserve(b, need);
    if (b->oom) return;
    ew_json_escape(s, n, b->p + b->len, need + 1);
    b->len += need;
}

typedef struct {
    const ew_param *p;
} wref;

static int cmp_wref(const void *a, const void *b) {
    return strcmp(((const wref *)a)->p->name, ((const wref *)b)->p->name);
}

static int check_param(const ew_param *p, const char *path, char *err, size_t errsz) {
    if (!memchr(p->name, '\0', sizeof p->name)) {
        errf(err, errsz, path, "a tensor name is not NUL-terminated");
        return -1;
    }
    char nb[96];
    const char *nm = shown(p->name, strlen(p->name), nb, sizeof nb);
    if (!ew_json_utf8_valid(p->name, strlen(p->name))) {
        errf(err, errsz, path, "tensor name \"%s\" is not valid UTF-8", nm);
        return -1;
    }
    if (strcmp(p->name, "__metadata__") == 0) {
        errf(err, errsz, path, "\"__metadata__\" cannot be a tensor name");
        return -1;
    }
    if (p->ndim < 0 || p->ndim > EW_PARAM_MAX_DIMS) {
        errf(err, errsz, path, "tensor \"%s\" has ndim %d", nm, p->ndim);
        return -1;
    }
    for (int d = 0; d < p->ndim; d++) {
        if (p->shape[d] < 0) {
            errf(err, errsz, path, "tensor \"%s\" has a negative dimension", nm);
            return -1;
        }
    }
    if (!p->data && ew_param_numel(p)) {
        errf(err, errsz, path, "tensor \"%s\" has no data", nm);
        return -1;
    }
    return 0;
}

static int write_all(FILE *f, const void *p, size_t n) { return n == 0 || fwrite(p, 1, n, f) == n ? 0 : -1; }

static int write_floats(FILE *f, const float *x, size_t n) {
    if (!EW_BIG_ENDIAN) return write_all(f, x, n * sizeof(float));
    uint8_t tmp[4096];
    size_t k = 0;
    while (k < n) {
        size_t m = 0;
        for (; k < n && m + 4 <= sizeof tmp; k++, m += 4) {
            uint32_t b;
            memcpy(&b, &x[k], 4);
            for (int j = 0; j < 4; j++) tmp[m + (size_t)j] = (uint8_t)(b >> (8 * j));
        }
        if (write_all(f, tmp, m)) return -1;
    }
    return 0;
}

/* Fault injection for the crash-safety tests (checkpoint.h): EGOWORLD_FAULT_CKPT_WRITE="N:fail"
 * or "N:kill" acts on the N-th write of this process, half-way through its data. Returns 0
 * (no fault), 1 (fail this write) or 2 (kill the process). */
static int fault_for_this_write(void) {
    const char *f = getenv("EGOWORLD_FAULT_CKPT_WRITE");
    if (!f || !*f) return 0;
    static atomic_int writes; /* the only state: a per-process write counter for the hook */
    int n = atomic_fetch_add(&writes, 1) + 1;
    char *end;
    long want = strtol(f, &end, 10);
    if (want != n || *end != ':') return 0;
    if (!strcmp(end + 1, "fail")) return 1;
    if (!strcmp(end + 1, "kill")) return 2;
    return 0;
}

/* Removes "<base>.tmp.<pid>" files in dir left by writers that were killed (their pid no
 * longer exists), so repeated crashes do not pile up partial files. Best effort. */
static void remove_stale_temps(const char *dir, const char *base) {
    DIR *d = opendir(dir);
    if (!d) return;
    size_t bl = strlen(base);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        if (strncmp(n, base, bl) != 0 || strncmp(n + bl, ".tmp.", 5) != 0) continue;
        char *end;
        long pid = strtol(n + bl + 5, &end, 10);
        if (*end || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive (or not ours to judge) */
        unlinkat(dirfd(d), n, 0);
    }
    closedir(d);
}

int ew_checkpoint_write(const char *path, const ew_param *params, int nparams, const ew_param *extra,
                        int nextra, const ew_kv *meta, int nmeta, char *err, size_t errsz) {
    if (!path || nparams < 0 || nextra < 0 || nmeta < 0 || (nparams && !params) || (nextra && !extra) ||
        (nmeta && !meta)) {
        errf(err, errsz, path ? path : "<null>", "invalid arguments");
        return -1;
    }
    int total = nparams + nextra;
    int rc = -1;
    sbuf hb = {0};
    char *tmp = NULL, *dir = NULL;
    FILE *f = NULL;
    wref *refs = malloc((total ? (size_t)total : 1) * sizeof *refs);
    if (!refs) {
        errf(err, errsz, path, "out of memory");
        return -1;
    }
    for (int i = 0; i < total; i++) {
        refs[i].p = i < nparams ? &params[i] : &extra[i - nparams];
        if (check_param(refs[i].p, path, err, errsz)) goto out;
    }
    qsort(refs, (size_t)total, sizeof *refs, cmp_wref);
    for (int i = 1; i < total; i++) {
        if (strcmp(refs[i - 1].p->name, refs[i].p->name) == 0) {
            char nb[96];
            errf(err, errsz, path, "duplicate tensor name \"%s\"",
                 shown(refs[i].p->name, strlen(refs[i].p->name), nb, sizeof nb));
            goto out;
        }
    }
    for (int i = 0; i < nmeta; i++) {
        if (!meta[i].key || !meta[i].value || !ew_json_utf8_valid(meta[i].key, strlen(meta[i].key)) ||
            !ew_json_utf8_valid(meta[i].value, strlen(meta[i].value))) {
            errf(err, errsz, path, "metadata entry %d is NULL or not valid UTF-8", i);
            goto out;
        }
        for (int j = 0; j < i; j++) {
            if (strcmp(meta[i].key, meta[j].key) == 0) {
                char nb[96];
                errf(err, errsz, path, "duplicate metadata key \"%s\"", shown(meta[i].key, strlen(meta[i].key), nb, sizeof nb));
                goto out;
            }
        }
    }
    /* Header. */
    sb_put(&hb, "{");
    int first = 1;
    if (nmeta > 0) {
        sb_put(&hb, "\"__metadata__\":{");
        for (int i = 0; i < nmeta; i++) {
            if (i) sb_put(&hb, ",");
            sb_str(&hb, meta[i].key);
            sb_put(&hb, ":");
            sb_str(&hb, meta[i].value);
        }
        sb_put(&hb, "}");
        first = 0;
    }
    uint64_t off = 0;
    for (int i = 0; i < total; i++) {
        const ew_param *p = i < nparams ? &params[i] : &extra[i - nparams];
        uint64_t nbytes = (uint64_t)ew_param_numel(p) * 4u;
        if (!first) sb_put(&hb, ",");
        first = 0;
        sb_str(&hb, p->name);
        sb_put(&hb, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < p->ndim; d++) sb_put(&hb, "%s%d", d ? "," : "", p->shape[d]);
        sb_put(&hb, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off, (unsigned long long)(off + nbytes));
        off += nbytes;
    }
    sb_put(&hb, "}");
    while (!hb.oom && hb.len % 8) sb_put(&hb, " ");
    if (hb.oom) {
        errf(err, errsz, path, "out of memory building the header");
        goto out;
    }
    if ((uint64_t)hb.len > EW_CKPT_MAX_HEADER) {
        errf(err, errsz, path, "header of %zu bytes exceeds the limit", hb.len);
        goto out;
    }
    /* Temporary file next to the target, then rename. */
    size_t plen = strlen(path);
    tmp = malloc(plen + 32);
    dir = malloc(plen + 2);
    if (!tmp || !dir) {
        errf(err, errsz, path, "out of memory");
        goto out;
    }
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    const char *slash = strrchr(path, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == path) strcpy(dir, "/");
    else {
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
    }
    remove_stale_temps(dir, slash ? slash + 1 : path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        sys_err(err, errsz, path, "cannot create the temporary file", errno);
        goto out;
    }
    f = fdopen(fd, "wb");
    if (!f) {
        sys_err(err, errsz, path, "cannot open the temporary file", errno);
        close(fd);
        unlink(tmp);
        goto out;
    }
    uint8_t lenb[8];
    for (int j = 0; j < 8; j++) lenb[j] = (uint8_t)((uint64_t)hb.len >> (8 * j));
    int fault = fault_for_this_write();
    int bad = write_all(f, lenb, 8) || write_all(f, hb.p, hb.len);
    int e = 0;
    for (int i = 0; !bad && i < total; i++) {
        const ew_param *p = i < nparams ? &params[i] : &extra[i - nparams];
        bad = write_floats(f, p->data, ew_param_numel(p));
        if (fault && !bad && i == total / 2) {
            fflush(f);
            if (fault == 2) raise(SIGKILL);
            bad = 1; /* as if the disk were full */
            errno = ENOSPC;
        }
    }
    if (!bad && fflush(f) != 0) bad = 1;
    if (bad) e = errno;
    if (!bad && fsync(fileno(f)) != 0) {
        bad = 1;
        e = errno;
    }
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    f = NULL;
    if (bad) {
        sys_err(err, errsz, path, "write failed", e ? e : EIO);
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        sys_err(err, errsz, path, "cannot rename the temporary file over it", errno);
        unlink(tmp);
        goto out;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        sys_err(err, errsz, path, "written, but cannot open its directory to sync it", errno);
        goto out;
    }
    if (fsync(dfd) != 0 && errno != EINVAL) {
        sys_err(err, errsz, path, "written, but syncing its directory failed", errno);
        close(dfd);
        goto out;
    }
    close(dfd);
    rc = 0;
out:
    free(refs);
    free(hb.p);
    free(tmp);
    free(dir);
    return rc;
}
