#include "kernels/gemm.h"

#include <cublasLt.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/batch_invariant_gemm_params.h"
#include "kernels/cuda_status.h"
#include "kernels/skinny_gemm_params.h"

namespace mamba::kernels {
namespace {

absl::Status CublasStatus(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": cuBLASLt status ", static_cast<int>(s), " (",
                                          cublasLtGetStatusString(s), ")"));
}

#define MAMBA_CUBLAS_RETURN_IF_ERROR(expr, what)   \
  do {                                             \
    absl::Status st_ = CublasStatus((expr), what); \
    if (!st_.ok()) return st_;                     \
  } while (0)

cudaDataType_t CudaType(KernelDType t) {
  switch (t) {
    case KernelDType::kF16:
      return CUDA_R_16F;
    case KernelDType::kBF16:
      return CUDA_R_16BF;
    case KernelDType::kF32:
      return CUDA_R_32F;
  }
  return CUDA_R_32F;
}

// The largest power of two (at most 256) dividing the address.
int Alignment(const void* p) {
  const uintptr_t v = reinterpret_cast<uintptr_t>(p);
  int a = 1;
  while (a < 256 && v % (2 * a) == 0) a *= 2;
  return a;
}

}  // namespace

absl::Status CheckGemmArgs(const GemmArgs& g) {
  if (g.m < 0 || g.n <= 0 || g.k <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("gemm: m ", g.m, ", n ", g.n, ", k ", g.k,
                                                   " invalid; allowed: m >= 0, n > 0, k > 0"));
  }
  if (g.m > 0x7fffffff || g.n > 0x7fffffff || g.k > 0x7fffffff) {
    return absl::InvalidArgumentError("gemm: dimensions must fit in 32 bits");
  }
  if (g.a == nullptr || g.w == nullptr || g.d == nullptr) {
    return absl::InvalidArgumentError("gemm: a, w and d are required");
  }
  if (g.lda < g.k || g.ldw < g.k || g.ldd < g.n) {
    return absl::InvalidArgumentError(absl::StrCat("gemm: leading dimensions lda ", g.lda, ", ldw ",
                                                   g.ldw, ", ldd ", g.ldd, " too small for k ", g.k,
                                                   ", n ", g.n));
  }
  if (g.ab_dtype != KernelDType::kF16 && g.ab_dtype != KernelDType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gemm: input dtype ", KernelDTypeName(g.ab_dtype), " unsupported; allowed: f16, bf16"));
  }
  if (g.d_dtype != g.ab_dtype && g.d_dtype != KernelDType::kF32) {
    return absl::InvalidArgumentError(
        absl::StrCat("gemm: output dtype ", KernelDTypeName(g.d_dtype),
                     " unsupported; allowed: the input dtype or f32"));
  }
  return absl::OkStatus();
}

absl::Status LaunchBatchInvariantGemm(const GemmArgs& args, cudaStream_t stream) {
  absl::Status s = CheckGemmArgs(args);
  if (!s.ok()) return s;
  if ((args.m + kInvariantGemmTileM - 1) / kInvariantGemmTileM > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch_invariant_gemm: m ", args.m, " too large"));
  }
  cudaError_t err = args.ab_dtype == KernelDType::kF16 ? RunBatchInvariantGemmF16(args, stream)
                                                       : RunBatchInvariantGemmBF16(args, stream);
  if (err != cudaSuccess) return CudaStatus(err, "batch_invariant_gemm launch");
  return CheckLaunch("batch_invariant_gemm", stream);
}

bool SkinnyGemmSupported(const GemmArgs& g) {
  auto aligned16 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return g.m >= 0 && g.m <= kSkinnyGemmMaxM && g.k % 8 == 0 && g.lda % 8 == 0 && g.ldw % 8 == 0 &&
         aligned16(g.a) && aligned16(g.w);
}

absl::Status LaunchSkinnyGemm(const GemmArgs& args, cudaStream_t stream) {
  absl::Status s = CheckGemmArgs(args);
  if (!s.ok()) return s;
  if (!SkinnyGemmSupported(args)) {
    return absl::InvalidArgumentError(absl::StrCat("skinny_gemm: needs m <= ", kSkinnyGemmMaxM,
                                                   ", k, lda, ldw multiples of 8 and 16-byte "
                                                   "aligned inputs (m ",
                                                   args.m, ", k ", args.k, ", lda ", args.lda,
                                                   ", ldw ", args.ldw, ")"));
  }
  cudaError_t err = args.ab_dtype == KernelDType::kF16 ? RunSkinnyGemmF16(args, stream)
                                                       : RunSkinnyGemmBF16(args, stream);
  if (err != cudaSuccess) return CudaStatus(err, "skinny_gemm launch");
  return CheckLaunch("skinny_gemm", stream);
}

