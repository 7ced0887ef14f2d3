// Device sampling (see sampling_params.h). Logits are fp32 whatever the model's dtype, so there
// is one instantiation and no per-dtype files.
#include <algorithm>
#include <cfloat>
#include <cstdint>

#include "kernels/dependent_launch.cuh"
#include "kernels/sampling_params.h"

namespace mamba::kernels {
namespace {

constexpr int kThreads = kSamplingThreads;
constexpr int kWarps = kThreads / 32;
constexpr int kSeg = kSamplingSegment;
// The CPU sampler's first weight threshold (engine/sampling/sampler.cc): candidates with w >= 1/4096
// usually decide the draw, so they make the first segment when they fit.
constexpr float kFirstThreshold = 1.0f / 4096.0f;

// engine/sampling/sampling_params.h's SampleUniform, bit for bit.
__device__ __forceinline__ double DeviceSampleUniform(uint64_t seed, uint64_t position) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + position + 0xD1B54A32D192ED03ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0);
}

// Keys order candidates: larger value first, then lower id. Unique per id; never 0 for a
// non-NaN value (so 0 pads sorted arrays).
__device__ __forceinline__ uint32_t Orderable(float f) {
  const uint32_t b = __float_as_uint(f);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ uint64_t MakeKey(float v, int32_t id) {
  return (static_cast<uint64_t>(Orderable(v)) << 32) |
         static_cast<uint64_t>(0xFFFFFFFFu - static_cast<uint32_t>(id));
}
__device__ __forceinline__ int32_t KeyId(uint64_t key) {
  return static_cast<int32_t>(0xFFFFFFFFu - static_cast<uint32_t>(key));
}
__device__ __forceinline__ float KeyValue(uint64_t key) {
  const uint32_t o = static_cast<uint32_t>(key >> 32);
  return __uint_as_float((o & 0x80000000u) ? (o & 0x7FFFFFFFu) : ~o);
}

__device__ __forceinline__ int64_t MinI(int64_t a, int64_t b) { return a < b ? a : b; }

struct MaxF {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct SumD {
  __device__ double operator()(double a, double b) const { return a + b; }
};
struct MaxU64 {
  __device__ uint64_t operator()(uint64_t a, uint64_t b) const { return a > b ? a : b; }
};
struct SumI {
  __device__ int operator()(int a, int b) const { return a + b; }
};

// Every thread gets the result. `scratch` holds kWarps values of V.
template <typename V, typename Op>
__device__ V BlockReduce(V v, Op op, V* scratch) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, off));
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  V r = scratch[0];
#pragma unroll
  for (int w = 1; w < kWarps; ++w) r = op(r, scratch[w]);
  __syncthreads();
  return r;
}

struct Shared {
  uint64_t keys[kSeg];
  int hist[256];
  double dscratch[kWarps];
  float fscratch[kWarps];
  uint64_t uscratch[kWarps];
  int iscratch[kWarps];
  int count;
  int digit;
  int done;
  // Results of a warp-0 walk, published to the block.
  int walk_event;    // index within the segment, or -1
  int walk_last_nz;  // last index with w > 0, or -1
  double walk_run;   // running sum after the walked part
  double walk_at;    // running sum at the event (inclusive) or before it (exclusive), per mode
};

class RowSampler {
 public:
  __device__ RowSampler(const SamplingLaunch& launch, Shared& sm, uint32_t* bitmap, int64_t row)
      : p_(launch),
        sm_(sm),
        bitmap_(bitmap),
        row_(row),
        rp_(launch.row_params[row]),
        logits_(launch.logits + row * launch.logits_row_stride),
        z_(launch.scratch + row * launch.vocab),
        v_(launch.vocab),
        additive_(rp_.output_count > 0) {}

