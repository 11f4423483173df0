/* json.c - see json.h. Iterative parser: an explicit stack of open containers. */
#include "models/json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EW_JSON_DEFAULT_DEPTH 64
#define EW_JSON_DEFAULT_NODES (16 * 1024 * 1024)
#define EW_JSON_MAX_NUMBER 320

typedef struct {
    const char *s;
    size_t len, pos;
    ew_json_doc *doc;
    int cap;
    size_t str_used;
    int max_nodes;
    char *err;
    size_t errsz;
} parser;

static int fail(parser *p, size_t at, const char *fmt, ...) {
    if (p->err && p->errsz) {
        char what[160];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
        snprintf(p->err, p->errsz, "JSON %s at byte %zu", what, at);
    }
    return -1;
}

/* Length of the UTF-8 sequence starting at s[0] (n bytes available), 0 when invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0; /* overlong */
        if (c == 0xED && s[1] >= 0xA0) return 0; /* surrogate */
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0; /* overlong */
        if (c == 0xF4 && s[1] >= 0x90) return 0; /* > U+10FFFF */
        return 4;
    }
    return 0;
}

int ew_json_utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_seq(u + i, n - i);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

static void skip_ws(parser *p) {
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static int new_node(parser *p, ew_json_type t, int parent) {
    ew_json_doc *d = p->doc;
    if (d->count >= p->max_nodes) return fail(p, p->pos, "has more than %d values", p->max_nodes);
    if (d->count == p->cap) {
        int nc = p->cap ? (p->cap > p->max_nodes / 2 ? p->max_nodes : p->cap * 2) : 64;
        ew_json_node *nn = realloc(d->nodes, (size_t)nc * sizeof *nn);
        if (!nn) return fail(p, p->pos, "out of memory (%d values)", nc);
        d->nodes = nn;
        p->cap = nc;
    }
    ew_json_node *n = &d->nodes[d->count];
    memset(n, 0, sizeof *n);
    n->type = t;
    n->parent = parent;
    n->first_child = -1;
    n->next = -1;
    n->offset = p->pos;
    return d->count++;
}

static int hex4(const char *s, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

/* Parses a string at p->pos (which is '"'); decoded bytes go to doc->strings. */
static int parse_string(parser *p, const char **out, size_t *out_len) {
    size_t start = p->pos;
    char *dst = p->doc->strings + p->str_used;
    size_t n = 0;
    p->pos++; /* opening quote */
    for (;;) {
        if (p->pos >= p->len) return fail(p, start, "unterminated string");
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c < 0x20) return fail(p, p->pos, "raw control character 0x%02x in string", c);
        if (c == '\\') {
            if (p->pos + 1 >= p->len) return fail(p, start, "unterminated string");
            char e = p->s[p->pos + 1];
            p->pos += 2;
            switch (e) {
            case '"': dst[n++] = '"'; break;
            case '\\': dst[n++] = '\\'; break;
            case '/': dst[n++] = '/'; break;
            case 'b': dst[n++] = '\b'; break;
            case 'f': dst[n++] = '\f'; break;
            case 'n': dst[n++] = '\n'; break;
            case 'r': dst[n++] = '\r'; break;
            case 't': dst[n++] = '\t'; break;
            case 'u': {
                unsigned cp, lo;
                if (p->len - p->pos < 4 || hex4(p->s + p->pos, &cp))
                    return fail(p, p->pos - 2, "bad \\u escape");
                p->pos += 4;
                if (cp >= 0xDC00 && cp <= 0xDFFF) return fail(p, p->pos - 6, "lone low surrogate");
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (p->len - p->pos < 6 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u' ||
                        hex4(p->s + p->pos + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                        return fail(p, p->pos - 6, "lone high surrogate");
                    p->pos += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                if (cp < 0x80) {
                    dst[n++] = (char)cp;
                } else if (cp < 0x800) {
                    dst[n++] = (char)(0xC0 | (cp >> 6));
                    dst[n++] = (char)(0x80 | (cp & 0x3F));
                } else if (cp < 0x10000) {
                    dst[n++] = (char)(0xE0 | (cp >> 12));
                    dst[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                    dst[n++] = (char)(0x80 | (cp & 0x3F));
                } else {
                    dst[n++] = (char)(0xF0 | (cp >> 18));
                    dst[n++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                    dst[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                    dst[n++] = (char)(0x80 | (cp & 0x3F));
                }
                break;
            }
            default: return fail(p, p->pos - 2, "bad escape '\\%c'", (e >= 0x20 && e < 0x7F) ? e : '?');
            }
            continue;
        }
        size_t k = utf8_seq((const unsigned char *)p->s + p->pos, p->len - p->pos);
        if (!k) return fail(p, p->pos, "invalid UTF-8 in string");
        memcpy(dst + n, p->s + p->pos, k);
        n += k;
        p->pos += k;
    }
    /* Decoded length never exceeds the raw length minus the two quotes, so the terminator
     * fits inside the len + 1 bytes reserved for all strings. */
    dst[n] = '\0';
    p->str_used += n + 1;
    *out = dst;
    *out_len = n;
    return 0;
}

static int parse_number(parser *p, ew_json_node *node) {
    size_t start = p->pos, i = p->pos;
    const char *s = p->s;
    int is_int = 1;
    if (i < p->len && s[i] == '-') i++;
    if (i >= p->len || s[i] < '0' || s[i] > '9') return fail(p, start, "bad number");
    if (s[i] == '0') {
        i++;
        if (i < p->len && s[i] >= '0' && s[i] <= '9') return fail(p, start, "number with a leading zero");
    } else {
        while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < p->len && s[i] == '.') {
        is_int = 0;
        i++;
        if (i >= p->len || s[i] < '0' || s[i] > '9') return fail(p, start, "bad number");
        while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
        is_int = 0;
        i++;
        if (i < p->len && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= p->len || s[i] < '0' || s[i] > '9') return fail(p, start, "bad number");
        while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
    }
    size_t n = i - start;
    if (n > EW_JSON_MAX_NUMBER) return fail(p, start, "number longer than %d characters", EW_JSON_MAX_NUMBER);
    char buf[EW_JSON_MAX_NUMBER + 1];
    memcpy(buf, s + start, n);
    buf[n] = '\0';
    node->num = strtod(buf, NULL);
    if (is_int && s[start] != '-') {
        uint64_t v = 0;
        int ok = 1;
        for (size_t k = start; k < i; k++) {
            unsigned d = (unsigned)(s[k] - '0');
            if (v > (UINT64_MAX - d) / 10) {
                ok = 0;
                break;
            }
            v = v * 10 + d;
        }
        node->is_u64 = ok;
        node->u64 = ok ? v : 0;
    }
    p->pos = i;
    return 0;
}

typedef struct {
    const char *k;
    size_t n;
} keyref;

static int keycmp(const void *a, const void *b) {
    const keyref *x = a, *y = b;
    size_t m = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->k, y->k, m);
    if (c) return c;
    return (x->n > y->n) - (x->n < y->n);
}

static int check_duplicates(parser *p, int obj) {
    ew_json_node *o = &p->doc->nodes[obj];
    if (o->count < 2) return 0;
    keyref *keys = malloc((size_t)o->count * sizeof *keys);
    if (!keys) return fail(p, o->offset, "out of memory checking keys");
    int n = 0;
    for (int c = o->first_child; c >= 0; c = p->doc->nodes[c].next) {
        keys[n].k = p->doc->nodes[c].key;
        keys[n].n = p->doc->nodes[c].key_len;
        n++;
    }
    qsort(keys, (size_t)n, sizeof *keys, keycmp);
    for (int i = 1; i < n; i++) {
        if (keycmp(&keys[i - 1], &keys[i]) == 0) {
            char shown[64];
            size_t m = 0;
            for (size_t j = 0; j < keys[i].n && m + 1 < sizeof shown; j++) {
                unsigned char ch = (unsigned char)keys[i].k[j];
                shown[m++] = (ch >= 0x20 && ch < 0x7F) ? (char)ch : '?';
            }
            shown[m] = '\0';
            free(keys);
            return fail(p, o->offset, "object has duplicate key \"%s\"", shown);
        }
    }
    free(keys);
    return 0;
}

typedef struct {
    int node;
    int last; /* last child so far, -1 none */
} frame;

int ew_json_parse(const char *text, size_t len, const ew_json_limits *limits, ew_json_doc *doc,
                  char *err, size_t errsz) {
    parser p = {0};
    int max_depth = (limits && limits->max_depth > 0) ? limits->max_depth : EW_JSON_DEFAULT_DEPTH;
    p.max_nodes = (limits && limits->max_nodes > 0) ? limits->max_nodes : EW_JSON_DEFAULT_NODES;
    p.s = text;
    p.len = len;
    p.doc = doc;
    p.err = err;
    p.errsz = errsz;
    memset(doc, 0, sizeof *doc);
    if (err && errsz) err[0] = '\0';
    if (!text && len) return fail(&p, 0, "NULL text");
    if (len > SIZE_MAX - 1) return fail(&p, 0, "text too long");
    doc->strings = malloc(len + 1);
    frame *stack = malloc((size_t)max_depth * sizeof *stack);
    if (!doc->strings || !stack) {
        free(stack);
        ew_json_free(doc);
        return fail(&p, 0, "out of memory (%zu bytes of text)", len);
    }
    int depth = 0;
    int rc = -1;
    int need_value = 1; /* 1: a value (or key+value) comes next; 0: after a value */
    int first_in_container = 0;
    for (;;) {
        skip_ws(&p);
        if (need_value) {
            const char *key = NULL;
            size_t key_len = 0;
            int parent = depth ? stack[depth - 1].node : -1;
            int in_object = depth && doc->nodes[parent].type == EW_JSON_OBJECT;
            if (p.pos >= p.len) {
                fail(&p, p.pos, "unexpected end of text");
                goto done;
            }
            if (first_in_container) {
                char close = in_object ? '}' : ']';
                if (p.s[p.pos] == close) {
                    p.pos++;
                    depth--;
                    need_value = 0;
                    first_in_container = 0;
                    continue;
                }
            }
            first_in_container = 0;
            if (in_object) {
                if (p.s[p.pos] != '"') {
                    fail(&p, p.pos, "expected a string key");
                    goto done;
                }
                if (parse_string(&p, &key, &key_len)) goto done;
                skip_ws(&p);
                if (p.pos >= p.len || p.s[p.pos] != ':') {
                    fail(&p, p.pos, "expected ':' after key");
                    goto done;
                }
                p.pos++;
                skip_ws(&p);
                if (p.pos >= p.len) {
                    fail(&p, p.pos, "unexpected end of text");
                    goto done;
                }
            }
            char c = p.s[p.pos];
            ew_json_type t;
            if (c == '{') t = EW_JSON_OBJECT;
            else if (c == '[') t = EW_JSON_ARRAY;
            else if (c == '"') t = EW_JSON_STRING;
            else if (c == '-' || (c >= '0' && c <= '9')) t = EW_JSON_NUMBER;
            else if (c == 't') t = EW_JSON_TRUE;
            else if (c == 'f') t = EW_JSON_FALSE;
            else if (c == 'n') t = EW_JSON_NULL;
            else {
                fail(&p, p.pos, "unexpected character '%c'", (c >= 0x20 && c < 0x7F) ? c : '?');
                goto done;
            }
            int idx = new_node(&p, t, parent);
            if (idx < 0) goto done;
            ew_json_node *nd = &doc->nodes[idx];
            nd->key = key;
            nd->key_len = key_len;
            if (depth) {
                frame *f = &stack[depth - 1];
                if (f->last < 0) doc->nodes[f->node].first_child = idx;
                else doc->nodes[f->last].next = idx;
                f->last = idx;
                doc->nodes[f->node].count++;
            }
            switch (t) {
            case EW_JSON_OBJECT:
            case EW_JSON_ARRAY:
                if (depth >= max_depth) {
                    fail(&p, p.pos, "nested deeper than %d levels", max_depth);
                    goto done;
                }
                p.pos++;
                stack[depth].node = idx;
                stack[depth].last = -1;
                depth++;
                first_in_container = 1;
                continue; /* need_value stays 1 */
            case EW_JSON_STRING:
                if (parse_string(&p, &nd->str, &nd->str_len)) goto done;
                break;
            case EW_JSON_NUMBER:
                if (parse_number(&p, nd)) goto done;
                break;
            default: {
                const char *lit = t == EW_JSON_TRUE ? "true" : t == EW_JSON_FALSE ? "false" : "null";
                size_t n = strlen(lit);
                if (p.len - p.pos < n || memcmp(p.s + p.pos, lit, n) != 0) {
                    fail(&p, p.pos, "bad literal");
                    goto done;
                }
                p.pos += n;
            }
            }
            need_value = 0;
            continue;
        }
        /* After a value. */
        if (depth == 0) {
            if (p.pos != p.len) {
                fail(&p, p.pos, "trailing characters after the value");
                goto done;
            }
            break;
        }
        frame *f = &stack[depth - 1];
        int is_obj = doc->nodes[f->node].type == EW_JSON_OBJECT;
        if (p.pos >= p.len) {
            fail(&p, p.pos, "unexpected end of text");
            goto done;
        }
        char c = p.s[p.pos];
        if (c == ',') {
            p.pos++;
            need_value = 1;
            continue;
        }
        if (c == (is_obj ? '}' : ']')) {
            p.pos++;
            if (is_obj && check_duplicates(&p, f->node)) goto done;
            depth--;
            continue;
        }
        fail(&p, p.pos, "expected ',' or '%c'", is_obj ? '}' : ']');
        goto done;
    }
    rc = 0;
done:
    free(stack);
    if (rc) ew_json_free(doc);
    return rc;
}

void ew_json_free(ew_json_doc *doc) {
    if (!doc) return;
    free(doc->nodes);
    free(doc->strings);
    memset(doc, 0, sizeof *doc);
}

const ew_json_node *ew_json_root(const ew_json_doc *doc) {
    return (doc && doc->count > 0) ? &doc->nodes[0] : NULL;
}

const ew_json_node *ew_json_first(const ew_json_doc *doc, const ew_json_node *c) {
    if (!doc || !c || (c->type != EW_JSON_ARRAY && c->type != EW_JSON_OBJECT) || c->first_child < 0)
        return NULL;
    return &doc->nodes[c->first_child];
}

const ew_json_node *ew_json_next(const ew_json_doc *doc, const ew_json_node *n) {
    if (!doc || !n || n->next < 0) return NULL;
    return &doc->nodes[n->next];
}

const ew_json_node *ew_json_get(const ew_json_doc *doc, const ew_json_node *obj, const char *key) {
    if (!obj || obj->type != EW_JSON_OBJECT || !key) return NULL;
    size_t n = strlen(key);
    for (const ew_json_node *c = ew_json_first(doc, obj); c; c = ew_json_next(doc, c))
        if (c->key_len == n && memcmp(c->key, key, n) == 0) return c;
    return NULL;
}

size_t ew_json_escape(const char *s, size_t n, char *dst, size_t cap) {
    static const char hex[] = "0123456789abcdef";
    size_t out = 0;
#define EW_PUT(ch)                                   \
    do {                                             \
        if (out + 1 < cap) dst[out] = (char)(ch);    \
        out++;                                       \
    } while (0)
    EW_PUT('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            EW_PUT('\\');
            EW_PUT(c);
        } else if (c < 0x20) {
            EW_PUT('\\');
            switch (c) {
            case '\n': EW_PUT('n'); break;
            case '\r': EW_PUT('r'); break;
            case '\t': EW_PUT('t'); break;
            case '\b': EW_PUT('b'); break;
            case '\f': EW_PUT('f'); break;
            default:
                EW_PUT('u');
                EW_PUT('0');
                EW_PUT('0');
                EW_PUT(hex[c >> 4]);
                EW_PUT(hex[c & 15]);
            }
        } else {
            EW_PUT(c);
        }
    }
    EW_PUT('"');
#undef EW_PUT
    if (cap) dst[out < cap ? out : cap - 1] = '\0';
    return out;
}
