// Each CUDA kernel against a plain double-precision CPU reference written here, on fresh random
// inputs (never zeros), with outputs poisoned (NaN) before every launch so an unwritten element
// fails. Shapes cover odd sizes, length-1 sequences, chunk boundaries, variable-length batches
// and nonzero initial states; the bitwise claims the batch-invariant mode depends on (chunked
// scan == whole scan, decode kernels == prefill kernels, batch-invariant GEMM rows independent
// of m) are checked exactly.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/sampling/sampler.h"
#include "engine/sampling/sampling_params.h"
#include "gtest/gtest.h"
#include "kernels/causal_conv1d.h"
#include "kernels/gemm.h"
#include "kernels/rms_norm.h"
#include "kernels/sampling.h"
#include "kernels/selective_scan.h"
#include "kernels/selective_state_update.h"
#include "kernels/skinny_gemm_params.h"
#include "tests/unit/cuda/cuda_test_support.h"

namespace mamba {
namespace {

using kernels::KernelDType;
using namespace mamba::testing;  // NOLINT

constexpr double kHalfTolerance = 1e-2;  // outputs rounded to f16/bf16
constexpr double kF32Tolerance = 1e-3;   // fp32 paths (states, fp32 outputs)
constexpr double kLog2e = 1.4426950408889634;

const KernelDType kActs[] = {KernelDType::kF16, KernelDType::kBF16};

double Softplus(double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); }
double Silu(double x) { return x / (1.0 + std::exp(-x)); }

void Sync() { ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess); }

// ---------------------------------------------------------------------------------------------
// RMSNorm

TEST(CudaRmsNormTest, EmbedAddAndGatherMatchReference) {
  MAMBA_SKIP_WITHOUT_GPU();
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  for (KernelDType act : kActs) {
    for (int64_t dim : {768, 130, 2048}) {
      for (int64_t rows : {1, 7}) {
        SCOPED_TRACE(absl::StrCat(KernelDTypeName(act), " dim ", dim, " rows ", rows));
        const int64_t vocab = 50;
        std::vector<float> emb = Normal(rng, vocab * dim, 1.0f);
        std::vector<uint16_t> emb_bits = RoundToHalf(emb, act);
        std::vector<float> weight = Uniform(rng, dim, 0.5f, 1.5f);
        std::uniform_int_distribution<int32_t> tok(0, vocab - 1);
        std::vector<int32_t> tokens(rows);
        for (int32_t& t : tokens) t = tok(rng);

        DeviceArray<uint16_t> d_emb(emb_bits);
        DeviceArray<float> d_weight(weight);
        DeviceArray<int32_t> d_tokens(tokens);
        DeviceArray<float> d_res(rows * dim);
        DeviceArray<uint16_t> d_out(rows * dim);

        auto reference = [&](const std::vector<double>& r, int64_t row) {
          double ss = 0.0;
          for (int64_t j = 0; j < dim; ++j) ss += r[row * dim + j] * r[row * dim + j];
          const double scale = 1.0 / std::sqrt(ss / dim + 1e-5);
          std::vector<double> o(dim);
          for (int64_t j = 0; j < dim; ++j) o[j] = r[row * dim + j] * scale * weight[j];
          return o;
        };

        // Mode 1: the first layer's input straight from the embedding.
        d_res.Poison();
        d_out.Poison();
        kernels::RmsNormParams p;
        p.rows = rows;
        p.dim = dim;
        p.residual = d_res.get();
        p.residual_row_stride = dim;
        p.tokens = d_tokens.get();
        p.embedding = d_emb.get();
        p.weight = d_weight.get();
        p.out = d_out.get();
        p.out_row_stride = dim;
        ASSERT_TRUE(kernels::LaunchRmsNorm(p, act, nullptr).ok());
        Sync();
        std::vector<double> r(rows * dim);
        for (int64_t i = 0; i < rows; ++i) {
          for (int64_t j = 0; j < dim; ++j) r[i * dim + j] = emb[tokens[i] * dim + j];
        }
        std::vector<float> res = d_res.Download();
        EXPECT_EQ(RelativeL2(res, r), 0.0);
        std::vector<double> ref_out;
        for (int64_t i = 0; i < rows; ++i) {
          std::vector<double> o = reference(r, i);
          ref_out.insert(ref_out.end(), o.begin(), o.end());
        }
        std::vector<float> out = HalfToFloats(d_out.Download(), act);
        EXPECT_LE(RelativeL2(out, ref_out), kHalfTolerance);

        // Mode 2: residual += add + bias, then norm.
        std::vector<float> residual = Normal(rng, rows * dim, 2.0f);
        std::vector<float> add = Normal(rng, rows * dim, 1.0f);
        std::vector<uint16_t> add_bits = RoundToHalf(add, act);
        std::vector<float> bias = Normal(rng, dim, 0.1f);
        DeviceArray<uint16_t> d_add(add_bits);
        DeviceArray<float> d_bias(bias);
        d_res.Upload(residual);
        d_out.Poison();
        p.tokens = nullptr;
        p.embedding = nullptr;
        p.add = d_add.get();
        p.add_row_stride = dim;
        p.add_bias = d_bias.get();
        ASSERT_TRUE(kernels::LaunchRmsNorm(p, act, nullptr).ok());
        Sync();
        for (int64_t i = 0; i < rows * dim; ++i) {
          r[i] = static_cast<double>(residual[i]) + (static_cast<double>(add[i]) + bias[i % dim]);
        }
        EXPECT_LE(RelativeL2(d_res.Download(), r), 1e-6);
        ref_out.clear();
        for (int64_t i = 0; i < rows; ++i) {
          std::vector<double> o = reference(r, i);
          ref_out.insert(ref_out.end(), o.begin(), o.end());
        }
        EXPECT_LE(RelativeL2(HalfToFloats(d_out.Download(), act), ref_out), kHalfTolerance);

        // Mode 3: the head's gather of chosen rows, residual left alone.
        std::vector<float> before = d_res.Download();
        std::vector<int32_t> pick = {static_cast<int32_t>(rows - 1), 0,
                                     static_cast<int32_t>(rows / 2)};
        DeviceArray<int32_t> d_pick(pick);
        DeviceArray<uint16_t> d_out3(pick.size() * dim);
        d_out3.Poison();
        p.rows = static_cast<int64_t>(pick.size());
        p.row_index = d_pick.get();
        p.write_residual = false;
        p.out = d_out3.get();
        ASSERT_TRUE(kernels::LaunchRmsNorm(p, act, nullptr).ok());
        Sync();
        std::vector<double> r3(rows * dim);
        for (int64_t i = 0; i < rows * dim; ++i) {
          r3[i] = static_cast<double>(before[i]) + (static_cast<double>(add[i]) + bias[i % dim]);
        }
        ref_out.clear();
        for (int32_t row : pick) {
          std::vector<double> o = reference(r3, row);
          ref_out.insert(ref_out.end(), o.begin(), o.end());
        }
        EXPECT_LE(RelativeL2(HalfToFloats(d_out3.Download(), act), ref_out), kHalfTolerance);
        EXPECT_TRUE(BitEqual(d_res.Download(), before));
      }
    }
  }
}

