// mamba-bench: prefill and decode throughput of one backend on one model, each beside the memory
// bandwidth floor (PERF.md): a decode step must read every weight once, so no implementation can
// step faster than weight bytes / bandwidth.
//
//   mamba-bench --model=synthetic:130m --backend=cpu --dtype=fp16 [--batch=1,8] [--prefill=512]
//               [--steps=N] [--json=FILE]
//   mamba-bench --model=synthetic:130m --backend=cuda [--bandwidth_gbps=3000] [--breakdown]
//   mamba-bench --backend=cuda --scan_kernel
//
// CPU: the bandwidth is measured here (one large memcpy, reads + writes counted, as PERF.md
// measures the GPU's; all-core copy and read figures are printed beside it) and the floor is
// weight bytes / bandwidth; "W GB/s" is the rate at which a step actually streamed the weights.
// CUDA: the bandwidth is --bandwidth_gbps (PERF.md's measured 3000 GB/s for an H100) and the floor
// adds each sequence's state traffic: W + B * (2 * SSM state + 2 * conv state + logits). Inputs are
// random tokens; every figure is the median of several timed runs after warm-up.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/command_line.h"
#include "common/status_macros.h"
#include "engine/backend/backend.h"
#include "engine/backend_factory.h"
#include "engine/model/model_loader.h"
#if defined(MAMBA_HAVE_CUDA) && defined(MAMBA_BENCH_CUDA_HOOKS)
#include "bench/engine/cuda_bench.h"
#include "engine/cuda/mamba1_mixer.h"
#include "engine/cuda/mamba2_mixer.h"
#include "kernels/causal_conv1d.h"
#include "kernels/decode_step.h"
#include "kernels/dependent_launch.h"
#include "kernels/gemm.h"
#include "kernels/selective_scan.h"
#include "kernels/selective_state_update.h"
#endif

ABSL_FLAG(std::string, model, "synthetic:130m", "checkpoint folder or synthetic:NAME");
ABSL_FLAG(std::string, backend, "cpu", "cpu | cuda | auto");
ABSL_FLAG(std::string, dtype, "",
          "weight dtype to convert to at load (f32, f16, bf16); empty "
          "keeps the checkpoint's");
ABSL_FLAG(std::string, batch, "",
          "decode batch sizes, comma-separated (default cpu 1,8; cuda "
          "1,16,64,256); 0 skips decode");
ABSL_FLAG(std::string, prefill, "",
          "prefill lengths, comma-separated (default cpu 512; cuda "
          "512,2048,8192); 0 skips prefill");
ABSL_FLAG(int32_t, steps, 0, "timed decode steps per batch size (default cpu 20, cuda 200)");
ABSL_FLAG(int32_t, warmup, 3, "untimed decode steps before timing");
ABSL_FLAG(int32_t, prefill_runs, 3, "timed prefill runs per length (after one warm-up run)");
ABSL_FLAG(int32_t, threads, 0, "cpu threads (0: every core)");
ABSL_FLAG(std::string, state_dtype, "f32", "recurrent state dtype: f32 | bf16 (cuda)");
ABSL_FLAG(bool, deterministic, false,
          "cuda: batch-invariant kernels (a sequence's tokens do not depend on its batch)");
ABSL_FLAG(bool, dependent_launch, true,
          "cuda: launch decode kernels as programmatic dependents of the previous kernel "
          "(sm_90+; false for A/B comparisons)");
ABSL_FLAG(std::string, persistent_decode, "auto",
          "cuda: when decode steps run as one persistent kernel: auto (one row: where it is "
          "faster) | always (<= 4 rows) | off (the layered kernels)");
ABSL_FLAG(int64_t, fused_dt_max_rows, -1,
          "cuda: decode batches below this many rows compute dt inside the fused state update "
          "(else a dt_proj GEMM; for A/B comparisons); -1 keeps the backend's default (32)");
ABSL_FLAG(int64_t, ssd_chunked_min_tokens, -1,
          "cuda, Mamba-2: prefill sequences of at least this many tokens run the chunked SSD "
          "form on tensor cores (0: the token-by-token recurrence for all); -1 keeps the "
          "backend's default (64)");
ABSL_FLAG(int64_t, state_update_rows, -1,
          "cuda: rows per block of the decode state update at large batches (0: by size, 4, 8 "
          "or 16; for A/B comparisons); -1 keeps the kernel's default (0)");
