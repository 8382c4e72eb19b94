// Typed errors of the native layer. Every check on user-controlled input throws vitrim::Error; the
// napi layer turns it into a JS exception whose `code` names the kind (the TS layer maps codes to
// error classes). Nothing here aborts: no assert, no exit, on any path reachable from user input.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace vitrim {

enum class ErrorKind { Argument, Shape, DType, Device, Index, Disposed, Memory, IO, Internal };

inline const char* error_code(ErrorKind k) {
  switch (k) {
    case ErrorKind::Argument: return "ERR_VITRIM_ARGUMENT";
    case ErrorKind::Shape: return "ERR_VITRIM_SHAPE";
    case ErrorKind::DType: return "ERR_VITRIM_DTYPE";
    case ErrorKind::Device: return "ERR_VITRIM_DEVICE";
    case ErrorKind::Index: return "ERR_VITRIM_INDEX";
    case ErrorKind::Disposed: return "ERR_VITRIM_DISPOSED";
    case ErrorKind::Memory: return "ERR_VITRIM_MEMORY";
    case ErrorKind::IO: return "ERR_VITRIM_IO";
    default: return "ERR_VITRIM_INTERNAL";
  }
}

// Default visibility: the CUDA backend is a second shared library that throws vitrim::Error into
// the addon, so both must agree on one type_info.
class __attribute__((visibility("default"))) Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& msg) : std::runtime_error(msg), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

namespace detail {
inline void cat(std::ostringstream&) {}
template <class T, class... R>
void cat(std::ostringstream& os, const T& v, const R&... r) {
  os << v;
  cat(os, r...);
}
}  // namespace detail

template <class... A>
[[noreturn]] void fail(ErrorKind kind, const A&... parts) {
  std::ostringstream os;
  detail::cat(os, parts...);
  throw Error(kind, os.str());
}

// VITRIM_CHECK(cond, Kind, "message parts", ...): throws vitrim::Error when cond is false.
#define VITRIM_CHECK(cond, kind, ...)                        \
  do {                                                       \
    if (!(cond)) ::vitrim::fail(::vitrim::ErrorKind::kind, __VA_ARGS__); \
  } while (0)

}  // namespace vitrim
