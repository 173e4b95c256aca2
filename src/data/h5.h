// Thin HDF5 helpers for the shard format: an owning handle and typed attribute access.
//
// Internal to src/data. Reading helpers return false / throw UserError naming `what` (the file)
// instead of aborting, because a bad attribute in a user's file is bad input, not a bug.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

namespace driftlab::data::h5 {

// Owns one hid_t and closes it with the right H5*close for its type.
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : id_(id) {}
  ~Handle() { reset(); }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& o) noexcept : id_(o.id_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      o.id_ = -1;
    }
    return *this;
  }
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset();
  // Gives up ownership: returns the id and leaves this handle empty (to close it with a checked call).
  hid_t release() {
    const hid_t id = id_;
    id_ = -1;
    return id;
  }

 private:
  hid_t id_ = -1;
};

// Writers: failures here are internal (we created the object), so they use DL_CHECK_HDF5.
void write_string(hid_t obj, const char* name, const std::string& value);
void write_strings(hid_t obj, const char* name, const std::vector<std::string>& values);
void write_int(hid_t obj, const char* name, int64_t value);
void write_ints(hid_t obj, const char* name, const std::vector<int64_t>& values);
void write_double(hid_t obj, const char* name, double value);

// Readers for files of unknown origin: every failure is a UserError "<what>: attribute '<name>' ...".
bool has_attr(hid_t obj, const char* name);
std::string read_string(hid_t obj, const char* name, const std::string& what);
std::vector<std::string> read_strings(hid_t obj, const char* name, const std::string& what);
int64_t read_int(hid_t obj, const char* name, const std::string& what);
std::vector<int64_t> read_ints(hid_t obj, const char* name, const std::string& what);
double read_double(hid_t obj, const char* name, const std::string& what);

// The dimensions of a dataset's dataspace.
std::vector<int64_t> dataset_dims(hid_t dset);

}  // namespace driftlab::data::h5
