// Durable file writes: what a job killed at any instant (SIGKILL, power loss) leaves behind is
// either the old file or the complete new one, never a torn file. Used by checkpoints and by the
// sampler's committed output units.
#pragma once

#include <cstddef>
#include <string>

namespace driftlab {

// strerror(errno) at the time of the call.
std::string errno_text();
// write(2) until all n bytes are out; UserError naming `path` on failure (ENOSPC included).
void write_all(int fd, const void* data, size_t n, const std::string& path);
// fsync of a directory, so a rename inside it survives a crash (best effort: some file systems
// refuse directory file descriptors).
void fsync_dir(const std::string& dir);
// fsync of an existing file by path; UserError naming it on failure.
void fsync_file(const std::string& path);
// Renames `from` to `to` (replacing it) and fsyncs the destination's directory. UserError
// naming both on failure.
void rename_durable(const std::string& from, const std::string& to);
// Writes `bytes` to `path` durably: "<path>.tmp", fsync, rename, directory fsync. On failure the
// temporary file is removed and `path` is left as it was.
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace driftlab
