// The kernels of the Mamba-2 and FalconMamba paths and the range probe, each against a plain
// double-precision CPU reference written here, on fresh random inputs, with outputs poisoned
// (NaN) before every launch so an unwritten element fails: the SSD recurrence (prefill over
// packed variable-length sequences from nonzero states, and decode), the grouped gated RMSNorm
// with the MLP channels in front, FalconMamba's dt/B/C norm, and the largest-magnitude reduction
// behind the f16 output shifts. scripts/gpu/run_cuda_checks.sh also runs them under
// compute-sanitizer memcheck and racecheck.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/dbc_norm.h"
#include "kernels/mamba2.h"
#include "kernels/max_abs.h"
#include "tests/unit/cuda/cuda_test_support.h"

namespace mamba {
namespace {

using kernels::KernelDType;
using namespace mamba::testing;  // NOLINT

constexpr double kHalfTolerance = 1e-2;
constexpr double kF32Tolerance = 1e-3;
const KernelDType kActs[] = {KernelDType::kF16, KernelDType::kBF16};

double Softplus(double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); }
double Silu(double x) { return x / (1.0 + std::exp(-x)); }
void Sync() { ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess); }

// ---------------------------------------------------------------------------------------------
// SSD recurrence

struct SsdCase {
  int64_t heads, head_dim, groups, dstate;
  std::vector<int> lengths;  // empty: decode, one token per row (rows = decode_rows)
  int decode_rows = 0;
  KernelDType state;
  bool d_per_channel = false;
  bool dt_limits = false;
  int64_t pad = 0;         // extra columns in the xBC rows (0 keeps them 16-byte aligned)
  float magnitude = 1.0f;  // scales x, B, C and the starting states (f16's range)
};

struct SsdProblem {
  SsdCase c;
  KernelDType act;
  int64_t tokens = 0, seqs = 0, dim = 0, ld = 0, dt_ld = 0;
  int num_slots = 0;
  std::vector<int32_t> cu, slots;
  std::vector<float> xbc, dt;  // rounded to act
  std::vector<uint16_t> xbc_bits, dt_bits;
  std::vector<float> dt_bias, a, d;
  std::vector<float> state;  // [num_slots][heads][head_dim][dstate], rounded to the state dtype
  std::vector<uint16_t> state_bits;
  float dt_min = 0.0f, dt_max = std::numeric_limits<float>::infinity();

  void Make(std::mt19937_64& rng) {
    dim = c.heads * c.head_dim;
    const bool decode = c.lengths.empty();
    seqs = decode ? c.decode_rows : static_cast<int64_t>(c.lengths.size());
    tokens = decode ? seqs : std::accumulate(c.lengths.begin(), c.lengths.end(), int64_t{0});
    cu.assign(1, 0);
    if (!decode) {
      for (int len : c.lengths) cu.push_back(cu.back() + len);
    }
    num_slots = static_cast<int>(seqs) + 2;
    std::vector<int32_t> perm(num_slots);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    slots.assign(perm.begin(), perm.begin() + seqs);
    ld = dim + 2 * c.groups * c.dstate + c.pad;
    dt_ld = c.heads + 3;
    xbc = Normal(rng, tokens * ld, c.magnitude);
    xbc_bits = RoundToHalf(xbc, act);
    dt = Normal(rng, tokens * dt_ld, 1.0f);
    dt_bits = RoundToHalf(dt, act);
    dt_bias = Uniform(rng, c.heads, -4.0f, -1.0f);
    a = Uniform(rng, c.heads, -8.0f, -0.5f);
    d = Normal(rng, c.d_per_channel ? dim : c.heads, 1.0f);
    if (c.dt_limits) {
      dt_min = 0.01f;
      dt_max = 0.2f;
    }
    state = Normal(rng, static_cast<size_t>(num_slots) * dim * c.dstate, 0.5f * c.magnitude);
    if (c.state == KernelDType::kBF16) state_bits = RoundToHalf(state, KernelDType::kBF16);
  }

