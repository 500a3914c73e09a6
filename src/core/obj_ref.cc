// SPDX-License-Identifier: Apache-2.0
#include "lamina/core/obj_ref.h"

#include <fcntl.h>
#include <sys/resource.h>

#include <algorithm>
#include <vector>

#include "lamina/base/sys.h"

namespace lamina::core {
namespace {

// The open budgeted descriptors, swept by a clock: a descriptor used since the hand last passed
// gets another round; one not in use and not used is closed.
struct Ring {
  std::mutex mu;
  std::vector<const CachedDir*> slots;  // GUARDED_BY(mu)
  size_t hand = 0;                      // GUARDED_BY(mu)
  std::atomic<size_t> limit{0};         // 0: not set yet
};

Ring& ring() {
  static Ring r;
  return r;
}

size_t default_limit() {
  struct rlimit rl;
  size_t soft = 1024;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) soft = rl.rlim_cur;
  return std::max<size_t>(16, soft / 2);
}

}  // namespace

// ---- the budget ----

void DescriptorBudget::set_limit(size_t n) { ring().limit = std::max<size_t>(1, n); }

size_t DescriptorBudget::limit() {
  Ring& r = ring();
  size_t n = r.limit.load();
  if (n == 0) {
    size_t def = default_limit();
    r.limit.compare_exchange_strong(n, def);
    n = r.limit.load();
  }
  return n;
}

size_t DescriptorBudget::open_count() {
  std::lock_guard lock(ring().mu);
  return ring().slots.size();
}

namespace {

// Closes up to `want` descriptors (all of them with want = SIZE_MAX and `ignore_use`) that no
// one is using. Called with r.mu held. Lock order: a CachedDir's mu_ is taken before the ring's
// by acquire(), so here it is only tried.
template <typename Close>
void sweep(Ring& r, size_t want, bool ignore_use, Close close) {
  size_t steps = 2 * r.slots.size();
  while (want > 0 && !r.slots.empty() && steps-- > 0) {
    if (r.hand >= r.slots.size()) r.hand = 0;
    const CachedDir* c = r.slots[r.hand];
    if (close(c, ignore_use)) {
      --want;  // the slot now holds another entry: look at it next
    } else {
      ++r.hand;
    }
  }
}

}  // namespace

void DescriptorBudget::add(const CachedDir* c) {
  Ring& r = ring();
  const size_t lim = limit();
  std::lock_guard lock(r.mu);
  if (c->slot_ != SIZE_MAX) return;
  c->slot_ = r.slots.size();
  r.slots.push_back(c);
  if (r.slots.size() <= lim) return;
  sweep(r, r.slots.size() - lim, false, [&](const CachedDir* v, bool ignore_use) {
    if (v->users_.load(std::memory_order_acquire) != 0) return false;
    if (!ignore_use && v->referenced_.exchange(false, std::memory_order_relaxed)) return false;
    std::unique_lock vl(v->mu_, std::try_to_lock);
    if (!vl.owns_lock() || v->users_.load(std::memory_order_acquire) != 0 || v->held_) {
      return false;
    }
    v->fd_.reset();
    // Swap-remove from the ring.
    size_t i = v->slot_;
    r.slots[i] = r.slots.back();
    r.slots[i]->slot_ = i;
    r.slots.pop_back();
    v->slot_ = SIZE_MAX;
    return true;
  });
}

void DescriptorBudget::remove(const CachedDir* c) {
  Ring& r = ring();
  std::lock_guard lock(r.mu);
  size_t i = c->slot_;
  if (i == SIZE_MAX) return;
  r.slots[i] = r.slots.back();
  r.slots[i]->slot_ = i;
  r.slots.pop_back();
  c->slot_ = SIZE_MAX;
}

void DescriptorBudget::shed() {
  Ring& r = ring();
  std::lock_guard lock(r.mu);
  for (size_t i = 0; i < r.slots.size();) {
    const CachedDir* v = r.slots[i];
    std::unique_lock vl(v->mu_, std::try_to_lock);
    if (!vl.owns_lock() || v->users_.load(std::memory_order_acquire) != 0 || v->held_) {
      ++i;
      continue;
    }
    v->fd_.reset();
    r.slots[i] = r.slots.back();
    r.slots[i]->slot_ = i;
    r.slots.pop_back();
    v->slot_ = SIZE_MAX;
  }
}

