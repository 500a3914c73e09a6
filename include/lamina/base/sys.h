// SPDX-License-Identifier: Apache-2.0
#pragma once
// Every raw syscall lamina makes on layer content goes through here: descriptors get
// O_CLOEXEC, EINTR is retried, failures come back as Error with the step named.

#include <dirent.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <functional>
#include <string>
#include <string_view>

#include "lamina/base/error.h"
#include "lamina/base/unique_fd.h"

namespace lamina::sys {

// openat() with O_CLOEXEC added.
Result<UniqueFd> openat(int dirfd, const char* name, int flags, mode_t mode = 0);
// O_PATH|O_NOFOLLOW handle on dirfd/name: never follows a symlink in the last component.
Result<UniqueFd> open_path(int dirfd, const char* name);
// dirfd/path for a path of several components ("ab/cdef", "ID/manifest"), resolved by
// openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS): no component may be a
// symlink and nothing may lead outside dirfd (ELOOP / EXDEV when something tries). Kernels
// without openat2 (ENOSYS, before 5.6) get a walk of single-component O_NOFOLLOW opens that
// refuses the same things. O_CLOEXEC is added.
Result<UniqueFd> openat_beneath(int dirfd, const char* path, int flags, mode_t mode = 0);
// Opens a new description of the object behind an O_PATH fd (through /proc/self/fd).
Result<UniqueFd> reopen(int path_fd, int flags);
// Another descriptor for the same open file description (close-on-exec).
Result<UniqueFd> dup(int fd);

Result<struct stat> fstat(int fd);                         // works on O_PATH fds
Result<struct statvfs> fstatvfs(int fd);                   // works on O_PATH fds
Result<struct stat> fstatat(int dirfd, const char* name);  // AT_SYMLINK_NOFOLLOW
// True if dirfd/name exists (does not follow a final symlink).
Result<bool> exists_at(int dirfd, const char* name);

Result<std::string> readlinkat(int dirfd, const char* name);

// Extended attributes of the object behind any fd (O_PATH included), never following
// a symlink beyond it. getxattr returns the value size; ENODATA when absent.
Result<size_t> fgetxattr(int fd, const char* name, void* buf, size_t size);
Result<std::string> fgetxattr(int fd, const char* name);  // whole value
Result<size_t> flistxattr(int fd, char* buf, size_t size);
Result<std::string> flistxattr(int fd);  // whole NUL-separated list
// The same for dirfd/name (one component; "" is dirfd itself) without opening it: the object
// is reached through dirfd's /proc/self/fd magic link, and a final symlink is not followed.
Result<size_t> getxattr_at(int dirfd, const char* name, const char* attr, void* buf, size_t size);
Result<std::string> getxattr_at(int dirfd, const char* name, const char* attr);
Result<std::string> listxattr_at(int dirfd, const char* name);

// Calls fn(name, d_type, d_ino) for each entry of the directory behind dir_fd (any fd to it),
// skipping "." and "..". Stops and returns the error if fn returns one.
using DirentFn = std::function<Status(std::string_view name, unsigned char type, ino_t ino)>;
Status read_dir(int dir_fd, const DirentFn& fn);

// Namespace changes relative to directory descriptors.
Status mkdirat(int dirfd, const char* name, mode_t mode);
Status mknodat(int dirfd, const char* name, mode_t mode, dev_t dev);
Status symlinkat(const char* target, int dirfd, const char* name);
Status linkat(int olddirfd, const char* oldname, int newdirfd, const char* newname, int flags);
Status unlinkat(int dirfd, const char* name, int flags);
// renameat2 with RENAME_NOREPLACE / RENAME_EXCHANGE / RENAME_WHITEOUT flags.
Status renameat2(int olddirfd, const char* oldname, int newdirfd, const char* newname,
                 unsigned flags);

// Metadata of dirfd/name (AT_SYMLINK_NOFOLLOW where the kernel allows it), or of an fd with
// name "" (AT_EMPTY_PATH).
Status fchownat(int dirfd, const char* name, uid_t uid, gid_t gid);
Status fchmod_path(int fd, mode_t mode);  // any fd, O_PATH included; not for symlinks
Status utimensat(int dirfd, const char* name, const struct timespec times[2]);
Status fsetxattr(int fd, const char* name, const void* value, size_t size, int flags);
Status fremovexattr(int fd, const char* name);

Status fsync(int fd);
Status fdatasync(int fd);
Status ftruncate(int fd, off_t length);
// Flushes the whole filesystem that fd lives on (one call instead of an fsync per file).
Status syncfs(int fd);
// flock(2); EWOULDBLOCK with LOCK_NB when another holder conflicts.
Status flock(int fd, int operation);
// Reads up to size bytes at offset (short only at end of file); returns the count.
Result<size_t> pread_full(int fd, void* buf, size_t size, off_t offset);
// Writes all of buf at offset.
Status pwrite_full(int fd, const void* buf, size_t size, off_t offset);
// Calls fn(data, size) for every chunk of fd's bytes from offset 0 to the end (pread: the
// offset is not moved).
Status for_each_chunk(int fd, const std::function<void(const char*, size_t)>& fn);
// Reads a whole (small) file dirfd/name (name may have several components: resolved as by
// openat_beneath); writes a new file's contents.
Result<std::string> read_file(int dirfd, const char* name);
Status write_all(int fd, std::string_view data);
Status fallocate(int fd, int mode, off_t offset, off_t length);
Result<off_t> lseek(int fd, off_t offset, int whence);
Result<size_t> copy_file_range(int in, off_t* in_off, int out, off_t* out_off, size_t len,
                               unsigned flags);

// Copies all of src's data to dst (both regular files, dst empty): FICLONE first, then
// copy_file_range over the data extents (holes stay holes), then read/write.
Status copy_data(int src, int dst, off_t size);

// A stable name for the object behind fd (any fd, O_PATH included): its file handle
// (name_to_handle_at) in hex. EOPNOTSUPP where the filesystem has none.
Result<std::string> handle_name(int fd);

// The path of an fd, as /proc/self/fd/N.
std::string proc_fd_path(int fd);

}  // namespace lamina::sys
