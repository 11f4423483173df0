/* dist.c - MPI collectives for data-parallel training and distributed evaluation (dist.h);
 * a single-rank implementation when built without MPI (EGOWORLD_HAVE_MPI undefined). */
#define _POSIX_C_SOURCE 200809L
#include "models/dist.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim/rng.h"

#ifdef EGOWORLD_HAVE_MPI
#include <mpi.h>
#endif

static int fail(char *err, size_t errsz, const char *msg) {
    if (err && errsz) snprintf(err, errsz, "%s", msg);
    return -1;
}

uint64_t ew_dist_hash(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t ew_dist_seed(const ew_dist *d, uint64_t seed) {
    if (!d || d->rank == 0) return seed;
    uint64_t x = seed ^ ((uint64_t)d->rank * 0xD1B54A32D192ED03ULL);
    return ew_splitmix64(&x);
}

int ew_dist_grad_reduce(void *ctx, float *buf, size_t n) {
    ew_dist_allreduce_mean(ctx, buf, n);
    return 0;
}

int ew_dist_same_params(ew_dist *d, const ew_param *params, int n, uint64_t *hash) {
    uint64_t h = EW_DIST_HASH_INIT;
    for (int i = 0; i < n; i++) h = ew_dist_hash(h, params[i].data, sizeof(float) * ew_param_numel(&params[i]));
    if (hash) *hash = h;
    return ew_dist_same_u64(d, h);
}

void ew_dist_bcast_params(ew_dist *d, ew_param *params, int n, int root) {
    for (int i = 0; i < n; i++) ew_dist_bcast(d, params[i].data, sizeof(float) * ew_param_numel(&params[i]), root);
}

void ew_dist_allreduce_mean(ew_dist *d, float *buf, size_t n) {
    if (d->size <= 1) return;
    ew_dist_allreduce_sum(d, buf, n);
    float inv = 1.0f / (float)d->size;
    for (size_t i = 0; i < n; i++) buf[i] *= inv;
}

#ifdef EGOWORLD_HAVE_MPI

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* the largest element count one MPI call takes (int counts) */
#define CHUNK ((size_t)1 << 30)

int ew_dist_built_with_mpi(void) { return 1; }

static int launched_by_mpi(void) {
    const char *force = getenv("EGOWORLD_MPI");
    if (force && !strcmp(force, "0")) return 0;
    if (force && !strcmp(force, "1")) return 1;
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

int ew_dist_init(int *argc, char ***argv, char *err, size_t errsz) {
    int inited = 0;
    MPI_Initialized(&inited);
    if (inited || !launched_by_mpi()) return 0;
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return fail(err, errsz, "MPI_Init_thread failed");
    if (provided < MPI_THREAD_FUNNELED) {
        MPI_Finalize();
        return fail(err, errsz, "the MPI library does not provide MPI_THREAD_FUNNELED");
    }
    return 0;
}

void ew_dist_finalize(void) {
    int inited = 0, fin = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&fin);
    if (inited && !fin) MPI_Finalize();
}

void ew_dist_world(ew_dist *d) {
    memset(d, 0, sizeof *d);
    d->rank = 0;
    d->size = 1;
    int inited = 0, fin = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&fin);
    if (!inited || fin) return;
    d->mpi = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
}

void ew_dist_abort(const ew_dist *d, int code) {
    if (d && d->mpi && d->size > 1) {
        fflush(stdout);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, code);
    }
}

void ew_dist_barrier(ew_dist *d) {
    if (!d->mpi || d->size <= 1) return;
    double t0 = now_s();
    MPI_Barrier(MPI_COMM_WORLD);
    d->comm_s += now_s() - t0;
}

static void allreduce(ew_dist *d, void *buf, size_t n, size_t elem, MPI_Datatype type, MPI_Op op) {
    if (!d->mpi || d->size <= 1 || n == 0) return;
    double t0 = now_s();
    for (size_t off = 0; off < n; off += CHUNK) {
        size_t m = n - off < CHUNK ? n - off : CHUNK;
        MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * elem, (int)m, type, op, MPI_COMM_WORLD);
    }
    d->comm_s += now_s() - t0;
    d->reduce_calls++;
    d->reduce_bytes += (uint64_t)(n * elem);
}

void ew_dist_allreduce_sum(ew_dist *d, float *buf, size_t n) { allreduce(d, buf, n, sizeof(float), MPI_FLOAT, MPI_SUM); }

void ew_dist_allreduce_sum_f64(ew_dist *d, double *buf, size_t n) {
    allreduce(d, buf, n, sizeof(double), MPI_DOUBLE, MPI_SUM);
}