Result<UniqueFd> open_path_shedding(int dirfd, const char* name) {
  auto fd = sys::open_path(dirfd, name);
  if (!fd && (fd.code() == EMFILE || fd.code() == ENFILE)) {
    DescriptorBudget::shed();
    fd = sys::open_path(dirfd, name);
  }
  return fd;
}

// ---- CachedDir ----

CachedDir::CachedDir(std::shared_ptr<const ObjRef> home, std::string name, UniqueFd fd,
                     const struct stat& st)
    : fd_(std::move(fd)),
      home_(std::move(home)),
      name_(std::move(name)),
      dev_(st.st_dev),
      ino_(st.st_ino) {
  referenced_.store(true, std::memory_order_relaxed);  // just looked up: not the first to go
  if (fd_.valid()) DescriptorBudget::add(this);
}

CachedDir::~CachedDir() { DescriptorBudget::remove(this); }

Result<int> CachedDir::acquire() const {
  // The usual case: open. Counted as in use under the lock, which the sweep also takes.
  auto take = [this]() -> int {
    users_.fetch_add(1, std::memory_order_acq_rel);
    referenced_.store(true, std::memory_order_relaxed);
    return fd_.get();
  };
  for (int attempt = 0;; ++attempt) {
    std::shared_ptr<const ObjRef> home;
    std::string name;
    {
      std::lock_guard lock(mu_);
      if (fd_.valid()) return take();
      if (!home_) return Error{ESTALE, "reopen directory"};
      home = home_;
      name = name_;
    }
    // Closed by the budget: open it again from its parent, which stays open meanwhile. Not
    // under our lock: opening the parent (and shedding on EMFILE) sweeps the ring, which
    // try-locks every entry -- ours included, and a mutex must not be tried by its holder.
    Error failed{};  // code 0: reopened and checked
    Result<UniqueFd> reopened = Error{EBADF, "reopen directory"};
    PathFd parent(*home);
    if (parent.ok()) {
      reopened = open_path_shedding(parent.get(), name.c_str());
      if (!reopened) {
        failed = Error{reopened.code(), "reopen directory"};
      } else if (auto st = sys::fstat(reopened->get()); !st) {
        failed = st.error();
      } else if (st->st_dev != dev_ || st->st_ino != ino_) {
        // Something else under that name now: the directory is not there any more.
        failed = Error{ESTALE, "reopen directory"};
      }
    } else {
      failed = parent.error();
    }
    int fd;
    {
      std::lock_guard lock(mu_);
      // Another thread opened it meanwhile (a rename keeps it open across the move): theirs.
      if (fd_.valid()) return take();
      if (failed.code != 0) {
        // Moved while we looked by the old name: look where it is now.
        const bool moved = home_ != home || name_ != name;
        if (moved && attempt < 16) continue;
        return failed;
      }
      fd_ = std::move(*reopened);
      fd = take();
    }
    DescriptorBudget::add(this);
    return fd;
  }
}

// ---- ObjRef ----

void ObjRef::relocate(std::shared_ptr<const ObjRef> d, std::string n) const {
  if (!cached_) return;
  std::lock_guard lock(cached_->mu_);
  cached_->home_ = std::move(d);
  cached_->name_ = std::move(n);
}

Status ObjRef::hold() const {
  if (!cached_) return {};
  auto fd = cached_->acquire();
  if (!fd) return fd.error();
  {
    std::lock_guard lock(cached_->mu_);
    cached_->held_ = true;
    cached_->home_.reset();  // nothing to reopen from: the name is going
  }
  DescriptorBudget::remove(cached_.get());
  cached_->release();
  return {};
}

// ---- PathFd ----

PathFd::PathFd(const ObjRef& obj) {
  if (obj.cached_) {
    auto fd = obj.cached_->acquire();
    if (fd) {
      cached_ = obj.cached_.get();
      fd_ = *fd;
    } else {
      err_ = fd.code();
    }
    return;
  }
  if (!obj.named()) {
    fd_ = obj.fd_.get();
    return;
  }
  PathFd dir(*obj.dir);
  if (!dir.ok()) {
    err_ = dir.code();
    return;
  }
  auto r = open_path_shedding(dir.get(), obj.name.c_str());
  if (r) {
    own_ = std::move(*r);
    fd_ = own_.get();
  } else {
    err_ = r.code();
  }
}

}  // namespace lamina::core
