// 2-D arrays in HDF5 files (see matrix_file.h).
#include "data/matrix_file.h"

#include <torch/torch.h>

#include <filesystem>

#include "common/check.h"
#include "data/h5.h"

namespace driftlab::data {

torch::Tensor read_matrix_h5(const std::string& path, const std::string& dataset) {
  hdf5_silence_errors();
  std::error_code ec;
  DL_REQUIRE(std::filesystem::is_regular_file(path, ec), "cannot open HDF5 file '" << path << "'");
  h5::Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  DL_REQUIRE(file.valid(), "'" << path << "' is not a readable HDF5 file: " << hdf5_error_stack());
  DL_REQUIRE(H5Lexists(file.get(), dataset.c_str(), H5P_DEFAULT) > 0,
             "HDF5 file '" << path << "' has no dataset '" << dataset << "' (name it as FILE.h5:DATASET)");
  h5::Handle ds(DL_CHECK_HDF5(H5Dopen2(file.get(), dataset.c_str(), H5P_DEFAULT)));
  const std::vector<int64_t> dims = h5::dataset_dims(ds.get());
  h5::Handle type(DL_CHECK_HDF5(H5Dget_type(ds.get())));
  const H5T_class_t cls = H5Tget_class(type.get());
  const bool numeric = cls == H5T_FLOAT || cls == H5T_INTEGER;
  DL_REQUIRE(dims.size() == 2 && numeric && dims[0] > 0 && dims[1] > 0,
             path << ":" << dataset << ": expected a non-empty 2-D numeric dataset [rows, dim], got rank " << dims.size());
  torch::Tensor out = torch::empty({dims[0], dims[1]}, torch::kDouble);
  DL_CHECK_HDF5(H5Dread(ds.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data_ptr<double>()));
  return out;
}

void write_matrix_h5(const std::string& path, const std::string& dataset, const torch::Tensor& m) {
  DL_CHECK(m.dim() == 2, "write_matrix_h5: expected a 2-D tensor, got " << m.dim() << " dimensions");
  hdf5_silence_errors();
  const torch::Tensor d = m.to(torch::kCPU, torch::kDouble).contiguous();
  h5::Handle file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
  DL_REQUIRE(file.valid(), "cannot create HDF5 file '" << path << "': " << hdf5_error_stack());
  const hsize_t dims[2] = {static_cast<hsize_t>(d.size(0)), static_cast<hsize_t>(d.size(1))};
  h5::Handle space(DL_CHECK_HDF5(H5Screate_simple(2, dims, nullptr)));
  const hid_t file_type = m.scalar_type() == torch::kDouble ? H5T_IEEE_F64LE : H5T_IEEE_F32LE;
  h5::Handle ds(DL_CHECK_HDF5(
      H5Dcreate2(file.get(), dataset.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)));
  DL_CHECK_HDF5(H5Dwrite(ds.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, d.data_ptr<double>()));
  ds.reset();
  space.reset();
  DL_CHECK_HDF5(H5Fclose(file.release()));  // the close flushes: its error is the write's error
}

}  // namespace driftlab::data
