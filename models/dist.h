/* dist.h - data-parallel training and distributed evaluation over MPI (DESIGN.md section 12),
 * with a single-rank implementation when egoworld is built without MPI (EGOWORLD_MPI off).
 *
 * Life cycle: main() calls ew_dist_init() once before any command and ew_dist_finalize()
 * after it. MPI is initialised (MPI_Init_thread, MPI_THREAD_FUNNELED: only the thread that
 * called it makes MPI calls; OpenMP threads never do) only when the process was started by
 * an MPI launcher (mpirun/mpiexec/srun: OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK or
 * MPI_LOCALNRANKS in the environment) or when EGOWORLD_MPI=1 forces it (an MPI singleton);
 * EGOWORLD_MPI=0 never initialises it. Otherwise, and always when built without MPI, the
 * process is rank 0 of 1 and every collective below is a no-op (or a plain copy), so a plain
 * `egoworld ...` never pays MPI's start-up and never depends on a launcher.
 *
 * Context: ew_dist_world() fills a caller-owned ew_dist describing MPI_COMM_WORLD (rank,
 * size) plus traffic counters; there is no global mutable state here beyond what MPI itself
 * holds. Every collective must be called by every rank in the same order with the same
 * sizes (MPI's rule); the functions only add byte counts to the context's counters.
 *
 * Errors: MPI's default error handler (MPI_ERRORS_ARE_FATAL) aborts the job on a
 * communication failure, so the collectives return nothing; functions that can fail locally
 * (memory, sizes) return 0 or -1 with a one-line message. An error on one rank while the
 * others wait in a collective would hang the job: commands call ew_dist_abort() (MPI_Abort of
 * every rank) after printing their message when size > 1.
 *
 * Determinism: all-reduce results are identical on every rank (Open MPI reduces each element
 * in one fixed order and sends the result; identical parameters are checked anyway by
 * ew_dist_same_params()); sums differ from a single-process sum only by float rounding.
 * Transport: Open MPI picks shared memory on one node and the network between nodes; a
 * GPU-direct NCCL path is not built (no CUDA/NCCL on the machines this was written on).
 */
#ifndef EW_DIST_H
#define EW_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "models/param.h"

typedef struct {
    int rank, size;       /* 0 and 1 without MPI */
    int mpi;              /* 1 when MPI is initialised and used */
    uint64_t reduce_calls;  /* all-reduces issued through this context */
    uint64_t reduce_bytes;  /* payload bytes of those all-reduces (per rank) */
    double comm_s;          /* wall seconds spent in collectives */
} ew_dist;

/* 1 when this binary was built with MPI. */
int ew_dist_built_with_mpi(void);
/* Initialises MPI when launched by an MPI launcher (see above). 0, or -1 with a message. */
int ew_dist_init(int *argc, char ***argv, char *err, size_t errsz);
/* MPI_Finalize when ew_dist_init initialised MPI (safe to call anyway). */
void ew_dist_finalize(void);
/* The world communicator's rank and size; counters zeroed. */
void ew_dist_world(ew_dist *d);
/* MPI_Abort(code) of every rank when size > 1; returns (doing nothing) otherwise. */
void ew_dist_abort(const ew_dist *d, int code);
void ew_dist_barrier(ew_dist *d);

/* Element-wise sum over the ranks, in place, on every rank. */
void ew_dist_allreduce_sum(ew_dist *d, float *buf, size_t n);
void ew_dist_allreduce_sum_f64(ew_dist *d, double *buf, size_t n);
/* Sum, then times 1/size: the mean over ranks (of per-rank means: the global-batch mean
 * when every rank has the same batch size). */
void ew_dist_allreduce_mean(ew_dist *d, float *buf, size_t n);
/* 1 on every rank when flag != 0 on any rank (logical or), else 0. */
int ew_dist_any(ew_dist *d, int flag);
/* Copies root's n bytes to every rank. */
void ew_dist_bcast(ew_dist *d, void *buf, size_t n, int root);
/* Gathers each rank's n bytes (n may differ between ranks, < 2 GiB each) to rank 0: there,
 * *out is a malloc'd concatenation in rank order and sizes[r] (caller array of size entries)
 * each rank's byte count; elsewhere *out = NULL. 0, or -1 with a message on the rank that
 * failed (out of memory / too large). */
int ew_dist_gather_bytes(ew_dist *d, const void *buf, size_t n, void **out, size_t *sizes, char *err,
                         size_t errsz);

/* FNV-1a 64-bit hash of n bytes, continuing from h (start with EW_DIST_HASH_INIT). */
#define EW_DIST_HASH_INIT 0xcbf29ce484222325ULL
uint64_t ew_dist_hash(uint64_t h, const void *p, size_t n);
/* 1 on every rank when v is the same on every rank, else 0. */
int ew_dist_same_u64(ew_dist *d, uint64_t v);
/* 1 when the data of params[0..n) hash the same on every rank; *hash (may be NULL) gets
 * the local hash. The debug check that data-parallel ranks hold identical parameters. */
int ew_dist_same_params(ew_dist *d, const ew_param *params, int n, uint64_t *hash);
/* Broadcast of every params[i].data from root (identical starting points). */
void ew_dist_bcast_params(ew_dist *d, ew_param *params, int n, int root);

/* The gradient reducer for ew_optim_set_grad_reduce (models/optim.h): ctx is an ew_dist;
 * the mean over ranks of buf. Returns 0. */
int ew_dist_grad_reduce(void *ctx, float *buf, size_t n);

/* Per-rank seed stream: seed itself on rank 0 (a 1-rank run draws what it always drew),
 * a splitmix64 mix of (seed, rank) elsewhere. */
uint64_t ew_dist_seed(const ew_dist *d, uint64_t seed);

#endif