  // The first pass over logits [begin, end), reduced over the block: the divergence check, max
  // and sum of exp of the raw logits (step 1, the sum relative to the max), and the argmax of the
  // penalized ones (step 3; with additive penalties also stored in z_, for ApplyAdditive) or the
  // temperature-scaled values (step 4, stored in z_).
  __device__ SamplingPartial Pass(int64_t begin, int64_t end) {
    const bool greedy = !(rp_.temperature > 0.0f);
    float m = -INFINITY;  // running max, the sum kept relative to it and rescaled as it grows
    double s = 0.0;
    int bad = 0;
    uint64_t best = 0;
    float zmax = -INFINITY;
    // A thread's elements are loaded kPassBatch at a time before any is used (the loop body's
    // branches otherwise keep one load in flight per thread: ~100 dependent round trips for a
    // 50k vocabulary); they are still visited in the same order, so the sums are unchanged.
    constexpr int kPassBatch = 8;
    for (int64_t base = begin + threadIdx.x; base < end; base += int64_t{kThreads} * kPassBatch) {
      float lv[kPassBatch];
#pragma unroll
      for (int u = 0; u < kPassBatch; ++u) {
        const int64_t i = base + int64_t{u} * kThreads;
        lv[u] = i < end ? logits_[i] : 0.0f;
      }
#pragma unroll
      for (int u = 0; u < kPassBatch; ++u) {
        const int64_t i = base + int64_t{u} * kThreads;
        if (i >= end) break;
        const float l = lv[u];
        if (isnan(l) || l == INFINITY) bad = 1;
        if (l > m) {
          if (m != -INFINITY) s *= exp(static_cast<double>(m - l));
          m = l;
        }
        if (l != -INFINITY) s += static_cast<double>(expf(l - m));
        if (greedy) {
          const float pl = Penalized(i, l);
          if (additive_) z_[i] = pl;
          const uint64_t key = MakeKey(pl, static_cast<int32_t>(i));
          best = key > best ? key : best;
        } else {
          const float z = __fdiv_rn(Penalized(i, l), rp_.temperature);
          z_[i] = z;
          zmax = fmaxf(zmax, z);
        }
      }
    }
    SamplingPartial out;
    out.max = BlockReduce(m, MaxF(), sm_.fscratch);
    out.bad = BlockReduce(bad, SumI(), sm_.iscratch);
    s = m == -INFINITY ? 0.0 : s * exp(static_cast<double>(m - out.max));
    out.sum_exp = BlockReduce(s, SumD(), sm_.dscratch);
    if (greedy) {
      out.best = BlockReduce(best, MaxU64(), sm_.uscratch);
      out.zmax = -INFINITY;
    } else {
      out.zmax = BlockReduce(zmax, MaxF(), sm_.fscratch);  // its barrier also publishes z_
    }
    return out;
  }

  // Step 2's penalty set, before any pass over the logits (so that one pass serves steps 1 and 3).
  __device__ void BuildPenalty() {
    penalize_ = rp_.repetition_penalty != 1.0f && rp_.penalty_count > 0;
    if (penalize_) {
      const int64_t words = (v_ + 31) / 32;
      for (int64_t i = threadIdx.x; i < words; i += kThreads) bitmap_[i] = 0u;
      __syncthreads();
      for (int i = threadIdx.x; i < rp_.penalty_count; i += kThreads) {
        const int32_t t = p_.penalty_tokens[rp_.penalty_offset + i];
        atomicOr(&bitmap_[t >> 5], 1u << (t & 31));
      }
      __syncthreads();
    }
  }

  // Split first pass: this block's share (segment `seg` of p_.splits) into p_.partials.
  __device__ void PassSegment(int seg) {
    BuildPenalty();
    const int64_t len = (v_ + p_.splits - 1) / p_.splits;
    const int64_t begin = MinI(v_, seg * len), end = MinI(v_, begin + len);
    const SamplingPartial part = Pass(begin, end);
    if (threadIdx.x == 0) p_.partials[row_ * kSamplingMaxSplits + seg] = part;
  }

