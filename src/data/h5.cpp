// HDF5 handle and attribute helpers (see h5.h).
#include "data/h5.h"

#include "common/check.h"

namespace driftlab::data::h5 {
namespace {

Handle vlen_string_type() {
  Handle t(DL_CHECK_HDF5(H5Tcopy(H5T_C_S1)));
  DL_CHECK_HDF5(H5Tset_size(t.get(), H5T_VARIABLE));
  DL_CHECK_HDF5(H5Tset_cset(t.get(), H5T_CSET_UTF8));
  return t;
}

// Opens attribute `name` or throws a UserError naming the file.
Handle open_attr(hid_t obj, const char* name, const std::string& what) {
  htri_t exists = H5Aexists(obj, name);
  DL_REQUIRE(exists > 0, what << ": attribute '" << name << "' is missing (expected a driftlab shard)"
                              << (exists < 0 ? ": " + hdf5_error_stack() : ""));
  Handle a(H5Aopen(obj, name, H5P_DEFAULT));
  DL_REQUIRE(a.valid(), what << ": cannot open attribute '" << name << "': " << hdf5_error_stack());
  return a;
}

int64_t attr_elements(hid_t attr, const char* name, const std::string& what) {
  Handle space(H5Aget_space(attr));
  DL_REQUIRE(space.valid(), what << ": attribute '" << name << "' has no dataspace");
  hssize_t n = H5Sget_simple_extent_npoints(space.get());
  DL_REQUIRE(n >= 0, what << ": attribute '" << name << "' has a bad dataspace");
  return n;
}

void require_class(hid_t attr, H5T_class_t want, const char* name, const char* expected,
                   const std::string& what) {
  Handle type(H5Aget_type(attr));
  DL_REQUIRE(type.valid() && H5Tget_class(type.get()) == want,
             what << ": attribute '" << name << "' is not " << expected);
}

std::vector<std::string> read_string_values(hid_t obj, const char* name, const std::string& what) {
  Handle a = open_attr(obj, name, what);
  Handle ftype(H5Aget_type(a.get()));
  DL_REQUIRE(ftype.valid() && H5Tget_class(ftype.get()) == H5T_STRING,
             what << ": attribute '" << name << "' is not a string");
  const int64_t n = attr_elements(a.get(), name, what);
  std::vector<std::string> out;
  if (H5Tis_variable_str(ftype.get()) > 0) {
    Handle mtype = vlen_string_type();
    std::vector<char*> ptrs(static_cast<size_t>(n), nullptr);
    DL_REQUIRE(n == 0 || H5Aread(a.get(), mtype.get(), ptrs.data()) >= 0,
               what << ": cannot read attribute '" << name << "': " << hdf5_error_stack());
    for (char* p : ptrs) {
      out.emplace_back(p ? p : "");
      if (p) H5free_memory(p);
    }
  } else {
    // Fixed-length strings (h5py writes these for numpy bytes): read with the file's size.
    const size_t len = H5Tget_size(ftype.get());
    Handle mtype(DL_CHECK_HDF5(H5Tcopy(H5T_C_S1)));
    DL_CHECK_HDF5(H5Tset_size(mtype.get(), len));
    std::vector<char> buf(static_cast<size_t>(n) * len + 1, '\0');
    DL_REQUIRE(n == 0 || H5Aread(a.get(), mtype.get(), buf.data()) >= 0,
               what << ": cannot read attribute '" << name << "': " << hdf5_error_stack());
    for (int64_t i = 0; i < n; ++i) {
      const char* s = buf.data() + i * len;
      size_t l = 0;
      while (l < len && s[l] != '\0') ++l;
      out.emplace_back(s, l);
    }
  }
  return out;
}

}  // namespace

void Handle::reset() {
  if (id_ < 0) return;
  switch (H5Iget_type(id_)) {
    case H5I_FILE: H5Fclose(id_); break;
    case H5I_GROUP: H5Gclose(id_); break;
    case H5I_DATASET: H5Dclose(id_); break;
    case H5I_DATASPACE: H5Sclose(id_); break;
    case H5I_DATATYPE: H5Tclose(id_); break;
    case H5I_ATTR: H5Aclose(id_); break;
    case H5I_GENPROP_LST: H5Pclose(id_); break;
    default: break;
  }
  id_ = -1;
}

void write_string(hid_t obj, const char* name, const std::string& value) {
  write_strings(obj, name, {value});
}

void write_strings(hid_t obj, const char* name, const std::vector<std::string>& values) {
  Handle type = vlen_string_type();
  // One value is stored as a scalar so h5py reads it as a plain str, not an array.
  Handle space(values.size() == 1 ? DL_CHECK_HDF5(H5Screate(H5S_SCALAR)) : [&] {
    hsize_t n = values.size();
    return DL_CHECK_HDF5(H5Screate_simple(1, &n, nullptr));
  }());
  Handle a(DL_CHECK_HDF5(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT)));
  std::vector<const char*> ptrs;
  for (const auto& v : values) ptrs.push_back(v.c_str());
  if (!ptrs.empty()) DL_CHECK_HDF5(H5Awrite(a.get(), type.get(), ptrs.data()));
}

