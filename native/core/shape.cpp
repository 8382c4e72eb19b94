// The pure parts of the tensor core: dtype names and sizes, shape arithmetic, reshape and the
// argument checks shared by every op. No global state, so the CUDA library compiles its own copy.
#include <sstream>

#include "vitrim/tensor.h"

namespace vitrim {

size_t dtype_size(DType d) { return d == DType::F32 ? 4 : d == DType::BF16 ? 2 : 4; }
const char* dtype_name(DType d) { return d == DType::F32 ? "float32" : d == DType::BF16 ? "bfloat16" : "int32"; }
const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    VITRIM_CHECK(d >= 0, Shape, "negative dimension in shape ", shape_str(s));
    if (d == 0) return 0;
    VITRIM_CHECK(n <= kMaxNumel / d, Shape, "shape ", shape_str(s), " has too many elements (limit 2^40)");
    n *= d;
  }
  return n;
}

Tensor Tensor::reshape(const Shape& s) const {
  Shape out = s;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      VITRIM_CHECK(infer < 0, Shape, "reshape: at most one dimension may be -1, got ", shape_str(s));
      infer = (int)i;
    } else {
      VITRIM_CHECK(out[i] >= 0, Shape, "reshape: invalid dimension in ", shape_str(s));
      // a product past the element limit cannot be this tensor's size (and must not overflow)
      VITRIM_CHECK(out[i] == 0 || known <= kMaxNumel / out[i], Shape, "reshape: cannot reshape ", shape_str(shape),
                   " to ", shape_str(s));
      known *= out[i];
    }
  }
  int64_t n = numel();
  if (infer >= 0) {
    VITRIM_CHECK(known > 0 && n % known == 0, Shape, "reshape: cannot reshape ", shape_str(shape), " to ", shape_str(s));
    out[infer] = n / known;
  }
  VITRIM_CHECK(shape_numel(out) == n, Shape, "reshape: cannot reshape ", shape_str(shape), " (", n,
               " elements) to ", shape_str(s));
  Tensor t = *this;
  t.shape = out;
  return t;
}

void check_dtype(const Tensor& t, DType d, const char* what) {
  VITRIM_CHECK(t.dtype == d, DType, what, " must be ", dtype_name(d), ", got ", dtype_name(t.dtype));
}
void check_cpu(const Tensor& t, const char* what) {
  VITRIM_CHECK(t.storage != nullptr, Disposed, what, " has no storage (disposed?)");
  VITRIM_CHECK(t.device() == Device::CPU, Device, what, " is on ", device_name(t.device()),
               "; this op runs on cpu");
}
void check_rank(const Tensor& t, int64_t rank, const char* what) {
  VITRIM_CHECK(t.dim() == rank, Shape, what, " must have ", rank, " dimensions, got shape ", shape_str(t.shape));
}
void check_same_shape(const Tensor& a, const Tensor& b, const char* wa, const char* wb) {
  VITRIM_CHECK(a.shape == b.shape, Shape, wa, " and ", wb, " must have the same shape, got ", shape_str(a.shape),
               " and ", shape_str(b.shape));
}
void check_shape(const Tensor& t, const Shape& s, const char* what) {
  VITRIM_CHECK(t.shape == s, Shape, what, " must have shape ", shape_str(s), ", got ", shape_str(t.shape));
}
void check_f32_cpu(const Tensor& t, const char* what) {
  check_cpu(t, what);
  check_dtype(t, DType::F32, what);
}

void check_device(const Tensor& t, Device d, const char* what) {
  VITRIM_CHECK(t.storage != nullptr, Disposed, what, " has no storage (disposed?)");
  VITRIM_CHECK(t.device() == d, Device, what, " is on ", device_name(t.device()), "; this op runs on ",
               device_name(d));
}

}  // namespace vitrim