  // y [tokens][dim] and the states after the launch.
  void Reference(std::vector<double>* y, std::vector<double>* st) const {
    st->assign(state.begin(), state.end());
    y->assign(tokens * dim, 0.0);
    const int64_t heads_per_group = c.heads / c.groups;
    for (int64_t s = 0; s < seqs; ++s) {
      const int64_t begin = c.lengths.empty() ? s : cu[s];
      const int64_t end = c.lengths.empty() ? s + 1 : cu[s + 1];
      double* h0 = st->data() + static_cast<int64_t>(slots[s]) * dim * c.dstate;
      for (int64_t t = begin; t < end; ++t) {
        const float* row = xbc.data() + t * ld;
        for (int64_t hd = 0; hd < c.heads; ++hd) {
          const int64_t g = hd / heads_per_group;
          double delta = Softplus(static_cast<double>(dt[t * dt_ld + hd]) + dt_bias[hd]);
          delta = std::min<double>(std::max<double>(delta, dt_min), dt_max);
          const double decay = std::exp(delta * a[hd]);
          const float* b = row + dim + g * c.dstate;
          const float* cc = row + dim + c.groups * c.dstate + g * c.dstate;
          for (int64_t p = 0; p < c.head_dim; ++p) {
            const int64_t e = hd * c.head_dim + p;
            const double x = row[e];
            double acc = 0.0;
            double* h = h0 + e * c.dstate;
            for (int64_t n = 0; n < c.dstate; ++n) {
              h[n] = decay * h[n] + delta * x * b[n];
              acc += cc[n] * h[n];
            }
            (*y)[t * dim + e] = acc + (c.d_per_channel ? d[e] : d[hd]) * x;
          }
        }
      }
    }
  }
};

struct SsdDevice {
  DeviceArray<uint16_t> xbc, dt;
  DeviceArray<float> dt_bias, a, d;
  DeviceArray<int32_t> cu, slots;
  DeviceArray<float> out;
  DeviceArray<float> state_f;
  DeviceArray<uint16_t> state_h;
  const SsdProblem& p;
  explicit SsdDevice(const SsdProblem& q)
      : xbc(q.xbc_bits),
        dt(q.dt_bits),
        dt_bias(q.dt_bias),
        a(q.a),
        d(q.d),
        cu(q.cu),
        slots(q.slots),
        out(q.tokens * q.dim),
        state_f(q.c.state == KernelDType::kF32 ? q.state.size() : 1),
        state_h(q.c.state == KernelDType::kBF16 ? q.state_bits.size() : 1),
        p(q) {
    if (q.c.state == KernelDType::kF32) {
      state_f.Upload(q.state);
    } else {
      state_h.Upload(q.state_bits);
    }
    out.Poison();
  }
  std::vector<float> State() const {
    return p.c.state == KernelDType::kF32 ? state_f.Download()
                                          : HalfToFloats(state_h.Download(), KernelDType::kBF16);
  }
  kernels::SsdScanParams Params() {
    kernels::SsdScanParams s;
    s.num_seqs = p.seqs;
    s.total_tokens = p.tokens;
    s.n_heads = p.c.heads;
    s.head_dim = p.c.head_dim;
    s.n_groups = p.c.groups;
    s.dstate = p.c.dstate;
    s.x = xbc.get();
    s.b = xbc.get() + p.dim;
    s.c = xbc.get() + p.dim + p.c.groups * p.c.dstate;
    s.xbc_row_stride = p.ld;
    s.dt = dt.get();
    s.dt_row_stride = p.dt_ld;
    s.dt_bias = dt_bias.get();
    s.dt_min = p.dt_min;
    s.dt_max = p.dt_max;
    s.a = a.get();
    s.d = d.get();
    s.d_per_channel = p.c.d_per_channel;
    s.cu_seqlens = p.c.lengths.empty() ? nullptr : cu.get();
    s.slots = slots.get();
    s.state = p.c.state == KernelDType::kF32 ? static_cast<void*>(state_f.get()) : state_h.get();
    s.state_slot_stride = p.dim * p.c.dstate;
    s.out = out.get();
    s.out_row_stride = p.dim;
    return s;
  }
  // Scans tokens [begin, end) of the problem's one sequence, from the state the slot holds, as
  // one launch of a single sequence (a chunk of a prompt split across engine steps).
  void ScanPart(int32_t begin, int32_t end, int64_t chunked_min_tokens) {
    kernels::SsdScanParams s = Params();
    const std::vector<int32_t> part_cu = {0, end - begin};
    DeviceArray<int32_t> dcu(part_cu);
    s.total_tokens = end - begin;
    s.cu_seqlens = dcu.get();
    s.x = static_cast<const uint16_t*>(s.x) + begin * p.ld;
    s.b = static_cast<const uint16_t*>(s.b) + begin * p.ld;
    s.c = static_cast<const uint16_t*>(s.c) + begin * p.ld;
    s.dt = static_cast<const uint16_t*>(s.dt) + begin * p.dt_ld;
    s.out = out.get() + begin * p.dim;
    s.chunked_min_tokens = chunked_min_tokens;
    ASSERT_TRUE(kernels::LaunchSsdScan(s, p.act, p.c.state, nullptr).ok());
    Sync();
  }
};

