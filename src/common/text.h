// Small text helpers used in messages across the libraries.
#pragma once

#include <cstdint>
#include <sstream>
#include <string>

#include <c10/util/ArrayRef.h>

namespace driftlab {

// "[2, 3, 28, 28]": a tensor's sizes, or any list of dimensions, as every message prints them.
inline std::string shape_string(c10::ArrayRef<int64_t> sizes) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < sizes.size(); ++i) os << (i ? ", " : "") << sizes[i];
  os << "]";
  return os.str();
}

}  // namespace driftlab
