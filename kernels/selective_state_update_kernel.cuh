// Fused decode state update (see selective_state_update_params.h).
#pragma once

#include "kernels/cp_async.cuh"
#include "kernels/dependent_launch.cuh"
#include "kernels/device_info.h"
#include "kernels/device_math.cuh"
#include "kernels/selective_state_update_params.h"
#include "kernels/static_switch.h"

namespace mamba::kernels {

template <typename T, typename S, int kNPad, bool kLowRankDt, int kRowsPerBlock = kStateUpdateRows>
struct StateUpdateTraits {
  using Input = T;
  using State = S;
  static constexpr int kThreads = kStateUpdateThreads;
  static constexpr int kSPT =
      16 / sizeof(S) < kNPad ? 16 / sizeof(S) : kNPad;  // one 16-byte access
  static constexpr int kLanes = kNPad / kSPT;
  static_assert(kLanes >= 1 && kLanes <= 32 && (kLanes & (kLanes - 1)) == 0,
                "lanes per channel must be a power of two within a warp");
  static constexpr int kChannels = kThreads / kLanes;
  static constexpr int kRows = kRowsPerBlock;
  static constexpr bool kLowRank = kLowRankDt;
};

template <int kSPT, typename S>
__device__ __forceinline__ void LoadStates(const S* p, float (&h)[kSPT], int valid, bool vec) {
  if (vec && valid == kSPT) {
    if constexpr (sizeof(S) == 4 && kSPT == 4) {
      const float4 v = *reinterpret_cast<const float4*>(p);
      h[0] = v.x;
      h[1] = v.y;
      h[2] = v.z;
      h[3] = v.w;
      return;
    } else if constexpr (sizeof(S) == 2 && kSPT == 8) {
      float f[8];
      LoadVec(p, f);
#pragma unroll
      for (int s = 0; s < 8; ++s) h[s] = f[s];
      return;
    }
  }
#pragma unroll
  for (int s = 0; s < kSPT; ++s) h[s] = s < valid ? ToFloat(p[s]) : 0.0f;
}

template <int kSPT, typename S>
__device__ __forceinline__ void StoreStates(S* p, const float (&h)[kSPT], int valid, bool vec) {
  if (vec && valid == kSPT) {
    if constexpr (sizeof(S) == 4 && kSPT == 4) {
      *reinterpret_cast<float4*>(p) = make_float4(h[0], h[1], h[2], h[3]);
      return;
    } else if constexpr (sizeof(S) == 2 && kSPT == 8) {
      StoreVec(p, h);
      return;
    }
  }
#pragma unroll
  for (int s = 0; s < kSPT; ++s) {
    if (s < valid) p[s] = FromFloat<S>(h[s]);
  }
}

// Advances this thread's kSPT state elements of a channel by one token (b, c: this thread's B
// and C values) and returns the channel's y = sum_n C_n h_n over its kLanes lanes (every lane
// gets it), in the canonical order of device_math.cuh.
template <int kSPT, int kLanes>
__device__ __forceinline__ float AdvanceStates(float (&h)[kSPT], float dt, float x,
                                               const float (&a2)[kSPT], const float* b,
                                               const float* c) {
  const float dtx = __fmul_rn(dt, x);
  float prod[kSPT];
#pragma unroll
  for (int s = 0; s < kSPT; ++s) {
    h[s] = SsmRecurrence(h[s], dt, a2[s], dtx, b[s]);
    prod[s] = __fmul_rn(c[s], h[s]);
  }
  return LaneTreeSum<kLanes>(TreeSum(prod));
}

// Stages rows [row0, row0 + rows) of the per-row inputs in shared memory, one loop per kind:
// B and C (kNPad per row, zero past dstate), and for the block's kCh channels from e0 (clamped
// to the last channel) x, z plus its bias and, with kDt, the precomputed dt; zeros past `rows`.
template <typename T, int kThreads, bool kDt, int kRowsCap, int kNPad, int kCh>
__device__ __forceinline__ void StageRowInputs(const SelectiveStateUpdateParams& p, int64_t row0,
                                               int rows, int64_t e0, int dstate, int tid,
                                               float (&sm_b)[kRowsCap][kNPad],
                                               float (&sm_c)[kRowsCap][kNPad],
                                               float (&sm_x)[kRowsCap][kCh],
                                               float (&sm_z)[kRowsCap][kCh],
                                               float (&sm_dt)[kRowsCap][kCh]) {
  const T* tb = static_cast<const T*>(p.b);
  const T* tc = static_cast<const T*>(p.c);
  for (int i = tid; i < kRowsCap * kNPad; i += kThreads) {
    const int r = i / kNPad, n = i % kNPad;
    const bool in = r < rows && n < dstate;
    sm_b[r][n] = in ? ToFloat(tb[(row0 + r) * p.b_row_stride + n]) : 0.0f;
    sm_c[r][n] = in ? ToFloat(tc[(row0 + r) * p.c_row_stride + n]) : 0.0f;
  }
  for (int i = tid; i < kRowsCap * kCh; i += kThreads) {
    const int r = i / kCh, c = i % kCh;
    const int64_t ei = MinI64(e0 + c, p.dim - 1);
    const bool in = r < rows;
    const int64_t row = row0 + r;
    sm_x[r][c] = in ? ToFloat(static_cast<const T*>(p.x)[row * p.x_row_stride + ei]) : 0.0f;
    float zv = in ? ToFloat(static_cast<const T*>(p.z)[row * p.z_row_stride + ei]) : 0.0f;
    if (p.z_bias != nullptr) zv = __fadd_rn(zv, p.z_bias[ei]);
    sm_z[r][c] = zv;
    if constexpr (kDt) {
      sm_dt[r][c] = in ? ToFloat(static_cast<const T*>(p.dt)[row * p.dt_row_stride + ei]) : 0.0f;
    }
  }
}

// kEarlyState (dependent only): p.state_read_early, as a compile-time choice.
// kDependent: launched as a programmatic dependent (grids of about one wave, i.e. few rows): the
// states and the weights are read before waiting for the previous kernel, the per-row inputs
// after. Otherwise everything is read together once the previous kernel has finished (measured
// faster for large grids; see PreloadBeforeWait).
template <typename Traits, bool kDependent, bool kEarlyState>
__global__ void __launch_bounds__(Traits::kThreads)
    SelectiveStateUpdateKernel(SelectiveStateUpdateParams p, bool vec_state) {
  using T = typename Traits::Input;
  using S = typename Traits::State;
  constexpr int kSPT = Traits::kSPT;
  constexpr int kLanes = Traits::kLanes;
  constexpr int kRows = Traits::kRows;
  constexpr int kCh = Traits::kChannels;
  constexpr int kNPad = kSPT * kLanes;
  // Every per-row input is staged in shared memory up front, so the loads of all rows are in
  // flight together and the row loop below touches global memory only for the states.
  __shared__ float sm_b[kRows][kNPad];
  __shared__ float sm_c[kRows][kNPad];
  __shared__ float sm_x[kRows][kCh];
  __shared__ float sm_z[kRows][kCh];   // z plus its bias
  __shared__ float sm_dt[kRows][kCh];  // precomputed dt (not low-rank)
  extern __shared__ float low_sm[];    // [kRows][dt_rank]: dt_low widened, then the dt_proj tile

  const int tid = threadIdx.x;
  const int lane = tid % kLanes;
  const int n0 = lane * kSPT;
  const int64_t e0 = static_cast<int64_t>(blockIdx.x) * kCh;
  const int64_t e = e0 + tid / kLanes;
  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * kRows;
  const int rows = static_cast<int>(MinI64(kRows, p.batch - row0));
  const int dstate = static_cast<int>(p.dstate);
  // Out-of-range channels still join the lane reductions (with a clamped channel) but never store.
  const bool channel_ok = e < p.dim;
  const int64_t ec = channel_ok ? e : p.dim - 1;
  const int valid = static_cast<int>(MaxI64(0, MinI64(kSPT, p.dstate - n0)));

  // The states first: they are the dominant traffic (a dependent launch reads them before
  // waiting for the previous kernel when that kernel does not write them: state_read_early).
  float h[kRows][kSPT];
  S* state[kRows];
  auto load_states = [&] {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      state[r] = nullptr;
      if (r < rows) {
        state[r] = static_cast<S*>(p.state) + p.slots[row0 + r] * p.state_slot_stride +
                   ec * p.dstate + n0;
        LoadStates<kSPT>(state[r], h[r], channel_ok ? valid : 0, vec_state);
      }
    }
  };
  if constexpr (!kDependent || kEarlyState) load_states();