absl::Status LaunchSkinnyGemmConv(const GemmArgs& args, const CausalConv1dParams& conv,
                                  KernelDType state, cudaStream_t stream) {
  absl::Status s = CheckGemmArgs(args);
  if (!s.ok()) return s;
  if (!SkinnyGemmSupported(args) || args.d_dtype != args.ab_dtype) {
    return absl::InvalidArgumentError(absl::StrCat(
        "skinny_gemm_conv: needs a skinny-supported product (m <= ", kSkinnyGemmMaxM,
        ") with output in the input dtype (m ", args.m, ", k ", args.k, ")"));
  }
  if (conv.dim < 1 || conv.dim > args.n || conv.num_seqs != args.m ||
      conv.total_tokens != args.m || conv.width < 1 || conv.width > kConvMaxWidth ||
      conv.weight == nullptr || conv.slots == nullptr || conv.state == nullptr ||
      conv.out == nullptr || conv.out_row_stride < conv.dim ||
      conv.state_slot_stride < conv.dim * (conv.width - 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "skinny_gemm_conv: conv of ", conv.dim, " channels, width ", conv.width, ", ",
        conv.num_seqs, " rows does not fit the product (n ", args.n, ", m ", args.m,
        "); weight, slots, state and out are required"));
  }
  if (state != KernelDType::kF32 && state != KernelDType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat("skinny_gemm_conv: state dtype ",
                                                   KernelDTypeName(state),
                                                   " unsupported; allowed: f32, bf16"));
  }
  cudaError_t err = args.ab_dtype == KernelDType::kF16
                        ? RunSkinnyGemmConvF16(args, conv, state, stream)
                        : RunSkinnyGemmConvBF16(args, conv, state, stream);
  if (err != cudaSuccess) return CudaStatus(err, "skinny_gemm_conv launch");
  return CheckLaunch("skinny_gemm_conv", stream);
}

struct CublasLtGemm::Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr;  // W viewed column-major (k x n)
  cublasLtMatrixLayout_t b = nullptr;  // A viewed column-major (k x m)
  cublasLtMatrixLayout_t d = nullptr;  // D viewed column-major (n x m)
  cublasLtMatmulAlgo_t algo{};
  bool timed = false;  // chosen by timing the candidates (not only the heuristic's first choice)
  ~Plan() {
    if (d != nullptr) cublasLtMatrixLayoutDestroy(d);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (op != nullptr) cublasLtMatmulDescDestroy(op);
  }
};

absl::StatusOr<std::unique_ptr<CublasLtGemm>> CublasLtGemm::Create(size_t workspace_bytes) {
  std::unique_ptr<CublasLtGemm> g(new CublasLtGemm());
  cublasLtHandle_t handle = nullptr;
  MAMBA_CUBLAS_RETURN_IF_ERROR(cublasLtCreate(&handle), "cublasLtCreate");
  g->handle_ = handle;
  if (workspace_bytes > 0) {
    MAMBA_CUDA_RETURN_IF_ERROR(cudaMalloc(&g->workspace_, workspace_bytes),
                               "allocating the cuBLASLt workspace");
    g->workspace_bytes_ = workspace_bytes;
  }
  return g;
}

CublasLtGemm::~CublasLtGemm() {
  plans_.clear();
  if (workspace_ != nullptr) cudaFree(workspace_);
  if (handle_ != nullptr) cublasLtDestroy(static_cast<cublasLtHandle_t>(handle_));
}

CublasLtGemm::Key CublasLtGemm::MakeKey(const GemmArgs& g) {
  return Key(g.m, g.n, g.k, g.lda, g.ldw, g.ldd, static_cast<int>(g.ab_dtype),
             static_cast<int>(g.d_dtype), Alignment(g.a), Alignment(g.w), Alignment(g.d));
}

