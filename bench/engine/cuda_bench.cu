// The CUDA parts of mamba-bench (see cuda_bench.h): the fused selective-scan kernel alone at
// PERF.md's shapes beside the official kernel's figures, and a per-kernel breakdown of a decode
// step and a prefill on a CUDA backend.
//
// Timing follows PERF.md: warm-up first, CUDA events around each run, the median of many runs,
// inputs drawn at random on the device (never zeros) and larger than L2.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_profiler_api.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/engine/cuda_bench.h"
#include "common/status_macros.h"
#include "engine/cuda/cuda_backend.h"
#include "kernels/cuda_status.h"
#include "kernels/decode_step.h"
#include "kernels/dependent_launch.cuh"
#include "kernels/selective_scan.h"

namespace mamba::bench {
namespace {

// Device-to-device copy bandwidth of an H100 measured on the benchmark host (PERF.md's floor).
constexpr double kCopyBandwidth = 3.0e12;

// Fills `n` halves with values in [lo, hi) from a counter hash (never exactly zero).
__global__ void FillHalf(__half* p, int64_t n, uint64_t seed, float lo, float hi) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint64_t z = (seed + static_cast<uint64_t>(i)) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z ^= z >> 27;
    const float u = static_cast<float>((z >> 40) + 1) * (1.0f / 16777217.0f);  // (0, 1)
    p[i] = __float2half_rn(lo + (hi - lo) * u);
  }
}

__global__ void FillFloat(float* p, int64_t n, uint64_t seed, float lo, float hi) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint64_t z = (seed + static_cast<uint64_t>(i)) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z ^= z >> 27;
    const float u = static_cast<float>((z >> 40) + 1) * (1.0f / 16777217.0f);
    p[i] = lo + (hi - lo) * u;
  }
}

// Owns the allocations of one benchmark shape.
class DeviceScratch {
 public:
  ~DeviceScratch() {
    for (void* p : ptrs_) cudaFree(p);
  }
  template <typename T>
  absl::StatusOr<T*> Alloc(int64_t n) {
    void* p = nullptr;
    MAMBA_CUDA_RETURN_IF_ERROR(cudaMalloc(&p, n * sizeof(T)), "benchmark buffer");
    ptrs_.push_back(p);
    return static_cast<T*>(p);
  }

