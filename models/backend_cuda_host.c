/* backend_cuda_host.c - the host-side parts of the CUDA backend (launch and chunk geometry),
 * and, in builds without CUDA, the entry points that report it missing. */
#include <stdio.h>

#include "models/backend_cuda.h"

ew_cuda_options ew_cuda_defaults(void) {
    ew_cuda_options o = {0, 0, 1, (size_t)48 << 20};
    return o;
}

ew_cuda_conv_plan ew_cuda_conv_plan_for(const ew_conv_desc *d, size_t budget_floats) {
    ew_cuda_conv_plan p;
    p.k = (size_t)d->c * (size_t)d->kh * (size_t)d->kw;
    p.p = (size_t)d->oh * (size_t)d->ow;
    size_t per = p.p * (p.k + (size_t)d->oc);
    size_t g = per ? budget_floats / per : (size_t)d->n;
    if (g < 1) g = 1;
    if (g > (size_t)(d->n > 0 ? d->n : 1)) g = (size_t)(d->n > 0 ? d->n : 1);
    p.images = (int)g;
    p.chunks = d->n > 0 ? (d->n + p.images - 1) / p.images : 0;
    p.col_floats = p.k * g * p.p;
    p.wide_floats = (size_t)d->oc * g * p.p;
    return p;
}

unsigned ew_cuda_grid(size_t n, unsigned threads, unsigned max_blocks) {
    if (threads == 0) threads = 1;
    size_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (max_blocks && b > max_blocks) b = max_blocks;
    return (unsigned)b;
}

#ifndef EW_HAVE_CUDA
int ew_cuda_built(void) { return 0; }

int ew_cuda_probe(int device, char *why, size_t whysz) {
    (void)device;
    if (why && whysz) snprintf(why, whysz, "not built with CUDA (configure with nvcc present and -DEGOWORLD_CUDA=ON)");
    return -1;
}

ew_backend *ew_backend_cuda_create(const ew_cuda_options *o, char *err, size_t errsz) {
    (void)o;
    ew_cuda_probe(0, err, errsz);
    return NULL;
}

const char *ew_cuda_device_name(const ew_backend *be) {
    (void)be;
    return "";
}

int ew_backend_is_cuda(const ew_backend *be) {
    (void)be;
    return 0;
}

int ew_cuda_capture_begin(ew_backend *be) {
    (void)be;
    return -1;
}

ew_cuda_graph *ew_cuda_capture_end(ew_backend *be) {
    (void)be;
    return NULL;
}

int ew_cuda_graph_launch(ew_backend *be, ew_cuda_graph *g) {
    (void)be, (void)g;
    return -1;
}

void ew_cuda_graph_free(ew_cuda_graph *g) { (void)g; }
#endif
