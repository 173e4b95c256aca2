// Small helpers shared by the drift test files.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include <torch/types.h>

#include "common/check.h"
#include "drift/field.h"

namespace driftlab::drift {

inline torch::Tensor as_3d(const torch::Tensor& t) { return t.dim() == 2 ? t.unsqueeze(0) : t; }

// A Problem without aggregate initialisation (partial braces trip -Wmissing-field-initializers).
inline Problem prob(torch::Tensor x, torch::Tensor y_pos, torch::Tensor y_neg, torch::Tensor w_pos = {},
                    torch::Tensor w_neg = {}, int64_t self_offset = 0) {
  Problem p;
  p.x = std::move(x), p.y_pos = std::move(y_pos), p.y_neg = std::move(y_neg);
  p.w_pos = std::move(w_pos), p.w_neg = std::move(w_neg), p.self_offset = self_offset;
  return p;
}

// The call throws UserError and its message contains `needle`.
inline void expect_user_error(const std::function<void()>& call, const std::string& needle) {
  try {
    call();
    ADD_FAILURE() << "expected a UserError containing '" << needle << "'";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message '" << e.what() << "' lacks '" << needle << "'";
  }
}

}  // namespace driftlab::drift