  const int rank = static_cast<int>(p.dt_rank);
  float* w_sm = low_sm + kRows * rank;  // [kCh][rank + 1]: the block's dt_proj rows, widened
  // The per-row inputs, staged in shared memory (they come from the previous kernels). Two
  // versions: this loop form for the plain kernel, the batched one below for the dependent
  // kernel; the batched form in the plain kernel measured slower on the H100 (130m batch 256:
  // 747 vs 645 us over 24 layers), the loop form in the dependent one slower at batch 1.
  auto stage_rows = [&] {
    StageRowInputs<T, Traits::kThreads, !Traits::kLowRank>(p, row0, rows, e0, dstate, tid, sm_b,
                                                          sm_c, sm_x, sm_z, sm_dt);
    if constexpr (Traits::kLowRank) {
      for (int i = tid; i < kRows * rank; i += Traits::kThreads) {
        const int r = i / rank, k = i % rank;
        low_sm[i] =
            r < rows ? ToFloat(static_cast<const T*>(p.dt_low)[(row0 + r) * p.dt_low_row_stride + k])
                     : 0.0f;
      }
    }
  };
  // The block's dt_proj rows (weights, widened into shared memory).
  auto load_dt_proj = [&] {
    if constexpr (Traits::kLowRank) {
      // The tile of dt_proj rows is contiguous in memory: coalesced, once per block for all rows.
      const T* w_tile = static_cast<const T*>(p.dt_proj_weight) + e0 * rank;
      const int w_elems = static_cast<int>(MinI64(kCh, p.dim - e0)) * rank;
      for (int i = tid; i < kCh * rank; i += Traits::kThreads) {
        const int c = i / rank, k = i % rank;
        w_sm[c * (rank + 1) + k] = i < w_elems ? ToFloat(w_tile[i]) : 0.0f;
      }
    }
  };
  float a2[kSPT];
  float dt_bias = 0.0f, dskip = 0.0f;
  auto load_constants = [&] {
#pragma unroll
    for (int s = 0; s < kSPT; ++s) a2[s] = s < valid ? p.a2[ec * p.dstate + n0 + s] : 0.0f;
    dt_bias = p.dt_bias[ec];
    dskip = p.d[ec];
  };
  // The dependent variant (few rows) is latency-bound: its per-row loads are all issued before
  // any shared-memory store, one round trip instead of one per staging loop.
  auto stage_rows_batched = [&] {
    constexpr int kBcIters = (kRows * kNPad + Traits::kThreads - 1) / Traits::kThreads;
    constexpr int kXzIters = (kRows * kCh + Traits::kThreads - 1) / Traits::kThreads;
    constexpr int kLowBatch = 4;
    const T* tb = static_cast<const T*>(p.b);
    const T* tc = static_cast<const T*>(p.c);
    float bv[kBcIters], cv[kBcIters], xv[kXzIters], zv[kXzIters], dv[kXzIters], lv[kLowBatch];
#pragma unroll
    for (int j = 0; j < kBcIters; ++j) {
      const int i = tid + j * Traits::kThreads;
      const int r = i / kNPad, n = i % kNPad;
      const bool in = i < kRows * kNPad && r < rows && n < dstate;
      bv[j] = in ? ToFloat(tb[(row0 + r) * p.b_row_stride + n]) : 0.0f;
      cv[j] = in ? ToFloat(tc[(row0 + r) * p.c_row_stride + n]) : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < kXzIters; ++j) {
      const int i = tid + j * Traits::kThreads;
      const int r = i / kCh, c = i % kCh;
      const int64_t ei = MinI64(e0 + c, p.dim - 1);
      const bool in = i < kRows * kCh && r < rows;
      const int64_t row = row0 + r;
      xv[j] = in ? ToFloat(static_cast<const T*>(p.x)[row * p.x_row_stride + ei]) : 0.0f;
      zv[j] = in ? ToFloat(static_cast<const T*>(p.z)[row * p.z_row_stride + ei]) : 0.0f;
      if (p.z_bias != nullptr) zv[j] = __fadd_rn(zv[j], p.z_bias[ei]);
      dv[j] = 0.0f;
      if constexpr (!Traits::kLowRank) {
        dv[j] = in ? ToFloat(static_cast<const T*>(p.dt)[row * p.dt_row_stride + ei]) : 0.0f;
      }
    }
    // The first kLowBatch elements of this thread's share of dt_low (all of it for few rows).
    const int low_total = Traits::kLowRank ? kRows * rank : 0;
#pragma unroll
    for (int u = 0; u < kLowBatch; ++u) {
      const int i = tid + u * Traits::kThreads;
      const int r = i / (rank > 0 ? rank : 1), k = i % (rank > 0 ? rank : 1);
      lv[u] = i < low_total && r < rows
                  ? ToFloat(static_cast<const T*>(p.dt_low)[(row0 + r) * p.dt_low_row_stride + k])
                  : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < kBcIters; ++j) {
      const int i = tid + j * Traits::kThreads;
      if (i < kRows * kNPad) {
        sm_b[i / kNPad][i % kNPad] = bv[j];
        sm_c[i / kNPad][i % kNPad] = cv[j];
      }
    }
#pragma unroll
    for (int j = 0; j < kXzIters; ++j) {
      const int i = tid + j * Traits::kThreads;
      if (i < kRows * kCh) {
        sm_x[i / kCh][i % kCh] = xv[j];
        sm_z[i / kCh][i % kCh] = zv[j];
        if constexpr (!Traits::kLowRank) sm_dt[i / kCh][i % kCh] = dv[j];
      }
    }
    if constexpr (Traits::kLowRank) {
#pragma unroll
      for (int u = 0; u < kLowBatch; ++u) {
        const int i = tid + u * Traits::kThreads;
        if (i < low_total) low_sm[i] = lv[u];
      }
      for (int i = tid + kLowBatch * Traits::kThreads; i < low_total; i += Traits::kThreads) {
        const int r = i / rank, k = i % rank;
        low_sm[i] = r < rows ? ToFloat(static_cast<const T*>(
                                   p.dt_low)[(row0 + r) * p.dt_low_row_stride + k])
                             : 0.0f;
      }
    }
  };
  if constexpr (kDependent) {
    load_dt_proj();
    load_constants();
    WaitForPriorKernels();
    AllowDependentKernels();
    if constexpr (!kEarlyState) load_states();
    stage_rows_batched();
  } else {
    stage_rows();
    load_dt_proj();
    load_constants();
  }
  const int cl = tid / kLanes;

