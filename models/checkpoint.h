/* checkpoint.h - safetensors checkpoints: atomic write, validating read.
 *
 * Format: u64 little-endian header length N; N bytes of JSON {"__metadata__": {str: str},
 * "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}; then the
 * raw little-endian tensor data, offsets relative to the start of that data section.
 *
 * Write: every tensor as F32 in the order given (params, then extra), header padded with
 * spaces to a multiple of 8 bytes like the reference implementation, "__metadata__" present
 * when nmeta > 0. Names and metadata must be valid UTF-8 without NUL bytes and unique. The
 * write is atomic: "<path>.tmp.<pid>" is written, flushed, fsynced, renamed over path and the
 * directory fsynced; on any failure the temporary file is removed, the previous file at path
 * is untouched and -1 comes back with a one-line message naming the file. (Two threads of one
 * process must not write the same path at once: they would share the temporary name.)
 * Temporary files of this path left by killed writers ("<path>.tmp.<pid>" whose process no
 * longer exists) are removed before a write.
 * Testing hook: with EGOWORLD_FAULT_CKPT_WRITE="N:fail" the N-th write of the process fails
 * half-way through its data as if the disk were full (ENOSPC); "N:kill" sends the process
 * SIGKILL at that point (tools/kill_resume.sh, docs/RELIABILITY.md).
 *
 * Read: ew_checkpoint_open() reads the whole file; ew_checkpoint_parse_buffer() parses bytes
 * in memory (borrowed: they must outlive the ew_checkpoint) - both validate the same way:
 * file size >= 8, header length <= 100,000,000 and within the file, header strictly valid
 * JSON (json.h; nesting <= 64) whose root is an object starting with '{', "__metadata__" a
 * string->string object, every other member exactly {dtype, shape, data_offsets}, dtype one
 * of the safetensors names (BOOL U8 I8 F8_E5M2 F8_E4M3 I16 U16 F16 BF16 I32 U32 F32 I64 U64
 * F64), at most EW_CKPT_MAX_DIMS dims, shape x dtype size == end - begin without overflow,
 * begin <= end, tensors sorted by offset cover the data section exactly (no gap, no overlap,
 * no trailing bytes), no duplicate names, no NUL in names. Any violation: -1 and a one-line
 * error "<file>: <what>"; never a crash or an out-of-bounds read. Values convert to float32
 * from F32, F16, BF16 and F64 (ew_checkpoint_read_f32); other dtypes can be listed only.
 * A little-endian host is assumed for speed; big-endian hosts byte-swap.
 */
#ifndef EW_CHECKPOINT_H
#define EW_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "models/param.h"

#define EW_CKPT_MAX_DIMS 8
#define EW_CKPT_MAX_HEADER 100000000ULL

typedef struct {
    const char *key, *value;
} ew_kv;

/* Writes params[0..nparams) and extra[0..nextra) (both may be NULL when the count is 0;
 * grad is ignored; extra is for optimizer state, buffers, statistics) and the metadata. */
int ew_checkpoint_write(const char *path, const ew_param *params, int nparams, const ew_param *extra,
                        int nextra, const ew_kv *meta, int nmeta, char *err, size_t errsz);

typedef struct ew_checkpoint ew_checkpoint;

typedef struct {
    const char *name;       /* decoded UTF-8, NUL-terminated */
    const char *dtype;      /* "F32", "F16", ... */
    int dtype_size;         /* bytes per element */
    int ndim;               /* 0..EW_CKPT_MAX_DIMS */
    uint64_t shape[EW_CKPT_MAX_DIMS];
    uint64_t numel;
    uint64_t begin, end;    /* byte offsets within the data section */
} ew_ckpt_tensor;

int ew_checkpoint_open(const char *path, ew_checkpoint **out, char *err, size_t errsz);
/* label names the source in error messages (NULL: "<buffer>"); out may be NULL to validate
 * only. This is the fuzzing entry point. */
int ew_checkpoint_parse_buffer(const uint8_t *buf, size_t len, const char *label, ew_checkpoint **out,
                               char *err, size_t errsz);
void ew_checkpoint_close(ew_checkpoint *ck);

int ew_checkpoint_count(const ew_checkpoint *ck);                         /* tensors, file order */
const ew_ckpt_tensor *ew_checkpoint_tensor(const ew_checkpoint *ck, int i); /* NULL out of range */
int ew_checkpoint_find(const ew_checkpoint *ck, const char *name);        /* index or -1 */
/* Converts tensor i into dst (n must equal its numel). */
int ew_checkpoint_read_f32(const ew_checkpoint *ck, int i, float *dst, size_t n, char *err, size_t errsz);

int ew_checkpoint_meta_count(const ew_checkpoint *ck);
const char *ew_checkpoint_meta_key(const ew_checkpoint *ck, int i);
const char *ew_checkpoint_meta_value(const ew_checkpoint *ck, int i);
const char *ew_checkpoint_meta(const ew_checkpoint *ck, const char *key); /* NULL when absent */

/* Loads every params[i].data by name; shapes must match exactly. Names of params missing from
 * the file are an error unless EW_CKPT_ALLOW_MISSING; tensors in the file matching no param
 * (ignoring names that start with ignore_prefix, e.g. EW_OPTIM_STATE_PREFIX; NULL: none) are
 * an error unless EW_CKPT_ALLOW_UNEXPECTED. The error lists the names. Nothing is written to
 * any param unless every check passes. */
#define EW_CKPT_ALLOW_MISSING 1u
#define EW_CKPT_ALLOW_UNEXPECTED 2u
int ew_checkpoint_load_params(const ew_checkpoint *ck, ew_param *params, int nparams, unsigned flags,
                              const char *ignore_prefix, char *err, size_t errsz);

#endif