ABSL_FLAG(int64_t, state_update_pipeline, -2,
          "cuda: the decode state update's pipelined kernel at large batches: -1 off, 0 "
          "default, N on for N blocks per SM (for A/B comparisons); -2 keeps the default");
ABSL_FLAG(int64_t, scan_states_per_thread, -1,
          "cuda: state elements per thread of the prefill scan (0: by shape, 1, 4 or 8; for A/B "
          "comparisons); -1 keeps the kernel's default (0)");
ABSL_FLAG(int64_t, conv_prefill_layout, -1,
          "cuda: thread layout of the prefill conv (0: default, 4 channels x 8 tokens per thread; "
          "1: 8 x 8, the previous layout; for A/B comparisons); -1 keeps the default");
ABSL_FLAG(std::string, gemm_search, "top8",
          "cuda: how decode GEMM algorithms are chosen: top8 (cuBLASLt's first 8 candidates, "
          "timed in a graph with cold L2), top8_alone (the same, each launched alone: the old "
          "method) or wide (also every configuration cuBLASLt accepts; slower start)");
ABSL_FLAG(bool, profile_steps, false,
          "cuda: open the CUDA profiler's capture range around the timed decode steps only "
          "(for ncu --profile-from-start off, nsys --capture-range=cudaProfilerApi)");
ABSL_FLAG(bool, gemm_report, false,
          "cuda: print each timed GEMM shape's candidates, times and chosen configuration");
ABSL_FLAG(double, bandwidth_gbps, 0.0,
          "memory bandwidth for the floor in GB/s (0: measure on "
          "cpu; 3000 for cuda)");
ABSL_FLAG(uint64_t, seed, 0, "synthetic weights and random input tokens");
ABSL_FLAG(std::string, json, "", "also write every figure to this JSON file");
ABSL_FLAG(std::string, mixed, "",
          "mixed steps D:P:L[,...]: D decode rows plus P prompts of L tokens in one step, timed "
          "against the same decode rows alone and the same prompts alone");
ABSL_FLAG(bool, scan_kernel, false, "cuda: time the fused selective-scan kernel alone");
ABSL_FLAG(bool, launch_probe, false,
          "cuda: time a CUDA graph of dependent empty kernels (the cost of one link)");
ABSL_FLAG(bool, breakdown, false, "cuda: per-kernel time breakdown of a decode step and prefill");
ABSL_FLAG(bool, decode_trace, false,
          "cuda: timeline of the persistent decode kernel (per phase: working time and barrier "
          "latency) in the last timed step; use with a single --batch of <= 4");

namespace mamba::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

absl::StatusOr<std::vector<int>> ParseList(const std::string& text, const char* flag) {
  std::vector<int> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int v = 0;
    if (!absl::SimpleAtoi(part, &v) || v < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, ": '", std::string(part), "' is not a non-negative integer"));
    }
    if (v > 0) out.push_back(v);
  }
  return out;
}

// The value of a flag that names one of `choices` ({name, value} pairs, listed in the error).
template <typename E>
absl::StatusOr<E> ParseChoice(const char* flag, const std::string& text,
                              std::initializer_list<std::pair<const char*, E>> choices) {
  std::vector<std::string> names;
  for (const auto& [name, value] : choices) {
    if (text == name) return value;
    names.emplace_back(name);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, " '", text, "' is invalid; allowed: ", absl::StrJoin(names, ", ")));
}

struct HostBandwidth {
  double copy = 0.0;            // one memcpy, reads + writes (the floor's bandwidth)
  double copy_all_cores = 0.0;  // every thread copying its share, reads + writes
  double read_all_cores = 0.0;  // every thread reading its share (what decode does)
};