  // dt before bias for every row: from the low-rank projection (each lane a contiguous slice of
  // dt_rank, its weights loaded once for all rows), or precomputed.
  float dt_raw[kRows];
  if constexpr (Traits::kLowRank) {
    __syncthreads();
    // Lane j takes ranks j, j + kLanes, ... (interleaved: the lanes of a channel read
    // consecutive words).
    const float* wrow = w_sm + cl * (rank + 1);
    float part[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) part[r] = 0.0f;
#pragma unroll 4
    for (int k = lane; k < rank; k += kLanes) {
      const float wk = wrow[k];
#pragma unroll
      for (int r = 0; r < kRows; ++r) part[r] = __fmaf_rn(low_sm[r * rank + k], wk, part[r]);
    }
#pragma unroll
    for (int r = 0; r < kRows; ++r) dt_raw[r] = LaneTreeSum<kLanes>(part[r]);
  } else {
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kRows; ++r) dt_raw[r] = sm_dt[r][cl];
  }

#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    if (r >= rows) break;  // uniform across the block
    const float x = sm_x[r][cl];
    const float dt = DeltaFromRaw(dt_raw[r], dt_bias);
    const float y = AdvanceStates<kSPT, kLanes>(h[r], dt, x, a2, &sm_b[r][n0], &sm_c[r][n0]);
    if (channel_ok) {
      StoreStates<kSPT>(state[r], h[r], valid, vec_state);
      if (lane == 0) {
        static_cast<T*>(p.out)[(row0 + r) * p.out_row_stride + e] =
            FromFloat<T>(__fmul_rn(GatedOutput(y, dskip, x, sm_z[r][cl]), p.out_scale));
      }
    }
  }
}

