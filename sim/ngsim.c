/* ngsim.c - NGSIM loader (two formats, units, smoothing, headings, tracks), replay driver
 * and exporter (contract and conventions: ngsim.h). */
#include "sim/ngsim.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int fail(char *err, int errlen, const char *fmt, ...) {
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, (size_t)errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void ew_ngsim_opts_default(ew_ngsim_opts *o) {
    memset(o, 0, sizeof *o);
    o->smooth_window = 1.5f;
    o->frame_dt = 0.1f;
    o->lane_width_ft = 12.0f;
    o->n_main = 0;
    o->road_width_ft = 0.0f;
    o->x_offset = 0.0f;
}

/* ---- parsing ------------------------------------------------------------------------ */

enum {
    C_VID, C_FRAME, C_TOTAL, C_GTIME, C_LX, C_LY, C_GX, C_GY, C_LEN, C_WID, C_CLASS, C_VEL, C_ACC,
    C_LANE, C_PREC, C_FOLL, C_SH, C_TH, C_N
};
static const char *const col_names[C_N] = {
    "Vehicle_ID", "Frame_ID", "Total_Frames", "Global_Time", "Local_X", "Local_Y", "Global_X",
    "Global_Y", "v_Length", "v_Width", "v_Class", "v_Vel", "v_Acc", "Lane_ID", "Preceding",
    "Following", "Space_Headway", "Time_Headway"};
static const int col_required[C_N] = {1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0};

#define MAX_FIELDS 64

typedef struct {
    uint32_t vid;
    int frame, v_class, lane_id, line, idx;
    double lx, ly, len, wid, vel, acc;
} row_t;

/* Splits a line in place. sep = ',' splits at commas (fields trimmed, empty fields kept);
 * sep = 0 splits at runs of blanks and commas. Returns the field count (> MAX_FIELDS: too many). */
static int split(char *s, char sep, char **f) {
    int n = 0;
    if (sep == ',') {
        char *p = s;
        for (;;) {
            char *c = strchr(p, ',');
            if (c) *c = 0;
            while (*p == ' ' || *p == '\t') p++;
            char *e = p + strlen(p);
            while (e > p && (e[-1] == ' ' || e[-1] == '\t')) *--e = 0;
            if (n < MAX_FIELDS) f[n] = p;
            n++;
            if (!c) break;
            p = c + 1;
        }
        return n;
    }
    char *p = s;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        if (!*p) break;
        if (n < MAX_FIELDS) f[n] = p;
        n++;
        while (*p && *p != ' ' && *p != '\t' && *p != ',') p++;
        if (!*p) break;
        *p++ = 0;
    }
    return n;
}

static int blank(const char *s) {
    for (; *s; s++)
        if (!isspace((unsigned char)*s)) return 0;
    return 1;
}

static int parse_num(const char *name, int line, const char *col, const char *s, double *out, char *err, int errlen) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno == ERANGE || !isfinite(v))
        return fail(err, errlen, "%s:%d: column %s: '%.40s' is not a number", name, line, col, s);
    *out = v;
    return 0;
}

static int parse_int(const char *name, int line, const char *col, const char *s, double lo, double hi, double *out,
                     char *err, int errlen) {
    if (parse_num(name, line, col, s, out, err, errlen) != 0) return -1;
    if (*out != floor(*out) || *out < lo || *out > hi)
        return fail(err, errlen, "%s:%d: column %s: '%.40s' is not an integer in [%.0f, %.0f]", name, line, col, s, lo, hi);
    return 0;
}

