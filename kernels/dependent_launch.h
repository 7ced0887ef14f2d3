// Programmatic dependent launch (Hopper and later): a decode step is a chain of ~150 small
// dependent kernels, and without this each one pays the launch and ramp-up of the grid after its
// predecessor has drained. With it, kernel N+1 is launched while kernel N runs; its blocks load
// what does not depend on kernel N (weights, the layer's own recurrent state) and then wait at
// griddepcontrol.wait until kernel N has completed and its writes are visible.
//
// Contract for a kernel launched as dependent (LaunchKernel(..., dependent = true)):
// - before WaitForPriorKernels() it only reads memory that no kernel of the same step writes
//   before it (weights, the step's inputs copied before the step's first kernel, the layer's own
//   state, which only this kernel touches in a step), and writes nothing;
// - every block calls WaitForPriorKernels() before it writes or reads anything produced earlier,
//   so a kernel's completion implies its predecessor's (dependencies stay transitive);
// - AllowDependentKernels() comes after the wait, so at most one successor is waiting early.
// A step's first kernel is launched as not dependent (its predecessor is a host copy).
#pragma once

namespace mamba::kernels {

// Whether launches marked dependent use programmatic serialization: the process-wide policy
// (default on) and a device that supports it (compute capability 9.0 or later).
bool DependentLaunchEnabled();
// Sets the process-wide policy (for A/B measurements and as an escape hatch). Takes effect for
// launches and graph captures made after the call.
void SetDependentLaunch(bool enabled);

}  // namespace mamba::kernels