absl::Status CublasLtGemm::Prepare(const GemmArgs& g, cudaStream_t stream, bool autotune) {
  absl::Status s = CheckGemmArgs(g);
  if (!s.ok()) return s;
  if (g.m == 0) return absl::OkStatus();
  const Key key = MakeKey(g);
  const bool want_timing = autotune && g.m <= kAutotuneMaxM;
  if (auto it = plans_.find(key); it != plans_.end() && (it->second->timed || !want_timing)) {
    return absl::OkStatus();
  }
  // A long-running server sees many prefill sizes; keep the cache bounded.
  if (plans_.size() >= 4096) plans_.clear();

  auto plan = std::make_unique<Plan>();
  MAMBA_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescCreate(&plan->op, CUBLAS_COMPUTE_32F, CUDA_R_32F),
                               "cublasLtMatmulDescCreate");
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  MAMBA_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSA,
                                                              &trans_a, sizeof trans_a),
                               "setting TRANSA");
  MAMBA_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSB,
                                                              &trans_b, sizeof trans_b),
                               "setting TRANSB");
  const cudaDataType_t ab = CudaType(g.ab_dtype), dt = CudaType(g.d_dtype);
  MAMBA_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->a, ab, g.k, g.n, g.ldw),
                               "layout of W");
  MAMBA_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->b, ab, g.k, g.m, g.lda),
                               "layout of A");
  MAMBA_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->d, dt, g.n, g.m, g.ldd),
                               "layout of D");

  cublasLtMatmulPreference_t pref = nullptr;
  MAMBA_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&pref), "preference");
  struct PrefGuard {
    cublasLtMatmulPreference_t p;
    ~PrefGuard() { cublasLtMatmulPreferenceDestroy(p); }
  } guard{pref};
  const uint64_t ws = workspace_bytes_;
  MAMBA_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceSetAttribute(
                                   pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws),
                               "setting the workspace size");
  const uint32_t align_a = Alignment(g.w), align_b = Alignment(g.a), align_d = Alignment(g.d);
  MAMBA_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                           &align_a, sizeof align_a),
      "setting alignment");
  MAMBA_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                           &align_b, sizeof align_b),
      "setting alignment");
  MAMBA_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                           &align_d, sizeof align_d),
      "setting alignment");
  MAMBA_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                           &align_d, sizeof align_d),
      "setting alignment");
  constexpr int kCandidates = 8;
  cublasLtMatmulHeuristicResult_t results[kCandidates] = {};
  int found = 0;
  MAMBA_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatmulAlgoGetHeuristic(static_cast<cublasLtHandle_t>(handle_), plan->op, plan->a,
                                     plan->b, plan->d, plan->d, pref, kCandidates, results, &found),
      "cublasLtMatmulAlgoGetHeuristic");
  if (found == 0) {
    return absl::InternalError(absl::StrCat("cuBLASLt has no algorithm for m ", g.m, ", n ", g.n,
                                            ", k ", g.k, " (", KernelDTypeName(g.ab_dtype), " -> ",
                                            KernelDTypeName(g.d_dtype), ")"));
  }
  cublasLtMatmulHeuristicResult_t result = results[0];
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  const bool capturing = cudaStreamIsCapturing(stream, &capture) != cudaSuccess ||
                         capture != cudaStreamCaptureStatusNone;
  const bool timed = found > 1 && want_timing && !capturing;
  if (timed) {
    cudaEvent_t start = nullptr, stop = nullptr;
    MAMBA_CUDA_RETURN_IF_ERROR(cudaEventCreate(&start), "autotune event");
    MAMBA_CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop), "autotune event");
    const float alpha = 1.0f, beta = 0.0f;
    float best = 0.0f;
    for (int i = 0; i < found; ++i) {
      auto launch = [&] {
        return cublasLtMatmul(static_cast<cublasLtHandle_t>(handle_), plan->op, &alpha, g.w,
                              plan->a, g.a, plan->b, &beta, g.d, plan->d, g.d, plan->d,
                              &results[i].algo, workspace_, workspace_bytes_, stream);
      };
      if (launch() != CUBLAS_STATUS_SUCCESS) continue;  // a candidate that cannot run is skipped
      // Latency, not throughput: in a decode step each product waits for the previous kernel,
      // so every launch is timed alone (split-k variants that pipeline well back to back but
      // add a reduction kernel lose here, as they do in the step).
      float samples[5];
      bool ok = true;
      for (int rep = 0; rep < 5 && ok; ++rep) {
        ok = cudaEventRecord(start, stream) == cudaSuccess && launch() == CUBLAS_STATUS_SUCCESS &&
             cudaEventRecord(stop, stream) == cudaSuccess &&
             cudaEventSynchronize(stop) == cudaSuccess &&
             cudaEventElapsedTime(&samples[rep], start, stop) == cudaSuccess;
      }
      if (!ok) continue;
      std::sort(samples, samples + 5);
      const float ms = samples[2];
      if (best == 0.0f || ms < best) {
        best = ms;
        result = results[i];
      }
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    cudaGetLastError();
  }
  plan->algo = result.algo;
  plan->timed = timed;
  plans_[key] = std::move(plan);
  return absl::OkStatus();
}

absl::Status CublasLtGemm::Run(const GemmArgs& g, cudaStream_t stream) {
  // A shape first seen here (an eager prefill or mixed pass: every distinct token count is a new
  // m) takes the heuristic's choice; timing 8 candidates x 5 runs inside a step stalled every
  // stream for milliseconds each time a new m came by (PrepareGemms times the decode shapes).
  absl::Status s = Prepare(g, stream, /*autotune=*/false);
  if (!s.ok()) return s;
  if (g.m == 0) return absl::OkStatus();
  const Plan& plan = *plans_.at(MakeKey(g));
  const float alpha = 1.0f, beta = 0.0f;
  MAMBA_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatmul(static_cast<cublasLtHandle_t>(handle_), plan.op, &alpha, g.w, plan.a, g.a,
                     plan.b, &beta, g.d, plan.d, g.d, plan.d, &plan.algo, workspace_,
                     workspace_bytes_, stream),
      "cublasLtMatmul");
  return CheckLaunch("cublasLtMatmul", stream);
}

}  // namespace mamba::kernels
