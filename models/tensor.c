/* tensor.c - the per-step arena and tensor shape helpers. */
#include "models/tensor.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ew_arena_block {
    ew_arena_block *next;   /* older block */
    size_t size;            /* usable bytes after the header */
    size_t used;
    unsigned char *mem;     /* aligned start of usable bytes */
    void *raw;              /* what malloc returned */
};

static ew_arena_block *block_new(ew_arena *a, size_t size) {
    ew_arena_block *b = malloc(sizeof *b);
    if (!b) return NULL;
    b->raw = a->al.alloc ? a->al.alloc(a->al.ctx, size + EW_ARENA_ALIGN) : malloc(size + EW_ARENA_ALIGN);
    if (!b->raw) {
        free(b);
        return NULL;
    }
    a->sys_allocs += 2;
    uintptr_t p = ((uintptr_t)b->raw + EW_ARENA_ALIGN - 1) & ~(uintptr_t)(EW_ARENA_ALIGN - 1);
    b->mem = (unsigned char *)p;
    b->size = size;
    b->used = 0;
    b->next = NULL;
    return b;
}

static void block_free(const ew_arena *a, ew_arena_block *b) {
    if (a->al.free)
        a->al.free(a->al.ctx, b->raw);
    else
        free(b->raw);
    free(b);
}

int ew_arena_init(ew_arena *a, size_t initial_bytes) { return ew_arena_init_with(a, initial_bytes, NULL); }

int ew_arena_init_with(ew_arena *a, size_t initial_bytes, const ew_allocator *al) {
    memset(a, 0, sizeof *a);
    if (al) a->al = *al;
    a->min_block = (size_t)1 << 20;
    if (initial_bytes) {
        a->head = block_new(a, initial_bytes);
        if (!a->head) return -1;
    }
    return 0;
}

void *ew_arena_alloc(ew_arena *a, size_t bytes) {
    size_t need = (bytes + EW_ARENA_ALIGN - 1) & ~(size_t)(EW_ARENA_ALIGN - 1);
    if (need == 0) need = EW_ARENA_ALIGN;
    ew_arena_block *b = a->head;
    if (!b || b->size - b->used < need) {
        size_t sz = need > a->min_block ? need : a->min_block;
        /* grow geometrically so a cold step chains only a few blocks */
        if (b && sz < 2 * b->size) sz = 2 * b->size;
        ew_arena_block *nb = block_new(a, sz);
        if (!nb) return NULL;
        nb->next = b;
        a->head = b = nb;
    }
    void *p = b->mem + b->used;
    b->used += need;
    a->used_total += need;
    if (a->used_total > a->high_water) a->high_water = a->used_total;
    return p;
}

void *ew_arena_calloc(ew_arena *a, size_t bytes) {
    void *p = ew_arena_alloc(a, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

int ew_arena_reset(ew_arena *a) {
    int rc = 0;
    if (a->head && a->head->next) {
        /* the last step chained blocks: fold them into one block of the high-water size */
        ew_arena_block *b = a->head;
        while (b) {
            ew_arena_block *n = b->next;
            block_free(a, b);
            b = n;
        }
        a->head = block_new(a, a->high_water);
        if (!a->head) rc = -1;
    }
    if (a->head) a->head->used = 0;
    a->used_total = 0;
    return rc;
}

void ew_arena_free(ew_arena *a) {
    ew_arena_block *b = a->head;
    while (b) {
        ew_arena_block *n = b->next;
        block_free(a, b);
        b = n;
    }
    a->head = NULL;
    a->used_total = 0;
}

size_t ew_arena_capacity(const ew_arena *a) {
    size_t s = 0;
    for (const ew_arena_block *b = a->head; b; b = b->next) s += b->size;
    return s;
}

size_t ew_shape_numel(int ndim, const int *shape) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    return n;
}

void ew_tensor_set_contiguous(ew_tensor *t) {
    long s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        t->stride[i] = s;
        s *= t->shape[i];
    }
}

int ew_same_shape(const ew_tensor *a, const ew_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

void ew_shape_str(const ew_tensor *t, char *buf, size_t cap) {
    size_t o = 0;
    if (cap == 0) return;
    buf[0] = 0;
    o += (size_t)snprintf(buf + o, cap - o, "[");
    for (int i = 0; i < t->ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, i ? ",%d" : "%d", t->shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}