  __device__ void Run() {
    SamplingResult& res = p_.results[row_];
    const bool greedy = !(rp_.temperature > 0.0f);
    BuildPenalty();
    SamplingPartial pass;
    if (p_.splits > 1) {
      // The blocks of the split pass (the previous kernel) left their shares; every thread
      // combines them in the same fixed order.
      const SamplingPartial* parts = p_.partials + row_ * kSamplingMaxSplits;
      pass.max = -INFINITY;
      pass.zmax = -INFINITY;
      for (int k = 0; k < p_.splits; ++k) {
        pass.max = fmaxf(pass.max, parts[k].max);
        pass.zmax = fmaxf(pass.zmax, parts[k].zmax);
        pass.bad |= parts[k].bad;
        pass.best = parts[k].best > pass.best ? parts[k].best : pass.best;
      }
      for (int k = 0; k < p_.splits && pass.max != -INFINITY; ++k) {
        if (parts[k].max != -INFINITY) {
          pass.sum_exp += parts[k].sum_exp * exp(static_cast<double>(parts[k].max - pass.max));
        }
      }
    } else {
      pass = Pass(0, v_);
    }
    const float row_max = pass.max;
    if (pass.bad != 0 || row_max == -INFINITY) {
      if (threadIdx.x == 0) {
        res.status = pass.bad != 0 ? kSamplingNonFiniteLogits : kSamplingAllNegInf;
        res.token = -1;
        res.num_top = 0;
      }
      return;
    }
    if (additive_) ApplyAdditive(greedy, pass);
    const double log_sum = log(pass.sum_exp);
    auto logprob = [&](int32_t id) {
      return static_cast<float>(static_cast<double>(logits_[id] - row_max) - log_sum);
    };

    // The top_logprobs alternatives: the largest raw logits, lower id first on ties.
    const int n_top = static_cast<int>(
        MinI(rp_.top_logprobs < kSamplingMaxTop ? rp_.top_logprobs : kSamplingMaxTop, v_));
    uint64_t below = ~0ull;
    for (int r = 0; r < n_top; ++r) {
      uint64_t top = 0;
      for (int64_t i = threadIdx.x; i < v_; i += kThreads) {
        const uint64_t key = MakeKey(logits_[i], static_cast<int32_t>(i));
        if (key < below && key > top) top = key;
      }
      top = BlockReduce(top, MaxU64(), sm_.uscratch);
      if (threadIdx.x == 0) {
        res.top_ids[r] = KeyId(top);
        res.top_logprobs[r] = logprob(KeyId(top));
      }
      below = top;
    }

    int32_t token;
    if (greedy) {
      token = KeyId(pass.best);
    } else {
      zmax_ = pass.zmax;
      token = SampleScaled();
    }
    if (threadIdx.x == 0) {
      res.status = kSamplingOk;
      res.token = token;
      res.logprob = logprob(token);
      res.num_top = n_top;
    }
  }

 private:
  // Logit i after the repetition penalty, given l = logits_[i].
  __device__ float Penalized(int64_t i, float l) const {
    if (!penalize_ || ((bitmap_[i >> 5] >> (i & 31)) & 1u) == 0) return l;
    const float rp = rp_.repetition_penalty;
    return l > 0.0f ? __fdiv_rn(l, rp) : __fmul_rn(l, rp);
  }

  // Step 2's additive penalties, once the first pass has stored the row's values in z_ (every
  // block of a split pass done): rewrites the listed ids' values, then reduces the row again for
  // the argmax (greedy, into pass.best) or the maximum (into pass.zmax). The ids are distinct, so
  // no two threads write the same value.
  __device__ void ApplyAdditive(bool greedy, SamplingPartial& pass) {
    const int32_t* pairs = p_.penalty_tokens + rp_.output_offset;
    for (int k = threadIdx.x; k < rp_.output_count; k += kThreads) {
      const int32_t t = pairs[2 * k];
      const float l = __fsub_rn(Penalized(t, logits_[t]), __int_as_float(pairs[2 * k + 1]));
      z_[t] = greedy ? l : __fdiv_rn(l, rp_.temperature);
    }
    __syncthreads();
    if (greedy) {
      uint64_t best = 0;
      for (int64_t i = threadIdx.x; i < v_; i += kThreads) {
        const uint64_t key = MakeKey(z_[i], static_cast<int32_t>(i));
        best = key > best ? key : best;
      }
      pass.best = BlockReduce(best, MaxU64(), sm_.uscratch);
    } else {
      float zmax = -INFINITY;
      for (int64_t i = threadIdx.x; i < v_; i += kThreads) zmax = fmaxf(zmax, z_[i]);
      pass.zmax = BlockReduce(zmax, MaxF(), sm_.fscratch);
    }
  }

  __device__ float Weight(float z) const { return expf(z - zmax_); }