TEST(CudaSsdScanTest, MatchesReference) {
  MAMBA_SKIP_WITHOUT_GPU();
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  const std::vector<SsdCase> cases = {
      // mamba2-130m's head shape, one group, varlen with a length-1 sequence.
      {4, 64, 1, 128, {1, 70, 13}, 0, KernelDType::kF32},
      // Codestral's grouping (several heads per group), bf16 states, dt limits.
      {8, 32, 4, 64, {5, 33}, 0, KernelDType::kBF16, false, true},
      // Small d_state and odd head_dim, D per channel, unaligned rows (scalar accesses).
      {3, 20, 3, 12, {9, 2, 17}, 0, KernelDType::kF32, true, false, 3},
      // Decode: one token per row.
      {4, 64, 2, 128, {}, 7, KernelDType::kF32},
      {6, 32, 1, 16, {}, 5, KernelDType::kBF16},
  };
  for (KernelDType act : kActs) {
    for (const SsdCase& c : cases) {
      SCOPED_TRACE(absl::StrCat(KernelDTypeName(act), " heads ", c.heads, " head_dim ", c.head_dim,
                                " groups ", c.groups, " dstate ", c.dstate,
                                c.lengths.empty() ? " decode" : " prefill", " state ",
                                KernelDTypeName(c.state)));
      SsdProblem p;
      p.c = c;
      p.act = act;
      p.Make(rng);
      std::vector<double> ref_y, ref_state;
      p.Reference(&ref_y, &ref_state);
      SsdDevice dev(p);
      absl::Status s = kernels::LaunchSsdScan(dev.Params(), act, c.state, nullptr);
      ASSERT_TRUE(s.ok()) << s;
      Sync();
      const std::vector<float> y = dev.out.Download();
      EXPECT_FALSE(AnyNan(y));
      EXPECT_LE(RelativeL2(y, ref_y), kF32Tolerance * (c.state == KernelDType::kF32 ? 1 : 10));
      EXPECT_LE(RelativeL2(dev.State(), ref_state),
                c.state == KernelDType::kF32 ? kF32Tolerance : kHalfTolerance);
    }
  }
}