void write_int(hid_t obj, const char* name, int64_t value) {
  Handle space(DL_CHECK_HDF5(H5Screate(H5S_SCALAR)));
  Handle a(DL_CHECK_HDF5(H5Acreate2(obj, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT)));
  DL_CHECK_HDF5(H5Awrite(a.get(), H5T_NATIVE_INT64, &value));
}

void write_ints(hid_t obj, const char* name, const std::vector<int64_t>& values) {
  hsize_t n = values.size();
  Handle space(DL_CHECK_HDF5(H5Screate_simple(1, &n, nullptr)));
  Handle a(DL_CHECK_HDF5(H5Acreate2(obj, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT)));
  if (n > 0) DL_CHECK_HDF5(H5Awrite(a.get(), H5T_NATIVE_INT64, values.data()));
}

void write_double(hid_t obj, const char* name, double value) {
  Handle space(DL_CHECK_HDF5(H5Screate(H5S_SCALAR)));
  Handle a(DL_CHECK_HDF5(H5Acreate2(obj, name, H5T_IEEE_F64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT)));
  DL_CHECK_HDF5(H5Awrite(a.get(), H5T_NATIVE_DOUBLE, &value));
}

bool has_attr(hid_t obj, const char* name) { return H5Aexists(obj, name) > 0; }

std::string read_string(hid_t obj, const char* name, const std::string& what) {
  auto v = read_string_values(obj, name, what);
  DL_REQUIRE(v.size() == 1, what << ": attribute '" << name << "' should hold one string, holds " << v.size());
  return v[0];
}

std::vector<std::string> read_strings(hid_t obj, const char* name, const std::string& what) {
  return read_string_values(obj, name, what);
}

std::vector<int64_t> read_ints(hid_t obj, const char* name, const std::string& what) {
  Handle a = open_attr(obj, name, what);
  require_class(a.get(), H5T_INTEGER, name, "an integer", what);
  std::vector<int64_t> v(static_cast<size_t>(attr_elements(a.get(), name, what)));
  DL_REQUIRE(v.empty() || H5Aread(a.get(), H5T_NATIVE_INT64, v.data()) >= 0,
             what << ": cannot read attribute '" << name << "': " << hdf5_error_stack());
  return v;
}

int64_t read_int(hid_t obj, const char* name, const std::string& what) {
  auto v = read_ints(obj, name, what);
  DL_REQUIRE(v.size() == 1, what << ": attribute '" << name << "' should hold one integer, holds " << v.size());
  return v[0];
}

double read_double(hid_t obj, const char* name, const std::string& what) {
  Handle a = open_attr(obj, name, what);
  require_class(a.get(), H5T_FLOAT, name, "a float", what);
  DL_REQUIRE(attr_elements(a.get(), name, what) == 1, what << ": attribute '" << name << "' should hold one number");
  double v = 0;
  DL_REQUIRE(H5Aread(a.get(), H5T_NATIVE_DOUBLE, &v) >= 0,
             what << ": cannot read attribute '" << name << "': " << hdf5_error_stack());
  return v;
}

std::vector<int64_t> dataset_dims(hid_t dset) {
  Handle space(DL_CHECK_HDF5(H5Dget_space(dset)));
  int rank = DL_CHECK_HDF5(H5Sget_simple_extent_ndims(space.get()));
  std::vector<hsize_t> d(static_cast<size_t>(rank));
  if (rank > 0) DL_CHECK_HDF5(H5Sget_simple_extent_dims(space.get(), d.data(), nullptr));
  return std::vector<int64_t>(d.begin(), d.end());
}

}  // namespace driftlab::data::h5