  // Step 4, for the temperature-scaled logits.
  __device__ int32_t SampleScaled() {
    top_k_ = (rp_.top_k > 0 && rp_.top_k < v_) ? rp_.top_k : 0;
    const int64_t n_cand = top_k_ > 0 ? top_k_ : v_;
    const double uniform = DeviceSampleUniform(rp_.seed, rp_.position);
    const float cut = rp_.min_p > 0.0f ? rp_.min_p : 0.0f;
    const bool use_top_p = rp_.top_p < 1.0f;

    double total;
    if (top_k_ > 0) {
      total = Walk(kTotal, n_cand, 0.0, 0.0f).run;  // over the k candidates, in order
    } else {
      double s = 0.0;
      for (int64_t i = threadIdx.x; i < v_; i += kThreads) s += static_cast<double>(Weight(z_[i]));
      total = BlockReduce(s, SumD(), sm_.dscratch);
    }

    int64_t keep = n_cand;
    double kept_sum = total;
    if (use_top_p || cut > 0.0f) {
      const WalkResult r =
          Walk(kKeep, n_cand, use_top_p ? static_cast<double>(rp_.top_p) * total : -1.0, cut);
      keep = r.event >= 0 ? r.event : n_cand;
      if (keep < 1) keep = 1;
      kept_sum = r.event >= 0 ? r.at : r.run;
      if (r.event == 0) kept_sum = Walk(kTotal, 1, 0.0, 0.0f).run;
    }
    const WalkResult d = Walk(kDraw, keep, uniform * kept_sum, 0.0f);
    return d.event >= 0 ? d.token : d.last_token;
  }

  enum WalkMode { kTotal, kKeep, kDraw };
  struct WalkResult {
    int64_t event = -1;  // candidate index of the event (kKeep: the keep count; kDraw: the token's)
    double run = 0.0;    // sum of w over the walked candidates
    double at = 0.0;     // kKeep: sum of w over the first `event` candidates
    int32_t token = -1;  // kDraw: the drawn token
    int32_t last_token = -1;  // kDraw: the last walked candidate with w > 0 (or the first one)
  };

  // Walks the first `limit` candidates in candidate order, segment by segment, with running
  // double sums of w:
  //   kTotal: sums them;
  //   kKeep:  stops at the first j where w_j < cut (keep j) or the running sum reaches
  //           `target` (keep j + 1), whichever comes first; `at` is the kept candidates' sum;
  //   kDraw:  stops at the first j whose running sum exceeds `target`.
  __device__ WalkResult Walk(WalkMode mode, int64_t limit, double target, float cut) {
    WalkResult out;
    uint64_t hi = ~0ull;
    int64_t consumed = 0;
    double run = 0.0;
    int32_t last_token = -1;
    bool first = true;
    while (consumed < limit) {
      const int n = NextSegment(hi, limit - consumed, first);
      first = false;
      if (n == 0) break;
      if (threadIdx.x < 32) {
        const int lane = threadIdx.x;
        int event = -1;
        double at = 0.0;
        int last_nz = -1;
        for (int base = 0; base < n && event < 0; base += 32) {
          const int j = base + lane;
          const bool valid = j < n && consumed + j < limit;
          const float w = valid ? Weight(KeyValue(sm_.keys[j])) : 0.0f;
          // Inclusive warp scan in double.
          double cum = static_cast<double>(w);
#pragma unroll
          for (int off = 1; off < 32; off <<= 1) {
            const double o = __shfl_up_sync(0xffffffffu, cum, off);
            if (lane >= off) cum += o;
          }
          const double inclusive = run + cum;
          const double exclusive = inclusive - static_cast<double>(w);
          bool hit = false;
          if (valid) {
            if (mode == kKeep) {
              hit = (cut > 0.0f && w < cut) || (target >= 0.0 && inclusive >= target);
            } else if (mode == kDraw) {
              hit = inclusive > target;
            }
          }
          const unsigned hits = __ballot_sync(0xffffffffu, hit);
          const unsigned nz = __ballot_sync(0xffffffffu, valid && w > 0.0f);
          if (nz != 0u) last_nz = base + 31 - __clz(static_cast<int>(nz));
          if (hits != 0u) {
            const int first_lane = __ffs(static_cast<int>(hits)) - 1;
            last_nz = -1;  // not needed once an event is found
            if (mode == kKeep) {
              // w below the cut keeps the candidates before it; the sum reaching the target keeps
              // this one too.
              const bool below_cut = cut > 0.0f && __shfl_sync(0xffffffffu, w, first_lane) < cut;
              const double inc = __shfl_sync(0xffffffffu, inclusive, first_lane);
              const double exc = __shfl_sync(0xffffffffu, exclusive, first_lane);
              event = below_cut ? base + first_lane : base + first_lane + 1;
              at = below_cut ? exc : inc;
            } else {
              event = base + first_lane;
            }
          }
          run = __shfl_sync(0xffffffffu, inclusive, 31);
        }
        if (lane == 0) {
          sm_.walk_event = event;
          sm_.walk_at = at;
          sm_.walk_run = run;
          sm_.walk_last_nz = last_nz;
        }
      }
      __syncthreads();
      const int event = sm_.walk_event;
      run = sm_.walk_run;
      if (sm_.walk_last_nz >= 0) last_token = KeyId(sm_.keys[sm_.walk_last_nz]);
      if (last_token < 0) last_token = KeyId(sm_.keys[0]);
      if (event >= 0) {
        out.event = consumed + event;
        out.at = sm_.walk_at;
        if (mode == kDraw) out.token = KeyId(sm_.keys[event]);
        __syncthreads();
        break;
      }
      consumed += n;
      hi = sm_.keys[n - 1];
      __syncthreads();
    }
    out.run = run;
    out.last_token = last_token;
    return out;
  }