// A prompt scanned in two launches (the second from the state the first left) gives the bits of
// one launch over the whole prompt: chunked prefill and sessions rely on it.
TEST(CudaSsdScanTest, SplitPromptEqualsWholeBitwise) {
  MAMBA_SKIP_WITHOUT_GPU();
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  for (KernelDType act : kActs) {
    SsdProblem whole;
    whole.c = {4, 64, 2, 128, {45}, 0, KernelDType::kF32};
    whole.act = act;
    whole.Make(rng);
    SsdDevice all(whole);
    ASSERT_TRUE(kernels::LaunchSsdScan(all.Params(), act, KernelDType::kF32, nullptr).ok());
    SsdDevice parts(whole);
    for (auto [begin, end] : {std::pair<int32_t, int32_t>{0, 17}, {17, 45}}) {
      parts.ScanPart(begin, end, /*chunked_min_tokens=*/0);
    }
    EXPECT_EQ(all.out.Download(), parts.out.Download());
    EXPECT_EQ(all.State(), parts.State());
  }
}

// The chunked (matrix) form of the scan: long sequences through it, short ones through the
// recurrence in the same launch, against the same double reference, with whole and half heads
// per block. Its half-precision operands make it equal up to rounding (the tolerance of the
// half-precision tests), also at magnitudes whose products leave f16's range unless scaled.
TEST(CudaSsdScanTest, ChunkedFormMatchesReference) {
  MAMBA_SKIP_WITHOUT_GPU();
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  struct Case {
    SsdCase c;
    int64_t min_tokens;
    bool max_seqlen_known;
  };
  const std::vector<Case> cases = {
      // mamba2-130m's head shape: chunk edges (63, 64, 65), a long sequence, a 1-token one.
      {{4, 64, 1, 128, {1, 63, 64, 65, 200}, 0, KernelDType::kF32}, 1, true},
      // Codestral's grouping, bf16 states, dt limits; short sequences left to the recurrence.
      {{8, 64, 4, 128, {130, 5, 64, 17}, 0, KernelDType::kBF16, false, true}, 64, false},
      // dstate 64, D per channel.
      {{2, 64, 2, 64, {150, 31}, 0, KernelDType::kF32, true}, 32, true},
      // Large activations and states: f16 products past 65504 unless scaled.
      {{2, 64, 1, 128, {129, 70}, 0, KernelDType::kF32, false, false, 0, 300.0f}, 1, true},
  };
  for (KernelDType act : kActs) {
    for (const Case& k : cases) {
      const SsdCase& c = k.c;
      SCOPED_TRACE(absl::StrCat(KernelDTypeName(act), " heads ", c.heads, " groups ", c.groups,
                                " dstate ", c.dstate, " state ", KernelDTypeName(c.state),
                                " min_tokens ", k.min_tokens, " magnitude ", c.magnitude));
      SsdProblem p;
      p.c = c;
      p.act = act;
      p.Make(rng);
      std::vector<double> ref_y, ref_state;
      p.Reference(&ref_y, &ref_state);
      // Whole heads per block, half heads, and the launcher's choice.
      for (int split : {1, 2, 0}) {
        SCOPED_TRACE(absl::StrCat("head split ", split));
        SsdDevice dev(p);
        kernels::SsdScanParams params = dev.Params();
        params.chunked_min_tokens = k.min_tokens;
        params.max_seqlen =
            k.max_seqlen_known ? *std::max_element(c.lengths.begin(), c.lengths.end()) : 0;
        params.chunked_head_split = split;
        absl::Status s = kernels::LaunchSsdScan(params, act, c.state, nullptr);
        ASSERT_TRUE(s.ok()) << s;
        Sync();
        const std::vector<float> y = dev.out.Download();
        EXPECT_FALSE(AnyNan(y));
        EXPECT_LE(RelativeL2(y, ref_y), kHalfTolerance);
        EXPECT_LE(RelativeL2(dev.State(), ref_state), kHalfTolerance);
      }
    }
  }
}