// The grid of SelectiveStateUpdateKernel: a tile of Traits::kChannels channels by Traits::kRows
// rows per block.
template <typename Traits>
dim3 StateUpdateGrid(const SelectiveStateUpdateParams& p) {
  return dim3(static_cast<unsigned>((p.dim + Traits::kChannels - 1) / Traits::kChannels),
              static_cast<unsigned>((p.batch + Traits::kRows - 1) / Traits::kRows));
}

// The plain (not dependent-launched) kernel over the whole batch, Traits::kRows rows per block.
template <typename Traits>
cudaError_t LaunchPlainStateUpdate(const SelectiveStateUpdateParams& p, bool vec_state,
                                   size_t smem, cudaStream_t stream) {
  SelectiveStateUpdateKernel<Traits, false, false>
      <<<StateUpdateGrid<Traits>(p), Traits::kThreads, smem, stream>>>(p, vec_state);
  return cudaGetLastError();
}

// Large batches with dt precomputed, full 16-byte lanes (dstate == kNPad): a block walks its
// rows_per_block rows in groups of kStateUpdatePipeGroupRows, with the states of the next
// kStateUpdatePipeStages - 1 groups arriving by cp.async in shared memory while it computes the
// current one. The one-pass kernel above requests every state of its rows, waits, computes and
// stores, and with a wave of blocks doing so in step, reads stop while the wave computes (ncu on
// the H100: 130m at 256 rows, 37.5% occupancy, long-scoreboard stalls, 1.1 TB/s of reads, the
// writes left in L2). Each thread copies and reads back only its own 16 bytes per row, so the
// states need no block barrier. Per element the math is the one-pass kernel's: the same bits.
// The default for bf16 states (selective_state_update.cc); with fp32 states it measured no
// faster than the one-pass kernel (80 registers either way: the same bytes in flight per SM).
template <typename Traits>
__global__ void __launch_bounds__(Traits::kThreads)
    SelectiveStateUpdatePipelinedKernel(SelectiveStateUpdateParams p, int rows_per_block) {
  using T = typename Traits::Input;
  using S = typename Traits::State;
  constexpr int kSPT = Traits::kSPT;
  constexpr int kLanes = Traits::kLanes;
  constexpr int kCh = Traits::kChannels;
  constexpr int kNPad = kSPT * kLanes;
  constexpr int kThreads = Traits::kThreads;
  constexpr int kG = kStateUpdatePipeGroupRows;
  constexpr int kStages = kStateUpdatePipeStages;
  __shared__ __align__(16) uint4 sm_state[kStages][kG][kThreads];
  __shared__ float sm_b[kG][kNPad];
  __shared__ float sm_c[kG][kNPad];
  __shared__ float sm_x[kG][kCh];
  __shared__ float sm_z[kG][kCh];  // z plus its bias
  __shared__ float sm_dt[kG][kCh];
  __shared__ int32_t sm_slot[kStateUpdatePipeMaxRows];

  const int tid = threadIdx.x;
  const int lane = tid % kLanes;
  const int cl = tid / kLanes;
  const int n0 = lane * kSPT;
  const int64_t e0 = static_cast<int64_t>(blockIdx.x) * kCh;
  const int64_t e = e0 + cl;
  const bool channel_ok = e < p.dim;
  const int64_t ec = channel_ok ? e : p.dim - 1;
  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * rows_per_block;
  const int rows = static_cast<int>(MinI64(rows_per_block, p.batch - row0));
  const int groups = (rows + kG - 1) / kG;
  for (int i = tid; i < rows; i += kThreads) sm_slot[i] = p.slots[row0 + i];
  __syncthreads();

  S* const state = static_cast<S*>(p.state) + ec * p.dstate + n0;
  auto issue = [&](int g) {
    if (g < groups) {
#pragma unroll
      for (int r = 0; r < kG; ++r) {
        const int row = g * kG + r;
        if (row < rows) {
          CopyAsync16(&sm_state[g % kStages][r][tid], state + sm_slot[row] * p.state_slot_stride);
        }
      }
    }
    CommitAsync();  // empty groups too: every iteration waits on the same count
  };
#pragma unroll
  for (int g = 0; g < kStages - 1; ++g) issue(g);

  float a2[kSPT];
#pragma unroll
  for (int s = 0; s < kSPT; ++s) a2[s] = p.a2[ec * p.dstate + n0 + s];
  const float dt_bias = p.dt_bias[ec];
  const float dskip = p.d[ec];

  for (int g = 0; g < groups; ++g) {
    issue(g + kStages - 1);
    const int64_t grow0 = row0 + g * kG;
    const int grows = min(kG, rows - g * kG);
    StageRowInputs<T, kThreads, /*kDt=*/true>(p, grow0, grows, e0, kNPad, tid, sm_b, sm_c, sm_x,
                                               sm_z, sm_dt);
    WaitAsync<kStages - 1>();  // this thread's copies of group g have landed
    __syncthreads();           // and every thread's staged inputs
    // Unrolled: the rows' shared-memory reads and exp2 chains interleave (a rolled loop measured
    // 6-11% slower steps at 256 rows with bf16 states).
#pragma unroll
    for (int r = 0; r < kG; ++r) {
      if (r >= grows) break;  // uniform across the block
      float h[kSPT];
      LoadStates<kSPT>(reinterpret_cast<const S*>(&sm_state[g % kStages][r][tid]), h, kSPT,
                       /*vec=*/true);
      const float x = sm_x[r][cl];
      const float dt = DeltaFromRaw(sm_dt[r][cl], dt_bias);
      const float y = AdvanceStates<kSPT, kLanes>(h, dt, x, a2, &sm_b[r][n0], &sm_c[r][n0]);
      if (channel_ok) {
        StoreStates<kSPT>(state + sm_slot[g * kG + r] * p.state_slot_stride, h, kSPT,
                          /*vec=*/true);
        if (lane == 0) {
          static_cast<T*>(p.out)[(grow0 + r) * p.out_row_stride + e] =
              FromFloat<T>(__fmul_rn(GatedOutput(y, dskip, x, sm_z[r][cl]), p.out_scale));
        }
      }
    }
    __syncthreads();  // the staged inputs are overwritten by the next group
  }
}

