// SPDX-License-Identifier: Apache-2.0
#pragma once
// One error vocabulary for the whole project: a positive errno and a literal naming the step
// that failed ("openat(upper)"). Cheap to copy, never allocates.

#include <cassert>
#include <cerrno>
#include <string>
#include <utility>
#include <variant>

namespace lamina {

struct Error {
  int code = 0;           // positive errno
  const char* what = "";  // static string naming the failing step

  std::string message() const;  // "what: strerror(code)"
};

// A value or an Error. Construct from a T for success, from an Error for failure.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Error e) : v_(e) {}                 // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  // REQUIRES: ok(). Unchecked in release builds (no exception path: FUSE callbacks are
  // noexcept), asserted in debug builds.
  T& value() & {
    assert(ok());
    return *std::get_if<0>(&v_);
  }
  const T& value() const& {
    assert(ok());
    return *std::get_if<0>(&v_);
  }
  T&& value() && {
    assert(ok());
    return std::move(*std::get_if<0>(&v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const {
    assert(!ok());
    return *std::get_if<1>(&v_);
  }
  int code() const { return ok() ? 0 : error().code; }

 private:
  std::variant<T, Error> v_;
};

// Success or an Error.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error e) : e_(e) {}  // NOLINT(google-explicit-constructor)
  static Status Ok() { return {}; }

  bool ok() const { return e_.code == 0; }
  explicit operator bool() const { return ok(); }
  const Error& error() const { return e_; }
  int code() const { return e_.code; }

 private:
  Error e_;
};

// Error from the current errno.
inline Error errno_error(const char* what) { return Error{errno != 0 ? errno : EIO, what}; }

}  // namespace lamina