// Asking for the chunked form changes nothing where it does not apply: decode rows (no
// cu_seqlens) and prompts all shorter than the threshold keep the recurrence's bits.
TEST(CudaSsdScanTest, ChunkedFormLeavesDecodeAndShortPromptsAlone) {
  MAMBA_SKIP_WITHOUT_GPU();
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  const std::vector<SsdCase> cases = {
      {4, 64, 2, 128, {}, 7, KernelDType::kF32},           // decode
      {4, 64, 2, 128, {30, 63, 5}, 0, KernelDType::kF32},  // every prompt under 64 tokens
  };
  for (KernelDType act : kActs) {
    for (const SsdCase& c : cases) {
      SCOPED_TRACE(c.lengths.empty() ? "decode" : "short prompts");
      SsdProblem p;
      p.c = c;
      p.act = act;
      p.Make(rng);
      SsdDevice plain(p), asked(p);
      ASSERT_TRUE(kernels::LaunchSsdScan(plain.Params(), act, c.state, nullptr).ok());
      kernels::SsdScanParams params = asked.Params();
      params.chunked_min_tokens = 64;
      ASSERT_TRUE(kernels::LaunchSsdScan(params, act, c.state, nullptr).ok());
      Sync();
      EXPECT_EQ(plain.out.Download(), asked.out.Download());
      EXPECT_EQ(plain.State(), asked.State());
    }
  }
}

// A long prompt through the chunked form in three launches (split inside a chunk) ends in the
// state one launch leaves, up to rounding: chunked prefill across engine steps relies on it.
TEST(CudaSsdScanTest, ChunkedFormSplitPromptMatchesWhole) {
  MAMBA_SKIP_WITHOUT_GPU();
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  for (KernelDType act : kActs) {
    SsdProblem whole;
    whole.c = {4, 64, 2, 128, {300}, 0, KernelDType::kF32};
    whole.act = act;
    whole.Make(rng);
    SsdDevice all(whole);
    kernels::SsdScanParams one = all.Params();
    one.chunked_min_tokens = 1;
    ASSERT_TRUE(kernels::LaunchSsdScan(one, act, KernelDType::kF32, nullptr).ok());
    SsdDevice parts(whole);
    for (auto [begin, end] : {std::pair<int32_t, int32_t>{0, 100}, {100, 101}, {101, 300}}) {
      parts.ScanPart(begin, end, /*chunked_min_tokens=*/1);
    }
    const std::vector<float> ya = all.out.Download(), yb = parts.out.Download();
    const std::vector<double> yb_d(yb.begin(), yb.end());
    const std::vector<float> sa = all.State(), sb = parts.State();
    const std::vector<double> sb_d(sb.begin(), sb.end());
    EXPECT_LE(RelativeL2(ya, yb_d), kHalfTolerance);
    EXPECT_LE(RelativeL2(sa, sb_d), kHalfTolerance);
  }
}

// ---------------------------------------------------------------------------------------------
// Gated RMSNorm

