// 2-D numeric arrays in HDF5 files (one dataset each): how the drift_field tool reads its point
// sets and writes the field. Kept in src/data with the rest of the project's HDF5 access.
#pragma once

#include <string>

#include <torch/types.h>

namespace driftlab::data {

// Dataset `dataset` of HDF5 file `path` as float64 [rows, cols]. UserError naming the file and
// the dataset when the file is missing or unreadable, the dataset is absent, or it is not a
// non-empty 2-D numeric array.
torch::Tensor read_matrix_h5(const std::string& path, const std::string& dataset);

// Writes `m` ([rows, cols], any numeric dtype) as dataset `dataset` of a new file `path`
// (truncating it), stored as float64 when m is float64 and as float32 otherwise.
void write_matrix_h5(const std::string& path, const std::string& dataset, const torch::Tensor& m);

}  // namespace driftlab::data