// This machine's memory bandwidth over 512 MiB buffers (far beyond the caches), best of 5 runs
// each. The copy figure is one large memcpy with bytes read + bytes written counted, as PERF.md
// measures the GPU's; the all-core figures show how much both cores move together.
HostBandwidth MeasureHostBandwidth(int threads) {
  const size_t bytes = size_t{512} << 20;
  std::vector<uint64_t> src(bytes / 8), dst(bytes / 8);
  for (size_t i = 0; i < src.size(); ++i) src[i] = i * 0x9E3779B97F4A7C15ull;
  std::memset(dst.data(), 1, bytes);
  const size_t share = src.size() / threads;
  // Runs body(first element, count) on every thread over its share; returns seconds.
  auto on_all_threads = [&](auto&& body) {
    const auto t0 = Clock::now();
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back([&, t] { body(t * share, share); });
    body(0, share);
    for (std::thread& t : pool) t.join();
    return Seconds(t0, Clock::now());
  };
  const double moved = static_cast<double>(share * threads * 8);
  HostBandwidth bw;
  std::vector<uint64_t> sinks(threads, 0);
  for (int run = 0; run < 5; ++run) {
    const auto t0 = Clock::now();
    std::memcpy(dst.data(), src.data(), bytes);
    bw.copy = std::max(bw.copy, 2.0 * static_cast<double>(bytes) / Seconds(t0, Clock::now()));
    const double copy_s = on_all_threads([&](size_t begin, size_t count) {
      std::memcpy(dst.data() + begin, src.data() + begin, count * 8);
    });
    bw.copy_all_cores = std::max(bw.copy_all_cores, 2.0 * moved / copy_s);
    const double read_s = on_all_threads([&](size_t begin, size_t count) {
      uint64_t a = 0, b = 0, c = 0, d = 0;
      const uint64_t* p = src.data() + begin;
      for (size_t i = 0; i + 4 <= count; i += 4) {
        a ^= p[i];
        b ^= p[i + 1];
        c ^= p[i + 2];
        d ^= p[i + 3];
      }
      sinks[begin / share] ^= a ^ b ^ c ^ d;
    });
    bw.read_all_cores = std::max(bw.read_all_cores, moved / read_s);
  }
  uint64_t sink = 0;
  for (uint64_t v : sinks) sink ^= v;
  if (sink == 1) std::printf(" ");  // keeps the reads from being optimized away
  return bw;
}

// `s` as a JSON string literal.
std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) out += c;
  }
  return out + "\"";
}

std::vector<int32_t> RandomTokens(int n, int32_t vocab, uint64_t* state) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) {
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    t[i] = static_cast<int32_t>((*state >> 33) % static_cast<uint64_t>(vocab));
  }
  return t;
}

struct DecodeResult {
  int batch;
  double step_s;
  double tokens_per_s;
  double floor_s;
};

struct PrefillResult {
  int tokens;
  double seconds;
  double tokens_per_s;
};

// One prefill of `n` tokens into a fresh slot, last logits included.
absl::StatusOr<PrefillResult> BenchPrefill(backend::Backend& b, int n, int runs, uint64_t* rng) {
  std::vector<double> times;
  for (int run = -1; run < runs; ++run) {  // run -1 warms up
    const std::vector<int32_t> tokens = RandomTokens(n, b.config().vocab_size, rng);
    absl::Status s = b.ResetSlot(0);
    if (!s.ok()) return s;
    backend::SeqWork w;
    w.slot = 0;
    w.tokens = tokens;
    w.sample = true;
    backend::SeqResult r;
    const auto t0 = Clock::now();
    s = b.Step(absl::MakeConstSpan(&w, 1), absl::MakeSpan(&r, 1));
    const double dt = Seconds(t0, Clock::now());
    if (!s.ok()) return s;
    if (run >= 0) times.push_back(dt);
  }
  const double med = Median(times);
  return PrefillResult{n, med, n / med};
}

// `batch` sequences (prefilled with 16 random tokens each) decode together, one random input
// token each per step, with the output head and a greedy sample per sequence.
absl::StatusOr<DecodeResult> BenchDecode(backend::Backend& b, int batch, int warmup, int steps,
                                         uint64_t* rng) {
  if (batch > b.num_slots()) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch ", batch, " exceeds the backend's ", b.num_slots(), " slots"));
  }
  const int32_t vocab = b.config().vocab_size;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<int32_t> next(batch);
  std::vector<backend::SeqWork> work(batch);
  std::vector<backend::SeqResult> results(batch);
  for (int i = 0; i < batch; ++i) {
    absl::Status s = b.ResetSlot(i);
    if (!s.ok()) return s;
    prompts.push_back(RandomTokens(16, vocab, rng));
    work[i].slot = i;
    work[i].tokens = prompts[i];
    work[i].sample = true;
  }
  absl::Status s = b.Step(work, absl::MakeSpan(results));
  if (!s.ok()) return s;
  std::vector<double> times;
  [[maybe_unused]] const bool profile = absl::GetFlag(FLAGS_profile_steps);
  for (int step = 0; step < warmup + steps; ++step) {
#if defined(MAMBA_HAVE_CUDA) && defined(MAMBA_BENCH_CUDA_HOOKS)
    if (profile && step == warmup) SetProfilerCapture(true);
#endif
    const std::vector<int32_t> inputs = RandomTokens(batch, vocab, rng);
    for (int i = 0; i < batch; ++i) {
      next[i] = inputs[i];
      work[i].tokens = absl::MakeConstSpan(&next[i], 1);
      work[i].sample_position = static_cast<uint64_t>(step);
    }
    const auto t0 = Clock::now();
    s = b.Step(work, absl::MakeSpan(results));
    const double dt = Seconds(t0, Clock::now());
    if (!s.ok()) return s;
    if (step >= warmup) times.push_back(dt);
  }