 private:
  std::vector<void*> ptrs_;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

struct ScanShape {
  int64_t dim, length, batch;
  double official_us;  // PERF.md: the official fused selective-scan forward on the same H100
};

struct ScanResult {
  double us = 0.0;
  int states_per_thread = 0;
  int segments = 1;          // time-parallel segments per sequence (1: sequential)
  bool auto_layout = false;  // the launcher's own choice of layout and segments
  bool sequential = false;   // segments not allowed
};

// Times LaunchSelectiveScan at one shape: d_state 16, fp16, z gate, softplus, fp32 state read
// from and written back to a slot per sequence.
absl::StatusOr<std::vector<ScanResult>> TimeScan(const ScanShape& s) {
  const int64_t tokens = s.length * s.batch, dstate = 16;
  DeviceScratch m;
  __half *x, *dt, *z, *bc, *out;
  float *dt_bias, *a2, *d, *state;
  int32_t *cu, *slots;
  MAMBA_ASSIGN_OR_RETURN(x, m.Alloc<__half>(tokens * s.dim));
  MAMBA_ASSIGN_OR_RETURN(dt, m.Alloc<__half>(tokens * s.dim));
  MAMBA_ASSIGN_OR_RETURN(z, m.Alloc<__half>(tokens * s.dim));
  MAMBA_ASSIGN_OR_RETURN(out, m.Alloc<__half>(tokens * s.dim));
  MAMBA_ASSIGN_OR_RETURN(bc, m.Alloc<__half>(tokens * 2 * dstate));
  MAMBA_ASSIGN_OR_RETURN(dt_bias, m.Alloc<float>(s.dim));
  MAMBA_ASSIGN_OR_RETURN(a2, m.Alloc<float>(s.dim * dstate));
  MAMBA_ASSIGN_OR_RETURN(d, m.Alloc<float>(s.dim));
  MAMBA_ASSIGN_OR_RETURN(state, m.Alloc<float>(s.batch * s.dim * dstate));
  MAMBA_ASSIGN_OR_RETURN(cu, m.Alloc<int32_t>(s.batch + 1));
  MAMBA_ASSIGN_OR_RETURN(slots, m.Alloc<int32_t>(s.batch));
  constexpr int64_t kSegments = 64;  // the time-parallel scan's scratch, as the backend sizes it
  float *seg_state, *seg_dt;
  MAMBA_ASSIGN_OR_RETURN(seg_state, m.Alloc<float>(kSegments * s.dim * dstate));
  MAMBA_ASSIGN_OR_RETURN(seg_dt, m.Alloc<float>(kSegments * s.dim));
  FillHalf<<<1024, 256>>>(x, tokens * s.dim, 1, -2.0f, 2.0f);
  FillHalf<<<1024, 256>>>(dt, tokens * s.dim, 2, -1.0f, 1.0f);
  FillHalf<<<1024, 256>>>(z, tokens * s.dim, 3, -3.0f, 3.0f);
  FillHalf<<<1024, 256>>>(bc, tokens * 2 * dstate, 4, -1.0f, 1.0f);
  FillFloat<<<64, 256>>>(dt_bias, s.dim, 5, -6.9f, -2.3f);       // softplus: dt in ~[0.001, 0.1]
  FillFloat<<<64, 256>>>(a2, s.dim * dstate, 6, -23.0f, -1.4f);  // -exp(A_log) * log2 e
  FillFloat<<<64, 256>>>(d, s.dim, 7, 0.5f, 1.5f);
  FillFloat<<<1024, 256>>>(state, s.batch * s.dim * dstate, 8, -0.5f, 0.5f);
  std::vector<int32_t> h_cu(s.batch + 1), h_slots(s.batch);
  for (int64_t i = 0; i <= s.batch; ++i) h_cu[i] = static_cast<int32_t>(i * s.length);
  for (int64_t i = 0; i < s.batch; ++i) h_slots[i] = static_cast<int32_t>(i);
  MAMBA_CUDA_RETURN_IF_ERROR(cudaMemcpy(cu, h_cu.data(), h_cu.size() * 4, cudaMemcpyHostToDevice),
                             "copy");
  MAMBA_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(slots, h_slots.data(), h_slots.size() * 4, cudaMemcpyHostToDevice), "copy");
  MAMBA_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize(), "filling benchmark inputs");

  kernels::SelectiveScanParams p;
  p.num_seqs = s.batch;
  p.total_tokens = tokens;
  p.dim = s.dim;
  p.dstate = dstate;
  p.x = x;
  p.x_row_stride = s.dim;
  p.dt = dt;
  p.dt_row_stride = s.dim;
  p.z = z;
  p.z_row_stride = s.dim;
  p.b = bc;
  p.b_row_stride = 2 * dstate;
  p.c = bc + dstate;
  p.c_row_stride = 2 * dstate;
  p.dt_bias = dt_bias;
  p.a2 = a2;
  p.d = d;
  p.out = out;
  p.out_row_stride = s.dim;
  p.cu_seqlens = cu;
  p.slots = slots;
  p.state = state;
  p.state_slot_stride = s.dim * dstate;
  p.max_seqlen = s.length;
  p.segment_state = seg_state;
  p.segment_dt_sum = seg_dt;
  p.segment_capacity = kSegments;

  cudaEvent_t start, stop;
  MAMBA_CUDA_RETURN_IF_ERROR(cudaEventCreate(&start), "event");
  MAMBA_CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop), "event");
  std::vector<ScanResult> results;
  // The launcher's own choice (time-parallel segments when the shape is too small for the GPU),
  // then each thread layout with the launcher's segments, then each sequentially.
  struct Variant {
    int spt;
    bool segments;
  };
  const Variant variants[] = {{0, true}, {4, true}, {8, true}, {4, false}, {8, false}, {1, false}};
  for (const Variant& v : variants) {
    p.states_per_thread = v.spt;
    p.allow_segments = v.segments;
    for (int i = 0; i < 3; ++i) {
      MAMBA_RETURN_IF_ERROR(kernels::LaunchSelectiveScan(p, kernels::KernelDType::kF16,
                                                         kernels::KernelDType::kF32, nullptr));
    }
    std::vector<double> times;
    for (int i = 0; i < 20; ++i) {
      MAMBA_CUDA_RETURN_IF_ERROR(cudaEventRecord(start), "event");
      MAMBA_RETURN_IF_ERROR(kernels::LaunchSelectiveScan(p, kernels::KernelDType::kF16,
                                                         kernels::KernelDType::kF32, nullptr));
      MAMBA_CUDA_RETURN_IF_ERROR(cudaEventRecord(stop), "event");
      MAMBA_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop), "running the scan");
      float ms = 0.0f;
      MAMBA_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start, stop), "event");
      times.push_back(ms * 1000.0);
    }
    ScanResult r;
    r.us = Median(times);
    r.states_per_thread = v.spt == 0 ? kernels::ChooseScanStatesPerThread(p) : v.spt;
    r.auto_layout = v.spt == 0;
    r.sequential = !v.segments;
    kernels::SelectiveScanParams chosen = p;
    kernels::ChooseScanSegments(chosen);
    r.segments = chosen.segment_len > 0 ? chosen.max_segments : 1;
    results.push_back(r);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return results;
}