TEST(CudaRmsNormTest, RejectsBadShapes) {
  MAMBA_SKIP_WITHOUT_GPU();
  kernels::RmsNormParams p;
  p.rows = 1;
  p.dim = kernels::kRmsNormMaxDim + 1;
  EXPECT_EQ(kernels::LaunchRmsNorm(p, KernelDType::kF16, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  p.dim = 16;
  EXPECT_EQ(kernels::LaunchRmsNorm(p, KernelDType::kF16, nullptr).code(),
            absl::StatusCode::kInvalidArgument);  // no weight, no output
}

// ---------------------------------------------------------------------------------------------
// Causal conv1d

struct ConvCase {
  int64_t dim;
  int width;
  std::vector<int> lengths;
  bool bias;
  bool x_bias;
  KernelDType state;
};

// Host copy of a conv problem and its double-precision reference.
struct ConvProblem {
  ConvCase c;
  KernelDType act;
  int64_t tokens = 0;
  int num_slots = 0;
  std::vector<int32_t> cu, slots;
  std::vector<float> x;  // [tokens, 2 * dim]: the conv reads the first half
  std::vector<uint16_t> x_bits;
  std::vector<float> weight, bias, x_bias;
  std::vector<float> state;  // [num_slots][dim][width - 1], as stored
  std::vector<uint16_t> state_bits;

  int64_t w1() const { return c.width - 1; }

  void Make(std::mt19937_64& rng) {
    tokens = std::accumulate(c.lengths.begin(), c.lengths.end(), int64_t{0});
    cu.assign(1, 0);
    for (int len : c.lengths) cu.push_back(cu.back() + len);
    num_slots = static_cast<int>(c.lengths.size()) + 3;
    std::vector<int32_t> perm(num_slots);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    slots.assign(perm.begin(), perm.begin() + c.lengths.size());
    x = Normal(rng, tokens * 2 * c.dim, 1.0f);
    x_bits = RoundToHalf(x, act);
    weight = Normal(rng, c.dim * c.width, 0.5f);
    bias = c.bias ? Normal(rng, c.dim, 0.3f) : std::vector<float>();
    x_bias = c.x_bias ? Normal(rng, c.dim, 0.3f) : std::vector<float>();
    state = Normal(rng, std::max<int64_t>(1, num_slots * c.dim * w1()), 1.0f);
    if (c.state == KernelDType::kBF16) state_bits = RoundToHalf(state, KernelDType::kBF16);
  }

  double Input(int64_t t, int64_t e) const {
    const double v = x[t * 2 * c.dim + e];
    return c.x_bias ? static_cast<double>(static_cast<float>(v + x_bias[e])) : v;
  }

  // Outputs [tokens, dim] and the final state.
  void Reference(std::vector<double>* out, std::vector<double>* new_state) const {
    out->assign(tokens * c.dim, 0.0);
    new_state->assign(state.begin(), state.end());
    for (size_t s = 0; s < c.lengths.size(); ++s) {
      for (int64_t e = 0; e < c.dim; ++e) {
        std::vector<double> in;
        for (int64_t j = 0; j < w1(); ++j) in.push_back(state[(slots[s] * c.dim + e) * w1() + j]);
        for (int64_t t = cu[s]; t < cu[s + 1]; ++t) in.push_back(Input(t, e));
        for (int64_t t = cu[s]; t < cu[s + 1]; ++t) {
          const int64_t k0 = t - cu[s];  // in[k0 + k] for k < width
          double acc = c.bias ? bias[e] : 0.0;
          for (int k = 0; k < c.width; ++k) acc += weight[e * c.width + k] * in[k0 + k];
          (*out)[t * c.dim + e] = Silu(acc);
        }
        for (int64_t j = 0; j < w1(); ++j) {
          (*new_state)[(slots[s] * c.dim + e) * w1() + j] = in[in.size() - w1() + j];
        }
      }
    }
  }
};

// Runs one conv launch over `p` (prefill, or decode when every length is 1 and decode is set).
void RunConv(const ConvProblem& p, bool decode, std::vector<float>* out, std::vector<float>* state,
             kernels::ConvPrefillLayout layout = kernels::ConvPrefillLayout::kDefault) {
  DeviceArray<uint16_t> d_x(p.x_bits);
  DeviceArray<float> d_w(p.weight);
  DeviceArray<float> d_b(p.bias.empty() ? std::vector<float>{1.0f} : p.bias);
  DeviceArray<float> d_xb(p.x_bias.empty() ? std::vector<float>{1.0f} : p.x_bias);
  DeviceArray<int32_t> d_cu(p.cu);
  DeviceArray<int32_t> d_slots(p.slots);
  DeviceArray<uint16_t> d_out(p.tokens * p.c.dim);
  d_out.Poison();
  const bool bf16_state = p.c.state == KernelDType::kBF16;
  DeviceArray<float> d_state_f(bf16_state ? 1 : p.state.size());
  DeviceArray<uint16_t> d_state_h(bf16_state ? p.state_bits.size() : 1);
  if (bf16_state) {
    d_state_h.Upload(p.state_bits);
  } else {
    d_state_f.Upload(p.state);
  }
  kernels::CausalConv1dParams k;
  k.num_seqs = static_cast<int64_t>(p.slots.size());
  k.total_tokens = p.tokens;
  k.dim = p.c.dim;
  k.width = p.c.width;
  k.x = d_x.get();
  k.x_row_stride = 2 * p.c.dim;
  k.x_bias = p.c.x_bias ? d_xb.get() : nullptr;
  k.weight = d_w.get();
  k.bias = p.c.bias ? d_b.get() : nullptr;
  k.out = d_out.get();
  k.out_row_stride = p.c.dim;
  k.cu_seqlens = decode ? nullptr : d_cu.get();
  k.slots = d_slots.get();
  k.state = bf16_state ? static_cast<void*>(d_state_h.get()) : d_state_f.get();
  k.state_slot_stride = p.c.dim * p.w1();
  k.prefill_layout = layout;
  absl::Status s = decode ? kernels::LaunchCausalConv1dDecode(k, p.act, p.c.state, nullptr)
                          : kernels::LaunchCausalConv1dPrefill(k, p.act, p.c.state, nullptr);
  ASSERT_TRUE(s.ok()) << s;
  Sync();
  *out = HalfToFloats(d_out.Download(), p.act);
  *state =
      bf16_state ? HalfToFloats(d_state_h.Download(), KernelDType::kBF16) : d_state_f.Download();
}

TEST(CudaConvTest, PrefillAndDecodeMatchReference) {
  MAMBA_SKIP_WITHOUT_GPU();
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  const std::vector<ConvCase> cases = {
      {96, 4, {1, 2, 3, 5, 33, 64, 100, 1}, true, false, KernelDType::kF32},
      {50, 4, {7, 1, 40}, true, true, KernelDType::kF32},
      {1536, 4, {129, 1, 31}, true, false, KernelDType::kBF16},
      {40, 3, {2, 1, 9}, false, true, KernelDType::kF32},
      {24, 2, {1, 1, 5}, true, false, KernelDType::kF32},
  };
  for (KernelDType act : kActs) {
    for (const ConvCase& c : cases) {
      SCOPED_TRACE(absl::StrCat(KernelDTypeName(act), " dim ", c.dim, " width ", c.width, " state ",
                                KernelDTypeName(c.state)));
      ConvProblem p{c, act};
      p.Make(rng);
      std::vector<double> ref_out, ref_state;
      p.Reference(&ref_out, &ref_state);
      std::vector<float> out, state;
      RunConv(p, /*decode=*/false, &out, &state);
      EXPECT_FALSE(AnyNan(out));
      EXPECT_LE(RelativeL2(out, ref_out), kHalfTolerance);
      EXPECT_LE(RelativeL2(state, ref_state),
                c.state == KernelDType::kBF16 ? kHalfTolerance : 1e-6);

      // Decode: one token per row (few rows: the dependent-launched kernel; many: the plain one).
      for (int rows : {5, 400}) {
        SCOPED_TRACE(absl::StrCat("decode rows ", rows));
        ConvCase dc = c;
        dc.lengths.assign(rows, 1);
        ConvProblem d{dc, act};
        d.Make(rng);
        d.Reference(&ref_out, &ref_state);
        RunConv(d, /*decode=*/true, &out, &state);
        EXPECT_FALSE(AnyNan(out));
        EXPECT_LE(RelativeL2(out, ref_out), kHalfTolerance);
        EXPECT_LE(RelativeL2(state, ref_state),
                  c.state == KernelDType::kBF16 ? kHalfTolerance : 1e-6);
      }
    }
  }
}

// Every prefill thread layout computes the same bits (each output is one fixed sum), across
// sequence boundaries, channel tails, unaligned rows (scalar path) and narrower convs.
TEST(CudaConvTest, PrefillLayoutsAgreeBitwise) {
  MAMBA_SKIP_WITHOUT_GPU();
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  const std::vector<ConvCase> cases = {
      {96, 4, {1, 2, 3, 5, 33, 64, 100, 1}, true, true, KernelDType::kF32},
      {52, 4, {7, 1, 40}, true, false, KernelDType::kF32},  // 4-channel vectors, no 8-channel
      {50, 4, {7, 1, 40}, false, true, KernelDType::kF32},  // scalar path
      {1536, 4, {129, 1, 31}, true, false, KernelDType::kBF16},
      {40, 3, {2, 1, 19}, false, true, KernelDType::kF32},
  };
  for (KernelDType act : kActs) {
    for (const ConvCase& c : cases) {
      SCOPED_TRACE(absl::StrCat(KernelDTypeName(act), " dim ", c.dim, " width ", c.width));
      ConvProblem p{c, act};
      p.Make(rng);
      std::vector<float> out8, state8;
      RunConv(p, /*decode=*/false, &out8, &state8, kernels::ConvPrefillLayout::k8x8);
      for (kernels::ConvPrefillLayout layout :
           {kernels::ConvPrefillLayout::kDefault, kernels::ConvPrefillLayout::k4x8}) {
        SCOPED_TRACE(absl::StrCat("layout ", static_cast<int>(layout)));
        std::vector<float> out, state;
        RunConv(p, /*decode=*/false, &out, &state, layout);
        EXPECT_TRUE(BitEqual(out, out8));
        EXPECT_TRUE(BitEqual(state, state8));
      }
    }
  }
  EXPECT_EQ(kernels::SetConvPrefillLayout(3).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(kernels::SetConvPrefillLayout(-1).code(), absl::StatusCode::kInvalidArgument);
}

// Prefilling L tokens gives bit for bit what L decode steps give (the batch-invariant mode and
// "prefill then decode == longer prefill" rely on it).
TEST(CudaConvTest, PrefillEqualsDecodeStepsBitwise) {
  MAMBA_SKIP_WITHOUT_GPU();
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  for (KernelDType act : kActs) {
    ConvProblem whole{{64, 4, {13}, true, true, KernelDType::kF32}, act};
    whole.Make(rng);
    std::vector<float> out_whole, state_whole;
    RunConv(whole, false, &out_whole, &state_whole);
    ConvProblem step = whole;
    std::vector<float> out_steps;
    for (int t = 0; t < 13; ++t) {
      step.c.lengths = {1};
      step.tokens = 1;
      step.cu = {0, 1};
      step.x.assign(whole.x.begin() + t * 2 * 64, whole.x.begin() + (t + 1) * 2 * 64);
      step.x_bits.assign(whole.x_bits.begin() + t * 2 * 64,
                         whole.x_bits.begin() + (t + 1) * 2 * 64);
      std::vector<float> out, state;
      RunConv(step, /*decode=*/true, &out, &state);
      out_steps.insert(out_steps.end(), out.begin(), out.end());
      step.state = state;
    }
    EXPECT_TRUE(BitEqual(out_whole, out_steps));
    EXPECT_TRUE(BitEqual(state_whole, step.state));
  }
}

// ---------------------------------------------------------------------------------------------
// Selective scan (prefill) and the decode state update

struct SsmProblem {
  KernelDType act = KernelDType::kF16;
  KernelDType state_dtype = KernelDType::kF32;
  int64_t dim = 64, dstate = 16, rank = 8;
  std::vector<int> lengths;
  bool z_bias = false;
  int64_t tokens = 0;
  int num_slots = 0;
  std::vector<int32_t> cu, slots;
  // Inputs as the model lays them out: x [T, dim], dt [T, dim], z in [T, 2 * dim] at column dim,
  // [dt_low | B | C] in [T, ld].
  int64_t ld = 0;
  std::vector<float> x, dt, xz, dbc;
  std::vector<uint16_t> x_bits, dt_bits, xz_bits, dbc_bits;
  std::vector<float> dt_bias, a2, d, zb, w_dt;
  std::vector<uint16_t> w_dt_bits;
  std::vector<float> state;
  std::vector<uint16_t> state_bits;

  void Make(std::mt19937_64& rng) {
    tokens = std::accumulate(lengths.begin(), lengths.end(), int64_t{0});
    cu.assign(1, 0);
    for (int len : lengths) cu.push_back(cu.back() + len);
    num_slots = static_cast<int>(lengths.size()) + 2;
    std::vector<int32_t> perm(num_slots);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    slots.assign(perm.begin(), perm.begin() + lengths.size());
    ld = rank + 2 * dstate + 3;  // deliberately not a multiple of 8 in some cases
    if ((rank + 2 * dstate) % 8 == 0) ld = rank + 2 * dstate;
    x = Normal(rng, tokens * dim, 1.0f);
    x_bits = RoundToHalf(x, act);
    dt = Normal(rng, tokens * dim, 0.5f);
    dt_bits = RoundToHalf(dt, act);
    xz = Normal(rng, tokens * 2 * dim, 1.5f);
    xz_bits = RoundToHalf(xz, act);
    dbc = Normal(rng, tokens * ld, 1.0f);
    dbc_bits = RoundToHalf(dbc, act);
    std::uniform_real_distribution<double> u(std::log(0.001), std::log(0.1));
    dt_bias.resize(dim);
    for (float& b : dt_bias) {
      const double dt0 = std::exp(u(rng));
      b = static_cast<float>(std::log(std::expm1(dt0)));
    }
    a2.resize(dim * dstate);
    std::vector<float> noise = Uniform(rng, dim * dstate, -0.3f, 0.3f);
    for (int64_t e = 0; e < dim; ++e) {
      for (int64_t n = 0; n < dstate; ++n) {
        const double a_log = std::log(n + 1.0) + noise[e * dstate + n];
        a2[e * dstate + n] = static_cast<float>(-std::exp(a_log) * kLog2e);
      }
    }
    d = Uniform(rng, dim, 0.5f, 1.5f);
    zb = z_bias ? Normal(rng, dim, 0.2f) : std::vector<float>();
    w_dt = Normal(rng, dim * rank, 1.0f / std::sqrt(static_cast<float>(rank)));
    w_dt_bits = RoundToHalf(w_dt, act);
    state = Normal(rng, num_slots * dim * dstate, 0.5f);
    if (state_dtype == KernelDType::kBF16) state_bits = RoundToHalf(state, KernelDType::kBF16);
  }

  double DtRaw(int64_t t, int64_t e, bool low_rank) const {
    if (!low_rank) return dt[t * dim + e];
    double acc = 0.0;
    for (int64_t r = 0; r < rank; ++r)
      acc += static_cast<double>(dbc[t * ld + r]) * w_dt[e * rank + r];
    return acc;
  }

  // Outputs [tokens, dim] and final states.
  void Reference(bool low_rank, std::vector<double>* out, std::vector<double>* new_state) const {
    out->assign(tokens * dim, 0.0);
    new_state->assign(state.begin(), state.end());
    for (size_t s = 0; s < lengths.size(); ++s) {
      for (int64_t e = 0; e < dim; ++e) {
        double* h = new_state->data() + (slots[s] * dim + e) * dstate;
        for (int64_t t = cu[s]; t < cu[s + 1]; ++t) {
          const double delta = Softplus(DtRaw(t, e, low_rank) + dt_bias[e]);
          const double xv = x[t * dim + e];
          double y = 0.0;
          for (int64_t n = 0; n < dstate; ++n) {
            const double a = a2[e * dstate + n] / kLog2e;
            h[n] = std::exp(delta * a) * h[n] + delta * xv * dbc[t * ld + rank + n];
            y += dbc[t * ld + rank + dstate + n] * h[n];
          }
          const double zv = xz[t * 2 * dim + dim + e] + (z_bias ? zb[e] : 0.0);
          (*out)[t * dim + e] = (y + d[e] * xv) * Silu(zv);
        }
      }
    }
  }
};

// Device copies of an SsmProblem's inputs and its state pool.
struct SsmDevice {
  DeviceArray<uint16_t> x, dt, xz, dbc, w_dt;
  DeviceArray<float> dt_bias, a2, d, zb;
  DeviceArray<int32_t> cu, slots;
  DeviceArray<uint16_t> out;
  DeviceArray<float> state_f;
  DeviceArray<uint16_t> state_h;
  const SsmProblem& p;
  explicit SsmDevice(const SsmProblem& q)
      : x(q.x_bits),
        dt(q.dt_bits),
        xz(q.xz_bits),
        dbc(q.dbc_bits),
        w_dt(q.w_dt_bits),
        dt_bias(q.dt_bias),
        a2(q.a2),
        d(q.d),
        zb(q.zb.empty() ? std::vector<float>{1.0f} : q.zb),
        cu(q.cu),
        slots(q.slots),
        out(q.tokens * q.dim),
        state_f(q.state_dtype == KernelDType::kF32 ? q.state.size() : 1),
        state_h(q.state_dtype == KernelDType::kBF16 ? q.state_bits.size() : 1),
        p(q) {
    if (q.state_dtype == KernelDType::kF32) {
      state_f.Upload(q.state);
    } else {
      state_h.Upload(q.state_bits);
    }
    out.Poison();
  }
  void* state() {
    return p.state_dtype == KernelDType::kF32 ? static_cast<void*>(state_f.get()) : state_h.get();
  }
  std::vector<float> State() {
    return p.state_dtype == KernelDType::kF32
               ? state_f.Download()
               : HalfToFloats(state_h.Download(), KernelDType::kBF16);
  }
  std::vector<float> Out() { return HalfToFloats(out.Download(), p.act); }

  kernels::SelectiveScanParams Scan(int spt) {
    kernels::SelectiveScanParams s;
    s.num_seqs = static_cast<int64_t>(p.lengths.size());
    s.total_tokens = p.tokens;
    s.dim = p.dim;
    s.dstate = p.dstate;
    s.x = x.get();
    s.x_row_stride = p.dim;
    s.dt = dt.get();
    s.dt_row_stride = p.dim;
    s.z = xz.get() + p.dim;
    s.z_row_stride = 2 * p.dim;
    s.z_bias = p.z_bias ? zb.get() : nullptr;
    s.b = dbc.get() + p.rank;
    s.b_row_stride = p.ld;
    s.c = dbc.get() + p.rank + p.dstate;
    s.c_row_stride = p.ld;
    s.dt_bias = dt_bias.get();
    s.a2 = a2.get();
    s.d = d.get();
    s.out = out.get();
    s.out_row_stride = p.dim;
    s.cu_seqlens = cu.get();
    s.slots = slots.get();
    s.state = state();
    s.state_slot_stride = p.dim * p.dstate;
    s.states_per_thread = spt;
    return s;
  }

  kernels::SelectiveStateUpdateParams Update(bool low_rank) {
    kernels::SelectiveStateUpdateParams u;
    u.batch = p.tokens;
    u.dim = p.dim;
    u.dstate = p.dstate;
    u.x = x.get();
    u.x_row_stride = p.dim;
    u.z = xz.get() + p.dim;
    u.z_row_stride = 2 * p.dim;
    u.z_bias = p.z_bias ? zb.get() : nullptr;
    if (low_rank) {
      u.dt_rank = p.rank;
      u.dt_low = dbc.get();
      u.dt_low_row_stride = p.ld;
      u.dt_proj_weight = w_dt.get();
    } else {
      u.dt = dt.get();
      u.dt_row_stride = p.dim;
    }
    u.b = dbc.get() + p.rank;
    u.b_row_stride = p.ld;
    u.c = dbc.get() + p.rank + p.dstate;
    u.c_row_stride = p.ld;
    u.dt_bias = dt_bias.get();
    u.a2 = a2.get();
    u.d = d.get();
    u.slots = slots.get();
    u.state = state();
    u.state_slot_stride = p.dim * p.dstate;
    u.out = out.get();
    u.out_row_stride = p.dim;
    return u;
  }
};

TEST(CudaSelectiveScanTest, MatchesReference) {
  MAMBA_SKIP_WITHOUT_GPU();
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  struct Case {
    int64_t dim, dstate, rank;
    std::vector<int> lengths;
    bool z_bias;
    KernelDType state;
    int spt;
  };
  const std::vector<Case> cases = {
      // chunk boundaries (32), length 1, a varlen batch
      {64, 16, 8, {1, 31, 32, 33, 64, 65, 100}, false, KernelDType::kF32, 4},
      {64, 16, 8, {1, 31, 32, 33, 64, 65, 100}, true, KernelDType::kF32, 1},
      {64, 16, 8, {1, 15, 16, 17, 31, 33, 100}, true, KernelDType::kF32, 8},
      {200, 16, 8, {1, 15, 16, 17, 31, 33, 100}, false, KernelDType::kF32, 8},  // tile tails
      {96, 8, 6, {17, 1}, false, KernelDType::kBF16, 8},
      {40, 16, 5, {3, 70}, true, KernelDType::kF32, 0},   // channel tails, unaligned B/C
      {96, 8, 6, {17, 1}, false, KernelDType::kF32, 0},   // d_state below 16
      {48, 32, 8, {45, 2}, false, KernelDType::kF32, 0},  // d_state 32 (padded to 64)
      {64, 64, 8, {40}, true, KernelDType::kF32, 0},
      {1536, 16, 48, {130, 1}, false, KernelDType::kF32, 0},  // 130m widths
      {64, 16, 8, {1, 50, 33}, false, KernelDType::kBF16, 0},
  };
  for (KernelDType act : kActs) {
    for (const Case& c : cases) {
      SCOPED_TRACE(absl::StrCat(KernelDTypeName(act), " dim ", c.dim, " dstate ", c.dstate,
                                " state ", KernelDTypeName(c.state), " spt ", c.spt));
      SsmProblem p;
      p.act = act;
      p.state_dtype = c.state;
      p.dim = c.dim;
      p.dstate = c.dstate;
      p.rank = c.rank;
      p.lengths = c.lengths;
      p.z_bias = c.z_bias;
      p.Make(rng);
      std::vector<double> ref_out, ref_state;
      p.Reference(/*low_rank=*/false, &ref_out, &ref_state);
      SsmDevice dev(p);
      absl::Status s = kernels::LaunchSelectiveScan(dev.Scan(c.spt), act, c.state, nullptr);
      ASSERT_TRUE(s.ok()) << s;
      Sync();
      const std::vector<float> out = dev.Out();
      EXPECT_FALSE(AnyNan(out));
      EXPECT_LE(RelativeL2(out, ref_out), kHalfTolerance);
      EXPECT_LE(RelativeL2(dev.State(), ref_state),
                c.state == KernelDType::kF32 ? kF32Tolerance : kHalfTolerance);
    }
  }
}

// The scan is sequential in time per state element, so splitting a sequence into chunks (the
// scheduler's prefill budget), or splitting d_state differently over threads, changes no bit.
TEST(CudaSelectiveScanTest, ChunkedEqualsWholeAndLayoutsAgreeBitwise) {
  MAMBA_SKIP_WITHOUT_GPU();
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  for (KernelDType act : kActs) {
    SsmProblem p;
    p.act = act;
    p.dim = 64;
    p.lengths = {97};
    p.Make(rng);
    SsmDevice whole(p);
    ASSERT_TRUE(kernels::LaunchSelectiveScan(whole.Scan(4), act, p.state_dtype, nullptr).ok());
    for (int spt : {1, 8}) {
      SCOPED_TRACE(absl::StrCat("states per thread ", spt));
      SsmDevice other(p);
      ASSERT_TRUE(kernels::LaunchSelectiveScan(other.Scan(spt), act, p.state_dtype, nullptr).ok());
      Sync();
      EXPECT_TRUE(BitEqual(whole.Out(), other.Out()));
      EXPECT_TRUE(BitEqual(whole.State(), other.State()));
    }

    // Chunks of 1, 30, 33 and 33 tokens, each launch continuing from the state left behind.
    SsmDevice chunked(p);
    int64_t start = 0;
    for (int len : {1, 30, 33, 33}) {
      kernels::SelectiveScanParams s = chunked.Scan(0);
      const std::vector<int32_t> cu = {0, len};
      DeviceArray<int32_t> d_cu(cu);
      s.total_tokens = len;
      s.cu_seqlens = d_cu.get();
      s.x = chunked.x.get() + start * p.dim;
      s.dt = chunked.dt.get() + start * p.dim;
      s.z = chunked.xz.get() + start * 2 * p.dim + p.dim;
      s.b = chunked.dbc.get() + start * p.ld + p.rank;
      s.c = chunked.dbc.get() + start * p.ld + p.rank + p.dstate;
      s.out = chunked.out.get() + start * p.dim;
      ASSERT_TRUE(kernels::LaunchSelectiveScan(s, act, p.state_dtype, nullptr).ok());
      Sync();
      start += len;
    }
    EXPECT_TRUE(BitEqual(whole.Out(), chunked.Out()));
    EXPECT_TRUE(BitEqual(whole.State(), chunked.State()));
  }
  // Layouts that do not exist for a d_state are refused, not run.
  SsmProblem wide;
  wide.dim = 48;
  wide.dstate = 32;
  wide.rank = 8;
  wide.lengths = {5};
  wide.Make(rng);
  SsmDevice dev(wide);
  for (int spt : {8, 1, 3}) {
    EXPECT_EQ(
        kernels::LaunchSelectiveScan(dev.Scan(spt), wide.act, wide.state_dtype, nullptr).code(),
        absl::StatusCode::kInvalidArgument)
        << spt;
  }
  EXPECT_EQ(kernels::SetScanStatesPerThread(3).code(), absl::StatusCode::kInvalidArgument);
}

// Few long sequences: the launcher scans segments in parallel (two passes); results stay within
// the fp32 tolerance of the reference, and close to the sequential scan.
TEST(CudaSelectiveScanTest, SegmentedScanMatchesReference) {
  MAMBA_SKIP_WITHOUT_GPU();
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  for (KernelDType act : kActs) {
    for (const std::vector<int>& lengths :
         {std::vector<int>{1000}, std::vector<int>{700, 5, 333}, std::vector<int>{900, 17}}) {
      // The last case with 8 states per thread (forced; the launcher picks 4 for segments).
      const int spt = lengths.size() == 2 ? 8 : 0;
      SCOPED_TRACE(
          absl::StrCat(KernelDTypeName(act), " ", lengths.size(), " sequences, spt ", spt));
      SsmProblem p;
      p.act = act;
      p.dim = 72;  // a partial channel tile too
      p.lengths = lengths;
      p.z_bias = true;
      p.Make(rng);
      std::vector<double> ref_out, ref_state;
      p.Reference(/*low_rank=*/false, &ref_out, &ref_state);
      SsmDevice dev(p);
      const int64_t capacity = 64;
      DeviceArray<float> seg_state(capacity * p.dim * p.dstate), seg_dt(capacity * p.dim);
      kernels::SelectiveScanParams s = dev.Scan(spt);
      s.allow_segments = true;
      s.max_seqlen = *std::max_element(lengths.begin(), lengths.end());
      s.segment_state = seg_state.get();
      s.segment_dt_sum = seg_dt.get();
      s.segment_capacity = capacity;
      kernels::SelectiveScanParams chosen = s;
      kernels::ChooseScanSegments(chosen);
      EXPECT_GT(chosen.segment_len, 0);
      EXPECT_GE(chosen.max_segments, 2);
      ASSERT_TRUE(kernels::LaunchSelectiveScan(s, act, p.state_dtype, nullptr).ok());
      Sync();
      const std::vector<float> out = dev.Out();
      EXPECT_FALSE(AnyNan(out));
      EXPECT_LE(RelativeL2(out, ref_out), kHalfTolerance);
      EXPECT_LE(RelativeL2(dev.State(), ref_state), kF32Tolerance);
    }
  }
}

TEST(CudaStateUpdateTest, MatchesReference) {
  MAMBA_SKIP_WITHOUT_GPU();
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  struct Case {
    int64_t batch, dim, dstate, rank;
    bool low_rank, z_bias;
    KernelDType state;
  };
  const std::vector<Case> cases = {
      {7, 64, 16, 8, true, false, KernelDType::kF32},
      {7, 64, 16, 8, false, true, KernelDType::kF32},
      {1, 1536, 16, 48, true, false, KernelDType::kF32},
      {9, 40, 12, 5, true, true, KernelDType::kF32},  // tails everywhere
      {5, 64, 32, 8, true, false, KernelDType::kF32},
      {6, 64, 16, 8, true, false, KernelDType::kBF16},
      {3, 48, 64, 6, false, false, KernelDType::kBF16},
      // Grids above two waves take the plain (not dependent-launched) kernel.
      {300, 1536, 16, 48, false, true, KernelDType::kF32},
      {300, 256, 16, 8, true, false, KernelDType::kBF16},
  };
  for (KernelDType act : kActs) {
    for (const Case& c : cases) {
      SCOPED_TRACE(absl::StrCat(KernelDTypeName(act), " batch ", c.batch, " dim ", c.dim,
                                " dstate ", c.dstate, " low rank ", c.low_rank, " state ",
                                KernelDTypeName(c.state)));
      SsmProblem p;
      p.act = act;
      p.state_dtype = c.state;
      p.dim = c.dim;
      p.dstate = c.dstate;
      p.rank = c.rank;
      p.lengths.assign(c.batch, 1);
      p.z_bias = c.z_bias;
      p.Make(rng);
      std::vector<double> ref_out, ref_state;
      p.Reference(c.low_rank, &ref_out, &ref_state);
      SsmDevice dev(p);
      absl::Status s =
          kernels::LaunchSelectiveStateUpdate(dev.Update(c.low_rank), act, c.state, nullptr);
      ASSERT_TRUE(s.ok()) << s;
      Sync();
      const std::vector<float> out = dev.Out();
      EXPECT_FALSE(AnyNan(out));
      EXPECT_LE(RelativeL2(out, ref_out), kHalfTolerance);
      EXPECT_LE(RelativeL2(dev.State(), ref_state),
                c.state == KernelDType::kF32 ? kF32Tolerance : kHalfTolerance);
    }
  }
}

// The plain kernel's rows per block (4, 8, 16, or by size) and the pipelined kernel's rows per
// block (from its blocks per SM: 1 gives 64-row blocks, 32 four-row ones) change only the
// tiling: outputs and states are the same bits, including a batch that is no multiple of any.
TEST(CudaStateUpdateTest, RowsPerBlockGiveTheSameBits) {
  MAMBA_SKIP_WITHOUT_GPU();
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  for (KernelDType state : {KernelDType::kF32, KernelDType::kBF16}) {
    SCOPED_TRACE(KernelDTypeName(state));
    SsmProblem p;
    p.act = KernelDType::kF16;
    p.state_dtype = state;
    p.dim = 1536;
    p.dstate = 16;
    p.rank = 48;
    p.lengths.assign(301, 1);  // a grid above two waves: the plain kernel
    p.z_bias = true;
    p.Make(rng);
    std::vector<std::vector<float>> outs, states;
    // {rows per block of the one-pass kernel, blocks per SM of the pipelined kernel}.
    for (auto [rows, pipeline] : std::vector<std::pair<int, int>>{
             {8, -1}, {4, -1}, {16, -1}, {0, -1}, {0, 0}, {0, 1}, {0, 3}, {0, 8}, {0, 32}}) {
      SCOPED_TRACE(absl::StrCat("rows ", rows, " pipeline ", pipeline));
      SsmDevice dev(p);
      kernels::SelectiveStateUpdateParams u = dev.Update(false);
      u.rows_per_block = rows;
      u.pipeline_blocks_per_sm = pipeline;
      absl::Status s = kernels::LaunchSelectiveStateUpdate(u, p.act, state, nullptr);
      ASSERT_TRUE(s.ok()) << s;
      Sync();
      outs.push_back(dev.Out());
      states.push_back(dev.State());
    }
    std::vector<double> ref_out, ref_state;
    p.Reference(false, &ref_out, &ref_state);
    EXPECT_LE(RelativeL2(outs[0], ref_out), kHalfTolerance);
    for (size_t i = 1; i < outs.size(); ++i) {
      EXPECT_TRUE(BitEqual(outs[i], outs[0])) << i;
      EXPECT_TRUE(BitEqual(states[i], states[0])) << i;
    }
  }
  SsmProblem p;
  p.dim = 64;
  p.dstate = 16;
  p.rank = 8;
  p.lengths.assign(2, 1);
  p.Make(rng);
  SsmDevice dev(p);
  kernels::SelectiveStateUpdateParams u = dev.Update(false);
  u.rows_per_block = 5;
  EXPECT_EQ(kernels::LaunchSelectiveStateUpdate(u, p.act, p.state_dtype, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(kernels::SetStateUpdateRowsPerBlock(3).code(), absl::StatusCode::kInvalidArgument);
  u.rows_per_block = 0;
  u.pipeline_blocks_per_sm = 33;
  EXPECT_EQ(kernels::LaunchSelectiveStateUpdate(u, p.act, p.state_dtype, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(kernels::SetStateUpdatePipeline(-2).code(), absl::StatusCode::kInvalidArgument);
}

// With dt from the same source, the decode kernel computes bit for bit what the prefill scan
// computes for the same token: a step of B rows equals a scan of B length-1 sequences, and L
// decode steps equal a scan over L tokens.
// The output scale (the backend's per-layer shift against f16 overflow) multiplies what the scan
// and the state update store and nothing else: outputs are the unscaled ones times the power of
// two, bit for bit wherever the scaled value is a normal number, and the states are unchanged.
TEST(CudaSelectiveScanTest, OutputScaleOnlyScalesTheStoredOutput) {
  MAMBA_SKIP_WITHOUT_GPU();
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  constexpr float kScale = 1.0f / 64.0f;
  for (KernelDType act : kActs) {
    for (bool decode : {false, true}) {
      SCOPED_TRACE(absl::StrCat(KernelDTypeName(act), decode ? " decode" : " prefill"));
      SsmProblem p;
      p.act = act;
      p.dim = 96;
      p.dstate = 16;
      p.rank = 6;
      if (decode) {
        p.lengths.assign(5, 1);
      } else {
        p.lengths = {1, 37, 9};
      }
      p.Make(rng);
      SsmDevice plain(p), scaled(p);
      absl::Status s1, s2;
      if (decode) {
        kernels::SelectiveStateUpdateParams u = scaled.Update(false);
        u.out_scale = kScale;
        s1 = kernels::LaunchSelectiveStateUpdate(plain.Update(false), act, p.state_dtype, nullptr);
        s2 = kernels::LaunchSelectiveStateUpdate(u, act, p.state_dtype, nullptr);
      } else {
        kernels::SelectiveScanParams sc = scaled.Scan(0);
        sc.out_scale = kScale;
        s1 = kernels::LaunchSelectiveScan(plain.Scan(0), act, p.state_dtype, nullptr);
        s2 = kernels::LaunchSelectiveScan(sc, act, p.state_dtype, nullptr);
      }
      ASSERT_TRUE(s1.ok()) << s1;
      ASSERT_TRUE(s2.ok()) << s2;
      Sync();
      const std::vector<float> a = plain.Out(), b = scaled.Out();
      ASSERT_EQ(a.size(), b.size());
      int compared = 0;
      for (size_t i = 0; i < a.size(); ++i) {
        if (std::abs(a[i]) < 0.01f) continue;  // f16 subnormals round differently once scaled
        ASSERT_EQ(b[i], a[i] * kScale) << "element " << i;
        ++compared;
      }
      EXPECT_GT(compared, static_cast<int>(a.size() / 2));
      EXPECT_EQ(plain.State(), scaled.State());
    }
  }
}

TEST(CudaStateUpdateTest, EqualsScanBitwise) {
  MAMBA_SKIP_WITHOUT_GPU();
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  for (KernelDType act : kActs) {
    for (int64_t dstate : {16, 12}) {
      SsmProblem p;
      p.act = act;
      p.dim = 96;
      p.dstate = dstate;
      p.lengths.assign(6, 1);
      p.z_bias = true;
      p.Make(rng);
      SsmDevice scan(p), update(p);
      ASSERT_TRUE(kernels::LaunchSelectiveScan(scan.Scan(0), act, p.state_dtype, nullptr).ok());
      ASSERT_TRUE(
          kernels::LaunchSelectiveStateUpdate(update.Update(false), act, p.state_dtype, nullptr)
              .ok());
      Sync();
      EXPECT_TRUE(BitEqual(scan.Out(), update.Out()));
      EXPECT_TRUE(BitEqual(scan.State(), update.State()));

      // One sequence of 20 tokens: scan vs 20 decode steps.
      SsmProblem q = p;
      q.lengths = {20};
      q.Make(rng);
      SsmDevice whole(q), steps(q);
      ASSERT_TRUE(kernels::LaunchSelectiveScan(whole.Scan(0), act, q.state_dtype, nullptr).ok());
      for (int t = 0; t < 20; ++t) {
        kernels::SelectiveStateUpdateParams u = steps.Update(false);
        u.batch = 1;
        u.x = steps.x.get() + t * q.dim;
        u.dt = steps.dt.get() + t * q.dim;
        u.z = steps.xz.get() + t * 2 * q.dim + q.dim;
        u.b = steps.dbc.get() + t * q.ld + q.rank;
        u.c = steps.dbc.get() + t * q.ld + q.rank + q.dstate;
        u.out = steps.out.get() + t * q.dim;
        ASSERT_TRUE(kernels::LaunchSelectiveStateUpdate(u, act, q.state_dtype, nullptr).ok());
      }
      Sync();
      EXPECT_TRUE(BitEqual(whole.Out(), steps.Out()));
      EXPECT_TRUE(BitEqual(whole.State(), steps.State()));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// GEMMs

struct GemmProblem {
  int64_t m, n, k;
  KernelDType ab, d;
  std::vector<float> a, w;
  std::vector<uint16_t> a_bits, w_bits;
  void Make(std::mt19937_64& rng) {
    a = Normal(rng, m * k, 1.0f);
    a_bits = RoundToHalf(a, ab);
    w = Normal(rng, n * k, 1.0f / std::sqrt(static_cast<float>(k)));
    w_bits = RoundToHalf(w, ab);
  }
  std::vector<double> Reference() const {
    std::vector<double> out(m * n, 0.0);
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0.0;
        for (int64_t l = 0; l < k; ++l) acc += static_cast<double>(a[i * k + l]) * w[j * k + l];
        out[i * n + j] = acc;
      }
    }
    return out;
  }
};

enum class GemmPath { kCublasLt, kBatchInvariant, kSkinny };

// Runs D = A W^T on the device by `path` and returns D as floats.
std::vector<float> RunGemm(const GemmProblem& g, GemmPath path, kernels::CublasLtGemm* lt,
                           int64_t rows, int64_t row0 = 0) {
  DeviceArray<uint16_t> d_a(
      std::vector<uint16_t>(g.a_bits.begin() + row0 * g.k, g.a_bits.begin() + (row0 + rows) * g.k));
  DeviceArray<uint16_t> d_w(g.w_bits);
  const bool f32 = g.d == KernelDType::kF32;
  DeviceArray<float> d_f(f32 ? rows * g.n : 1);
  DeviceArray<uint16_t> d_h(f32 ? 1 : rows * g.n);
  d_f.Poison();
  d_h.Poison();
  kernels::GemmArgs args{rows, g.n,       g.k, d_a.get(),
                         g.k,  d_w.get(), g.k, f32 ? static_cast<void*>(d_f.get()) : d_h.get(),
                         g.n,  g.ab,      g.d};
  absl::Status s = path == GemmPath::kCublasLt ? lt->Run(args, nullptr)
                   : path == GemmPath::kSkinny ? kernels::LaunchSkinnyGemm(args, nullptr)
                                               : kernels::LaunchBatchInvariantGemm(args, nullptr);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return f32 ? d_f.Download() : HalfToFloats(d_h.Download(), g.ab);
}

TEST(CudaGemmTest, CublasLtAndBatchInvariantMatchReference) {
  MAMBA_SKIP_WITHOUT_GPU();
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  absl::StatusOr<std::unique_ptr<kernels::CublasLtGemm>> lt =
      kernels::CublasLtGemm::Create(size_t{32} << 20);
  ASSERT_TRUE(lt.ok()) << lt.status();
  struct Shape {
    int64_t m, n, k;
    bool f32_out;
  };
  const std::vector<Shape> shapes = {
      {1, 80, 768, false},   {7, 3072, 768, false}, {64, 1536, 48, false}, {5, 40, 130, false},
      {3, 1000, 4, false},   {33, 5000, 64, true},  {1, 50280, 128, true}, {4, 300, 2048, false},
      {2, 160, 4096, false}, {3, 3000, 1000, false}};
  for (KernelDType ab : kActs) {
    for (const Shape& s : shapes) {
      SCOPED_TRACE(absl::StrCat(KernelDTypeName(ab), " m ", s.m, " n ", s.n, " k ", s.k));
      GemmProblem g{s.m, s.n, s.k, ab, s.f32_out ? KernelDType::kF32 : ab};
      g.Make(rng);
      const std::vector<double> ref = g.Reference();
      const double tol = s.f32_out ? kF32Tolerance : kHalfTolerance;
      EXPECT_LE(RelativeL2(RunGemm(g, GemmPath::kCublasLt, lt->get(), s.m), ref), tol);
      EXPECT_LE(RelativeL2(RunGemm(g, GemmPath::kBatchInvariant, nullptr, s.m), ref), tol);
      const kernels::GemmArgs shape{
          s.m, s.n, s.k, g.a_bits.data(), s.k, g.w_bits.data(), s.k, nullptr, s.n, ab, g.d};
      if (s.m <= kernels::kSkinnyGemmMaxM && s.k % 8 == 0) {
        EXPECT_TRUE(kernels::SkinnyGemmSupported(shape));
        EXPECT_LE(RelativeL2(RunGemm(g, GemmPath::kSkinny, nullptr, s.m), ref), tol);
      }
    }
  }
}

// Decode in_proj with the conv update in its epilogue gives the same bits as in_proj followed by
// the conv decode kernel: the conv output, the shifted conv state and the z half (both skinny
// variants: a block per column for narrow products, a warp per column for wide ones).
TEST(CudaGemmTest, SkinnyInProjWithConvEqualsSeparateLaunchesBitwise) {
  MAMBA_SKIP_WITHOUT_GPU();
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  struct Case {
    int64_t m, dim, k;
    int width;
    bool biases;
    KernelDType state;
  };
  const std::vector<Case> cases = {{1, 1536, 768, 4, false, KernelDType::kF32},
                                   {4, 1536, 768, 4, true, KernelDType::kBF16},
                                   {3, 40, 64, 3, true, KernelDType::kF32},
                                   {2, 1100, 136, 2, false, KernelDType::kF32}};
  for (KernelDType ab : kActs) {
    for (const Case& c : cases) {
      SCOPED_TRACE(absl::StrCat(KernelDTypeName(ab), " m ", c.m, " dim ", c.dim, " k ", c.k,
                                " width ", c.width, " state ", KernelDTypeName(c.state)));
      const int64_t n = 2 * c.dim, w1 = c.width - 1, num_slots = c.m + 2;
      GemmProblem g{c.m, n, c.k, ab, ab};
      g.Make(rng);
      std::vector<int32_t> slots(num_slots);
      std::iota(slots.begin(), slots.end(), 0);
      std::shuffle(slots.begin(), slots.end(), rng);
      slots.resize(c.m);
      const bool bf16_state = c.state == KernelDType::kBF16;
      const std::vector<float> state0 = Normal(rng, num_slots * c.dim * w1, 1.0f);
      std::vector<float> state0_rounded = state0;
      const std::vector<uint16_t> state0_bits = RoundToHalf(state0_rounded, KernelDType::kBF16);
      DeviceArray<uint16_t> d_a(g.a_bits), d_w(g.w_bits);
      DeviceArray<float> d_cw(Normal(rng, c.dim * c.width, 0.5f)), d_cb(Normal(rng, c.dim, 0.3f)),
          d_xb(Normal(rng, c.dim, 0.3f));
      DeviceArray<int32_t> d_slots(slots);
      struct Result {
        std::vector<uint16_t> xz, out;
        std::vector<float> state;
      };
      auto run = [&](bool fused) {
        DeviceArray<uint16_t> d_xz(c.m * n), d_out(c.m * c.dim);
        DeviceArray<float> d_sf(bf16_state ? 1 : state0.size());
        DeviceArray<uint16_t> d_sh(bf16_state ? state0_bits.size() : 1);
        if (bf16_state) {
          d_sh.Upload(state0_bits);
        } else {
          d_sf.Upload(state0);
        }
        d_xz.Poison();
        d_out.Poison();
        const kernels::GemmArgs args{c.m, n, c.k, d_a.get(), c.k, d_w.get(), c.k, d_xz.get(),
                                     n,   ab, ab};
        kernels::CausalConv1dParams conv;
        conv.num_seqs = conv.total_tokens = c.m;
        conv.dim = c.dim;
        conv.width = c.width;
        conv.x = d_xz.get();
        conv.x_row_stride = n;
        conv.x_bias = c.biases ? d_xb.get() : nullptr;
        conv.weight = d_cw.get();
        conv.bias = c.biases ? d_cb.get() : nullptr;
        conv.out = d_out.get();
        conv.out_row_stride = c.dim;
        conv.slots = d_slots.get();
        conv.state = bf16_state ? static_cast<void*>(d_sh.get()) : d_sf.get();
        conv.state_slot_stride = c.dim * w1;
        if (fused) {
          absl::Status s = kernels::LaunchSkinnyGemmConv(args, conv, c.state, nullptr);
          EXPECT_TRUE(s.ok()) << s;
        } else {
          absl::Status s = kernels::LaunchSkinnyGemm(args, nullptr);
          EXPECT_TRUE(s.ok()) << s;
          s = kernels::LaunchCausalConv1dDecode(conv, ab, c.state, nullptr);
          EXPECT_TRUE(s.ok()) << s;
        }
        EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        Result r{d_xz.Download(), d_out.Download(),
                 bf16_state ? HalfToFloats(d_sh.Download(), KernelDType::kBF16)
                            : d_sf.Download()};
        return r;
      };
      const Result separate = run(false), fused = run(true);
      EXPECT_EQ(fused.out, separate.out);
      EXPECT_TRUE(BitEqual(fused.state, separate.state));
      EXPECT_FALSE(AnyNan(HalfToFloats(fused.out, ab)));
      for (int64_t row = 0; row < c.m; ++row) {  // the z half (the x half is not stored)
        EXPECT_TRUE(std::equal(fused.xz.begin() + row * n + c.dim, fused.xz.begin() + (row + 1) * n,
                               separate.xz.begin() + row * n + c.dim))
            << "row " << row;
      }
    }
  }
}

// A row's result from the batch-invariant kernel is the same bits whatever m is and wherever
// the row sits.
TEST(CudaGemmTest, BatchInvariantRowsDoNotDependOnM) {
  MAMBA_SKIP_WITHOUT_GPU();
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  for (KernelDType ab : kActs) {
    GemmProblem g{200, 3072, 768, ab, ab};
    g.Make(rng);
    const std::vector<float> all = RunGemm(g, GemmPath::kBatchInvariant, nullptr, 200);
    for (int64_t row : {0, 1, 63, 64, 130, 199}) {
      const std::vector<float> alone = RunGemm(g, GemmPath::kBatchInvariant, nullptr, 1, row);
      EXPECT_TRUE(std::equal(alone.begin(), alone.end(), all.begin() + row * g.n)) << row;
    }
    const std::vector<float> some = RunGemm(g, GemmPath::kBatchInvariant, nullptr, 37, 100);
    EXPECT_TRUE(std::equal(some.begin(), some.end(), all.begin() + 100 * g.n));
  }
}

// ---------------------------------------------------------------------------------------------
// Sampling: the device sampler against engine/sampling/sampler.h on the same logits.

TEST(CudaSamplingTest, SampleUniformIsBitExact) {
  MAMBA_SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(FreshSeed());
  const int n = 10000;
  std::vector<uint64_t> seeds(n), positions(n);
  for (int i = 0; i < n; ++i) {
    seeds[i] = rng();
    positions[i] = i < 100 ? static_cast<uint64_t>(i) : rng();
  }
  DeviceArray<uint64_t> d_seeds(seeds), d_pos(positions);
  DeviceArray<double> d_out(n);
  ASSERT_TRUE(
      kernels::LaunchSampleUniformValues(d_seeds.get(), d_pos.get(), d_out.get(), n, nullptr).ok());
  Sync();
  const std::vector<double> out = d_out.Download();
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(out[i], sampling::SampleUniform(seeds[i], positions[i])) << i;
  }
}

struct SampleCase {
  std::string name;
  sampling::SamplingParams params;
  int32_t top_logprobs = 0;
  float logit_scale = 3.0f;  // small values make a flat distribution (many candidates)
  int64_t vocab = 50280;
  bool penalty = false;  // repetition penalty tokens
  bool output = false;   // generated tokens for the additive penalties
};

// The additive penalties' (id, amount) pairs for `output`, as the device takes them: one per
// distinct id, the amount as a float's bits.
std::vector<int32_t> AdditivePairs(const std::vector<int32_t>& output,
                                   const sampling::SamplingParams& p) {
  std::map<int32_t, int64_t> counts;
  for (int32_t t : output) ++counts[t];
  std::vector<int32_t> pairs;
  for (const auto& [t, c] : counts) {
    pairs.push_back(t);
    pairs.push_back(std::bit_cast<int32_t>(sampling::AdditivePenalty(p, c)));
  }
  return pairs;
}

TEST(CudaSamplingTest, MatchesHostSampler) {
  MAMBA_SKIP_WITHOUT_GPU();
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  auto P = [](float t, int k, float p, float min_p, float rp) {
    sampling::SamplingParams s;
    s.temperature = t;
    s.top_k = k;
    s.top_p = p;
    s.min_p = min_p;
    s.repetition_penalty = rp;
    return s;
  };
  auto Additive = [](sampling::SamplingParams s, float frequency, float presence) {
    s.frequency_penalty = frequency;
    s.presence_penalty = presence;
    return s;
  };
  const std::vector<SampleCase> cases = {
      {"greedy", P(0, 0, 1, 0, 1), 5},
      {"greedy + penalty", P(0, 0, 1, 0, 1.3f), 0, 3.0f, 50280, true},
      {"temperature", P(0.8f, 0, 1, 0, 1), 20},
      {"top_k 40", P(1.0f, 40, 1, 0, 1)},
      {"top_p 0.9", P(0.7f, 0, 0.9f, 0, 1)},
      {"min_p 0.05", P(1.0f, 0, 1, 0.05f, 1)},
      {"top_k 3000 + top_p", P(1.2f, 3000, 0.95f, 0, 1)},
      {"top_k 1", P(1.0f, 1, 1, 0, 1)},
      {"all + penalty", P(0.9f, 100, 0.8f, 0.02f, 1.2f), 3, 3.0f, 50280, true},
      {"flat top_p", P(1.0f, 0, 0.5f, 0, 1), 0, 0.01f},
      {"flat", P(1.0f, 0, 1, 0, 1), 0, 0.01f},
      {"flat top_k 5000", P(1.0f, 5000, 1, 0, 1), 0, 0.01f},
      {"small vocab, top_k past vocab", P(0.9f, 400, 0.95f, 0, 1), 2, 2.0f, 257},
      {"greedy + frequency/presence", Additive(P(0, 0, 1, 0, 1), 0.6f, 0.4f), 3, 3.0f, 50280, false,
       true},
      {"greedy + every penalty", Additive(P(0, 0, 1, 0, 1.3f), 2.0f, -0.5f), 0, 3.0f, 50280, true,
       true},
      {"greedy + negative penalties", Additive(P(0, 0, 1, 0, 1), -2.0f, -2.0f), 0, 3.0f, 50280,
       false, true},
      {"presence only", Additive(P(0.8f, 0, 0.9f, 0, 1), 0, 1.5f), 2, 3.0f, 50280, false, true},
      {"all + every penalty", Additive(P(0.9f, 100, 0.8f, 0.02f, 1.2f), 1.0f, 0.5f), 3, 3.0f, 50280,
       true, true},
      {"flat + frequency", Additive(P(1.0f, 0, 0.5f, 0, 1), 2.0f, 0), 0, 0.01f, 50280, false, true},
  };
  // Each case with one block per row, and with each row's first pass split over several blocks
  // (the launcher splits when it gets a partials buffer: batches of few rows).
  for (const bool split : {false, true}) {
    for (const SampleCase& c : cases) {
      SCOPED_TRACE(absl::StrCat(c.name, split ? ", split first pass" : ""));
      const int rows = 6;
      const int64_t v = c.vocab;
      std::vector<float> logits = Normal(rng, rows * v, c.logit_scale);
      std::vector<kernels::SamplingRow> params(rows);
      std::vector<int32_t> penalty;
      std::vector<std::vector<int32_t>> row_penalty(rows), row_output(rows);
      std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(v - 1));
      for (int r = 0; r < rows; ++r) {
        kernels::SamplingRow& p = params[r];
        p.sample = 1;
        p.temperature = c.params.temperature;
        p.top_k = c.params.top_k;
        p.top_p = c.params.top_p;
        p.min_p = c.params.min_p;
        p.repetition_penalty = c.params.repetition_penalty;
        p.top_logprobs = c.top_logprobs;
        p.seed = rng();
        p.position = static_cast<uint64_t>(r * 17);
        if (c.penalty) {
          // The current argmax (so the penalty changes the answer), repeats, and random ids.
          const int32_t best = static_cast<int32_t>(
              std::max_element(logits.begin() + r * v, logits.begin() + (r + 1) * v) -
              (logits.begin() + r * v));
          row_penalty[r] = {best, tok(rng), best, tok(rng), tok(rng)};
          p.penalty_offset = static_cast<int32_t>(penalty.size());
          p.penalty_count = static_cast<int32_t>(row_penalty[r].size());
          penalty.insert(penalty.end(), row_penalty[r].begin(), row_penalty[r].end());
        }
        if (c.output) {
          // The argmax three times and the runner-up once (so the penalties change the answer),
          // then random ids, some of them repeated; row 0 has generated nothing yet.
          std::vector<int32_t> order(v);
          std::iota(order.begin(), order.end(), 0);
          const float* row = logits.data() + r * v;
          std::partial_sort(order.begin(), order.begin() + 2, order.end(),
                            [&](int32_t a, int32_t b) { return row[a] > row[b]; });
          if (r > 0) row_output[r] = {order[0], tok(rng), order[0], order[1], order[0]};
          for (int k = 0; k < 3 * r; ++k) row_output[r].push_back(tok(rng));
          if (r > 2) row_output[r].push_back(row_output[r].back());
          const std::vector<int32_t> pairs = AdditivePairs(row_output[r], c.params);
          p.output_offset = static_cast<int32_t>(penalty.size());
          p.output_count = static_cast<int32_t>(pairs.size() / 2);
          penalty.insert(penalty.end(), pairs.begin(), pairs.end());
        }
      }
      DeviceArray<float> d_logits(logits);
      DeviceArray<kernels::SamplingRow> d_params(params);
      DeviceArray<int32_t> d_penalty(penalty.empty() ? std::vector<int32_t>{0} : penalty);
      DeviceArray<float> d_scratch(rows * v);
      DeviceArray<kernels::SamplingResult> d_results(rows);
      DeviceArray<kernels::SamplingPartial> d_partials(rows * kernels::kSamplingMaxSplits);
      kernels::SamplingLaunch l;
      l.rows = rows;
      l.vocab = v;
      l.logits = d_logits.get();
      l.logits_row_stride = v;
      l.row_params = d_params.get();
      l.penalty_tokens = d_penalty.get();
      l.scratch = d_scratch.get();
      l.results = d_results.get();
      l.partials = split ? d_partials.get() : nullptr;
      absl::Status s = kernels::LaunchSampling(l, nullptr);
      ASSERT_TRUE(s.ok()) << s;
      Sync();
      const std::vector<kernels::SamplingResult> got = d_results.Download();
      sampling::Sampler sampler;
      int moved_off_argmax = 0;  // greedy rows whose token the penalties changed
      for (int r = 0; r < rows; ++r) {
        SCOPED_TRACE(absl::StrCat("row ", r));
        sampling::SamplingParams sp = c.params;
        sp.seed = params[r].seed;
        sampling::SampleOutput want;
        ASSERT_TRUE(sampler
                        .Sample(absl::MakeConstSpan(logits.data() + r * v, v), sp,
                                params[r].position, row_penalty[r], row_output[r], c.top_logprobs,
                                &want)
                        .ok());
        ASSERT_EQ(got[r].status, kernels::kSamplingOk);
        EXPECT_EQ(got[r].token, want.token);
        EXPECT_NEAR(got[r].logprob, want.logprob, 1e-5);
        ASSERT_EQ(got[r].num_top, static_cast<int32_t>(want.top.size()));
        for (size_t k = 0; k < want.top.size(); ++k) {
          EXPECT_EQ(got[r].top_ids[k], want.top[k].token);
          EXPECT_NEAR(got[r].top_logprobs[k], want.top[k].logprob, 1e-5);
        }
        const float* row = logits.data() + r * v;
        moved_off_argmax += c.params.greedy() && want.token != std::max_element(row, row + v) - row;
      }
      // Penalties that lower the generated argmax do change greedy answers here, so the
      // comparison above would catch a device that ignored them.
      if (c.output && c.params.greedy() && sampling::AdditivePenalty(c.params, 3) > 0.0f) {
        EXPECT_GT(moved_off_argmax, 0);
      }
    }
  }
}

TEST(CudaSamplingTest, TiesAndDivergedLogits) {
  MAMBA_SKIP_WITHOUT_GPU();
  // Large enough that the split first pass puts the tied ids in different blocks.
  const int64_t v = 20000;
  std::vector<float> logits(3 * v);
  std::mt19937_64 rng(FreshSeed());
  std::vector<float> noise = Normal(rng, 3 * v, 1.0f);
  std::copy(noise.begin(), noise.end(), logits.begin());
  // A tie: the lowest id wins.
  logits[0 * v + 19000] = logits[0 * v + 300] = logits[0 * v + 9000] = 50.0f;
  logits[1 * v + 15005] = NAN;
  for (int64_t i = 0; i < v; ++i) logits[2 * v + i] = -INFINITY;
  std::vector<kernels::SamplingRow> params(3);
  for (auto& p : params) p.sample = 1;
  DeviceArray<float> d_logits(logits);
  DeviceArray<kernels::SamplingRow> d_params(params);
  DeviceArray<int32_t> d_penalty(std::vector<int32_t>{0});
  DeviceArray<float> d_scratch(3 * v);
  DeviceArray<kernels::SamplingPartial> d_partials(3 * kernels::kSamplingMaxSplits);
  for (const bool split : {false, true}) {
    SCOPED_TRACE(split ? "split first pass" : "one block per row");
    DeviceArray<kernels::SamplingResult> d_results(3);
    kernels::SamplingLaunch l{
        3, v, d_logits.get(), v, d_params.get(), d_penalty.get(), d_scratch.get(), d_results.get()};
    l.partials = split ? d_partials.get() : nullptr;
    ASSERT_TRUE(kernels::LaunchSampling(l, nullptr).ok());
    Sync();
    const std::vector<kernels::SamplingResult> got = d_results.Download();
    EXPECT_EQ(got[0].status, kernels::kSamplingOk);
    EXPECT_EQ(got[0].token, 300);
    EXPECT_EQ(got[1].status, kernels::kSamplingNonFiniteLogits);
    EXPECT_EQ(got[2].status, kernels::kSamplingAllNegInf);
  }
}

}  // namespace
}  // namespace mamba