static int cmp_rows(const void *a, const void *b) {
    const row_t *x = a, *y = b;
    if (x->vid != y->vid) return x->vid < y->vid ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

/* Quadratic Savitzky-Golay weight of offset j in a centred window of half-width m. */
static double sg_weight(int m, int j) {
    double mm = m;
    return (3.0 * (3.0 * mm * mm + 3.0 * mm - 1.0) - 15.0 * (double)j * j) /
           ((2.0 * mm + 1.0) * (4.0 * mm * mm + 4.0 * mm - 3.0));
}

/* Headings and speeds of the points P (n samples, runs of contiguous frames in run[]). */
static void motion(const double *px, const double *py, const int *run, int n, float fdt, float *hx, float *hy,
                   float *v) {
    int have = 0;
    float lx = 1.0f, ly = 0.0f;
    int first_valid = -1;
    for (int k = 0; k < n; k++) {
        int a = k, b = k;
        if (k > 0 && run[k - 1] == run[k]) a = k - 1;
        if (k + 1 < n && run[k + 1] == run[k]) b = k + 1;
        double dx = px[b] - px[a], dy = py[b] - py[a];
        double span = (double)(b - a) * fdt;
        double d = sqrt(dx * dx + dy * dy);
        if (b > a && d > 1e-3 * (b - a)) {
            lx = (float)(dx / d);
            ly = (float)(dy / d);
            have = 1;
            if (first_valid < 0) first_valid = k;
        }
        hx[k] = lx;
        hy[k] = ly;
        v[k] = b > a ? (float)(d / span) : 0.0f;
    }
    if (have)
        for (int k = 0; k < first_valid; k++) {
            hx[k] = hx[first_valid];
            hy[k] = hy[first_valid];
        }
}

static int build_track(ew_ngsim *g, ew_ngsim_track *tr, const row_t *rows, int n, char *err, int errlen) {
    const ew_ngsim_opts *o = &g->opts;
    tr->vid = rows[0].vid;
    tr->v_class = rows[0].v_class;
    tr->type = rows[0].v_class == 3 ? EW_VT_TRUCK : rows[0].v_class == 1 ? EW_VT_MOTO : EW_VT_CAR;
    tr->length = (float)(rows[0].len * EW_FT);
    tr->width = (float)(rows[0].wid * EW_FT);
    tr->n = n;
    tr->s = calloc((size_t)n, sizeof *tr->s);
    double *buf = malloc(sizeof(double) * 6 * (size_t)n);
    int *run = malloc(sizeof(int) * (size_t)n);
    float *tmp = malloc(sizeof(float) * 3 * (size_t)n);
    if (!tr->s || !buf || !run || !tmp) {
        free(buf);
        free(run);
        free(tmp);
        return fail(err, errlen, "ngsim: out of memory");
    }
    double *fx = buf, *fy = buf + n, *sx = buf + 2 * n, *sy = buf + 3 * n, *cx = buf + 4 * n, *cy = buf + 5 * n;
    float *hx = tmp, *hy = tmp + n, *vv = tmp + 2 * n;
    int r = 0;
    for (int k = 0; k < n; k++) {
        const row_t *w = &rows[k];
        ew_ngsim_sample *s = &tr->s[k];
        s->frame = w->frame;
        fx[k] = w->ly * EW_FT + o->x_offset;
        fy[k] = ((double)o->road_width_ft - w->lx) * EW_FT;
        s->x_raw = (float)fx[k];
        s->y_raw = (float)fy[k];
        s->v_file = (float)(w->vel * EW_FT);
        s->a_file = (float)(w->acc * EW_FT);
        s->lane_id = w->lane_id;
        s->lane = w->lane_id <= o->n_main ? o->n_main - w->lane_id : w->lane_id - 1;
        if (k > 0 && w->frame != rows[k - 1].frame + 1) r++;
        run[k] = r;
    }
    /* smoothing of the front point */
    int M = (int)floor(o->smooth_window / o->frame_dt / 2.0 + 1e-6);
    for (int k = 0; k < n; k++) {
        int m = M;
        while (m > 0 && (k - m < 0 || k + m >= n || run[k - m] != run[k] || run[k + m] != run[k])) m--;
        if (m <= 1) {
            sx[k] = fx[k];
            sy[k] = fy[k];
            continue;
        }
        double ax = 0.0, ay = 0.0;
        for (int j = -m; j <= m; j++) {
            double c = sg_weight(m, j);
            ax += c * fx[k + j];
            ay += c * fy[k + j];
        }
        sx[k] = ax;
        sy[k] = ay;
    }
    /* the footprint centre: half a length behind the front along the road axis; headings
     * and speeds from the centre's motion */
    double hl = 0.5 * rows[0].len * EW_FT;
    for (int k = 0; k < n; k++) {
        cx[k] = sx[k] - hl;
        cy[k] = sy[k];
    }
    motion(cx, cy, run, n, o->frame_dt, hx, hy, vv);
    for (int k = 0; k < n; k++) {
        ew_ngsim_sample *s = &tr->s[k];
        s->x = (float)cx[k];
        s->y = (float)cy[k];
        s->hx = hx[k];
        s->hy = hy[k];
        s->v = vv[k];
        if (s->x < g->x_min) g->x_min = s->x;
        if (s->x > g->x_max) g->x_max = s->x;
        if (s->v > g->v_max) g->v_max = s->v;
    }
    free(buf);
    free(run);
    free(tmp);
    return 0;
}

ew_ngsim *ew_ngsim_parse(const char *text, size_t len, const char *name, const ew_ngsim_opts *opts, char *err,
                         int errlen) {
    ew_ngsim_opts o;
    if (opts) o = *opts;
    else ew_ngsim_opts_default(&o);
    if (!(o.smooth_window >= 0.0f && o.smooth_window <= 60.0f && o.frame_dt > 0.0f && o.frame_dt <= 10.0f &&
          o.lane_width_ft > 1.0f && o.lane_width_ft < 100.0f && o.n_main >= 0 && o.n_main <= EW_MAX_MAIN_LANES &&
          o.road_width_ft >= 0.0f && isfinite(o.x_offset))) {
        fail(err, errlen, "%s: invalid loader options (smooth_window, frame_dt, lane_width_ft, n_main 0..%d, "
                          "road_width_ft)", name, EW_MAX_MAIN_LANES);
        return NULL;
    }
    char *buf = malloc(len + 1);
    row_t *rows = NULL;
    ew_ngsim *g = NULL;
    if (!buf) {
        fail(err, errlen, "%s: out of memory", name);
        return NULL;
    }
    memcpy(buf, text, len);
    buf[len] = 0;
    if (memchr(buf, 0, len)) {
        fail(err, errlen, "%s: binary data (a NUL byte) in a text file", name);
        goto bad;
    }
    int cap = 0, nrows = 0, line = 0, header = -1;
    char sep = 0;
    int colpos[C_N];
    int ncols_header = 0;
    char *f[MAX_FIELDS];
    char *p = buf;
    while (*p) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        line++;
        size_t ll = strlen(p);
        if (ll && p[ll - 1] == '\r') p[ll - 1] = 0;
        char *cur = p;
        p = nl ? nl + 1 : p + ll;
        if (blank(cur)) continue;
        if (header < 0) {
            /* first non-blank line: a header when it names Vehicle_ID */
            const char *q = cur;
            header = 0;
            for (; *q; q++)
                if (strncasecmp(q, "vehicle_id", 10) == 0) header = 1;
            if (header) {
                sep = strchr(cur, ',') ? ',' : 0;
                int n = split(cur, sep, f);
                if (n > MAX_FIELDS) {
                    fail(err, errlen, "%s:%d: header has more than %d columns", name, line, MAX_FIELDS);
                    goto bad;
                }
                for (int c = 0; c < C_N; c++) colpos[c] = -1;
                for (int i = 0; i < n; i++) {
                    const char *h = f[i];
                    size_t hl2 = strlen(h);
                    if (hl2 >= 2 && h[0] == '"' && h[hl2 - 1] == '"') {
                        h++;
                        f[i][hl2 - 1] = 0;
                    }
                    for (int c = 0; c < C_N; c++) {
                        if (strcasecmp(h, col_names[c]) != 0) continue;
                        if (colpos[c] >= 0) {
                            fail(err, errlen, "%s:%d: column %s appears twice", name, line, col_names[c]);
                            goto bad;
                        }
                        colpos[c] = i;
                    }
                }
                for (int c = 0; c < C_N; c++)
                    if (col_required[c] && colpos[c] < 0) {
                        fail(err, errlen, "%s:%d: header lacks the column %s", name, line, col_names[c]);
                        goto bad;
                    }
                ncols_header = n;
                continue;
            }
            for (int c = 0; c < C_N; c++) colpos[c] = c;
            ncols_header = C_N;
        }
        int n = split(cur, sep, f);
        if (n != ncols_header) {
            fail(err, errlen, "%s:%d: expected %d columns, found %d", name, line, ncols_header, n);
            goto bad;
        }
        if (nrows == cap) {
            int nc = cap ? 2 * cap : 1024;
            row_t *nr = realloc(rows, sizeof *rows * (size_t)nc);
            if (!nr) {
                fail(err, errlen, "%s: out of memory at line %d", name, line);
                goto bad;
            }
            rows = nr;
            cap = nc;
        }
        row_t *w = &rows[nrows];
        double v[C_N] = {0};
        for (int c = 0; c < C_N; c++) {
            if (colpos[c] < 0) continue;
            if (!header || col_required[c]) {
                const char *s = f[colpos[c]];
                int rc;
                if (c == C_VID) rc = parse_int(name, line, col_names[c], s, 1, 4294967295.0, &v[c], err, errlen);
                else if (c == C_FRAME) rc = parse_int(name, line, col_names[c], s, 0, 1e9, &v[c], err, errlen);
                else if (c == C_LANE) rc = parse_int(name, line, col_names[c], s, 1, 1e6, &v[c], err, errlen);
                else if (c == C_CLASS) rc = parse_int(name, line, col_names[c], s, 0, 1e6, &v[c], err, errlen);
                else rc = parse_num(name, line, col_names[c], s, &v[c], err, errlen);
                if (rc) goto bad;
            }
        }
        if (!(v[C_LEN] > 0.0) || !(v[C_WID] > 0.0)) {
            fail(err, errlen, "%s:%d: vehicle length and width must be positive (got %g ft, %g ft)", name, line,
                 v[C_LEN], v[C_WID]);
            goto bad;
        }
        if (v[C_LEN] > 100.0 || v[C_WID] > 12.0) {
            fail(err, errlen, "%s:%d: vehicle size %g x %g ft is not a road vehicle", name, line, v[C_LEN], v[C_WID]);
            goto bad;
        }
        if (v[C_VEL] < 0.0 || v[C_VEL] > 300.0) {
            fail(err, errlen, "%s:%d: v_Vel must be in [0, 300] ft/s (got %g)", name, line, v[C_VEL]);
            goto bad;
        }
        /* finite doubles can still overflow the float track (found by fuzz/fuzz_ngsim.c) */
        if (fabs(v[C_LX]) > 1e4 || fabs(v[C_LY]) > 3e6) {
            fail(err, errlen, "%s:%d: position Local_X %g ft, Local_Y %g ft out of range (|Local_X| <= 1e4, |Local_Y| <= 3e6)",
                 name, line, v[C_LX], v[C_LY]);
            goto bad;
        }
        if (fabs(v[C_ACC]) > 1000.0) {
            fail(err, errlen, "%s:%d: v_Acc must be in [-1000, 1000] ft/s^2 (got %g)", name, line, v[C_ACC]);
            goto bad;
        }
        w->vid = (uint32_t)v[C_VID];
        w->frame = (int)v[C_FRAME];
        w->v_class = (int)v[C_CLASS];
        w->lane_id = (int)v[C_LANE];
        w->lx = v[C_LX];
        w->ly = v[C_LY];
        w->len = v[C_LEN];
        w->wid = v[C_WID];
        w->vel = v[C_VEL];
        w->acc = v[C_ACC];
        w->line = line;
        w->idx = nrows;
        nrows++;
    }
    if (nrows == 0) {
        fail(err, errlen, "%s: no data rows", name);
        goto bad;
    }
    qsort(rows, (size_t)nrows, sizeof *rows, cmp_rows);
    g = calloc(1, sizeof *g);
    if (!g) {
        fail(err, errlen, "%s: out of memory", name);
        goto bad;
    }
    int lane_max = 0, ntr = 0;
    for (int i = 0; i < nrows; i++) {
        if (rows[i].lane_id > lane_max) lane_max = rows[i].lane_id;
        if (i == 0 || rows[i].vid != rows[i - 1].vid) ntr++;
        else if (rows[i].frame <= rows[i - 1].frame) {
            fail(err, errlen, "%s:%d: vehicle %u: frame %d comes after frame %d (line %d); the frames of a vehicle must "
                              "increase", name, rows[i].line, (unsigned)rows[i].vid, rows[i].frame, rows[i - 1].frame,
                 rows[i - 1].line);
            goto bad;
        }
    }
    if (o.n_main == 0) o.n_main = lane_max < EW_MAX_MAIN_LANES ? lane_max : EW_MAX_MAIN_LANES;
    if (o.road_width_ft == 0.0f) o.road_width_ft = (float)o.n_main * o.lane_width_ft;
    for (int i = 0; i < nrows; i++)
        if (rows[i].lane_id > o.n_main && rows[i].lane_id - 1 >= EW_MAX_LANES) {
            fail(err, errlen, "%s:%d: Lane_ID %d is beyond the %d lanes a road can have", name, rows[i].line,
                 rows[i].lane_id, EW_MAX_LANES);
            goto bad;
        }
    g->opts = o;
    g->n_rows = nrows;
    g->lane_id_max = lane_max;
    g->x_min = INFINITY;
    g->x_max = -INFINITY;
    g->frame_min = rows[0].frame;
    g->frame_max = rows[0].frame;
    g->tracks = calloc((size_t)ntr, sizeof *g->tracks);
    if (!g->tracks) {
        fail(err, errlen, "%s: out of memory", name);
        goto bad;
    }
    for (int i = 0; i < nrows;) {
        int j = i;
        while (j < nrows && rows[j].vid == rows[i].vid) j++;
        if (build_track(g, &g->tracks[g->n_tracks], rows + i, j - i, err, errlen) != 0) {
            g->n_tracks++;
            goto bad;
        }
        g->n_tracks++;
        for (int k = i; k < j; k++) {
            if (rows[k].frame < g->frame_min) g->frame_min = rows[k].frame;
            if (rows[k].frame > g->frame_max) g->frame_max = rows[k].frame;
        }
        i = j;
    }
    free(rows);
    free(buf);
    return g;
bad:
    free(rows);
    free(buf);
    ew_ngsim_free(g);
    return NULL;
}

