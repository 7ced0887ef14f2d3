#include "kernels/selective_state_update.h"

#include <atomic>

#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"

namespace mamba::kernels {
namespace {
std::atomic<int> state_update_rows{0};
std::atomic<int> state_update_pipeline{0};

bool ValidPipeline(int blocks_per_sm) { return blocks_per_sm >= -1 && blocks_per_sm <= 32; }

// The tilings the plain kernel is built for, or 0 (chosen by size).
bool ValidRowsPerBlock(int rows) { return rows == 0 || rows == 4 || rows == 8 || rows == 16; }
}  // namespace

absl::Status SetStateUpdateRowsPerBlock(int rows) {
  if (!ValidRowsPerBlock(rows)) {
    return absl::InvalidArgumentError(absl::StrCat("state update rows per block ", rows,
                                                   " invalid; allowed: 0 (by size), 4, 8, 16"));
  }
  state_update_rows.store(rows, std::memory_order_relaxed);
  return absl::OkStatus();
}

int StateUpdateRowsPerBlock() { return state_update_rows.load(std::memory_order_relaxed); }

absl::Status SetStateUpdatePipeline(int blocks_per_sm) {
  if (!ValidPipeline(blocks_per_sm)) {
    return absl::InvalidArgumentError(
        absl::StrCat("state update pipeline ", blocks_per_sm,
                     " invalid; allowed: -1 (off), 0 (default), 1..32 (blocks per SM)"));
  }
  state_update_pipeline.store(blocks_per_sm, std::memory_order_relaxed);
  return absl::OkStatus();
}

int StateUpdatePipeline() { return state_update_pipeline.load(std::memory_order_relaxed); }

absl::Status LaunchSelectiveStateUpdate(const SelectiveStateUpdateParams& p, KernelDType act,
                                        KernelDType state, cudaStream_t stream) {
  if (p.batch < 0 || p.dim <= 0 || p.dstate < 1 || p.dstate > kStateUpdateMaxState) {
    return absl::InvalidArgumentError(absl::StrCat(
        "selective_state_update: batch ", p.batch, ", dim ", p.dim, ", dstate ", p.dstate,
        " invalid; allowed: batch >= 0, dim > 0, dstate 1..", kStateUpdateMaxState));
  }
  if (!ValidRowsPerBlock(p.rows_per_block)) {
    return absl::InvalidArgumentError(absl::StrCat("selective_state_update: rows_per_block ",
                                                   p.rows_per_block,
                                                   " invalid; allowed: 0 (default), 4, 8, 16"));
  }
  if (!ValidPipeline(p.pipeline_blocks_per_sm)) {
    return absl::InvalidArgumentError(
        absl::StrCat("selective_state_update: pipeline_blocks_per_sm ", p.pipeline_blocks_per_sm,
                     " invalid; allowed: -1 (off), 0 (default), 1..32"));
  }
  if (p.batch > int64_t{65535} * 4) {  // grid.y at the smallest tiling, 4 rows per block
    return absl::InvalidArgumentError(
        absl::StrCat("selective_state_update: batch ", p.batch, " too large"));
  }
  if (p.x == nullptr || p.z == nullptr || p.b == nullptr || p.c == nullptr ||
      p.dt_bias == nullptr || p.a2 == nullptr || p.d == nullptr || p.slots == nullptr ||
      p.state == nullptr || p.out == nullptr) {
    return absl::InvalidArgumentError(
        "selective_state_update: x, z, b, c, dt_bias, a2, d, slots, state and out are required");
  }
  const bool low_rank = p.dt_proj_weight != nullptr;
  if (low_rank == (p.dt != nullptr) || (low_rank && (p.dt_low == nullptr || p.dt_rank < 1))) {
    return absl::InvalidArgumentError(
        "selective_state_update: give either dt, or dt_low + dt_proj_weight with dt_rank >= 1");
  }
  if (low_rank && p.dt_rank > kStateUpdateMaxRank) {
    return absl::InvalidArgumentError(absl::StrCat("selective_state_update: dt_rank ", p.dt_rank,
                                                   " above ", kStateUpdateMaxRank,
                                                   " needs dt precomputed (pass dt)"));
  }
  if (p.x_row_stride < p.dim || p.z_row_stride < p.dim || p.out_row_stride < p.dim ||
      (!low_rank && p.dt_row_stride < p.dim) || (low_rank && p.dt_low_row_stride < p.dt_rank) ||
      p.b_row_stride < p.dstate || p.c_row_stride < p.dstate) {
    return absl::InvalidArgumentError("selective_state_update: a row stride is too small");
  }
  if (p.state_slot_stride < p.dim * p.dstate) {
    return absl::InvalidArgumentError(
        "selective_state_update: state slot stride must hold dim * dstate elements");
  }
  if (absl::Status s = CheckActivationDType("selective_state_update", act); !s.ok()) return s;
  if (absl::Status s = CheckStateDType("selective_state_update", state); !s.ok()) return s;
  SelectiveStateUpdateParams q = p;
  if (q.rows_per_block == 0) q.rows_per_block = StateUpdateRowsPerBlock();
  if (q.pipeline_blocks_per_sm == 0) q.pipeline_blocks_per_sm = StateUpdatePipeline();
  if (q.pipeline_blocks_per_sm == 0) {
    // The pipelined kernel for bf16 states; fp32 states measured no faster with it. H100,
    // 2026-12-06, us per step at 128 / 256 rows, one-pass vs pipelined (6 blocks per SM): bf16
    // 130m 906-915 / 1243-1258 vs 832 / 1085, 1.4b 3481-3483 / 5045-5078 vs 3322 / 4566; fp32
    // 130m 955-972 / 1337-1354 vs 973 / 1332, 1.4b 3850-3856 / 5671-5753 vs 3909 / 5754.
    q.pipeline_blocks_per_sm = state == KernelDType::kBF16 && q.rows_per_block == 0
                                   ? kStateUpdatePipeDefaultBlocksPerSm
                                   : -1;
  }
  cudaError_t err = act == KernelDType::kF16 ? RunSelectiveStateUpdateF16(q, state, stream)
                                             : RunSelectiveStateUpdateBF16(q, state, stream);
  if (err != cudaSuccess) return CudaStatus(err, "selective_state_update launch");
  return CheckLaunch("selective_state_update", stream);
}

}  // namespace mamba::kernels