std::vector<int32_t> BenchTokens(int64_t n, int32_t vocab, uint64_t seed) {
  std::vector<int32_t> t(n);
  uint64_t x = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (int64_t i = 0; i < n; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    t[i] = static_cast<int32_t>((x >> 33) % static_cast<uint64_t>(vocab));
  }
  return t;
}

std::string BreakdownTable(const char* title, const std::vector<cuda::CudaKernelTime>& times,
                           std::string* json) {
  double total = 0.0;
  for (const cuda::CudaKernelTime& t : times) total += t.ms;
  std::string table = absl::StrFormat("%s: %.1f us in %d kernel families\n", title, total * 1000.0,
                                      static_cast<int>(times.size()));
  table += absl::StrFormat("  %-20s %10s %8s %7s\n", "family", "us", "launches", "share");
  *json += "[";
  for (size_t i = 0; i < times.size(); ++i) {
    const cuda::CudaKernelTime& t = times[i];
    table += absl::StrFormat("  %-20s %10.1f %8d %6.1f%%\n", t.family, t.ms * 1000.0, t.launches,
                             total > 0 ? 100.0 * t.ms / total : 0.0);
    *json += absl::StrFormat("%s{\"family\":\"%s\",\"us\":%.3f,\"launches\":%d}", i ? "," : "",
                             t.family, t.ms * 1000.0, t.launches);
  }
  *json += "]";
  return table;
}

// One link of a chain of dependent kernels doing (almost) nothing: waits for its predecessor,
// lets its successor start, and bumps a counter, so the chain has a real data dependency.
__global__ void ProbeKernel(float* counter) {
  kernels::WaitForPriorKernels();
  kernels::AllowDependentKernels();
  if (threadIdx.x == 0 && blockIdx.x == 0) counter[0] += 1.0f;
}

}  // namespace