#if defined(MAMBA_HAVE_CUDA) && defined(MAMBA_BENCH_CUDA_HOOKS)
  if (profile) SetProfilerCapture(false);
#endif
  const double med = Median(times);
  return DecodeResult{batch, med, batch / med, 0.0};
}

// A step that mixes `decode` one-token rows with `prompts` prompts of `length` tokens (what the
// scheduler sends while requests arrive), and the two halves on their own. Median seconds of
// `runs` timed steps each, after one untimed one; the prompt slots are reset before every step.
struct MixedResult {
  double mixed_s, decode_only_s, prefill_only_s;
};

absl::StatusOr<MixedResult> BenchMixed(backend::Backend& b, int decode, int prompts, int length,
                                       int runs, uint64_t* rng) {
  if (decode + prompts > b.num_slots()) {
    return absl::InvalidArgumentError(absl::StrCat("mixed ", decode, ":", prompts, ":", length,
                                                   " needs ", decode + prompts, " slots; the "
                                                   "backend has ", b.num_slots()));
  }
  const int32_t vocab = b.config().vocab_size;
  std::vector<std::vector<int32_t>> prompt_tokens;
  for (int i = 0; i < prompts; ++i) prompt_tokens.push_back(RandomTokens(length, vocab, rng));
  std::vector<int32_t> next = RandomTokens(std::max(decode, 1), vocab, rng);
  std::vector<std::vector<int32_t>> primes;
  for (int i = 0; i < decode; ++i) primes.push_back(RandomTokens(16, vocab, rng));
  auto time_steps = [&](bool with_decode, bool with_prompts) -> absl::StatusOr<double> {
    std::vector<double> times;
    for (int run = 0; run <= runs; ++run) {
      std::vector<backend::SeqWork> work;
      for (int i = 0; with_prompts && i < prompts; ++i) {
        MAMBA_RETURN_IF_ERROR(b.ResetSlot(decode + i));
        backend::SeqWork w;
        w.slot = decode + i;
        w.tokens = prompt_tokens[i];
        w.sample = true;
        work.push_back(w);
      }
      for (int i = 0; with_decode && i < decode; ++i) {
        backend::SeqWork w;
        w.slot = i;
        w.tokens = absl::MakeConstSpan(&next[i], 1);
        w.sample = true;
        w.sample_position = static_cast<uint64_t>(run);
        work.push_back(w);
      }
      std::vector<backend::SeqResult> results(work.size());
      const auto t0 = Clock::now();
      MAMBA_RETURN_IF_ERROR(b.Step(work, absl::MakeSpan(results)));
      if (run > 0) times.push_back(Seconds(t0, Clock::now()));
    }
    return Median(times);
  };
  for (int i = 0; i < decode; ++i) {
    MAMBA_RETURN_IF_ERROR(b.ResetSlot(i));
    backend::SeqWork w;
    w.slot = i;
    w.tokens = primes[i];
    backend::SeqResult r;
    MAMBA_RETURN_IF_ERROR(b.Step(absl::MakeConstSpan(&w, 1), absl::MakeSpan(&r, 1)));
  }
  MixedResult r{};
  MAMBA_ASSIGN_OR_RETURN(r.mixed_s, time_steps(true, true));
  if (decode > 0) {
    MAMBA_ASSIGN_OR_RETURN(r.decode_only_s, time_steps(true, false));
  }
  MAMBA_ASSIGN_OR_RETURN(r.prefill_only_s, time_steps(false, true));
  return r;
}

