// Test helper shared by the suites: the message of the UserError a call throws.
#pragma once

#include <string>

#include "common/check.h"

namespace driftlab::testing_util {

// The message of the UserError `f()` throws, or "" when it returns normally (other exceptions
// propagate and fail the test).
template <typename F>
std::string user_error_of(F&& f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

}  // namespace driftlab::testing_util
