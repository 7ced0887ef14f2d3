// Status propagation helpers. Abseil 20220623 has no RETURN_IF_ERROR, so we carry our own.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define MAMBA_STATUS_CONCAT_INNER_(a, b) a##b
#define MAMBA_STATUS_CONCAT_(a, b) MAMBA_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define MAMBA_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::absl::Status mamba_status_ = (expr);         \
    if (!mamba_status_.ok()) return mamba_status_; \
  } while (0)

// `lhs = value of rexpr` where rexpr is an absl::StatusOr<T>; returns its status if not OK.
#define MAMBA_ASSIGN_OR_RETURN(lhs, rexpr) \
  MAMBA_ASSIGN_OR_RETURN_IMPL_(MAMBA_STATUS_CONCAT_(mamba_statusor_, __LINE__), lhs, rexpr)
#define MAMBA_ASSIGN_OR_RETURN_IMPL_(var, lhs, rexpr) \
  auto var = (rexpr);                                 \
  if (!var.ok()) return std::move(var).status();      \
  lhs = std::move(var).value()
