// Internal: the functions each backend provides to the validating entry points.
#pragma once

#include <cstddef>
#include <string>

#include "common/batch_layer_norm_problem.hpp"
#include "common/batch_norm_problem.hpp"
#include "common/dyt_problem.hpp"
#include "common/group_norm_problem.hpp"
#include "common/rnn_problem.hpp"
#include "common/row_norm_problem.hpp"
#include "common/spectral_norm_problem.hpp"
#include "normkit/tensor.hpp"

namespace normkit::detail {

// CPU (cpp/src/cpu/): dispatches to the selected ISA.
void cpu_row_norm_forward(const RowNormProblem& p);
void cpu_row_norm_backward(const RowNormBackwardProblem& p);
size_t cpu_row_norm_backward_workspace_size(const RowNormBackwardProblem& p);
void cpu_dyt_forward(const DytProblem& p);
void cpu_dyt_backward(const DytBackwardProblem& p);  // also rows == 0: zero-filled sums
size_t cpu_dyt_backward_workspace_size(const DytBackwardProblem& p);
void cpu_batch_norm(const BnProblem& p);  // every BnOp; C >= 1 (rows == 0: sums zero-filled)
void cpu_moments_merge(const MomentsMergeProblem& p);
void cpu_batch_layer_norm(const BlnProblem& p);  // forward / backward; F >= 1
void cpu_rnn_forward(const RnnProblem& p);
void cpu_rnn_backward(const RnnBackwardProblem& p);
size_t cpu_rnn_forward_workspace_size(const RnnProblem& p);
size_t cpu_rnn_backward_workspace_size(const RnnBackwardProblem& p);
void cpu_group_norm(const GnProblem& p);  // forward / backward; N, C >= 1 (empty: stats / sums filled)
void cpu_spectral_norm(const SnProblem& p);  // forward / backward; rows, cols >= 1

#if defined(NORMKIT_WITH_CUDA)
// CUDA (cuda/): every function runs on `stream` on device p.device_index and does not
// synchronize. The views were validated to live on that device.
namespace cuda {
void row_norm_forward(const RowNormProblem& p, Stream stream);
void row_norm_backward(const RowNormBackwardProblem& p, Stream stream);
size_t row_norm_backward_workspace_size(const RowNormBackwardProblem& p);
void dyt_forward(const DytProblem& p, Stream stream);
void dyt_backward(const DytBackwardProblem& p, Stream stream);
size_t dyt_backward_workspace_size(const DytBackwardProblem& p);
void batch_norm(const BnProblem& p, Stream stream);
void moments_merge(const MomentsMergeProblem& p, Stream stream);
void group_norm(const GnProblem& p, Stream stream);
void rnn_forward(const RnnProblem& p, Stream stream);
void rnn_backward(const RnnBackwardProblem& p, Stream stream);
void batch_layer_norm(const BlnProblem& p, Stream stream);
void spectral_norm(const SnProblem& p, Stream stream);
int device_count();            // 0 when there is no driver or no device (never throws)
std::string architectures();   // the SM list compiled in, e.g. "75;80;86;89;90"
std::string status();          // why CUDA is or is not usable here (never throws)
}  // namespace cuda
#endif

}  // namespace normkit::detail
