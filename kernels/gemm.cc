#include "kernels/gemm.h"

#include <cublasLt.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <utility>

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

std::atomic<int> gemm_search{static_cast<int>(GemmSearch::kTop8)};

std::mutex report_mu;
std::vector<std::string>& Report() {
  static auto* lines = new std::vector<std::string>();
  return *lines;
}

int32_t AlgoConfig(const cublasLtMatmulAlgo_t& algo, cublasLtMatmulAlgoConfigAttributes_t attr) {
  uint32_t v = 0;  // every attribute read here is 4 bytes wide (int32 or uint32)
  size_t written = 0;
  if (cublasLtMatmulAlgoConfigGetAttribute(&algo, attr, &v, sizeof v, &written) !=
      CUBLAS_STATUS_SUCCESS) {
    return -1;
  }
  return static_cast<int32_t>(v);
}

std::string DescribeAlgo(const cublasLtMatmulAlgo_t& algo) {
  return absl::StrCat("algo ", AlgoConfig(algo, CUBLASLT_ALGO_CONFIG_ID), " tile ",
                      AlgoConfig(algo, CUBLASLT_ALGO_CONFIG_TILE_ID), " stages ",
                      AlgoConfig(algo, CUBLASLT_ALGO_CONFIG_STAGES_ID), " splitk ",
                      AlgoConfig(algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM), " reduction ",
                      AlgoConfig(algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME), " swizzle ",
                      AlgoConfig(algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING), " cluster ",
                      AlgoConfig(algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID));
}

// The values of a list-valued capability (tile or stages ids); {0} (undefined: the algorithm's
// own choice) when it has none.
std::vector<uint32_t> AlgoCapList(const cublasLtMatmulAlgo_t& algo,
                                  cublasLtMatmulAlgoCapAttributes_t attr) {
  size_t bytes = 0;
  std::vector<uint32_t> values;
  if (cublasLtMatmulAlgoCapGetAttribute(&algo, attr, nullptr, 0, &bytes) == CUBLAS_STATUS_SUCCESS &&
      bytes >= sizeof(uint32_t)) {
    values.resize(bytes / sizeof(uint32_t));
    if (cublasLtMatmulAlgoCapGetAttribute(&algo, attr, values.data(), bytes, &bytes) !=
        CUBLAS_STATUS_SUCCESS) {
      values.clear();
    }
  }
  if (values.empty()) values.push_back(0);
  return values;
}

