/* ops.h - differentiable tensor ops (forward + recorded backward) on an ew_graph.
 *
 * Contract: every op takes the graph first, allocates its output in the graph's arena and,
 * when grad mode is on and an input requires a gradient, records its backward on the tape
 * (see autodiff.h). Outputs are contiguous. A NULL input or a shape error gives NULL and an
 * error in the graph. Shapes are row-major; images NCHW. Scalars (losses, global reductions)
 * have ndim 0 and one element. Randomness comes from an ew_rng the caller passes
 * (sim/rng.h); nothing here keeps global state. Gradients are checked against central finite
 * differences for every op and every input (tests/test_nn_grad.c).
 */
#ifndef EW_OPS_H
#define EW_OPS_H

#include "models/autodiff.h"
#include "sim/rng.h"

/* --- elementwise, broadcasting (numpy rules: align trailing dims, size-1 dims stretch) --- */
ew_tensor *ew_add(ew_graph *g, ew_tensor *a, ew_tensor *b);
ew_tensor *ew_sub(ew_graph *g, ew_tensor *a, ew_tensor *b);
ew_tensor *ew_mul(ew_graph *g, ew_tensor *a, ew_tensor *b);
ew_tensor *ew_div(ew_graph *g, ew_tensor *a, ew_tensor *b);
/* Broadcast copy of x to shape (expand/repeat); the gradient sums back. */
ew_tensor *ew_expand(ew_graph *g, ew_tensor *x, int ndim, const int *shape);

/* --- scalar and unary --- */
ew_tensor *ew_scale(ew_graph *g, ew_tensor *x, float s);      /* s * x */
ew_tensor *ew_add_scalar(ew_graph *g, ew_tensor *x, float s); /* x + s */
ew_tensor *ew_square(ew_graph *g, ew_tensor *x);
ew_tensor *ew_relu(ew_graph *g, ew_tensor *x);
ew_tensor *ew_leaky_relu(ew_graph *g, ew_tensor *x, float slope);
ew_tensor *ew_tanh(ew_graph *g, ew_tensor *x);
ew_tensor *ew_sigmoid(ew_graph *g, ew_tensor *x);
ew_tensor *ew_softplus(ew_graph *g, ew_tensor *x);
ew_tensor *ew_exp(ew_graph *g, ew_tensor *x);
ew_tensor *ew_log(ew_graph *g, ew_tensor *x);

/* --- shape --- */
/* A view with a new shape (same numel; one entry may be -1 to infer). Shares data and grad. */
ew_tensor *ew_reshape(ew_graph *g, ew_tensor *x, int ndim, const int *shape);
/* Concatenation of n tensors along dim (all other sizes equal). */
ew_tensor *ew_concat(ew_graph *g, ew_tensor *const *xs, int n, int dim);
/* x[..., start:start+len, ...] along dim (a copy). */
ew_tensor *ew_slice(ew_graph *g, ew_tensor *x, int dim, int start, int len);

/* --- reductions --- */
ew_tensor *ew_sum(ew_graph *g, ew_tensor *x);  /* scalar */
ew_tensor *ew_mean(ew_graph *g, ew_tensor *x); /* scalar */
ew_tensor *ew_max(ew_graph *g, ew_tensor *x);  /* scalar; gradient to the first maximum */
/* Along one dim; keepdim keeps it with size 1, else it is removed. */
ew_tensor *ew_sum_dim(ew_graph *g, ew_tensor *x, int dim, int keepdim);
ew_tensor *ew_mean_dim(ew_graph *g, ew_tensor *x, int dim, int keepdim);
ew_tensor *ew_max_dim(ew_graph *g, ew_tensor *x, int dim, int keepdim);

/* --- linear algebra and convolution --- */
ew_tensor *ew_matmul(ew_graph *g, ew_tensor *a, ew_tensor *b); /* [m,k] x [k,n] -> [m,n] */
/* y = x w^T + b: x [..., in], w [out, in], b [out] or NULL -> [..., out]. */
ew_tensor *ew_linear(ew_graph *g, ew_tensor *x, ew_tensor *w, ew_tensor *b);

typedef struct {
    int stride[2];   /* h, w */
    int pad[2];      /* h, w: zero padding */
    int out_pad[2];  /* transposed conv only: extra rows/cols at the bottom/right, < stride */
} ew_conv_opts;

/* x [n,c,h,w], w [oc,c,kh,kw], b [oc] or NULL -> [n,oc,(h+2ph-kh)/sh+1,(w+2pw-kw)/sw+1]. */
ew_tensor *ew_conv2d(ew_graph *g, ew_tensor *x, ew_tensor *w, ew_tensor *b, const ew_conv_opts *o);
/* Transposed conv (PyTorch ConvTranspose2d): x [n,ic,h,w], w [ic,oc,kh,kw], b [oc] or NULL ->
 * [n,oc,(h-1)sh-2ph+kh+oph, (w-1)sw-2pw+kw+opw]. */
ew_tensor *ew_conv_transpose2d(ew_graph *g, ew_tensor *x, ew_tensor *w, ew_tensor *b,
                               const ew_conv_opts *o);

/* --- regularisation and sampling (rng advanced; same rng state, same mask) --- */
/* Zeroes each element with probability p and scales the rest by 1/(1-p); p <= 0 returns x. */
ew_tensor *ew_dropout(ew_graph *g, ew_tensor *x, float p, ew_rng *rng);
/* Zeroes whole channels (dims 0 and 1 of an [n,c,...] tensor) with probability p. */
ew_tensor *ew_channel_dropout(ew_graph *g, ew_tensor *x, float p, ew_rng *rng);
/* z = mu + exp(logvar / 2) * eps with eps ~ N(0, I) drawn from rng (same shapes). */
ew_tensor *ew_reparam_sample(ew_graph *g, ew_tensor *mu, ew_tensor *logvar, ew_rng *rng);

/* --- losses (scalars) --- */
/* mean((a - b)^2) over all elements. */
ew_tensor *ew_mse(ew_graph *g, ew_tensor *a, ew_tensor *b);
/* KL(N(mu, exp(logvar)) || N(0, I)) summed over all dims but the first, averaged over dim 0:
 * -0.5 / n * sum(1 + logvar - mu^2 - exp(logvar)). */
ew_tensor *ew_gauss_kl(ew_graph *g, ew_tensor *mu, ew_tensor *logvar);
/* Mean over rows of -log softmax(logits[r])[labels[r]]; logits [n, k]. */
ew_tensor *ew_cross_entropy(ew_graph *g, ew_tensor *logits, const int *labels);

/* --- softmax and sampling at continuous coordinates --- */
/* Softmax along dim (max-subtracted). */
ew_tensor *ew_softmax(ew_graph *g, ew_tensor *x, int dim);
/* Softmax over the h*w positions of each (n, c) map of an [n,c,h,w] tensor. */
ew_tensor *ew_spatial_softmax(ew_graph *g, ew_tensor *x);
/* Expected pixel position (x = column, y = row) under the spatial softmax: [n,c,h,w] -> [n,c,2]. */
ew_tensor *ew_soft_argmax(ew_graph *g, ew_tensor *x);
/* Bilinear samples of img [n,c,h,w] at xy [n,p,2] (pixel units: x column, y row; pixel
 * centres at integers; zero outside the image) -> [n,c,p]. Gradients to img and xy
 * (xy's gradient is that of the bilinear interpolant, undefined exactly on integer
 * coordinates, where the right-hand derivative is used). */
ew_tensor *ew_grid_sample(ew_graph *g, ew_tensor *img, ew_tensor *xy);

#endif