absl::Status Run() {
  const std::string backend_kind = absl::GetFlag(FLAGS_backend);
  const bool cuda = backend_kind == "cuda" || (backend_kind == "auto" && CudaAvailable());
  std::string json = "{";

  if (absl::GetFlag(FLAGS_launch_probe)) {
#if defined(MAMBA_HAVE_CUDA) && defined(MAMBA_BENCH_CUDA_HOOKS)
    absl::StatusOr<std::string> r = RunLaunchProbe();
    if (!r.ok()) return r.status();
    if (!absl::GetFlag(FLAGS_json).empty()) {
      std::ofstream(absl::GetFlag(FLAGS_json)) << "{\"launch_probe\": " << *r << "}\n";
    }
    return absl::OkStatus();
#else
    return absl::FailedPreconditionError("--launch_probe needs a build with CUDA");
#endif
  }
  if (absl::GetFlag(FLAGS_scan_kernel)) {
#if defined(MAMBA_HAVE_CUDA) && defined(MAMBA_BENCH_CUDA_HOOKS)
    absl::StatusOr<std::string> r = RunScanKernelBench();
    if (!r.ok()) return r.status();
    json += absl::StrCat("\"scan_kernel\": ", *r);
    if (!absl::GetFlag(FLAGS_json).empty()) {
      std::ofstream(absl::GetFlag(FLAGS_json)) << json << "}\n";
    }
    return absl::OkStatus();
#else
    return absl::FailedPreconditionError("--scan_kernel needs a build with CUDA");
#endif
  }

  model::LoadOptions load;
  load.seed = absl::GetFlag(FLAGS_seed);
  if (!absl::GetFlag(FLAGS_dtype).empty()) {
    absl::StatusOr<model::DType> d = model::ParseDType(absl::GetFlag(FLAGS_dtype));
    if (!d.ok()) return d.status();
    load.dtype = *d;
  }
  const auto load_start = Clock::now();
  absl::StatusOr<model::LoadedModel> model = model::LoadModel(absl::GetFlag(FLAGS_model), load);
  if (!model.ok()) return model.status();
  const double load_s = Seconds(load_start, Clock::now());
  const model::ModelConfig config = model->config;
  const std::string model_name = model->name;

  absl::StatusOr<std::vector<int>> batches =
      ParseList(absl::GetFlag(FLAGS_batch).empty() ? (cuda ? "1,16,64,256" : "1,8")
                                                   : absl::GetFlag(FLAGS_batch),
                "batch");
  if (!batches.ok()) return batches.status();
  absl::StatusOr<std::vector<int>> prefills =
      ParseList(absl::GetFlag(FLAGS_prefill).empty() ? (cuda ? "512,2048,8192" : "512")
                                                     : absl::GetFlag(FLAGS_prefill),
                "prefill");
  if (!prefills.ok()) return prefills.status();
  const int steps = absl::GetFlag(FLAGS_steps) > 0 ? absl::GetFlag(FLAGS_steps) : (cuda ? 200 : 20);

  backend::BackendOptions options;
  options.kind = backend_kind;
  options.cpu_threads = absl::GetFlag(FLAGS_threads);
  options.state_dtype = absl::GetFlag(FLAGS_state_dtype);
  options.deterministic = absl::GetFlag(FLAGS_deterministic);
#if defined(MAMBA_HAVE_CUDA) && defined(MAMBA_BENCH_CUDA_HOOKS)
  mamba::kernels::SetDependentLaunch(absl::GetFlag(FLAGS_dependent_launch));
  if (absl::GetFlag(FLAGS_fused_dt_max_rows) >= 0) {
    mamba::cuda::SetFusedDtMaxRows(absl::GetFlag(FLAGS_fused_dt_max_rows));
  }
  if (absl::GetFlag(FLAGS_ssd_chunked_min_tokens) >= 0) {
    mamba::cuda::SetSsdChunkedMinTokens(absl::GetFlag(FLAGS_ssd_chunked_min_tokens));
  }
  if (const int64_t rows = absl::GetFlag(FLAGS_state_update_rows); rows >= 0) {
    MAMBA_RETURN_IF_ERROR(mamba::kernels::SetStateUpdateRowsPerBlock(static_cast<int>(rows)));
  }
  if (const int64_t pipe = absl::GetFlag(FLAGS_state_update_pipeline); pipe >= -1) {
    MAMBA_RETURN_IF_ERROR(mamba::kernels::SetStateUpdatePipeline(static_cast<int>(pipe)));
  }
  if (const int64_t layout = absl::GetFlag(FLAGS_conv_prefill_layout); layout >= 0) {
    MAMBA_RETURN_IF_ERROR(mamba::kernels::SetConvPrefillLayout(static_cast<int>(layout)));
  }
  if (const int64_t spt = absl::GetFlag(FLAGS_scan_states_per_thread); spt >= 0) {
    MAMBA_RETURN_IF_ERROR(mamba::kernels::SetScanStatesPerThread(static_cast<int>(spt)));
  }
  {
    using mamba::kernels::GemmSearch;
    absl::StatusOr<GemmSearch> search =
        ParseChoice<GemmSearch>("gemm_search", absl::GetFlag(FLAGS_gemm_search),
                                {{"top8", GemmSearch::kTop8},
                                 {"top8_alone", GemmSearch::kTop8Alone},
                                 {"wide", GemmSearch::kWide}});
    if (!search.ok()) return search.status();
    mamba::kernels::SetGemmSearch(*search);
  }
  {
    using mamba::kernels::PersistentDecode;
    absl::StatusOr<PersistentDecode> mode =
        ParseChoice<PersistentDecode>("persistent_decode", absl::GetFlag(FLAGS_persistent_decode),
                                      {{"auto", PersistentDecode::kAuto},
                                       {"always", PersistentDecode::kAlways},
                                       {"off", PersistentDecode::kOff}});
    if (!mode.ok()) return mode.status();
    mamba::kernels::SetPersistentDecode(*mode);
  }
#endif
  int max_batch = 1;
  for (int b : *batches) max_batch = std::max(max_batch, b);
  std::vector<std::tuple<int, int, int>> mixed;  // decode rows, prompts, prompt length
  if (!absl::GetFlag(FLAGS_mixed).empty()) {
    for (absl::string_view spec : absl::StrSplit(absl::GetFlag(FLAGS_mixed), ',')) {
      std::vector<std::string> parts = absl::StrSplit(spec, ':');
      int d = 0, p = 0, l = 0;
      if (parts.size() != 3 || !absl::SimpleAtoi(parts[0], &d) || !absl::SimpleAtoi(parts[1], &p) ||
          !absl::SimpleAtoi(parts[2], &l) || d < 0 || p < 1 || l < 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--mixed entry '", std::string(spec), "' is invalid; expected D:P:L with D >= 0, "
            "P >= 1, L >= 1 (decode rows, prompts, prompt length)"));
      }
      mixed.emplace_back(d, p, l);
      max_batch = std::max(max_batch, d + p);
    }
  }
  options.num_slots = std::max(max_batch, 1);
  options.max_batch = std::max(max_batch, 1);
  if (absl::GetFlag(FLAGS_decode_trace)) {
#if defined(MAMBA_HAVE_CUDA) && defined(MAMBA_BENCH_CUDA_HOOKS)
    if (!cuda) return absl::FailedPreconditionError("--decode_trace needs --backend=cuda");
    MAMBA_RETURN_IF_ERROR(EnableDecodeTrace(config.n_layer));
#else
    return absl::FailedPreconditionError("--decode_trace needs a build with CUDA");
#endif
  }
  absl::StatusOr<std::unique_ptr<backend::Backend>> backend = CreateBackend(options, *model);
  if (!backend.ok()) return backend.status();
  backend::Backend& b = **backend;

  const int threads = absl::GetFlag(FLAGS_threads) > 0
                          ? absl::GetFlag(FLAGS_threads)
                          : std::max(1u, std::thread::hardware_concurrency());
  double bandwidth = absl::GetFlag(FLAGS_bandwidth_gbps) * 1e9;
  std::string bandwidth_source = "--bandwidth_gbps";
  HostBandwidth host;
  if (!cuda) host = MeasureHostBandwidth(threads);
  if (bandwidth <= 0.0) {
    if (cuda) {
      bandwidth = 3000e9;
      bandwidth_source = "PERF.md H100 device-to-device copy";
    } else {
      bandwidth = host.copy;
      bandwidth_source = "measured: one memcpy of 512 MiB, reads + writes, best of 5";
    }
  }
  const double weight_bytes = static_cast<double>(b.weight_bytes());
  // Per sequence and step: the SSM state read and written, the conv state read and written, and
  // the logits written (fp32 state and logits).
  const double state_bytes_per_seq =
      2.0 * config.n_layer *
          (static_cast<double>(model::StateLayoutOf(config).ssm_elements_per_layer()) +
           static_cast<double>(model::StateLayoutOf(config).conv_elements_per_layer())) *
          (b.state_dtype() == model::DType::kF32 ? 4.0 : 2.0) +
      4.0 * config.vocab_size;

  std::printf("model      %s (%s, %.1fM parameters), loaded in %.1f s\n", model_name.c_str(),
              config.Summary().c_str(), config.NumParameters() / 1e6, load_s);
  std::printf("backend    %s: %s\n", b.name().c_str(), b.device().c_str());
  std::printf("weights    %s, %.1f MB\n", std::string(model::DTypeName(b.weight_dtype())).c_str(),
              weight_bytes / 1e6);
  std::printf("bandwidth  %.1f GB/s (%s)\n", bandwidth / 1e9, bandwidth_source.c_str());
  if (!cuda) {
    std::printf("           all %d threads: copy %.1f GB/s (reads + writes), read-only %.1f GB/s\n",
                threads, host.copy_all_cores / 1e9, host.read_all_cores / 1e9);
  }
  std::printf("floor      (W + B * (2 SSM + 2 conv state + logits bytes)) / bandwidth\n");
  json += absl::StrFormat(
      "\"model\": %s, \"backend\": %s, \"device\": %s, \"dtype\": %s, \"weight_bytes\": %.0f, "
      "\"bandwidth_gbps\": %.2f, \"bandwidth_source\": %s, \"threads\": %d",
      JsonString(model_name), JsonString(b.name()), JsonString(b.device()),
      JsonString(std::string(model::DTypeName(b.weight_dtype()))), weight_bytes, bandwidth / 1e9,
      JsonString(bandwidth_source), threads);
  if (!cuda) {
    json += absl::StrFormat(", \"copy_all_cores_gbps\": %.2f, \"read_all_cores_gbps\": %.2f",
                            host.copy_all_cores / 1e9, host.read_all_cores / 1e9);
  }

  uint64_t rng = absl::GetFlag(FLAGS_seed) * 0x9E3779B97F4A7C15ull + 12345;
  std::vector<std::string> prefill_json;
  for (int n : *prefills) {
    absl::StatusOr<PrefillResult> r = BenchPrefill(b, n, absl::GetFlag(FLAGS_prefill_runs), &rng);
    if (!r.ok()) return r.status();
    std::printf("prefill    %6d tokens: %9.1f ms  %9.1f tok/s\n", n, r->seconds * 1e3,
                r->tokens_per_s);
    prefill_json.push_back(absl::StrFormat("{\"tokens\": %d, \"ms\": %.3f, \"tokens_per_s\": %.2f}",
                                           n, r->seconds * 1e3, r->tokens_per_s));
  }
  json += absl::StrCat(", \"prefill\": [", absl::StrJoin(prefill_json, ", "), "]");

  std::vector<std::string> decode_json;
  double batch1_tps = 0.0;
  if (!batches->empty()) {
    std::printf("decode     %5s %12s %12s %14s %9s %9s\n", "batch", "us/step", "tok/s",
                "floor us/step", "of floor", "W GB/s");
  }
  for (int batch : *batches) {
    absl::StatusOr<DecodeResult> r =
        BenchDecode(b, batch, absl::GetFlag(FLAGS_warmup), steps, &rng);
    if (!r.ok()) return r.status();
    // The states are part of the floor on both backends: a Mamba-2 sequence's (19 MB at 130m)
    // outweighs its share of the weights at batch 8 already.
    const double floor_bytes = weight_bytes + batch * state_bytes_per_seq;
    r->floor_s = floor_bytes / bandwidth;
    if (batch == 1) batch1_tps = r->tokens_per_s;
    std::printf("           %5d %12.1f %12.1f %14.1f %8.1f%% %9.1f", batch, r->step_s * 1e6,
                r->tokens_per_s, r->floor_s * 1e6, 100.0 * r->floor_s / r->step_s,
                weight_bytes / r->step_s / 1e9);
    if (batch > 1 && batch1_tps > 0.0) {
      std::printf("   %.2fx batch 1", r->tokens_per_s / batch1_tps);
    }
    std::printf("\n");
    decode_json.push_back(absl::StrFormat(
        "{\"batch\": %d, \"us_per_step\": %.2f, \"tokens_per_s\": %.2f, \"floor_us_per_step\": "
        "%.2f, \"fraction_of_floor\": %.4f, \"steps\": %d}",
        batch, r->step_s * 1e6, r->tokens_per_s, r->floor_s * 1e6, r->floor_s / r->step_s, steps));
  }
  json += absl::StrCat(", \"decode\": [", absl::StrJoin(decode_json, ", "), "]");

  if (!absl::GetFlag(FLAGS_mixed).empty()) {
    std::printf("mixed      %5s %7s %6s %12s %14s %15s\n", "decode", "prompts", "length",
                "mixed ms", "decode-only ms", "prompts-only ms");
    std::vector<std::string> mixed_json;
    for (const auto& [d, p, l] : mixed) {
      absl::StatusOr<MixedResult> r = BenchMixed(b, d, p, l, std::max(steps / 10, 5), &rng);
      if (!r.ok()) return r.status();
      std::printf("           %5d %7d %6d %12.3f %14.3f %15.3f\n", d, p, l, r->mixed_s * 1e3,
                  r->decode_only_s * 1e3, r->prefill_only_s * 1e3);
      mixed_json.push_back(absl::StrFormat(
          "{\"decode\": %d, \"prompts\": %d, \"length\": %d, \"mixed_ms\": %.3f, "
          "\"decode_only_ms\": %.3f, \"prompts_only_ms\": %.3f}",
          d, p, l, r->mixed_s * 1e3, r->decode_only_s * 1e3, r->prefill_only_s * 1e3));
    }
    json += absl::StrCat(", \"mixed\": [", absl::StrJoin(mixed_json, ", "), "]");
  }

  if (absl::GetFlag(FLAGS_decode_trace)) {
#if defined(MAMBA_HAVE_CUDA) && defined(MAMBA_BENCH_CUDA_HOOKS)
    absl::StatusOr<std::string> r = DecodeTraceReport(config.n_layer);
    if (!r.ok()) return r.status();
    json += absl::StrCat(", \"decode_trace\": ", *r);
#endif
  }
  if (absl::GetFlag(FLAGS_breakdown)) {
#if defined(MAMBA_HAVE_CUDA) && defined(MAMBA_BENCH_CUDA_HOOKS)
    if (!cuda) return absl::FailedPreconditionError("--breakdown needs --backend=cuda");
    absl::StatusOr<std::string> r = RunCudaBreakdown(b, batches->empty() ? 1 : batches->back(),
                                                     prefills->empty() ? 512 : prefills->front());
    if (!r.ok()) return r.status();
    json += absl::StrCat(", \"breakdown\": ", *r);
#else
    return absl::FailedPreconditionError("--breakdown needs a build with CUDA");
#endif
  }
  if (absl::GetFlag(FLAGS_gemm_report)) {
#if defined(MAMBA_HAVE_CUDA) && defined(MAMBA_BENCH_CUDA_HOOKS)
    for (const std::string& line : mamba::kernels::GemmSearchReport()) {
      std::printf("gemm %s\n", line.c_str());
    }
#endif
  }
  json += "}\n";
  if (!absl::GetFlag(FLAGS_json).empty()) {
    std::ofstream out(absl::GetFlag(FLAGS_json));
    out << json;
    if (!out) {
      return absl::UnavailableError(absl::StrCat("cannot write ", absl::GetFlag(FLAGS_json)));
    }
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace mamba::bench

int main(int argc, char** argv) {
  mamba::common::CommandLineSpec spec;
  spec.program = "mamba-bench";
  spec.usage =
      "Prefill and decode throughput of a Mamba backend against the memory bandwidth floor.\n"
      "  mamba-bench --model=synthetic:130m --backend=cpu --dtype=fp16 --batch=1,8 "
      "--prefill=512";
  spec.own_flag_files = {"bench/engine/"};
  mamba::common::ParseCommandLineOrExit(argc, argv, spec);
  const absl::Status s = mamba::bench::Run();
  if (!s.ok()) {
    std::fprintf(stderr, "mamba-bench: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