  // Fills sm_.keys[0, n) with the next n <= kSeg candidates after key `hi` (exclusive), sorted,
  // n <= `want`; returns n (0 when none are left).
  __device__ int NextSegment(uint64_t hi, int64_t want, bool first) {
    if (want > kSeg) want = kSeg;
    if (first && top_k_ == 0) {
      // The candidates with w >= 1/4096 are a prefix of the order; take them when they fit.
      int c = 0;
      for (int64_t i = threadIdx.x; i < v_; i += kThreads) c += Weight(z_[i]) >= kFirstThreshold;
      c = BlockReduce(c, SumI(), sm_.iscratch);
      if (c > 0 && c <= want) {
        Collect(0, hi, true);
        return SortSegment(c);
      }
    }
    int c = 0;
    for (int64_t i = threadIdx.x; i < v_; i += kThreads) {
      c += MakeKey(z_[i], static_cast<int32_t>(i)) < hi;
    }
    c = BlockReduce(c, SumI(), sm_.iscratch);
    if (c == 0) return 0;
    const int n = c < want ? c : static_cast<int>(want);
    const uint64_t lo = c <= want ? 0ull : RadixSelect(hi, n);
    Collect(lo, hi, false);
    return SortSegment(n);
  }

  // Writes every key in [lo, hi) (or, with by_weight, every key whose w >= kFirstThreshold) into
  // sm_.keys in any order.
  __device__ void Collect(uint64_t lo, uint64_t hi, bool by_weight) {
    if (threadIdx.x == 0) sm_.count = 0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < v_; i += kThreads) {
      const float z = z_[i];
      const uint64_t key = MakeKey(z, static_cast<int32_t>(i));
      const bool take = by_weight ? Weight(z) >= kFirstThreshold : (key >= lo && key < hi);
      if (take) {
        const int slot = atomicAdd(&sm_.count, 1);
        if (slot < kSeg) sm_.keys[slot] = key;
      }
    }
    __syncthreads();
  }

  // Sorts sm_.keys[0, n) descending (bitonic over the next power of two, padded with 0 keys).
  __device__ int SortSegment(int n) {
    int size = 1;
    while (size < n) size <<= 1;
    for (int i = n + threadIdx.x; i < size; i += kThreads) sm_.keys[i] = 0ull;
    __syncthreads();
    for (int k = 2; k <= size; k <<= 1) {
      for (int j = k >> 1; j > 0; j >>= 1) {
        for (int i = threadIdx.x; i < size; i += kThreads) {
          const int partner = i ^ j;
          if (partner > i) {
            const bool descending = (i & k) == 0;
            const uint64_t a = sm_.keys[i], b = sm_.keys[partner];
            if ((a < b) == descending) {
              sm_.keys[i] = b;
              sm_.keys[partner] = a;
            }
          }
        }
        __syncthreads();
      }
    }
    return n;
  }

  // The n-th largest key among keys < hi (n >= 1, fewer than the keys below hi), digit by digit
  // from the top; stops early once a prefix holds exactly the keys still needed.
  __device__ uint64_t RadixSelect(uint64_t hi, int n) {
    uint64_t prefix = 0, mask = 0;
    int remaining = n;
    for (int shift = 56; shift >= 0; shift -= 8) {
      for (int b = threadIdx.x; b < 256; b += kThreads) sm_.hist[b] = 0;
      __syncthreads();
      for (int64_t i = threadIdx.x; i < v_; i += kThreads) {
        const uint64_t key = MakeKey(z_[i], static_cast<int32_t>(i));
        if (key < hi && (key & mask) == prefix) {
          atomicAdd(&sm_.hist[(key >> shift) & 0xFF], 1);
        }
      }
      __syncthreads();
      if (threadIdx.x == 0) {
        int above = 0;
        int digit = 0;
        for (int b = 255; b >= 0; --b) {
          if (above + sm_.hist[b] >= remaining) {
            digit = b;
            break;
          }
          above += sm_.hist[b];
        }
        sm_.digit = digit;
        sm_.done = sm_.hist[digit] == remaining - above;
        sm_.count = remaining - above;
      }
      __syncthreads();
      prefix |= static_cast<uint64_t>(sm_.digit) << shift;
      mask |= 0xFFull << shift;
      remaining = sm_.count;
      const bool done = sm_.done != 0;
      __syncthreads();
      if (done) break;  // every key with this prefix is needed: the prefix itself bounds them
    }
    return prefix;
  }

  const SamplingLaunch& p_;
  Shared& sm_;
  uint32_t* bitmap_;
  int64_t row_;
  SamplingRow rp_;
  const float* logits_;
  float* z_;
  int64_t v_;
  bool additive_;
  bool penalize_ = false;
  float zmax_ = 0.0f;
  int64_t top_k_ = 0;
};