int ew_dist_any(ew_dist *d, int flag) {
    int v = flag != 0;
    if (!d->mpi || d->size <= 1) return v;
    double t0 = now_s();
    MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD);
    d->comm_s += now_s() - t0;
    return v != 0;
}

void ew_dist_bcast(ew_dist *d, void *buf, size_t n, int root) {
    if (!d->mpi || d->size <= 1 || n == 0) return;
    double t0 = now_s();
    for (size_t off = 0; off < n; off += CHUNK) {
        size_t m = n - off < CHUNK ? n - off : CHUNK;
        MPI_Bcast((char *)buf + off, (int)m, MPI_BYTE, root, MPI_COMM_WORLD);
    }
    d->comm_s += now_s() - t0;
}

int ew_dist_same_u64(ew_dist *d, uint64_t v) {
    if (!d->mpi || d->size <= 1) return 1;
    /* max of v and of ~v: equal everywhere iff max(v) == ~max(~v) == min(v) */
    uint64_t m[2] = {v, ~v};
    double t0 = now_s();
    MPI_Allreduce(MPI_IN_PLACE, m, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    d->comm_s += now_s() - t0;
    return m[0] == ~m[1];
}

int ew_dist_gather_bytes(ew_dist *d, const void *buf, size_t n, void **out, size_t *sizes, char *err,
                         size_t errsz) {
    *out = NULL;
    if (!d->mpi || d->size <= 1) {
        void *p = malloc(n ? n : 1);
        if (!p) return fail(err, errsz, "gather: out of memory");
        if (n) memcpy(p, buf, n);
        sizes[0] = n;
        *out = p;
        return 0;
    }
    /* every rank reports its size (or -1: too large) so that all agree before Gatherv */
    int mine = n > (size_t)INT_MAX ? -1 : (int)n;
    int *counts = d->rank == 0 ? malloc(sizeof(int) * (size_t)d->size) : NULL;
    int *displs = d->rank == 0 ? malloc(sizeof(int) * (size_t)d->size) : NULL;
    int ok = d->rank != 0 || (counts && displs);
    if (ew_dist_any(d, !ok || mine < 0)) {
        free(counts);
        free(displs);
        return fail(err, errsz, !ok ? "gather: out of memory" : "gather: a rank holds more than 2 GiB");
    }
    double t0 = now_s();
    MPI_Gather(&mine, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD);
    char *all = NULL;
    long long total = 0;
    if (d->rank == 0) {
        for (int r = 0; r < d->size; r++) {
            displs[r] = (int)total;
            total += counts[r];
            sizes[r] = (size_t)counts[r];
        }
        ok = total <= INT_MAX && (all = malloc(total ? (size_t)total : 1)) != NULL;
    }
    d->comm_s += now_s() - t0;
    if (ew_dist_any(d, !ok)) {
        free(all);
        free(counts);
        free(displs);
        return fail(err, errsz, "gather: out of memory or more than 2 GiB in all");
    }
    t0 = now_s();
    MPI_Gatherv(buf, mine, MPI_BYTE, all, counts, displs, MPI_BYTE, 0, MPI_COMM_WORLD);
    d->comm_s += now_s() - t0;
    free(counts);
    free(displs);
    *out = all;
    return 0;
}

#else /* single rank */

int ew_dist_built_with_mpi(void) { return 0; }
int ew_dist_init(int *argc, char ***argv, char *err, size_t errsz) {
    (void)argc, (void)argv, (void)err, (void)errsz;
    return 0;
}
void ew_dist_finalize(void) {}
void ew_dist_world(ew_dist *d) {
    memset(d, 0, sizeof *d);
    d->size = 1;
}
void ew_dist_abort(const ew_dist *d, int code) { (void)d, (void)code; }
void ew_dist_barrier(ew_dist *d) { (void)d; }
void ew_dist_allreduce_sum(ew_dist *d, float *buf, size_t n) { (void)d, (void)buf, (void)n; }
void ew_dist_allreduce_sum_f64(ew_dist *d, double *buf, size_t n) { (void)d, (void)buf, (void)n; }
int ew_dist_any(ew_dist *d, int flag) {
    (void)d;
    return flag != 0;
}
void ew_dist_bcast(ew_dist *d, void *buf, size_t n, int root) { (void)d, (void)buf, (void)n, (void)root; }
int ew_dist_same_u64(ew_dist *d, uint64_t v) {
    (void)d, (void)v;
    return 1;
}
int ew_dist_gather_bytes(ew_dist *d, const void *buf, size_t n, void **out, size_t *sizes, char *err,
                         size_t errsz) {
    (void)d;
    *out = malloc(n ? n : 1);
    if (!*out) return fail(err, errsz, "gather: out of memory");
    if (n) memcpy(*out, buf, n);
    sizes[0] = n;
    return 0;
}

#endif
