#include "kernels/selective_scan.h"

#include <algorithm>
#include <atomic>

#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"
#include "kernels/device_info.h"

namespace mamba::kernels {

namespace {

constexpr int64_t kMinSegmentLen = 128;
constexpr int64_t kMaxSegments = 64;

std::atomic<int> scan_states_per_thread{0};

bool ValidStatesPerThread(int spt, int64_t dstate) {
  return spt == 4 || (dstate <= 16 && (spt == 1 || spt == 8));
}

// Blocks of a sequential launch of `p` with `spt` states per thread: one per sequence and tile
// of channels.
int64_t ScanBlocks(const SelectiveScanParams& p, int spt) {
  const int64_t per_block = ScanChannelsPerBlock(p.dstate, spt);
  return (p.dim + per_block - 1) / per_block * p.num_seqs;
}

}  // namespace

absl::Status SetScanStatesPerThread(int states_per_thread) {
  if (states_per_thread != 0 && !ValidStatesPerThread(states_per_thread, 16)) {
    return absl::InvalidArgumentError(absl::StrCat("scan states per thread ", states_per_thread,
                                                   " unsupported; allowed: 0 (by shape), 1, 4, 8"));
  }
  scan_states_per_thread.store(states_per_thread, std::memory_order_relaxed);
  return absl::OkStatus();
}

int ChooseScanStatesPerThread(const SelectiveScanParams& p) {
  // A process-wide override (SetScanStatesPerThread) applies where the layout exists for the
  // launch's d_state.
  const int forced = scan_states_per_thread.load(std::memory_order_relaxed);
  if (forced != 0 && ValidStatesPerThread(forced, p.dstate)) return forced;
  // Measured on an H100 (bench/RESULTS.md, issue 9's sixth pass): 8 states per thread issue
  // fewer instructions and shared-memory loads per element than 4, but launch half the threads
  // with twice the registers (4 blocks per SM against 6), so they win only where their blocks
  // still fill most of a wave: 1536 x 2048 x 16 (0.73 of a wave with 8) 512 vs 525-531 us with
  // 4, 4096 x 2048 x 8 (0.97) 612 vs 677-684; 5120 x 2048 x 4 (0.61) 510 vs 448 with 4. One
  // state per thread doubles the instructions per element and lost everywhere. Launches that
  // fill less than half a wave get time segments instead (ChooseScanSegments), with 4 per
  // thread.
  if (p.dstate <= 16 &&
      3 * ScanBlocks(p, 8) >= 2 * int64_t{ScanBlocksPerSm(8)} * CurrentDeviceSmCount()) {
    return 8;
  }
  return 4;
}

void ChooseScanSegments(SelectiveScanParams& p) {
  p.segment_len = 0;
  p.max_segments = 0;
  if (!p.allow_segments || p.segment_state == nullptr || p.segment_dt_sum == nullptr ||
      p.num_seqs == 0 || p.max_seqlen < 2 * kMinSegmentLen) {
    return;
  }
  // Blocks of the sequential scan: one per sequence and tile of channels (32 for d_state <= 16 with
  // 4 states per thread). Each block runs a whole sequence, so a launch that does not fill one
  // wave of resident blocks leaves SMs idle, and one a little over a wave waits on its tail: the
  // segments fill exactly one wave.
  const int spt = p.states_per_thread != 0 ? p.states_per_thread : ChooseScanStatesPerThread(p);
  const int64_t blocks = ScanBlocks(p, spt);
  const int64_t wave = int64_t{ScanBlocksPerSm(spt)} * CurrentDeviceSmCount();
  if (blocks * 2 > wave) return;
  int64_t segments = wave / blocks;
  segments = std::min(
      {segments, p.segment_capacity / p.num_seqs, p.max_seqlen / kMinSegmentLen, kMaxSegments});
  if (segments < 2) return;
  int64_t len = (p.max_seqlen + segments - 1) / segments;
  len = (len + kScanChunk - 1) / kScanChunk * kScanChunk;
  p.segment_len = len;
  p.max_segments = static_cast<int32_t>((p.max_seqlen + len - 1) / len);
}

absl::Status LaunchSelectiveScan(const SelectiveScanParams& params, KernelDType act,
                                 KernelDType state, cudaStream_t stream) {
  SelectiveScanParams p = params;
  if (p.dim <= 0 || p.num_seqs < 0 || p.total_tokens < 0 || p.dstate < 1 ||
      p.dstate > kScanMaxState) {
    return absl::InvalidArgumentError(
        absl::StrCat("selective_scan: dim ", p.dim, ", dstate ", p.dstate, ", num_seqs ",
                     p.num_seqs, ", total_tokens ", p.total_tokens,
                     " invalid; allowed: dim > 0, dstate 1..", kScanMaxState, ", counts >= 0"));
  }
  if (p.num_seqs > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("selective_scan: at most 65535 sequences per launch (got ", p.num_seqs, ")"));
  }
  if (p.x == nullptr || p.dt == nullptr || p.z == nullptr || p.b == nullptr || p.c == nullptr ||
      p.dt_bias == nullptr || p.a2 == nullptr || p.d == nullptr || p.out == nullptr ||
      p.cu_seqlens == nullptr || p.slots == nullptr || p.state == nullptr) {
    return absl::InvalidArgumentError(
        "selective_scan: x, dt, z, b, c, dt_bias, a2, d, out, cu_seqlens, slots and state are "
        "required (z_bias is optional)");
  }
  if (p.x_row_stride < p.dim || p.dt_row_stride < p.dim || p.z_row_stride < p.dim ||
      p.out_row_stride < p.dim || p.b_row_stride < p.dstate || p.c_row_stride < p.dstate) {
    return absl::InvalidArgumentError(
        "selective_scan: row strides must be >= dim (x, dt, z, out) and >= dstate (b, c)");
  }
  if (p.state_slot_stride < p.dim * p.dstate) {
    return absl::InvalidArgumentError(
        "selective_scan: state slot stride must hold dim * dstate elements");
  }
  if (absl::Status s = CheckActivationDType("selective_scan", act); !s.ok()) return s;
  if (absl::Status s = CheckStateDType("selective_scan", state); !s.ok()) return s;
  if (p.states_per_thread == 0) p.states_per_thread = ChooseScanStatesPerThread(p);
  if (p.allow_segments && (p.segment_state == nullptr || p.segment_dt_sum == nullptr ||
                           p.segment_capacity < 1 || p.max_seqlen < 1)) {
    return absl::InvalidArgumentError(
        "selective_scan: segments need segment_state, segment_dt_sum, a capacity and max_seqlen");
  }
  if (!ValidStatesPerThread(p.states_per_thread, p.dstate)) {
    return absl::InvalidArgumentError(
        absl::StrCat("selective_scan: states_per_thread ", p.states_per_thread,
                     " unsupported; allowed: 0 (auto), 4, or 1, 8 when dstate <= 16"));
  }
  ChooseScanSegments(p);
  cudaError_t err = act == KernelDType::kF16 ? RunSelectiveScanF16(p, state, stream)
                                             : RunSelectiveScanBF16(p, state, stream);
  if (err != cudaSuccess) return CudaStatus(err, "selective_scan launch");
  return CheckLaunch("selective_scan", stream);
}

}  // namespace mamba::kernels
