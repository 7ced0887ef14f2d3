// The model's matrix products D = A . W^T (see gemm_args.h): through cuBLASLt, which picks the
// fastest kernel per shape, or through the batch-invariant kernel, whose rounding never depends
// on m (batch_invariant_gemm_params.h).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <map>
#include <memory>
#include <tuple>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/causal_conv1d_params.h"
#include "kernels/gemm_args.h"
#include "kernels/split_k_gemm_params.h"

namespace mamba::kernels {

// Checks sizes, strides, pointers and dtypes of `args`; the error names what is wrong.
absl::Status CheckGemmArgs(const GemmArgs& args);

// D = A . W^T with the batch-invariant tensor-core kernel.
absl::Status LaunchBatchInvariantGemm(const GemmArgs& args, cudaStream_t stream);

// True when the skinny kernel (skinny_gemm_params.h) can run `args`: m <= 4, k, lda and ldw
// multiples of 8, A and W 16-byte aligned.
bool SkinnyGemmSupported(const GemmArgs& args);
// D = A . W^T for few rows: one warp per output column, W streamed once.
absl::Status LaunchSkinnyGemm(const GemmArgs& args, cudaStream_t stream);
// Decode in_proj with the conv update fused into its epilogue: the x half of the output
// (columns < conv.dim) goes through the conv of conv.slots' states into conv.out (and is not
// stored in args.d); the rest is stored as usual. conv.x is ignored (the product is the input).
// One launch instead of two, the same bits as LaunchSkinnyGemm + LaunchCausalConv1dDecode.
absl::Status LaunchSkinnyGemmConv(const GemmArgs& args, const CausalConv1dParams& conv,
                                  KernelDType state, cudaStream_t stream);

// True when the split-k kernel (split_k_gemm_params.h) runs `args`: the process-wide policy
// is on, the device has thread block clusters (sm_90+), 1 <= m <= kSplitKGemmMaxM, n <=
// kSplitKGemmMaxN, the output in the input dtype, k, lda and ldw multiples of 8, A and W 16-byte
// aligned.
bool SplitKGemmSupported(const GemmArgs& args);
// D = A . W^T for narrow n: k split over clusters of blocks, reduced in distributed shared
// memory and then (k beyond one cluster) through `ws`, in a fixed order (deterministic). `ws`
// must hold SplitKGemmPartialFloats(m, n, k) partials and SplitKGemmCounters(m) counters.
absl::Status LaunchSplitKGemm(const GemmArgs& args, const SplitKGemmWorkspace& ws,
                              cudaStream_t stream);
// Decode x_proj with the conv update as its prologue: the split-k kernel computes its A (the conv
// output of `conv.slots`' states for the in_proj output conv.x) instead of reading it, storing
// it to conv.out and shifting the conv states as LaunchCausalConv1dDecode does (the same bits);
// args.a is not read (pass conv.out). Needs SplitKGemmSupported(args), conv.dim == args.k and one
// token per row (conv.num_seqs == conv.total_tokens == args.m). One launch instead of two.
absl::Status LaunchSplitKGemmConv(const GemmArgs& args, const CausalConv1dParams& conv,
                                  KernelDType state, const SplitKGemmWorkspace& ws,
                                  cudaStream_t stream);
// The process-wide policy (default on) for fusing the conv update into x_proj where the
// split-k kernel runs x_proj (A/B measurements).
void SetSplitKGemmConv(bool enabled);
bool SplitKGemmConvEnabled();
// The process-wide policy (default on) for SplitKGemmSupported; off sends those products to
// cuBLASLt (A/B measurements, escape hatch). Takes effect for launches and captures after it.
void SetSplitKGemm(bool enabled);
bool SplitKGemmEnabled();

// Whether CublasLtGemm::Prepare times its candidates with the weights out of L2 (default on:
// the L2 is overwritten before each timed run, as a step's earlier layers do); off times them
// back to back with warm weights (A/B measurements). Takes effect for shapes prepared after it.
void SetGemmTuneColdWeights(bool enabled);
bool GemmTuneColdWeights();

// A cuBLASLt handle, its workspace, and the algorithm chosen for every shape seen so far.
// Not thread-safe (one per backend, used by its scheduler thread).
class CublasLtGemm {
 public:
  // Creates the handle and a device workspace of `workspace_bytes` on the current device.
  static absl::StatusOr<std::unique_ptr<CublasLtGemm>> Create(size_t workspace_bytes);
  ~CublasLtGemm();
  CublasLtGemm(const CublasLtGemm&) = delete;
  CublasLtGemm& operator=(const CublasLtGemm&) = delete;

  // Chooses and caches the algorithm for args' shape, dtypes, strides and pointer alignment:
  // the heuristic's first choice, or with `autotune` and small m (decode shapes, where
  // cuBLASLt's heuristic often picks a kernel with too few blocks) the fastest of its top
  // candidates, timed on `stream` with the arguments' own buffers (their contents are
  // overwritten; a heuristic plan of the same shape is replaced). Run prepares unseen shapes
  // without timing; call this before capturing a graph (during a capture it only consults the
  // heuristic).
  absl::Status Prepare(const GemmArgs& args, cudaStream_t stream, bool autotune = true);

  // D = A . W^T (fp32 accumulation) on `stream`. Graph-capturable once prepared.
  absl::Status Run(const GemmArgs& args, cudaStream_t stream);

  size_t num_plans() const { return plans_.size(); }

  // Largest m whose algorithm is chosen by timing.
  static constexpr int64_t kAutotuneMaxM = 512;

 private:
  struct Plan;
  // m, n, k, lda, ldw, ldd, ab dtype, d dtype, alignment of a, w, d.
  using Key =
      std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, int, int, int, int>;
  static Key MakeKey(const GemmArgs& args);

  CublasLtGemm() = default;
  void* handle_ = nullptr;  // cublasLtHandle_t
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace mamba::kernels
