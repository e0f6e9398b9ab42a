// normkit/normkit.hpp — the umbrella header: include this one.
//
// Conventions that hold for every entry point:
//   N, rows   number of independent rows (the product of the leading dims)
//   H         elements in a row (the product of the normalized trailing dims)
//   C, G, T   channels, groups, time steps (later families)
//   Arrays are TensorViews (pointer + dtype + device + shape + strides in elements); the last
//   dim is the fastest. Sizes are int64_t. Optional arguments are null pointers.
//   The core never allocates the caller's outputs; scratch is either passed in (size query,
//   then run) or allocated internally and freed before return.
//   CUDA entry points run on the caller's stream and do not synchronize.
//   Bad arguments throw normkit::Error (see error.hpp) naming the argument.
#pragma once

#include "normkit/batch_layer_norm.hpp"
#include "normkit/batch_norm.hpp"
#include "normkit/blas.hpp"
#include "normkit/config.hpp"
#include "normkit/dtype.hpp"
#include "normkit/dyt.hpp"
#include "normkit/error.hpp"
#include "normkit/group_norm.hpp"
#include "normkit/param_norm.hpp"
#include "normkit/rnn.hpp"
#include "normkit/row_norm.hpp"
#include "normkit/runtime.hpp"
#include "normkit/tensor.hpp"