// Appends to `out` (up to `cap` entries) every configuration of every cuBLASLt algorithm for
// these types that cublasLtMatmulAlgoCheck accepts for the shape within `workspace` bytes:
// each tile and stages id, split-k 1-32 with a reduction in the compute or the output type
// (not in place).
void AppendEveryConfiguration(cublasLtHandle_t handle, cublasLtMatmulDesc_t op,
                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                              cublasLtMatrixLayout_t d, cudaDataType_t ab, cudaDataType_t dt,
                              size_t workspace, size_t cap,
                              std::vector<cublasLtMatmulAlgo_t>* out) {
  int ids[512];
  int num_ids = 0;
  if (cublasLtMatmulAlgoGetIds(handle, CUBLAS_COMPUTE_32F, CUDA_R_32F, ab, ab, dt, dt, 512, ids,
                               &num_ids) != CUBLAS_STATUS_SUCCESS) {
    return;
  }
  for (int i = 0; i < num_ids; ++i) {
    cublasLtMatmulAlgo_t algo;
    if (cublasLtMatmulAlgoInit(handle, CUBLAS_COMPUTE_32F, CUDA_R_32F, ab, ab, dt, dt, ids[i],
                               &algo) != CUBLAS_STATUS_SUCCESS) {
      continue;
    }
    const std::vector<uint32_t> tiles = AlgoCapList(algo, CUBLASLT_ALGO_CAP_TILE_IDS);
    const std::vector<uint32_t> stages = AlgoCapList(algo, CUBLASLT_ALGO_CAP_STAGES_IDS);
    int32_t splitk_support = 0;
    uint32_t reduction_mask = 0;
    size_t written = 0;
    cublasLtMatmulAlgoCapGetAttribute(&algo, CUBLASLT_ALGO_CAP_SPLITK_SUPPORT, &splitk_support,
                                      sizeof splitk_support, &written);
    cublasLtMatmulAlgoCapGetAttribute(&algo, CUBLASLT_ALGO_CAP_REDUCTION_SCHEME_MASK,
                                      &reduction_mask, sizeof reduction_mask, &written);
    std::vector<std::pair<int32_t, uint32_t>> splits = {{1, CUBLASLT_REDUCTION_SCHEME_NONE}};
    if (splitk_support != 0) {
      for (int32_t k : {2, 3, 4, 6, 8, 16, 32}) {
        for (uint32_t r :
             {CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE, CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE}) {
          if ((reduction_mask & r) != 0) splits.emplace_back(k, r);
        }
      }
    }
    for (uint32_t tile : tiles) {
      for (uint32_t stage : stages) {
        for (const auto& [splitk, reduction] : splits) {
          if (out->size() >= cap) return;
          cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile,
                                               sizeof tile);
          cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stage,
                                               sizeof stage);
          cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splitk,
                                               sizeof splitk);
          cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME,
                                               &reduction, sizeof reduction);
          cublasLtMatmulHeuristicResult_t check = {};
          if (cublasLtMatmulAlgoCheck(handle, op, a, b, d, d, &algo, &check) ==
                  CUBLAS_STATUS_SUCCESS &&
              check.workspaceSize <= workspace) {
            out->push_back(algo);
          }
        }
      }
    }
  }
}

// One product's launch with a candidate algorithm.
struct Launch {
  cublasLtHandle_t handle;
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t a, b, d;
  const GemmArgs* g;
  void* workspace;
  size_t workspace_bytes;
  cudaStream_t stream;
  cublasStatus_t operator()(const cublasLtMatmulAlgo_t& algo) const {
    const float alpha = 1.0f, beta = 0.0f;
    return cublasLtMatmul(handle, op, &alpha, g->w, a, g->a, b, &beta, g->d, d, g->d, d, &algo,
                          workspace, workspace_bytes, stream);
  }
};

// The launch of `g` with a plan's descriptors (a template: CublasLtGemm::Plan is private).
template <typename PlanT>
Launch LaunchFor(void* handle, const PlanT& plan, const GemmArgs& g, void* workspace,
                 size_t workspace_bytes, cudaStream_t stream) {
  return Launch{static_cast<cublasLtHandle_t>(handle),
                plan.op,
                plan.a,
                plan.b,
                plan.d,
                &g,
                workspace,
                workspace_bytes,
                stream};
}

// Events for timing candidates, destroyed with the object.
class EventPool {
 public:
  explicit EventPool(size_t n) : events_(n, nullptr) {}
  ~EventPool() {
    for (cudaEvent_t e : events_) {
      if (e != nullptr) cudaEventDestroy(e);
    }
  }
  absl::Status Create() {
    for (cudaEvent_t& e : events_) {
      MAMBA_CUDA_RETURN_IF_ERROR(cudaEventCreate(&e), "autotune event");
    }
    return absl::OkStatus();
  }
  cudaEvent_t operator[](size_t i) const { return events_[i]; }

 private:
  std::vector<cudaEvent_t> events_;
};

// Median of 5 launches of `algo`, each alone on an idle stream and waited for (the time then
// includes the launch's own host latency, ~8 us on an H100 host: the tuner's method before
// GemmSearch::kTop8, kept for A/B runs); negative when the candidate cannot run.
float TimeAlone(const Launch& launch, const cublasLtMatmulAlgo_t& algo, const EventPool& ev) {
  if (launch(algo) != CUBLAS_STATUS_SUCCESS) return -1.0f;
  float samples[5];
  for (float& sample : samples) {
    if (cudaEventRecord(ev[0], launch.stream) != cudaSuccess ||
        launch(algo) != CUBLAS_STATUS_SUCCESS ||
        cudaEventRecord(ev[1], launch.stream) != cudaSuccess ||
        cudaEventSynchronize(ev[1]) != cudaSuccess ||
        cudaEventElapsedTime(&sample, ev[0], ev[1]) != cudaSuccess) {
      return -1.0f;
    }
  }
  std::sort(samples, samples + 5);
  return samples[2];
}