ew_ngsim *ew_ngsim_load(const char *path, const ew_ngsim_opts *o, char *err, int errlen) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, fp);
        n += got;
        if (got == 0) break;
    }
    int rerr = ferror(fp);
    fclose(fp);
    if (!buf) {
        fail(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    if (rerr) {
        free(buf);
        fail(err, errlen, "%s: read error", path);
        return NULL;
    }
    ew_ngsim *g = ew_ngsim_parse(buf, n, path, o, err, errlen);
    free(buf);
    return g;
}

void ew_ngsim_free(ew_ngsim *g) {
    if (!g) return;
    for (int i = 0; i < g->n_tracks; i++) free(g->tracks[i].s);
    free(g->tracks);
    free(g);
}

int ew_ngsim_find(const ew_ngsim *g, uint32_t vid) {
    int lo = 0, hi = g->n_tracks - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (g->tracks[mid].vid == vid) return mid;
        if (g->tracks[mid].vid < vid) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

int ew_ngsim_state_at(const ew_ngsim_track *tr, float frame_dt, double t, ew_ngsim_sample *out) {
    if (tr->n == 0) return 0;
    double f = t / frame_dt;
    const double eps = 1e-4;
    if (f < tr->s[0].frame - eps || f > tr->s[tr->n - 1].frame + eps) return 0;
    int lo = 0, hi = tr->n - 1;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (tr->s[mid].frame <= f) lo = mid;
        else hi = mid;
    }
    const ew_ngsim_sample *a = &tr->s[lo], *b = &tr->s[hi];
    double u = hi > lo ? (f - a->frame) / (double)(b->frame - a->frame) : 0.0;
    if (u < 0.0) u = 0.0;
    if (u > 1.0) u = 1.0;
    if (u < eps) {
        *out = *a;
        return 1;
    }
    if (u > 1.0 - eps) {
        *out = *b;
        return 1;
    }
    *out = u < 0.5 ? *a : *b;
    float fu = (float)u;
    out->x = (float)(a->x + u * (b->x - a->x));
    out->y = (float)(a->y + u * (b->y - a->y));
    out->v = a->v + fu * (b->v - a->v);
    out->v_file = a->v_file + fu * (b->v_file - a->v_file);
    float hx = a->hx + fu * (b->hx - a->hx), hy = a->hy + fu * (b->hy - a->hy);
    float nh = sqrtf(hx * hx + hy * hy);
    if (nh > 1e-6f) {
        out->hx = hx / nh;
        out->hy = hy / nh;
    }
    return 1;
}

int ew_ngsim_world_config(const ew_ngsim *g, uint32_t ego_vid, ew_world_config *cfg, char *err, int errlen) {
    ew_world_config_default(cfg);
    const ew_ngsim_opts *o = &g->opts;
    float lw = (float)(o->lane_width_ft * EW_FT);
    float xmax = g->x_max > 0.0f ? g->x_max : 0.0f;
    float length = ceilf((xmax + 50.0f) / 10.0f) * 10.0f;
    float lim = g->v_max > 13.4f ? ceilf(g->v_max * 10.0f) / 10.0f : 13.4f;
    if (lim > 100.0f) lim = 100.0f;
    if (ew_road_init_highway(&cfg->road, o->n_main, lw, length, lim, err, errlen) != 0) return -1;
    for (int id = o->n_main + 1; id <= g->lane_id_max; id++)
        if (ew_road_add_onramp(&cfg->road, 0.0f, length, 0.0f, lim, err, errlen) != 0) return -1;
    for (int l = 0; l < EW_MAX_LANES; l++) {
        cfg->density_per_km[l] = 0.0f;
        cfg->flow_per_h[l] = 0.0f;
    }
    cfg->dt = o->frame_dt;
    cfg->max_vehicles = g->n_tracks + 16 < 100000 ? g->n_tracks + 16 : 100000;
    cfg->ego_enabled = 0;
    if (ego_vid) {
        int i = ew_ngsim_find(g, ego_vid);
        if (i < 0) return fail(err, errlen, "ngsim: no vehicle %u in the log", (unsigned)ego_vid);
        const ew_ngsim_track *tr = &g->tracks[i];
        const ew_ngsim_sample *s = &tr->s[0];
        if (s->lane >= cfg->road.n_lanes) return fail(err, errlen, "ngsim: vehicle %u starts in lane id %d, not on the road",
                                                      (unsigned)ego_vid, s->lane_id);
        if (!(s->x >= 0.0f)) return fail(err, errlen, "ngsim: vehicle %u starts at x = %g < 0 (set x_offset)",
                                         (unsigned)ego_vid, (double)s->x);
        cfg->ego_enabled = 1;
        cfg->ego_lane = s->lane;
        cfg->ego_x = s->x;
        cfg->ego_speed = s->v;
        cfg->ego_length = tr->length < 0.5f ? 0.5f : tr->length;
        cfg->ego_width = tr->width < 0.3f ? 0.3f : tr->width > 3.5f ? 3.5f : tr->width;
    }
    return ew_world_config_validate(cfg, err, errlen);
}

/* ---- replay ------------------------------------------------------------------------- */

struct ew_replay {
    const ew_ngsim *g;
    ew_replay_opts o;
    int ego_track;
    double t0;
    uint32_t *wid; /* per track: world id (0: not in the world) */
    ew_replay_stats st;
};

ew_replay *ew_replay_create(const ew_ngsim *g, const ew_replay_opts *o, char *err, int errlen) {
    ew_replay *r = calloc(1, sizeof *r);
    if (!r || !(r->wid = calloc((size_t)(g->n_tracks > 0 ? g->n_tracks : 1), sizeof *r->wid))) {
        free(r);
        fail(err, errlen, "replay: out of memory");
        return NULL;
    }
    r->g = g;
    if (o) r->o = *o;
    else r->o.t_start = NAN;
    r->ego_track = -1;
    if (r->o.ego_vid) {
        r->ego_track = ew_ngsim_find(g, r->o.ego_vid);
        if (r->ego_track < 0) {
            fail(err, errlen, "replay: no vehicle %u in the log", (unsigned)r->o.ego_vid);
            ew_replay_destroy(r);
            return NULL;
        }
    }
    if (isnan(r->o.t_start)) {
        int f = r->ego_track >= 0 ? g->tracks[r->ego_track].s[0].frame : g->frame_min;
        r->t0 = (double)f * g->opts.frame_dt;
    } else if (isfinite(r->o.t_start)) {
        r->t0 = r->o.t_start;
    } else {
        fail(err, errlen, "replay: t_start must be finite or NAN");
        ew_replay_destroy(r);
        return NULL;
    }
    return r;
}

void ew_replay_destroy(ew_replay *r) {
    if (!r) return;
    free(r->wid);
    free(r);
}

ew_replay_stats ew_replay_get_stats(const ew_replay *r) { return r->st; }
double ew_replay_t_start(const ew_replay *r) { return r->t0; }

uint32_t ew_replay_world_id(const ew_replay *r, uint32_t vid) {
    int i = ew_ngsim_find(r->g, vid);
    return i >= 0 ? r->wid[i] : 0;
}

static int spawn_track(ew_replay *r, ew_world *w, int i, const ew_ngsim_sample *s, char *err, int errlen) {
    const ew_ngsim_track *tr = &r->g->tracks[i];
    const ew_road *road = ew_world_road(w);
    ew_spawn sp;
    memset(&sp, 0, sizeof sp);
    sp.type = tr->type;
    sp.lane = s->lane < road->n_lanes ? s->lane : ew_road_lane_at(road, s->x, s->y);
    if (sp.lane < 0) sp.lane = 0;
    sp.x = s->x;
    sp.y = s->y;
    sp.v = s->v > 100.0f ? 100.0f : s->v;
    sp.length = tr->length > 30.0f ? 30.0f : tr->length;
    sp.width = tr->width > 3.5f ? 3.5f : tr->width;
    sp.flags = EW_VF_EXTERNAL;
    char e2[256];
    uint32_t id = ew_world_spawn(w, &sp, e2, (int)sizeof e2);
    if (!id) {
        /* The log has this vehicle overlapping another one (or the ego): spawn it clear of
         * the road at the same x, then move it to its logged place. */
        sp.y = -1000.0f;
        id = ew_world_spawn(w, &sp, err, errlen);
        if (!id) return -1;
        if (ew_world_set_external(w, id, s->x, s->y, s->hx, s->hy, sp.v, err, errlen) != 0) return -1;
        r->st.parked_spawns++;
    } else if (ew_world_set_external(w, id, s->x, s->y, s->hx, s->hy, sp.v, err, errlen) != 0) {
        return -1;
    }
    r->wid[i] = id;
    r->st.spawned++;
    return 0;
}

int ew_replay_sync(ew_replay *r, ew_world *w, double t, char *err, int errlen) {
    const ew_ngsim *g = r->g;
    const ew_road *road = ew_world_road(w);
    double tl = r->t0 + t;
    for (int i = 0; i < g->n_tracks; i++) {
        if (i == r->ego_track) continue;
        ew_ngsim_sample s;
        int present = ew_ngsim_state_at(&g->tracks[i], g->opts.frame_dt, tl, &s);
        if (present && !(s.x >= 0.0f && s.x < road->length)) {
            present = 0;
            r->st.outside++;
        }
        if (r->wid[i] && ew_world_find(w, r->wid[i]) < 0) r->wid[i] = 0; /* removed by someone else */
        if (!present) {
            if (r->wid[i]) {
                if (ew_world_remove(w, r->wid[i], err, errlen) != 0) return -1;
                r->wid[i] = 0;
                r->st.removed++;
            }
            continue;
        }
        float v = s.v > 100.0f ? 100.0f : s.v;
        if (!r->wid[i]) {
            if (spawn_track(r, w, i, &s, err, errlen) != 0) return -1;
        } else {
            if (ew_world_set_external(w, r->wid[i], s.x, s.y, s.hx, s.hy, v, err, errlen) != 0) return -1;
            r->st.moved++;
        }
    }
    return 0;
}

static void set_ego_from(ew_world *w, const ew_ngsim_sample *s) {
    ew_kin_state k = {s->x, s->y, s->hx, s->hy, s->v};
    ew_world_set_ego(w, &k);
}

int ew_replay_begin(ew_replay *r, ew_world *w, char *err, int errlen) {
    memset(r->wid, 0, sizeof *r->wid * (size_t)(r->g->n_tracks > 0 ? r->g->n_tracks : 1));
    memset(&r->st, 0, sizeof r->st);
    if (r->ego_track >= 0 && ew_world_config_of(w)->ego_enabled) {
        ew_ngsim_sample s;
        if (ew_ngsim_state_at(&r->g->tracks[r->ego_track], r->g->opts.frame_dt, r->t0, &s)) set_ego_from(w, &s);
    }
    return ew_replay_sync(r, w, 0.0, err, errlen);
}

int ew_replay_hook(void *ctx, ew_world *w, ew_episode *ep, char *label, int labellen, char *err, int errlen) {
    (void)label;
    (void)labellen;
    ew_replay *r = ctx;
    float dt = ew_world_config_of(w)->dt;
    int k = ep->m.steps;
    double t = (double)k * dt, tn = (double)(k + 1) * dt;
    if (ew_replay_sync(r, w, tn, err, errlen) != 0) return -1;
    if (r->ego_track < 0 || !ew_world_config_of(w)->ego_enabled) return 0;
    const ew_ngsim_track *tr = &r->g->tracks[r->ego_track];
    float fdt = r->g->opts.frame_dt;
    ew_ngsim_sample a, b;
    int ha = ew_ngsim_state_at(tr, fdt, r->t0 + t, &a);
    if (k < ep->cfg.n_cond) {
        if (!ha) return 0;
        if (ew_ngsim_state_at(tr, fdt, r->t0 + tn, &b)) {
            /* p' = p + dt s d exactly: choose d and s so that the step lands on b */
            float dx = b.x - a.x, dy = b.y - a.y, d = sqrtf(dx * dx + dy * dy);
            ew_kin_state ks = {a.x, a.y, a.hx, a.hy, 0.0f};
            if (d > 1e-6f) {
                ks.dx = dx / d;
                ks.dy = dy / d;
                ks.s = d / dt;
            }
            ew_world_set_ego(w, &ks);
        } else {
            set_ego_from(w, &a);
        }
    } else if (k == ep->cfg.n_cond && ha) {
        set_ego_from(w, &a); /* hand-over from the logged state */
    }
    return 0;
}

/* ---- export ------------------------------------------------------------------------- */

typedef struct {
    uint32_t vid;
    int frame, type, lane_id, is_ego;
    float x, y, hx, hy, v, acc, len, wid;
    uint32_t prec, foll;
    float sh_ft, th_s;
} xrow;

struct ew_ngsim_rec {
    ew_road road;
    int include_ego, frames;
    xrow *rows;
    int64_t n, cap;
    uint32_t max_vid;
    float ego_prev_v;
};

ew_ngsim_rec *ew_ngsim_rec_create(const ew_road *road, int include_ego, char *err, int errlen) {
    if (ew_road_validate(road, err, errlen) != 0) return NULL;
    ew_ngsim_rec *r = calloc(1, sizeof *r);
    if (!r) {
        fail(err, errlen, "export: out of memory");
        return NULL;
    }
    r->road = *road;
    r->include_ego = include_ego;
    return r;
}

void ew_ngsim_rec_destroy(ew_ngsim_rec *r) {
    if (!r) return;
    free(r->rows);
    free(r);
}

int ew_ngsim_rec_frames(const ew_ngsim_rec *r) { return r->frames; }
int64_t ew_ngsim_rec_rows(const ew_ngsim_rec *r) { return r->n; }
uint32_t ew_ngsim_rec_ego_vid(const ew_ngsim_rec *r) { return r->include_ego ? r->max_vid + 1 : 0; }

static int lane_id_of(const ew_road *road, int lane) {
    return lane < road->n_main ? road->n_main - lane : lane + 1;
}

static xrow *push_row(ew_ngsim_rec *r) {
    if (r->n == r->cap) {
        int64_t nc = r->cap ? 2 * r->cap : 4096;
        xrow *nr = realloc(r->rows, sizeof *nr * (size_t)nc);
        if (!nr) return NULL;
        r->rows = nr;
        r->cap = nc;
    }
    xrow *x = &r->rows[r->n++];
    memset(x, 0, sizeof *x);
    return x;
}

int ew_ngsim_rec_frame(ew_ngsim_rec *r, const ew_world *w, char *err, int errlen) {
    const ew_vehicles *V = ew_world_vehicles(w);
    const ew_road *road = ew_world_road(w);
    int frame = ++r->frames;
    for (int i = 0; i < V->n; i++) {
        xrow *x = push_row(r);
        if (!x) return fail(err, errlen, "export: out of memory");
        x->vid = V->id[i];
        if (x->vid > r->max_vid) r->max_vid = x->vid;
        x->frame = frame;
        x->type = V->type[i];
        x->x = V->x[i];
        x->y = V->y[i];
        x->hx = V->hx[i];
        x->hy = V->hy[i];
        x->v = V->v[i];
        x->acc = V->acc[i];
        x->len = V->len[i];
        x->wid = V->wid[i];
        int lane = ew_road_lane_at(road, V->x[i], V->y[i]);
        if (lane < 0) lane = V->lane[i];
        x->lane_id = lane_id_of(road, lane);
        int li = ew_world_leader(w, V->lane[i], V->x[i], i);
        int fi = ew_world_follower(w, V->lane[i], V->x[i], i);
        x->prec = li >= 0 ? V->id[li] : 0;
        x->foll = fi >= 0 ? V->id[fi] : 0;
        if (li >= 0) {
            x->sh_ft = (float)(((V->x[li] + 0.5f * V->len[li]) - (V->x[i] + 0.5f * V->len[i])) / EW_FT);
            x->th_s = V->v[i] > 0.01f ? (float)(x->sh_ft * EW_FT / V->v[i]) : 9999.99f;
        }
    }
    const ew_world_config *cfg = ew_world_config_of(w);
    if (r->include_ego && cfg->ego_enabled) {
        const ew_kin_state *e = ew_world_ego(w);
        xrow *x = push_row(r);
        if (!x) return fail(err, errlen, "export: out of memory");
        x->is_ego = 1;
        x->frame = frame;
        x->type = EW_VT_CAR;
        x->x = e->x;
        x->y = e->y;
        x->hx = e->dx;
        x->hy = e->dy;
        x->v = e->s;
        x->acc = frame > 1 ? (e->s - r->ego_prev_v) / cfg->dt : 0.0f;
        r->ego_prev_v = e->s;
        x->len = cfg->ego_length;
        x->wid = cfg->ego_width;
        int lane = ew_road_lane_at(road, e->x, e->y);
        x->lane_id = lane_id_of(road, lane >= 0 ? lane : 0);
        int li = lane >= 0 ? ew_world_leader(w, lane, e->x, -1) : -1;
        x->prec = li >= 0 ? V->id[li] : 0;
        if (li >= 0) {
            x->sh_ft = (float)(((V->x[li] + 0.5f * V->len[li]) - (e->x + 0.5f * x->len)) / EW_FT);
            x->th_s = e->s > 0.01f ? (float)(x->sh_ft * EW_FT / e->s) : 9999.99f;
        }
    }
    return 0;
}

static int cmp_xrows(const void *a, const void *b) {
    const xrow *x = a, *y = b;
    if (x->vid != y->vid) return x->vid < y->vid ? -1 : 1;
    return x->frame < y->frame ? -1 : (x->frame > y->frame);
}

static double main_top(const ew_road *road) {
    const ew_lane *l = &road->lanes[road->n_main - 1];
    return (double)l->y_right + (double)l->width;
}

void ew_ngsim_export_opts(const ew_road *road, ew_ngsim_opts *o) {
    ew_ngsim_opts_default(o);
    o->smooth_window = 0.0f;
    o->n_main = road->n_main;
    o->lane_width_ft = (float)(road->lanes[0].width / EW_FT);
    o->road_width_ft = (float)(main_top(road) / EW_FT);
}

int ew_ngsim_rec_write(const ew_ngsim_rec *r, FILE *out, char *err, int errlen) {
    xrow *rows = malloc(sizeof *rows * (size_t)(r->n > 0 ? r->n : 1));
    if (!rows) return fail(err, errlen, "export: out of memory");
    memcpy(rows, r->rows, sizeof *rows * (size_t)r->n);
    uint32_t ego_vid = r->max_vid + 1;
    for (int64_t i = 0; i < r->n; i++)
        if (rows[i].is_ego) rows[i].vid = ego_vid;
    qsort(rows, (size_t)r->n, sizeof *rows, cmp_xrows);
    /* the road width in ft as the loader will compute it: a float, exactly as ew_ngsim_export_opts */
    double width_ft = (double)(float)(main_top(&r->road) / EW_FT);
    static const int vclass[EW_VT_COUNT] = {2, 3, 1};
    for (int64_t i = 0; i < r->n;) {
        int64_t j = i;
        while (j < r->n && rows[j].vid == rows[i].vid) j++;
        int total = (int)(j - i);
        for (int64_t k = i; k < j; k++) {
            const xrow *x = &rows[k];
            double fx = (double)x->x + 0.5 * (double)x->len, fy = (double)x->y;
            double local_y = fx / EW_FT, local_x = width_ft - fy / EW_FT;
            int vc = x->type >= 0 && x->type < EW_VT_COUNT ? vclass[x->type] : 2;
            fprintf(out, "%5u %6d %5d %14lld %10.4f %10.4f %12.4f %12.4f %8.4f %7.4f %2d %8.4f %8.4f %2d %5u %5u %9.2f %8.2f\n",
                    (unsigned)x->vid, x->frame, total, (long long)x->frame * 100LL, local_x, local_y, local_x, local_y,
                    x->len / EW_FT, x->wid / EW_FT, vc, x->v / EW_FT, x->acc / EW_FT, x->lane_id, (unsigned)x->prec,
                    (unsigned)x->foll, (double)x->sh_ft, (double)x->th_s);
        }
        i = j;
    }
    free(rows);
    if (ferror(out)) return fail(err, errlen, "export: write error");
    return 0;
}