absl::StatusOr<std::string> RunLaunchProbe() {
  // A decode step is a chain of dependent kernels; this measures what one link costs when the
  // kernel itself does nothing: CUDA graph of kChain links, replayed, time per link.
  constexpr int kChain = 240, kReplays = 50;
  float* counter = nullptr;
  MAMBA_CUDA_RETURN_IF_ERROR(cudaMalloc(&counter, sizeof(float)), "probe counter");
  cudaStream_t stream = nullptr;
  MAMBA_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
  cudaEvent_t start = nullptr, stop = nullptr;
  MAMBA_CUDA_RETURN_IF_ERROR(cudaEventCreate(&start), "event");
  MAMBA_CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop), "event");
  std::string json = "[";
  std::printf("launch probe: a graph of %d dependent empty kernels\n%8s %8s %10s %12s\n", kChain,
              "blocks", "threads", "dependent", "us per link");
  const bool pdl_policy = kernels::DependentLaunchEnabled();
  bool first = true;
  for (int blocks : {1, 132, 1056}) {
    for (bool dependent : {false, true}) {
      kernels::SetDependentLaunch(dependent);
      cudaGraph_t graph = nullptr;
      cudaGraphExec_t exec = nullptr;
      MAMBA_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal),
                                 "capture");
      for (int i = 0; i < kChain; ++i) {
        cudaError_t err = kernels::LaunchKernel(ProbeKernel, dim3(blocks), dim3(256), 0, stream,
                                                /*dependent=*/i > 0, counter);
        if (err != cudaSuccess) return kernels::CudaStatus(err, "probe launch");
      }
      MAMBA_CUDA_RETURN_IF_ERROR(cudaStreamEndCapture(stream, &graph), "capture end");
      MAMBA_CUDA_RETURN_IF_ERROR(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
      for (int w = 0; w < 3; ++w) {
        MAMBA_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(exec, stream), "replay");
      }
      std::vector<float> ms(kReplays);
      for (int r = 0; r < kReplays; ++r) {
        MAMBA_CUDA_RETURN_IF_ERROR(cudaEventRecord(start, stream), "record");
        MAMBA_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(exec, stream), "replay");
        MAMBA_CUDA_RETURN_IF_ERROR(cudaEventRecord(stop, stream), "record");
        MAMBA_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop), "sync");
        MAMBA_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms[r], start, stop), "elapsed");
      }
      std::sort(ms.begin(), ms.end());
      const double us = ms[kReplays / 2] * 1e3 / kChain;
      std::printf("%8d %8d %10s %12.2f\n", blocks, 256, dependent ? "yes" : "no", us);
      json += absl::StrFormat("%s{\"blocks\":%d,\"dependent\":%s,\"us_per_link\":%.3f}",
                              first ? "" : ",", blocks, dependent ? "true" : "false", us);
      first = false;
      cudaGraphExecDestroy(exec);
      cudaGraphDestroy(graph);
    }
  }
  kernels::SetDependentLaunch(pdl_policy);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaStreamDestroy(stream);
  cudaFree(counter);
  return json + "]";
}

absl::StatusOr<std::string> RunScanKernelBench() {
  // PERF.md's four shapes, then one 1.4b layer's prefill of a 2048-token prompt (no official
  // figure).
  const std::vector<ScanShape> shapes = {{1536, 2048, 16, 864.0},
                                         {4096, 2048, 8, 1150.0},
                                         {4096, 8192, 1, 783.0},
                                         {5120, 2048, 4, 722.0},
                                         {4096, 2048, 1, 0.0}};
  std::string json = "{\"scan\":[";
  std::printf(
      "fused selective scan (fp16, d_state 16, z gate, softplus, fp32 state from/to slots)\n");
  std::printf("%-20s %4s %4s %9s %13s %10s %9s %12s %9s\n", "d_inner x len x bat", "spt", "seg",
              "us", "tok/s/layer", "GB/s", "of copy", "official us", "speedup");
  for (size_t i = 0; i < shapes.size(); ++i) {
    const ScanShape& s = shapes[i];
    MAMBA_ASSIGN_OR_RETURN(std::vector<ScanResult> r, TimeScan(s));
    const int64_t tokens = s.length * s.batch;
    // The fewest bytes: x, dt, z in and out out (2 bytes each per channel and token), B and C per
    // token, and each sequence's state read and written once.
    const double bytes = static_cast<double>(tokens) * s.dim * 8.0 + tokens * 2.0 * 16 * 2 +
                         2.0 * s.batch * s.dim * 16 * 4;
    json += absl::StrFormat(
        "%s{\"dim\":%d,\"length\":%d,\"batch\":%d,\"official_us\":%.1f,"
        "\"min_bytes\":%.0f,\"runs\":[",
        i ? "," : "", s.dim, s.length, s.batch, s.official_us, bytes);
    for (size_t k = 0; k < r.size(); ++k) {
      const double sec = r[k].us * 1e-6;
      const std::string label =
          absl::StrFormat("%dx%dx%d%s", s.dim, s.length, s.batch,
                          r[k].auto_layout ? "" : (r[k].sequential ? " (seq)" : " (spt)"));
      const double speedup = s.official_us > 0 ? s.official_us / r[k].us : 0.0;
      std::printf("%-20s %4d %4d %9.1f %12.1fM %10.0f %8.1f%% %12.0f %8.2fx\n", label.c_str(),
                  r[k].states_per_thread, r[k].segments, r[k].us, tokens / sec / 1e6,
                  bytes / sec / 1e9, 100.0 * bytes / sec / kCopyBandwidth, s.official_us, speedup);
      json += absl::StrFormat(
          "%s{\"auto\":%s,\"sequential\":%s,\"states_per_thread\":%d,\"segments\":%d,"
          "\"us\":%.2f,\"tokens_per_s\":%.0f,\"gb_per_s\":%.1f,\"speedup_vs_official\":%.3f}",
          k ? "," : "", r[k].auto_layout ? "true" : "false", r[k].sequential ? "true" : "false",
          r[k].states_per_thread, r[k].segments, r[k].us, tokens / sec, bytes / sec / 1e9, speedup);
    }
    json += "]}";
  }
  json += "]}";
  return json;
}