// Times candidates[which[j]] as a decode step runs them: captured in a CUDA graph, each launch
// after a memset of `flush` (at least the L2's size, so the weights come from memory as they do
// in a step that streams every layer's), between two event nodes. Returns the median over `runs`
// launches of the graph per candidate, or -1 for one that could not be captured or launched.
std::vector<float> TimeInGraph(const Launch& launch,
                               const std::vector<cublasLtMatmulAlgo_t>& candidates,
                               const std::vector<size_t>& which, void* flush, size_t flush_bytes,
                               int runs, const EventPool& ev, size_t batch) {
  std::vector<float> out(which.size(), -1.0f);
  for (size_t begin = 0; begin < which.size(); begin += batch) {
    const size_t end = std::min(which.size(), begin + batch);
    std::vector<bool> launched(end - begin, false);
    if (cudaStreamBeginCapture(launch.stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
      break;
    }
    for (size_t j = begin; j < end; ++j) {
      const size_t e = 2 * (j - begin);
      cudaMemsetAsync(flush, static_cast<int>(j & 0xff), flush_bytes, launch.stream);
      cudaEventRecordWithFlags(ev[e], launch.stream, cudaEventRecordExternal);
      launched[j - begin] = launch(candidates[which[j]]) == CUBLAS_STATUS_SUCCESS;
      cudaEventRecordWithFlags(ev[e + 1], launch.stream, cudaEventRecordExternal);
    }
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    const bool ok = cudaStreamEndCapture(launch.stream, &graph) == cudaSuccess &&
                    cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess;
    std::vector<std::vector<float>> samples(end - begin);
    for (int run = 0; ok && run < runs; ++run) {
      if (cudaGraphLaunch(exec, launch.stream) != cudaSuccess ||
          cudaStreamSynchronize(launch.stream) != cudaSuccess) {
        break;
      }
      for (size_t j = begin; j < end; ++j) {
        const size_t e = 2 * (j - begin);
        float ms = 0.0f;
        if (launched[j - begin] && cudaEventElapsedTime(&ms, ev[e], ev[e + 1]) == cudaSuccess) {
          samples[j - begin].push_back(ms);
        }
      }
    }
    if (exec != nullptr) cudaGraphExecDestroy(exec);
    if (graph != nullptr) cudaGraphDestroy(graph);
    cudaGetLastError();
    for (size_t j = begin; j < end; ++j) {
      std::vector<float>& v = samples[j - begin];
      if (static_cast<int>(v.size()) != runs) continue;
      std::sort(v.begin(), v.end());
      out[j] = v[v.size() / 2];
    }
  }
  return out;
}

// Sets *chosen to the fastest of `candidates` (the heuristic's `top` first choices first). With
// kTop8Alone each of the first `top` is timed alone (TimeAlone). Otherwise they are timed in a
// graph with the weights out of L2 (TimeInGraph, 5 runs); the rest, when there are any (kWide),
// are screened the same way with one run, and the 8 fastest of them timed again like the first.
// Latency, not throughput: in a decode step each product waits for the previous kernel, so a
// split-k variant pays for its reduction kernel here as it does in the step. Candidates that
// cannot launch are skipped; with none timed, *chosen is left as it is.
absl::Status TimeCandidates(const Launch& launch,
                            const std::vector<cublasLtMatmulAlgo_t>& candidates, int top,
                            GemmSearch search, cublasLtMatmulAlgo_t* chosen) {
  constexpr size_t kBatch = 32;  // candidates per graph
  EventPool ev(2 * kBatch);
  absl::Status s = ev.Create();
  if (!s.ok()) return s;
  top = std::min<int>(top, static_cast<int>(candidates.size()));
  float best = -1.0f;
  size_t best_index = 0;
  auto consider = [&](size_t i, float ms) {
    if (ms >= 0.0f && (best < 0.0f || ms < best)) {
      best = ms;
      best_index = i;
    }
  };
  float best_top = -1.0f;  // the best of the first `top`, for the report
  if (search == GemmSearch::kTop8Alone) {
    for (int i = 0; i < top; ++i) consider(i, TimeAlone(launch, candidates[i], ev));
    best_top = best;
  } else {
    int l2_bytes = 0;
    int device = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device);
    const size_t flush_bytes = std::max<size_t>(static_cast<size_t>(l2_bytes) * 3 / 2, 1 << 20);
    void* flush = nullptr;
    MAMBA_CUDA_RETURN_IF_ERROR(cudaMalloc(&flush, flush_bytes), "autotune L2 flush buffer");
    struct FreeGuard {
      void* p;
      ~FreeGuard() { cudaFree(p); }
    } free_guard{flush};
    std::vector<size_t> first(top);
    for (int i = 0; i < top; ++i) first[i] = i;
    const std::vector<float> t = TimeInGraph(launch, candidates, first, flush, flush_bytes,
                                             /*runs=*/5, ev, kBatch);
    for (int i = 0; i < top; ++i) consider(i, t[i]);
    best_top = best;
    if (candidates.size() > static_cast<size_t>(top)) {
      std::vector<size_t> rest;
      for (size_t i = top; i < candidates.size(); ++i) rest.push_back(i);
      const std::vector<float> screen =
          TimeInGraph(launch, candidates, rest, flush, flush_bytes, /*runs=*/1, ev, kBatch);
      std::vector<std::pair<float, size_t>> order;
      for (size_t j = 0; j < rest.size(); ++j) {
        if (screen[j] >= 0.0f) order.emplace_back(screen[j], rest[j]);
      }
      std::sort(order.begin(), order.end());
      std::vector<size_t> finalists;
      for (size_t j = 0; j < order.size() && j < 8; ++j) finalists.push_back(order[j].second);
      const std::vector<float> tf =
          TimeInGraph(launch, candidates, finalists, flush, flush_bytes, /*runs=*/5, ev, kBatch);
      for (size_t j = 0; j < finalists.size(); ++j) consider(finalists[j], tf[j]);
    }
  }
  cudaGetLastError();  // a candidate's failed launch must not reach the next kernel's check
  if (best < 0.0f) return absl::OkStatus();  // keep the heuristic's first choice
  *chosen = candidates[best_index];
  std::lock_guard<std::mutex> lock(report_mu);
  if (Report().size() < 4096) {
    Report().push_back(absl::StrCat("m ", launch.g->m, " n ", launch.g->n, " k ", launch.g->k, ": ",
                                    candidates.size(), " candidates, best of the first ", top, " ",
                                    best_top * 1000.0f, " us, chosen ", best * 1000.0f, " us (",
                                    DescribeAlgo(*chosen), ")"));
  }
  return absl::OkStatus();
}

}  // namespace

