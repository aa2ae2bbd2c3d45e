// The ops the training layer (dlrt::nn) is built on: fully connected layers
// and the Gram matrix (family Linear), activations and elementwise
// arithmetic (family Pointwise), and softmax cross-entropy (family Loss).
// All tensors are row-major f32 (labels i32) on the context's device.
//
// Formulas (one line each):
//   linear_forward:            y[n, o] = sum_i x[n, i] w[o, i] + bias[o]          (y = x w^T + b)
//   linear_backward_data:      dx[n, i] = sum_o dy[n, o] w[o, i]                  (dx = dy w)
//   linear_backward_weights:   dw[o, i] = sum_n dy[n, o] x[n, i], db[o] = sum_n dy[n, o]
//   gram:                      g[a, b] = scale * sum_p f[a, p] f[b, p]            (g = s f f^T)
//   gram_backward:             df = scale * (dg + dg^T) f
//   Relu / Tanh / Sigmoid:     y = max(x, 0) / tanh(x) / 1 / (1 + exp(-x))
//   their derivatives from y:  dx = dy * [y > 0] / dy * (1 - y^2) / dy * y (1 - y)
//   add, scale:                out = alpha a + beta b, out = alpha x
//   softmax cross-entropy:     p[n] = softmax(z[n]), nll[n] = logsumexp(z[n]) - z[n, label[n]],
//                              loss = sum_n m[n] nll[n] / max(sum_n m[n], 1)
//   its backward:              dz[n, c] = dloss * m[n] (p[n, c] - [c == label[n]]) / max(sum m, 1)
//
// Every op validates all of its arguments before it writes anything (rank,
// shapes, dtype, device, overlap of outputs with inputs, parameter ranges)
// and throws dlrt::Error naming the argument, its value and the rule it
// breaks; then it runs on `engine` (Auto: the best engine of the family that
// runs on the tensors' device) and returns the engine that ran. Outputs are
// overwritten (except with accumulate) and may not share memory with inputs
// or with each other; the one exception is add's out, which may be exactly
// a or b (the same tensor memory, as for an in-place a += b). Plans are
// chosen once per problem and cached in the context.
#pragma once

#include "dlrt/context.hpp"
#include "dlrt/engine.hpp"
#include "dlrt/export.hpp"
#include "dlrt/tensor.hpp"

namespace dlrt {

// ---- family Linear ------------------------------------------------------------

// x [N, in], w [out, in], bias [out] or null, y [N, out]: y = x w^T + bias.
DLRT_EXPORT Engine linear_forward(Context& ctx, const Tensor& x, const Tensor& w,
                                  const Tensor* bias, Tensor& y, Engine engine = Engine::Auto);

// dy [N, out], w [out, in], dx [N, in]: dx = dy w.
DLRT_EXPORT Engine linear_backward_data(Context& ctx, const Tensor& dy, const Tensor& w, Tensor& dx,
                                        Engine engine = Engine::Auto);

// x [N, in], dy [N, out], dw [out, in], db [out] or null: dw = dy^T x and
// db = the column sums of dy; with accumulate, both are added to what dw and
// db hold (gradient accumulation over several batches).
DLRT_EXPORT Engine linear_backward_weights(Context& ctx, const Tensor& x, const Tensor& dy,
                                           Tensor& dw, Tensor* db, bool accumulate = false,
                                           Engine engine = Engine::Auto);

// f [C, P] (C feature maps of P positions), g [C, C]: g = scale * f f^T, the
// Gram matrix of style transfer (Gatys et al. 2015). scale must be finite.
DLRT_EXPORT Engine gram(Context& ctx, const Tensor& f, Tensor& g, float scale,
                        Engine engine = Engine::Auto);

// f [C, P], dg [C, C], df [C, P]: df = scale * (dg + dg^T) f, the gradient
// of gram's output with respect to f.
DLRT_EXPORT Engine gram_backward(Context& ctx, const Tensor& f, const Tensor& dg, Tensor& df,
                                 float scale, Engine engine = Engine::Auto);

// ---- family Pointwise ---------------------------------------------------------

enum class Activation { Relu, Tanh, Sigmoid };
// "relu", "tanh", "sigmoid".
DLRT_EXPORT const char* to_string(Activation activation) noexcept;

// y = act(x), elementwise; x and y of one shape (any rank >= 1).
DLRT_EXPORT Engine activation_forward(Context& ctx, Activation activation, const Tensor& x,
                                      Tensor& y, Engine engine = Engine::Auto);

// dx = dy * act'(x), with act' computed from the forward output y (see the
// formulas above; Relu's derivative at 0 is taken as 0). y, dy, dx of one shape.
DLRT_EXPORT Engine activation_backward(Context& ctx, Activation activation, const Tensor& y,
                                       const Tensor& dy, Tensor& dx, Engine engine = Engine::Auto);

// out = alpha a + beta b, elementwise; a, b, out of one shape. out may be a
// or b itself (exactly the same memory: an in-place update), but may not
// overlap them partially. alpha and beta must be finite.
DLRT_EXPORT Engine add(Context& ctx, const Tensor& a, const Tensor& b, Tensor& out,
                       float alpha = 1.0f, float beta = 1.0f, Engine engine = Engine::Auto);

// out = alpha x; x and out of one shape, apart; alpha finite.
DLRT_EXPORT Engine scale(Context& ctx, const Tensor& x, Tensor& out, float alpha,
                         Engine engine = Engine::Auto);

// ---- family Loss --------------------------------------------------------------

// logits [N, C], labels i32 [N], mask f32 [N] or null (null: every row counts),
// loss f32 [1], probs f32 [N, C] (the softmax, saved for backward).
// Computed stably (log-sum-exp with the row maximum subtracted). mask
// values must be 0 or 1: a row whose mask is 0 (a padded time step)
// contributes nothing, and its label is not read (it may be anything, such
// as -1). Every other label must lie in [0, C). For tensors in host memory
// (Device::cpu()) the labels and mask are checked before anything is
// written; in device memory they cannot be checked up front, and a label
// out of range makes its row contribute nothing.
DLRT_EXPORT Engine softmax_cross_entropy_forward(Context& ctx, const Tensor& logits,
                                                 const Tensor& labels, const Tensor* mask,
                                                 Tensor& loss, Tensor& probs,
                                                 Engine engine = Engine::Auto);

// probs [N, C] (from forward), labels, mask as for forward, dloss the
// gradient of the loss (finite), dlogits [N, C]; rows whose mask is 0 get a
// zero gradient.
DLRT_EXPORT Engine softmax_cross_entropy_backward(Context& ctx, const Tensor& probs,
                                                  const Tensor& labels, const Tensor* mask,
                                                  float dloss, Tensor& dlogits,
                                                  Engine engine = Engine::Auto);

}  // namespace dlrt