absl::StatusOr<std::string> RunCudaBreakdown(backend::Backend& backend, int batch,
                                             int prefill_tokens) {
  if (backend.name() != "cuda") {
    return absl::InvalidArgumentError("the breakdown needs --backend=cuda");
  }
  if (batch < 1 || prefill_tokens < 1 || backend.num_slots() < batch) {
    return absl::InvalidArgumentError(absl::StrCat("breakdown: batch ", batch, " and prefill ",
                                                   prefill_tokens, " need batch <= slots (",
                                                   backend.num_slots(), ")"));
  }
  const model::ModelConfig& c = backend.config();
  std::string json = "{";

  // Prefill of one sequence, profiled (eager) and timed as Step runs it.
  const std::vector<int32_t> prompt = BenchTokens(prefill_tokens, c.vocab_size, 17);
  backend::SeqWork pw;
  pw.slot = 0;
  pw.tokens = prompt;
  pw.sample = true;
  backend::SeqResult pr;
  std::vector<double> prefill_ms;
  for (int i = 0; i < 4; ++i) {
    MAMBA_RETURN_IF_ERROR(backend.ResetSlot(0));
    const auto t0 = std::chrono::steady_clock::now();
    MAMBA_RETURN_IF_ERROR(backend.Step(absl::MakeConstSpan(&pw, 1), absl::MakeSpan(&pr, 1)));
    const auto t1 = std::chrono::steady_clock::now();
    if (i > 0) prefill_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  MAMBA_RETURN_IF_ERROR(backend.ResetSlot(0));
  MAMBA_ASSIGN_OR_RETURN(
      std::vector<cuda::CudaKernelTime> prefill_times,
      cuda::ProfileCudaStep(backend, absl::MakeConstSpan(&pw, 1), absl::MakeSpan(&pr, 1)));
  json +=
      absl::StrFormat("\"prefill\":{\"tokens\":%d,\"step_ms\":%.3f,\"kernels\":", prefill_tokens,
                      Median(prefill_ms));
  const std::string prefill_table =
      BreakdownTable(absl::StrFormat("prefill of %d tokens (profiled; Step takes %.3f ms)",
                                     prefill_tokens, Median(prefill_ms))
                         .c_str(),
                     prefill_times, &json);
  json += "}";

  // Decode: `batch` sequences with a short history each, one token per step, greedy.
  std::vector<std::vector<int32_t>> histories(batch);
  std::vector<backend::SeqWork> work(batch);
  std::vector<backend::SeqResult> results(batch);
  for (int i = 0; i < batch; ++i) {
    MAMBA_RETURN_IF_ERROR(backend.ResetSlot(i));
    histories[i] = BenchTokens(8, c.vocab_size, 100 + i);
    work[i].slot = i;
    work[i].tokens = histories[i];
  }
  MAMBA_RETURN_IF_ERROR(backend.Step(work, absl::MakeSpan(results)));
  std::vector<int32_t> next = BenchTokens(batch, c.vocab_size, 5);
  for (int i = 0; i < batch; ++i) {
    work[i].tokens = absl::MakeConstSpan(&next[i], 1);
    work[i].sample = true;
  }
  // Graph replays, as the engine runs them: warm up (captures the graph), then time.
  std::vector<double> step_us;
  for (int i = 0; i < 60; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    MAMBA_RETURN_IF_ERROR(backend.Step(work, absl::MakeSpan(results)));
    const auto t1 = std::chrono::steady_clock::now();
    for (int k = 0; k < batch; ++k) next[k] = results[k].token;
    if (i >= 10) step_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  MAMBA_ASSIGN_OR_RETURN(std::vector<cuda::CudaKernelTime> decode_times,
                         cuda::ProfileCudaStep(backend, work, absl::MakeSpan(results)));
  const double step = Median(step_us);
  // PERF.md's floor, counted as mamba-bench counts it: the weights once, and per sequence its
  // state read and written and its logits written.
  const double bytes = static_cast<double>(backend.weight_bytes()) +
                       batch * (2.0 * backend.state_bytes() + 4.0 * c.vocab_size);
  const double floor_us = bytes / kCopyBandwidth * 1e6;
  json += absl::StrFormat(
      ",\"decode\":{\"batch\":%d,\"graph_step_us\":%.2f,\"tokens_per_s\":%.0f,"
      "\"floor_us\":%.2f,\"ratio_to_floor\":%.3f,\"kernels\":",
      batch, step, batch / (step * 1e-6), floor_us, step / floor_us);
  const std::string decode_table = BreakdownTable(
      absl::StrFormat("decode step at batch %d (profiled eagerly; the graph step takes %.1f us, "
                      "floor %.1f us, ratio %.2f)",
                      batch, step, floor_us, step / floor_us)
          .c_str(),
      decode_times, &json);
  json += "}}";
  std::printf("%s%s", decode_table.c_str(), prefill_table.c_str());
  return json;
}

namespace {
unsigned long long* decode_trace = nullptr;
int decode_trace_blocks = 0;
}  // namespace

absl::Status EnableDecodeTrace(int n_layer) {
  int device = 0;
  MAMBA_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device), "decode trace");
  MAMBA_CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&decode_trace_blocks, cudaDevAttrMultiProcessorCount, device),
      "decode trace");
  const int64_t entries =
      int64_t{decode_trace_blocks} * kernels::kDecodeStepTracePerLayer * n_layer;
  MAMBA_CUDA_RETURN_IF_ERROR(cudaMalloc(&decode_trace, entries * sizeof(unsigned long long)),
                             "decode trace buffer");
  MAMBA_CUDA_RETURN_IF_ERROR(cudaMemset(decode_trace, 0, entries * sizeof(unsigned long long)),
                             "decode trace buffer");
  kernels::SetDecodeStepTrace(decode_trace, entries);
  return absl::OkStatus();
}

