/* json.h - a small, strict, bounded JSON (RFC 8259) parser and a string escaper.
 *
 * Contract: ew_json_parse() reads exactly one JSON value from `len` bytes (surrounding
 * whitespace allowed) into a flat, read-only tree of nodes owned by the ew_json_doc; it never
 * recurses (an explicit stack, nesting capped at limits->max_depth, default 64), never reads
 * past `len`, and caps the node count (limits->max_nodes, default 16M). Strict: UTF-8 is
 * validated, escapes decoded (\uXXXX with surrogate pairs to UTF-8; lone surrogates rejected),
 * no trailing commas, comments, NaN, leading zeros or raw control characters, and duplicate
 * keys within one object are an error. Numbers: at most 320 characters; `num` holds the value
 * as a double (strtod, so the C locale's '.' is assumed) and, for integer literals in
 * 0..UINT64_MAX, `is_u64`/`u64` hold it exactly. Decoded strings are NUL-terminated and may
 * contain embedded NULs (use the _len fields). On error it returns -1 with a one-line
 * message "JSON <what> at byte <offset>" and leaves `doc` empty (safe to ew_json_free).
 */
#ifndef EW_JSON_H
#define EW_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    EW_JSON_NULL,
    EW_JSON_FALSE,
    EW_JSON_TRUE,
    EW_JSON_NUMBER,
    EW_JSON_STRING,
    EW_JSON_ARRAY,
    EW_JSON_OBJECT
} ew_json_type;

typedef struct {
    ew_json_type type;
    int parent;           /* index of the enclosing array/object, -1 for the root */
    int first_child;      /* arrays/objects: index of the first element, -1 when empty */
    int next;             /* index of the next sibling, -1 for the last */
    int count;            /* arrays/objects: number of elements/members */
    const char *key;      /* members of an object: decoded key; NULL otherwise */
    size_t key_len;
    const char *str;      /* strings: decoded value; NULL otherwise */
    size_t str_len;
    double num;           /* numbers */
    int is_u64;           /* numbers: 1 when an integer literal fitting uint64_t */
    uint64_t u64;
    size_t offset;        /* byte offset of the value in the parsed text */
} ew_json_node;

typedef struct {
    ew_json_node *nodes;  /* nodes[0] is the root; children follow their parent */
    int count;
    char *strings;        /* storage of all decoded strings */
} ew_json_doc;

typedef struct {
    int max_depth;        /* <= 0: 64 */
    int max_nodes;        /* <= 0: 16 * 1024 * 1024 */
} ew_json_limits;

int ew_json_parse(const char *text, size_t len, const ew_json_limits *limits, ew_json_doc *doc,
                  char *err, size_t errsz);
void ew_json_free(ew_json_doc *doc);

/* Navigation helpers; all return NULL when absent. */
const ew_json_node *ew_json_root(const ew_json_doc *doc);
const ew_json_node *ew_json_first(const ew_json_doc *doc, const ew_json_node *container);
const ew_json_node *ew_json_next(const ew_json_doc *doc, const ew_json_node *node);
const ew_json_node *ew_json_get(const ew_json_doc *doc, const ew_json_node *object, const char *key);

/* Writes `s` (n bytes) as a quoted JSON string into dst (at most cap bytes, NUL-terminated
 * when cap > 0) and returns the length it needs, excluding the NUL (snprintf-style).
 * Escapes '"', '\\' and control characters; other bytes are copied as they are. */
size_t ew_json_escape(const char *s, size_t n, char *dst, size_t cap);

/* 1 when the n bytes are valid UTF-8 (no overlongs, surrogates or code points > U+10FFFF). */
int ew_json_utf8_valid(const char *s, size_t n);

#endif
