// Durable file writes (see fileio.h).
#include "common/fileio.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "common/check.h"

namespace driftlab {
namespace fs = std::filesystem;

std::string errno_text() { return std::strerror(errno); }

void write_all(int fd, const void* data, size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    DL_REQUIRE(w > 0, "cannot write '" << path << "': " << errno_text());
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

void fsync_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  DL_REQUIRE(fd >= 0, "cannot open '" << path << "' to fsync it: " << errno_text());
  const int rc = ::fsync(fd);
  const std::string why = rc == 0 ? "" : errno_text();
  ::close(fd);
  DL_REQUIRE(rc == 0, "cannot fsync '" << path << "': " << why);
}

void rename_durable(const std::string& from, const std::string& to) {
  DL_REQUIRE(::rename(from.c_str(), to.c_str()) == 0,
             "cannot rename '" << from << "' to '" << to << "': " << errno_text());
  fsync_dir(fs::path(to).parent_path().string());
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  DL_REQUIRE(fd >= 0, "cannot create '" << tmp << "': " << errno_text());
  try {
    write_all(fd, bytes.data(), bytes.size(), tmp);
    DL_REQUIRE(::fsync(fd) == 0, "cannot fsync '" << tmp << "': " << errno_text());
  } catch (...) {
    ::close(fd);
    std::remove(tmp.c_str());
    throw;
  }
  ::close(fd);
  try {
    rename_durable(tmp, path);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
}

}  // namespace driftlab