// One block per row (kPass: per (row, segment) of the split first pass, blockIdx.y the segment).
template <bool kPass>
__global__ void __launch_bounds__(kThreads) SamplingKernel(SamplingLaunch launch) {
  extern __shared__ uint32_t bitmap[];
  __shared__ Shared sm;
  WaitForPriorKernels();  // the logits come from the previous kernel (the head GEMM)
  AllowDependentKernels();
  const int64_t row = blockIdx.x;
  if (launch.row_params[row].sample == 0) return;
  RowSampler sampler(launch, sm, bitmap, row);
  if constexpr (kPass) {
    sampler.PassSegment(static_cast<int>(blockIdx.y));
  } else {
    sampler.Run();
  }
}

__global__ void SampleUniformKernel(const uint64_t* seeds, const uint64_t* positions, double* out,
                                    int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = DeviceSampleUniform(seeds[i], positions[i]);
}

}  // namespace

// Launches SamplingKernel<kPass> over `grid` (one block per row, or per row and segment).
template <bool kPass>
cudaError_t LaunchSamplingKernel(const SamplingLaunch& l, dim3 grid, cudaStream_t stream) {
  const size_t bitmap_bytes = static_cast<size_t>((l.vocab + 31) / 32) * sizeof(uint32_t);
  if (bitmap_bytes + sizeof(Shared) > 48 * 1024) {
    const cudaError_t err =
        cudaFuncSetAttribute(SamplingKernel<kPass>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(bitmap_bytes));
    if (err != cudaSuccess) return err;
  }
  return LaunchKernel(SamplingKernel<kPass>, grid, dim3(kThreads), bitmap_bytes, stream,
                      /*dependent=*/true, l);
}

cudaError_t RunSampling(const SamplingLaunch& launch, cudaStream_t stream) {
  if (launch.rows == 0) return cudaSuccess;
  // Few rows: split each row's first pass over several blocks (about two waves in all, each
  // block at least 2048 logits), in a kernel of its own before the per-row one.
  SamplingLaunch l = launch;
  l.splits = 1;
  if (launch.partials != nullptr) {
    const int64_t by_grid = 2 * static_cast<int64_t>(CurrentDeviceSmCount()) / launch.rows;
    const int64_t by_size = launch.vocab / 2048;
    const int64_t splits = std::min<int64_t>(kSamplingMaxSplits, std::min(by_grid, by_size));
    l.splits = static_cast<int32_t>(std::max<int64_t>(1, splits));
  }
  const unsigned rows = static_cast<unsigned>(launch.rows);
  if (l.splits > 1) {
    const cudaError_t err =
        LaunchSamplingKernel<true>(l, dim3(rows, static_cast<unsigned>(l.splits)), stream);
    if (err != cudaSuccess) return err;
  }
  return LaunchSamplingKernel<false>(l, dim3(rows), stream);
}

cudaError_t RunSampleUniformValues(const uint64_t* seeds, const uint64_t* positions, double* out,
                                   int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  SampleUniformKernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream>>>(seeds, positions,
                                                                                  out, n);
  return cudaGetLastError();
}

}  // namespace mamba::kernels
