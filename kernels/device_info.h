// Properties of the current CUDA device that launchers size their grids by.
#pragma once

namespace mamba::kernels {

// Multiprocessors of the current device (cached per device; 1 if it cannot be read).
int CurrentDeviceSmCount();
// Compute capability major version of the current device (cached per device; 0 if unreadable).
int CurrentDeviceComputeMajor();

}  // namespace mamba::kernels
