/* cli.h - the egoworld command table and argument helpers shared by the subcommands.
 *
 * Each subcommand is `int cmd_<name>(int argc, char **argv)` with argv[0] = its name; it
 * returns the process exit status (0 success, 1 failure after printing one line
 * "egoworld <cmd>: <reason>" on stderr, 2 for a usage error). Option values are parsed
 * strictly: trailing garbage, overflow or out-of-range values are usage errors that name
 * the flag.
 */
#ifndef EW_CLI_H
#define EW_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "models/backend.h"

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} ew_command;

/* Parsers: return 0 on success, else print "egoworld CMD: FLAG: ..." and return -1. */
int cli_int(const char *cmd, const char *flag, const char *s, long lo, long hi, long *out);
int cli_u64(const char *cmd, const char *flag, const char *s, uint64_t *out);
int cli_float(const char *cmd, const char *flag, const char *s, double lo, double hi, double *out);
/* The value after a flag at argv[*i] (advances *i), or NULL with a message when missing. */
const char *cli_value(const char *cmd, int argc, char **argv, int *i);
/* Prints "egoworld CMD: unknown option 'X' (see egoworld CMD --help)"; returns 2. */
int cli_unknown(const char *cmd, const char *opt);
/* --device cpu|cuda (trainers and planners). cli_device parses the value after the flag at
 * argv[*i] (advances *i) into *cuda (0 cpu, 1 cuda): 0, or a usage message naming the flag and
 * -1 (exit 2). cli_backend makes the backend: the CPU backend on `threads` threads, or the CUDA
 * backend (models/backend_cuda.h, defaults); NULL after printing one line "egoworld CMD:
 * --device cuda: <reason>" (no device, not built with CUDA) or "egoworld CMD: out of memory"
 * (exit 1). CLI_DEVICE_HELP is the --help line. */
#define CLI_DEVICE_HELP "  --device cpu|cuda   where the networks run (default cpu; cuda: the CUDA backend)\n"
int cli_device(const char *cmd, int argc, char **argv, int *i, int *cuda);
/* With cuda set: 0 when a CUDA device can be used, else the same one-line error and -1 (exit
 * 1); for commands that create their backends later (planners). 0 when cuda is 0. */
int cli_device_check(const char *cmd, int cuda);
ew_backend *cli_backend(const char *cmd, int cuda, int threads);
/* Monotonic wall clock in seconds. */
double cli_now(void);
/* A progress line on stderr ("\r" updates on a terminal, one line per 10 % otherwise). */
typedef struct { const char *what; long total, last_pct; double t0; int tty; } cli_progress;
void cli_progress_begin(cli_progress *p, const char *what, long total);
void cli_progress_update(cli_progress *p, long done, const char *extra);
void cli_progress_end(cli_progress *p);
int cli_cores(void);
/* FILE.safetensors -> FILE<suffix> (".ckpt.safetensors", ".csv"); other names get the suffix
 * appended. malloc'd (caller frees), NULL when out of memory. */
char *cli_path_with(const char *out, const char *suffix);
/* splitmix64 of x (sim/rng.h): per-step seeds and sample picks derived from a run's seed. */
uint64_t cli_mix64(uint64_t x);
/* qsort comparator of floats, ascending (medians of recent losses). */
int cli_cmp_float(const void *a, const void *b);

#endif
