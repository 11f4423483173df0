/* rng.h - explicit, seeded random numbers (xoshiro256** seeded through splitmix64).
 *
 * Every source of randomness in egoworld owns an ew_rng and is seeded explicitly; there is
 * no global generator. Same seed, same sequence, on every platform (integer arithmetic;
 * the normal sampler uses only IEEE-exact operations plus libm log/sqrt/cos).
 */
#ifndef EW_RNG_H
#define EW_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct { uint64_t s[4]; } ew_rng;

static inline uint64_t ew_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline void ew_rng_seed(ew_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = ew_splitmix64(&x);
}

/* A generator for sub-stream `stream` of `seed` (e.g. one per world in a batch). */
static inline void ew_rng_seed2(ew_rng *r, uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (stream * 0xd1342543de82ef95ULL + 0x2545f4914f6cdd1dULL);
    for (int i = 0; i < 4; i++) r->s[i] = ew_splitmix64(&x);
}

static inline uint64_t ew_rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t ew_rng_u64(ew_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = ew_rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = ew_rotl64(s[3], 45);
    return result;
}

/* Uniform in [0, 1). */
static inline double ew_rng_uniform(ew_rng *r) { return (double)(ew_rng_u64(r) >> 11) * 0x1.0p-53; }

/* Uniform in [lo, hi). */
static inline double ew_rng_range(ew_rng *r, double lo, double hi) { return lo + (hi - lo) * ew_rng_uniform(r); }

/* Uniform integer in [0, n), n > 0. */
static inline uint32_t ew_rng_below(ew_rng *r, uint32_t n) { return (uint32_t)((ew_rng_u64(r) >> 32) * n >> 32); }

/* Standard normal (Box-Muller, one value per call). */
static inline double ew_rng_normal(ew_rng *r) {
    double u1 = 1.0 - ew_rng_uniform(r); /* (0, 1] */
    double u2 = ew_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

#endif
