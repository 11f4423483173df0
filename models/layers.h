/* layers.h - Linear, Conv2d, ConvTranspose2d and MLP layers over the ops of ops.h.
 *
 * Contract: a layer owns its weights and gradients (one allocation, freed by its _free
 * function) and exposes them as ew_param views named "<name>.weight" / "<name>.bias"
 * (MLPs: "<name>.<i>.weight"), which optimizers and checkpoints use. Initialisation is
 * PyTorch's default, drawn from an explicit seed (same seed, same weights): weights and biases
 * uniform in +-1/sqrt(fan_in), fan_in = in features (Linear), in_ch*kh*kw (Conv2d),
 * out_ch*kh*kw (ConvTranspose2d, whose weight is [in, out, kh, kw]); gradients start at 0.
 * Forward functions wrap the parameters as tensors of the graph each call, so gradients
 * accumulate into the layer's grad buffers on ew_backward. Init functions return 0, or -1 with
 * a message in err (bad sizes, name too long, out of memory) and leave nothing allocated.
 */
#ifndef EW_LAYERS_H
#define EW_LAYERS_H

#include <stddef.h>
#include <stdint.h>

#include "models/ops.h"
#include "models/param.h"

/* A growable array of parameter views (owned by whoever collects them). */
typedef struct {
    ew_param *items;
    int n, cap;
} ew_param_list;

int ew_param_list_add(ew_param_list *pl, const ew_param *p);
void ew_param_list_free(ew_param_list *pl);
/* Total number of parameter elements. */
size_t ew_param_list_numel(const ew_param_list *pl);

typedef struct {
    int in, out, has_bias;
    ew_param weight, bias; /* weight [out, in], bias [out] */
    float *mem;
    ew_allocator al;       /* where mem came from (zero: calloc) */
} ew_linear_layer;

int ew_linear_layer_init(ew_linear_layer *l, const char *name, int in, int out, int bias,
                         uint64_t seed, char *err, size_t errsz);
void ew_linear_layer_free(ew_linear_layer *l);
ew_tensor *ew_linear_layer_fwd(ew_graph *g, const ew_linear_layer *l, ew_tensor *x);
int ew_linear_layer_params(const ew_linear_layer *l, ew_param_list *out);

typedef struct {
    int transposed, ic, oc, kh, kw, has_bias;
    ew_conv_opts opts;
    ew_param weight, bias; /* weight [oc, ic, kh, kw] (transposed: [ic, oc, kh, kw]), bias [oc] */
    float *mem;
    ew_allocator al;       /* where mem came from (zero: calloc) */
} ew_conv_layer;

int ew_conv2d_layer_init(ew_conv_layer *l, const char *name, int ic, int oc, int kh, int kw,
                         const ew_conv_opts *o, int bias, uint64_t seed, char *err, size_t errsz);
int ew_conv_transpose2d_layer_init(ew_conv_layer *l, const char *name, int ic, int oc, int kh,
                                   int kw, const ew_conv_opts *o, int bias, uint64_t seed,
                                   char *err, size_t errsz);
void ew_conv_layer_free(ew_conv_layer *l);
ew_tensor *ew_conv_layer_fwd(ew_graph *g, const ew_conv_layer *l, ew_tensor *x);
int ew_conv_layer_params(const ew_conv_layer *l, ew_param_list *out);

/* Linear layers sizes[0] -> sizes[1] -> ... -> sizes[nlayers], LeakyReLU(slope) between them
 * (slope 0: ReLU), nothing after the last. */
typedef struct {
    int nlayers;
    float slope;
    ew_linear_layer *layers;
} ew_mlp;

int ew_mlp_init(ew_mlp *m, const char *name, int nlayers, const int *sizes, float slope,
                uint64_t seed, char *err, size_t errsz);
void ew_mlp_free(ew_mlp *m);
ew_tensor *ew_mlp_fwd(ew_graph *g, const ew_mlp *m, ew_tensor *x);
int ew_mlp_params(const ew_mlp *m, ew_param_list *out);

/* Moves a layer's storage (weights and gradients, copied) into a block from al (e.g. a device
 * backend's memory), frees the old block, and re-points the ew_param views: parameter lists
 * collected before must be collected again. The layer's _free later uses al. 0, or -1 when
 * al cannot allocate (the layer is left as it was). */
int ew_linear_layer_move(ew_linear_layer *l, const ew_allocator *al);
int ew_conv_layer_move(ew_conv_layer *l, const ew_allocator *al);
int ew_mlp_move(ew_mlp *m, const ew_allocator *al);

#endif
