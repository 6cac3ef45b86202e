// Status propagation macros that Debian 12's Abseil (20220623) does not ship.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define ELK_CONCAT_INNER_(a, b) a##b
#define ELK_CONCAT_(a, b) ELK_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define RETURN_IF_ERROR(expr)                  \
  do {                                         \
    ::absl::Status elk_status_ = (expr);       \
    if (!elk_status_.ok()) return elk_status_; \
  } while (0)

// ASSIGN_OR_RETURN(auto x, MakeX()); binds the value or returns the error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ELK_ASSIGN_OR_RETURN_IMPL_(ELK_CONCAT_(elk_statusor_, __LINE__), lhs, expr)
#define ELK_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()