// Rows per block of the pipelined kernel: enough blocks for `blocks_per_sm` per SM over the
// batch, in whole groups, within [group rows, kStateUpdatePipeMaxRows].
inline int PipelinedRowsPerBlock(int64_t batch, int64_t channel_tiles, int blocks_per_sm) {
  constexpr int kG = kStateUpdatePipeGroupRows;
  const int64_t slots = static_cast<int64_t>(CurrentDeviceSmCount()) * blocks_per_sm;
  int64_t rows = (batch * channel_tiles + slots - 1) / slots;
  rows = (rows + kG - 1) / kG * kG;
  return static_cast<int>(MinI64(kStateUpdatePipeMaxRows, MaxI64(kG, rows)));
}

template <typename Traits>
cudaError_t LaunchPipelinedStateUpdate(const SelectiveStateUpdateParams& p, int blocks_per_sm,
                                       cudaStream_t stream) {
  static const cudaError_t carveout =
      cudaFuncSetAttribute(SelectiveStateUpdatePipelinedKernel<Traits>,
                           cudaFuncAttributePreferredSharedMemoryCarveout,
                           cudaSharedmemCarveoutMaxShared);
  if (carveout != cudaSuccess) return carveout;
  const unsigned tiles = StateUpdateGrid<Traits>(p).x;
  const int rows = PipelinedRowsPerBlock(p.batch, tiles, blocks_per_sm);
  const dim3 grid(tiles, static_cast<unsigned>((p.batch + rows - 1) / rows));
  SelectiveStateUpdatePipelinedKernel<Traits><<<grid, Traits::kThreads, 0, stream>>>(p, rows);
  return cudaGetLastError();
}