TEST(CudaGatedNormTest, MatchesReference) {
  MAMBA_SKIP_WITHOUT_GPU();
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  struct Case {
    int64_t rows, dim, group_size, mlp;
    bool biases, norm;
  };
  const std::vector<Case> cases = {
      {5, 1536, 1536, 0, false, true},  // mamba2-130m: one group
      {3, 512, 64, 0, true, true},      // eight groups, z bias
      {4, 256, 128, 48, true, true},    // the state-spaces MLP channels in front
      {2, 200, 40, 8, false, false},    // no weight: gate only
  };
  for (KernelDType act : kActs) {
    for (const Case& c : cases) {
      SCOPED_TRACE(absl::StrCat(KernelDTypeName(act), " rows ", c.rows, " dim ", c.dim, " group ",
                                c.group_size, " mlp ", c.mlp));
      // One in_proj-like row: [z0 | x0 | z], padded.
      const int64_t proj_ld = 2 * c.mlp + c.dim + 8;
      std::vector<float> proj = Normal(rng, c.rows * proj_ld, 1.5f);
      const std::vector<uint16_t> proj_bits = RoundToHalf(proj, act);
      const int64_t y_ld = c.dim + 4;
      const std::vector<float> y = Normal(rng, c.rows * y_ld, 2.0f);
      const std::vector<float> weight = Uniform(rng, c.dim, 0.5f, 1.5f);
      const std::vector<float> zb = Normal(rng, c.dim, 0.3f);
      const std::vector<float> z0b = Normal(rng, std::max<int64_t>(c.mlp, 1), 0.3f);
      const std::vector<float> x0b = Normal(rng, std::max<int64_t>(c.mlp, 1), 0.3f);
      const float eps = 1e-5f;
      const int64_t out_ld = c.mlp + c.dim;

      std::vector<double> ref(c.rows * out_ld);
      for (int64_t r = 0; r < c.rows; ++r) {
        const float* row = proj.data() + r * proj_ld;
        for (int64_t j = 0; j < c.mlp; ++j) {
          const double z0 = row[j] + (c.biases ? z0b[j] : 0.0f);
          const double x0 = row[c.mlp + j] + (c.biases ? x0b[j] : 0.0f);
          ref[r * out_ld + j] = Silu(z0) * x0;
        }
        std::vector<double> g(c.dim);
        for (int64_t e = 0; e < c.dim; ++e) {
          const double z = row[2 * c.mlp + e] + (c.biases ? zb[e] : 0.0f);
          g[e] = y[r * y_ld + e] * Silu(z);
        }
        for (int64_t g0 = 0; g0 < c.dim; g0 += c.group_size) {
          double ss = 0.0;
          for (int64_t e = g0; e < g0 + c.group_size; ++e) ss += g[e] * g[e];
          const double scale = c.norm ? 1.0 / std::sqrt(ss / c.group_size + eps) : 1.0;
          for (int64_t e = g0; e < g0 + c.group_size; ++e) {
            ref[r * out_ld + c.mlp + e] = g[e] * scale * (c.norm ? weight[e] : 1.0f);
          }
        }
      }

      DeviceArray<uint16_t> dproj(proj_bits);
      DeviceArray<float> dy(y), dw(weight), dzb(zb), dz0b(z0b), dx0b(x0b);
      DeviceArray<uint16_t> dout(c.rows * out_ld);
      dout.Poison();
      kernels::GatedNormParams g;
      g.rows = c.rows;
      g.dim = c.dim;
      g.group_size = c.group_size;
      g.mlp = c.mlp;
      g.y = dy.get();
      g.y_row_stride = y_ld;
      g.z0 = dproj.get();
      g.x0 = dproj.get() + c.mlp;
      g.z = dproj.get() + 2 * c.mlp;
      g.proj_row_stride = proj_ld;
      g.z_bias = c.biases ? dzb.get() : nullptr;
      g.z0_bias = c.biases && c.mlp > 0 ? dz0b.get() : nullptr;
      g.x0_bias = c.biases && c.mlp > 0 ? dx0b.get() : nullptr;
      g.weight = c.norm ? dw.get() : nullptr;
      g.eps = eps;
      g.out = dout.get();
      g.out_row_stride = out_ld;
      absl::Status s = kernels::LaunchGatedNorm(g, act, nullptr);
      ASSERT_TRUE(s.ok()) << s;
      Sync();
      const std::vector<float> out = HalfToFloats(dout.Download(), act);
      EXPECT_FALSE(AnyNan(out));
      EXPECT_LE(RelativeL2(out, ref), kHalfTolerance);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// FalconMamba's dt/B/C norm

TEST(CudaDbcNormTest, MatchesReference) {
  MAMBA_SKIP_WITHOUT_GPU();
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  struct Case {
    int64_t rows, rank, dstate;
  };
  for (KernelDType act : kActs) {
    for (const Case& c : {Case{6, 256, 16}, Case{3, 8, 16}, Case{4, 5, 12}, Case{1, 48, 64}}) {
      SCOPED_TRACE(absl::StrCat(KernelDTypeName(act), " rows ", c.rows, " rank ", c.rank,
                                " dstate ", c.dstate));
      const int64_t ld = c.rank + 2 * c.dstate + 5;
      std::vector<float> dbc = Normal(rng, c.rows * ld, 3.0f);
      const std::vector<uint16_t> bits = RoundToHalf(dbc, act);
      const float eps = 1e-3f;
      std::vector<double> ref(dbc.begin(), dbc.end());
      for (int64_t r = 0; r < c.rows; ++r) {
        for (auto [begin, size] : {std::pair<int64_t, int64_t>{0, c.rank},
                                   {c.rank, c.dstate},
                                   {c.rank + c.dstate, c.dstate}}) {
          double ss = 0.0;
          for (int64_t j = begin; j < begin + size; ++j) ss += ref[r * ld + j] * ref[r * ld + j];
          const double scale = 1.0 / std::sqrt(ss / size + eps);
          for (int64_t j = begin; j < begin + size; ++j) ref[r * ld + j] *= scale;
        }
      }
      DeviceArray<uint16_t> d(bits);
      kernels::DbcNormParams p;
      p.rows = c.rows;
      p.dt_rank = c.rank;
      p.dstate = c.dstate;
      p.dbc = d.get();
      p.row_stride = ld;
      p.eps = eps;
      absl::Status s = kernels::LaunchDbcNorm(p, act, nullptr);
      ASSERT_TRUE(s.ok()) << s;
      Sync();
      const std::vector<float> out = HalfToFloats(d.Download(), act);
      EXPECT_LE(RelativeL2(out, ref), kHalfTolerance);
      // The padding after C is not touched.
      for (int64_t r = 0; r < c.rows; ++r) {
        for (int64_t j = c.rank + 2 * c.dstate; j < ld; ++j) {
          EXPECT_EQ(out[r * ld + j], dbc[r * ld + j]);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The range probe

TEST(CudaMaxAbsTest, FoldsTheLargestMagnitudeAndFlagsNonFinite) {
  MAMBA_SKIP_WITHOUT_GPU();
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  for (KernelDType act : kActs) {
    SCOPED_TRACE(KernelDTypeName(act));
    const int64_t rows = 37, cols = 1000, ld = 1003;
    std::vector<float> x = Normal(rng, rows * ld, 10.0f);
    x[17 * ld + 999] = -3000.0f;  // the largest, negative
    x[5 * ld + 1001] = 1e4f;      // beyond cols: ignored
    std::vector<uint16_t> bits = RoundToHalf(x, act);
    const float largest = std::abs(x[17 * ld + 999]);  // 3000 as the dtype holds it (bf16: 3008)
    DeviceArray<uint16_t> dx(bits);
    DeviceArray<float> out(std::vector<float>{0.0f});
    kernels::MaxAbsParams p;
    p.rows = rows;
    p.cols = cols;
    p.x = dx.get();
    p.row_stride = ld;
    p.out = out.get();
    ASSERT_TRUE(kernels::LaunchMaxAbs(p, act, nullptr).ok());
    Sync();
    EXPECT_EQ(out.Download()[0], largest);
    // A second launch over a smaller matrix leaves the maximum; a larger one raises it.
    p.rows = 2;
    ASSERT_TRUE(kernels::LaunchMaxAbs(p, act, nullptr).ok());
    Sync();
    EXPECT_EQ(out.Download()[0], largest);
    // An infinity or a NaN makes the result non-finite.
    bits[3 * ld + 4] = ToHalfBits(std::numeric_limits<float>::infinity(), act);
    dx.Upload(bits);
    p.rows = rows;
    ASSERT_TRUE(kernels::LaunchMaxAbs(p, act, nullptr).ok());
    Sync();
    EXPECT_FALSE(std::isfinite(out.Download()[0]));
    // Bad shapes are refused with a reason.
    p.row_stride = cols - 1;
    const absl::Status bad = kernels::LaunchMaxAbs(p, act, nullptr);
    EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace mamba