absl::StatusOr<std::string> DecodeTraceReport(int n_layer) {
  if (decode_trace == nullptr) return absl::FailedPreconditionError("decode trace not enabled");
  const int stride = kernels::kDecodeStepTracePerLayer * n_layer, blocks = decode_trace_blocks;
  std::vector<unsigned long long> t(static_cast<size_t>(blocks) * stride);
  MAMBA_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize(), "decode trace");
  MAMBA_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(t.data(), decode_trace, t.size() * sizeof(t[0]), cudaMemcpyDeviceToHost),
      "decode trace");
  if (t[0] == 0) {
    return absl::FailedPreconditionError(
        "decode trace: empty (no step ran on the persistent decode kernel)");
  }
  auto at = [&](int b, int i) {
    return static_cast<double>(t[static_cast<size_t>(b) * stride + i]);
  };
  const int barriers = 4 * n_layer - 1;
  const int end = 2 * barriers + 1;  // the end stamp
  // Phase k runs from barrier k - 1's exit (the start for k = 0) to barrier k's arrival (the
  // end for the last phase). Per phase type: the blocks' mean and slowest working time; per
  // barrier: the last arrival to the last exit, and the spread of arrivals.
  double work_mean[4] = {}, work_max[4] = {}, wait[4] = {}, spread[4] = {};
  int count[4] = {}, bcount[4] = {};
  for (int k = 0; k <= barriers; ++k) {
    const int q = k % 4;
    double sum = 0.0, mx = 0.0;
    for (int b = 0; b < blocks; ++b) {
      const double begin = k == 0 ? at(b, 0) : at(b, 2 * k);
      const double finish = k == barriers ? at(b, end) : at(b, 2 * k + 1);
      sum += finish - begin;
      mx = std::max(mx, finish - begin);
    }
    work_mean[q] += sum / blocks;
    work_max[q] += mx;
    ++count[q];
    if (k == barriers) continue;
    double first_arrival = 1e300, last_arrival = 0.0, last_exit = 0.0;
    for (int b = 0; b < blocks; ++b) {
      first_arrival = std::min(first_arrival, at(b, 2 * k + 1));
      last_arrival = std::max(last_arrival, at(b, 2 * k + 1));
      last_exit = std::max(last_exit, at(b, 2 * k + 2));
    }
    wait[q] += last_exit - last_arrival;
    spread[q] += last_arrival - first_arrival;
    ++bcount[q];
  }
  double first_start = 1e300, last_end = 0.0;
  for (int b = 0; b < blocks; ++b) {
    first_start = std::min(first_start, at(b, 0));
    last_end = std::max(last_end, at(b, end));
  }
  static const char* kNames[4] = {"norm+in_proj+conv", "x_proj", "state update", "out_proj"};
  std::string json = "{\"phases\": [";
  std::printf("persistent decode kernel, last step: %.1f us over %d blocks, %d layers\n",
              (last_end - first_start) / 1e3, blocks, n_layer);
  std::printf("%-20s %12s %12s %14s %14s\n", "phase (per layer)", "work us", "slowest us",
              "barrier us", "arrivals us");
  for (int q = 0; q < 4; ++q) {
    const double wm = work_mean[q] / count[q] / 1e3, wx = work_max[q] / count[q] / 1e3;
    const double bw = bcount[q] > 0 ? wait[q] / bcount[q] / 1e3 : 0.0;
    const double bs = bcount[q] > 0 ? spread[q] / bcount[q] / 1e3 : 0.0;
    std::printf("%-20s %12.2f %12.2f %14.2f %14.2f\n", kNames[q], wm, wx, bw, bs);
    absl::StrAppendFormat(&json,
                          "%s{\"phase\": \"%s\", \"work_us\": %.3f, \"slowest_us\": %.3f, "
                          "\"barrier_us\": %.3f, \"arrival_spread_us\": %.3f}",
                          q == 0 ? "" : ", ", kNames[q], wm, wx, bw, bs);
  }
  // Inside A and D (means over blocks and layers): staging (+ norm), the matrix stream, the rest.
  double a_stage = 0, a_stream = 0, a_rest = 0, d_stage = 0, d_stream = 0, d_rest = 0;
  for (int l = 0; l < n_layer; ++l) {
    const int ka = 4 * l, kd = 4 * l + 3;  // phase indices of A and D in layer l
    for (int b = 0; b < blocks; ++b) {
      const double a0 = ka == 0 ? at(b, 0) : at(b, 2 * ka);
      const double a1 = at(b, 8 * n_layer + 4 * l), a2 = at(b, 8 * n_layer + 4 * l + 1);
      const double a3 = at(b, 2 * ka + 1);
      const double d0 = at(b, 2 * kd), d1 = at(b, 8 * n_layer + 4 * l + 2);
      const double d2 = at(b, 8 * n_layer + 4 * l + 3);
      const double d3 = kd == barriers ? at(b, end) : at(b, 2 * kd + 1);
      a_stage += a1 - a0;
      a_stream += a2 - a1;
      a_rest += a3 - a2;
      d_stage += d1 - d0;
      d_stream += d2 - d1;
      d_rest += d3 - d2;
    }
  }
  const double norm = 1e3 * n_layer * blocks;
  std::printf("inside phases (us)   staging %6.2f  stream %6.2f  rest %6.2f   (in_proj)\n",
              a_stage / norm, a_stream / norm, a_rest / norm);
  std::printf("                     staging %6.2f  stream %6.2f  rest %6.2f   (out_proj)\n",
              d_stage / norm, d_stream / norm, d_rest / norm);
  absl::StrAppendFormat(&json,
                        "], \"in_proj_inside_us\": [%.3f, %.3f, %.3f], \"out_proj_inside_us\": "
                        "[%.3f, %.3f, %.3f], \"kernel_us\": %.3f}",
                        a_stage / norm, a_stream / norm, a_rest / norm, d_stage / norm,
                        d_stream / norm, d_rest / norm, (last_end - first_start) / 1e3);
  return json;
}

void SetProfilerCapture(bool on) {
  cudaDeviceSynchronize();
  if (on) {
    cudaProfilerStart();
  } else {
    cudaProfilerStop();
  }
}

}  // namespace mamba::bench