// How full the last wave of the plain kernel's grid is (blocks over the resident slots of the
// waves it takes, 0..1).
template <typename Traits>
double PlainLastWaveFill(const SelectiveStateUpdateParams& p) {
  static const int per_sm = [] {
    int n = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(
            &n, SelectiveStateUpdateKernel<Traits, false, false>, Traits::kThreads, 0) !=
        cudaSuccess) {
      cudaGetLastError();
    }
    return n > 0 ? n : 1;
  }();
  const int64_t slots = static_cast<int64_t>(CurrentDeviceSmCount()) * per_sm;
  const dim3 grid = StateUpdateGrid<Traits>(p);
  const int64_t blocks = static_cast<int64_t>(grid.x) * grid.y;
  const int64_t waves = (blocks + slots - 1) / slots;
  return static_cast<double>(blocks) / static_cast<double>(waves * slots);
}

template <typename T, typename S, int kNPad, bool kLowRank>
cudaError_t LaunchStateUpdateVariant(const SelectiveStateUpdateParams& p, cudaStream_t stream) {
  using Traits = StateUpdateTraits<T, S, kNPad, kLowRank>;
  auto aligned = [](const void* q, int bytes) {
    return q == nullptr || reinterpret_cast<uintptr_t>(q) % bytes == 0;
  };
  const bool vec_state = p.dstate % Traits::kSPT == 0 && p.state_slot_stride % Traits::kSPT == 0 &&
                         aligned(p.state, 16);
  const size_t smem =
      kLowRank ? sizeof(float) * (Traits::kRows * p.dt_rank + Traits::kChannels * (p.dt_rank + 1))
               : 0;
  if (smem > 48 * 1024) {
    for (auto kernel : {SelectiveStateUpdateKernel<Traits, true, true>,
                        SelectiveStateUpdateKernel<Traits, true, false>,
                        SelectiveStateUpdateKernel<Traits, false, false>}) {
      const cudaError_t err = cudaFuncSetAttribute(
          kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
      if (err != cudaSuccess) return err;
    }
  }
  const dim3 grid = StateUpdateGrid<Traits>(p);
  if (PreloadBeforeWait(static_cast<int64_t>(grid.x) * grid.y)) {
    return LaunchKernel(p.state_read_early ? SelectiveStateUpdateKernel<Traits, true, true>
                                           : SelectiveStateUpdateKernel<Traits, true, false>,
                        grid, dim3(Traits::kThreads), smem, stream, /*dependent=*/true, p,
                        vec_state);
  }
  // Other tilings for plain dt only (the low-rank variant serves few rows).
  if constexpr (!kLowRank) {
    if (p.pipeline_blocks_per_sm > 0 && vec_state && p.dstate == kNPad) {
      return LaunchPipelinedStateUpdate<Traits>(p, p.pipeline_blocks_per_sm, stream);
    }
    using Four = StateUpdateTraits<T, S, kNPad, false, 4>;
    using Sixteen = StateUpdateTraits<T, S, kNPad, false, 16>;
    // By default the tiling whose last wave of blocks is fuller (ties: 4 rows, twice the blocks
    // with fewer registers each). On the H100 (2026-12-06, us per step, 8 vs 4 rows): 130m at 64
    // rows 810-815 vs 781-794 (0.48 vs 0.73 of a wave), at 128 955-964 vs 976-996 (0.97 vs
    // 0.73), at 256 1339-1354 vs 1321-1338 (0.97 both); 1.4b at 32 2571-2600 vs 2527-2528, at 64
    // 3088-3090 vs 2964-2968, at 128 3850-3856 vs 3853-3857, at 256 6102 vs 5780.
    const int rows = p.rows_per_block != 0                                      ? p.rows_per_block
                     : PlainLastWaveFill<Four>(p) >= PlainLastWaveFill<Traits>(p) ? 4
                                                                                  : 8;
    if (rows == 4) return LaunchPlainStateUpdate<Four>(p, vec_state, 0, stream);
    if (rows == 16) return LaunchPlainStateUpdate<Sixteen>(p, vec_state, 0, stream);
  }
  return LaunchPlainStateUpdate<Traits>(p, vec_state, smem, stream);
}

template <typename T, typename S, bool kLowRank>
cudaError_t RunStateUpdateNPad(const SelectiveStateUpdateParams& p, cudaStream_t stream) {
  return p.dstate <= 16 ? LaunchStateUpdateVariant<T, S, 16, kLowRank>(p, stream)
                        : LaunchStateUpdateVariant<T, S, kStateUpdateMaxState, kLowRank>(p, stream);
}

template <typename T, typename S>
cudaError_t RunStateUpdateState(const SelectiveStateUpdateParams& p, cudaStream_t stream) {
  return BOOL_SWITCH(p.dt_proj_weight != nullptr, kLowRank,
                     [&] { return RunStateUpdateNPad<T, S, kLowRank>(p, stream); });
}

template <typename T>
cudaError_t RunSelectiveStateUpdateAnyState(const SelectiveStateUpdateParams& p, KernelDType state,
                                            cudaStream_t stream) {
  if (p.batch == 0) return cudaSuccess;
  return state == KernelDType::kBF16 ? RunStateUpdateState<T, __nv_bfloat16>(p, stream)
                                     : RunStateUpdateState<T, float>(p, stream);
}

}  // namespace mamba::kernels
