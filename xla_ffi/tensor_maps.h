// TMA tensor maps: the static records the custom call carries, and their
// encoding into CUtensorMaps from the buffer addresses of one launch.
//
// The record layout is the contract with jtile.codegen.TensorMapSpec.record():
// RECORD_LENGTH = 25 int64 values,
//   param, dtype, rank, swizzle, l2_promotion, interleave,
//   dims[5], strides[4] (bytes, dimensions 1..4), box[5], element_strides[5],
// every array innermost dimension first and zero-padded past `rank`.

#ifndef JTILE_XLA_FFI_TENSOR_MAPS_H_
#define JTILE_XLA_FFI_TENSOR_MAPS_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <cuda.h>

#include "driver.h"
#include "xla/ffi/api/ffi.h"

namespace jtile {

constexpr size_t kTensorMapRecordLength = 25;
constexpr int kMaxTensorMapRank = 5;

// The kernel receives each CUtensorMap by value; the driver copies parameter
// values at launch, but reads them from host memory that must keep the
// descriptor's own alignment.
static_assert(alignof(CUtensorMap) >= 64,
              "CUtensorMap must be 64-byte aligned in host memory");

struct TensorMapRecord {
  int64_t param = 0;
  int64_t dtype = 0;
  int64_t rank = 0;
  int64_t swizzle = 0;
  int64_t l2_promotion = 0;
  int64_t interleave = 0;
  std::array<int64_t, kMaxTensorMapRank> dims{};
  std::array<int64_t, kMaxTensorMapRank - 1> strides{};
  std::array<int64_t, kMaxTensorMapRank> box{};
  std::array<int64_t, kMaxTensorMapRank> element_strides{};
};

// Splits the flat `tensor_maps` attribute into records and checks every rule
// that does not depend on a buffer address: rank, data type, dims, strides,
// box, element strides, swizzle and L2 promotion values, the inner box size,
// and (when num_buffers >= 0) that `param` names one of the kernel's buffers.
xla::ffi::ErrorOr<std::vector<TensorMapRecord>> ParseTensorMapRecords(
    std::string_view kernel_name, xla::ffi::Span<const int64_t> flat,
    int64_t num_buffers);

// Encodes one record for the buffer at `address` with cuTensorMapEncodeTiled
// (interleave none, out-of-bounds elements filled with zeros).
xla::ffi::Error EncodeTensorMap(const Driver& driver,
                                std::string_view kernel_name, size_t index,
                                const TensorMapRecord& record, void* address,
                                CUtensorMap* out);

// "tensor map 0 (buffer 1 at 0x..., FLOAT16, dims [..], byte strides [..],
// box [..], swizzle 128B)", for error messages.
std::string DescribeTensorMap(size_t index, const TensorMapRecord& record,
                              const void* address);

// How many tensor maps this process has encoded, for tests of the cache.
uint64_t TensorMapEncodeCount();

}  // namespace jtile

#endif  // JTILE_XLA_FFI_TENSOR_MAPS_H_
