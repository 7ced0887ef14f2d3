// Properties of the current CUDA device that launchers size their grids by.
#pragma once

namespace mamba::kernels {

// Multiprocessors of the current device (cached per device; 1 if it cannot be read).
int CurrentDeviceSmCount();

}  // namespace mamba::kernels