void SetGemmSearch(GemmSearch search) {
  gemm_search.store(static_cast<int>(search), std::memory_order_relaxed);
}

std::vector<std::string> GemmSearchReport() {
  std::lock_guard<std::mutex> lock(report_mu);
  return Report();
}

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
    return absl::InvalidArgumentError(
        absl::StrCat("skinny_gemm_conv: needs a skinny-supported product (m <= ", kSkinnyGemmMaxM,
                     ") with output in the input dtype (m ", args.m, ", k ", args.k, ")"));
  }
  if (conv.dim < 1 || conv.dim > args.n || conv.num_seqs != args.m || conv.total_tokens != args.m ||
      conv.width < 1 || conv.width > kConvMaxWidth || conv.weight == nullptr ||
      conv.slots == nullptr || conv.state == nullptr || conv.out == nullptr ||
      conv.out_row_stride < conv.dim || conv.state_slot_stride < conv.dim * (conv.width - 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("skinny_gemm_conv: conv of ", conv.dim, " channels, width ", conv.width, ", ",
                     conv.num_seqs, " rows does not fit the product (n ", args.n, ", m ", args.m,
                     "); weight, slots, state and out are required"));
  }
  s = CheckStateDType("skinny_gemm_conv", state);
  if (!s.ok()) return s;
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
  return FindOrMakePlan(g, stream, autotune).status();
}

