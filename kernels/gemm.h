// The model's matrix products D = A . W^T (see gemm_args.h): through cuBLASLt, which picks the
// fastest kernel per shape, or through the batch-invariant kernel, whose rounding never depends
// on m (batch_invariant_gemm_params.h).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/causal_conv1d_params.h"
#include "kernels/gemm_args.h"

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

// How CublasLtGemm::Prepare chooses a timed shape's algorithm (process-wide; the default is
// kTop8, the others are for benchmarks and A/B runs):
// - kTop8: the heuristic's first 8 candidates, each timed as a decode step runs it (in a CUDA
//   graph, after a memset that evicts the L2, so the weights come from memory);
// - kTop8Alone: the same 8, each launched alone on an idle stream and waited for (the earlier
//   method: the launch's own host latency, ~8 us, hides the kernels' differences);
// - kWide: as kTop8, plus the heuristic's next 56 and every configuration cuBLASLt accepts for
//   the shape when asked algorithm by algorithm (tile, stages, split-k with a reduction in the
//   compute or output type): ~1400 candidates per shape, each screened once and the best 8 timed
//   again (seconds per model at start-up).
enum class GemmSearch { kTop8 = 0, kTop8Alone = 1, kWide = 2 };
void SetGemmSearch(GemmSearch search);

// One line per shape timed since the process started (m, n, k, candidates timed, the best of the
// heuristic's first 8 and the chosen one in microseconds, the chosen configuration); for
// benchmark reports.
std::vector<std::string> GemmSearchReport();

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
  // Prepare's work, returning the plan (nullptr for m == 0) so Run needs no second lookup.
  absl::StatusOr<const Plan*> FindOrMakePlan(const GemmArgs& args, cudaStream_t stream,
                                             bool autotune);

  CublasLtGemm() = default;
  void* handle_ = nullptr;  // cublasLtHandle_t
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace mamba::kernels