absl::StatusOr<const CublasLtGemm::Plan*> CublasLtGemm::FindOrMakePlan(const GemmArgs& g,
                                                                       cudaStream_t stream,
                                                                       bool autotune) {
  absl::Status s = CheckGemmArgs(g);
  if (!s.ok()) return s;
  if (g.m == 0) return nullptr;
  const Key key = MakeKey(g);
  const bool want_timing = autotune && g.m <= kAutotuneMaxM;
  if (auto it = plans_.find(key); it != plans_.end() && (it->second->timed || !want_timing)) {
    return it->second.get();
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
  const auto search = static_cast<GemmSearch>(gemm_search.load(std::memory_order_relaxed));
  const bool wide = search == GemmSearch::kWide;
  constexpr int kTop = 8;
  const int requested = wide ? 64 : kTop;
  std::vector<cublasLtMatmulHeuristicResult_t> results(requested);
  int found = 0;
  MAMBA_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatmulAlgoGetHeuristic(static_cast<cublasLtHandle_t>(handle_), plan->op, plan->a,
                                     plan->b, plan->d, plan->d, pref, requested, results.data(),
                                     &found),
      "cublasLtMatmulAlgoGetHeuristic");
  if (found == 0) {
    return absl::InternalError(absl::StrCat("cuBLASLt has no algorithm for m ", g.m, ", n ", g.n,
                                            ", k ", g.k, " (", KernelDTypeName(g.ab_dtype), " -> ",
                                            KernelDTypeName(g.d_dtype), ")"));
  }
  cublasLtMatmulAlgo_t chosen = results[0].algo;
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  const bool capturing = cudaStreamIsCapturing(stream, &capture) != cudaSuccess ||
                         capture != cudaStreamCaptureStatusNone;
  const bool timed = (found > 1 || wide) && want_timing && !capturing;
  if (timed) {
    std::vector<cublasLtMatmulAlgo_t> candidates;
    for (int i = 0; i < found; ++i) candidates.push_back(results[i].algo);
    if (wide) {
      AppendEveryConfiguration(static_cast<cublasLtHandle_t>(handle_), plan->op, plan->a, plan->b,
                               plan->d, ab, dt, workspace_bytes_, /*cap=*/3000, &candidates);
    }
    const Launch launch = LaunchFor(handle_, *plan, g, workspace_, workspace_bytes_, stream);
    absl::Status ts = TimeCandidates(launch, candidates, std::min(found, kTop), search, &chosen);
    if (!ts.ok()) return ts;
  }
  plan->algo = chosen;
  plan->timed = timed;
  const Plan* made = plan.get();
  plans_[key] = std::move(plan);
  return made;
}

absl::Status CublasLtGemm::Run(const GemmArgs& g, cudaStream_t stream) {
  // A shape first seen here (an eager prefill or mixed pass: every distinct token count is a new
  // m) takes the heuristic's choice; timing 8 candidates x 5 runs inside a step stalled every
  // stream for milliseconds each time a new m came by (PrepareGemms times the decode shapes).
  absl::StatusOr<const Plan*> plan = FindOrMakePlan(g, stream, /*autotune=*/false);
  if (!plan.ok()) return plan.status();
  if (*plan == nullptr) return absl::OkStatus();  // m == 0
  const Launch launch = LaunchFor(handle_, **plan, g, workspace_, workspace_bytes_, stream);
  MAMBA_CUBLAS_RETURN_IF_ERROR(launch((*plan)->algo), "cublasLtMatmul");
  return CheckLaunch("cublasLtMatmul", stream);
}

}  // namespace mamba::kernels
