#include "tensor_maps.h"

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "launch_errors.h"

namespace ffi = xla::ffi;

namespace jtile {
namespace {

struct DataTypeInfo {
  const char* name;
  int64_t bytes;
};

// CUtensorMapDataType values 0..12, the whole-byte types. The packed
// sub-byte types (13..15) follow other rules and jtile never emits them.
constexpr DataTypeInfo kDataTypes[] = {
    {"UINT8", 1},   {"UINT16", 2},       {"UINT32", 4},   {"INT32", 4},
    {"UINT64", 8},  {"INT64", 8},        {"FLOAT16", 2},  {"FLOAT32", 4},
    {"FLOAT64", 8}, {"BFLOAT16", 2},     {"FLOAT32_FTZ", 4},
    {"TFLOAT32", 4}, {"TFLOAT32_FTZ", 4},
};
constexpr int64_t kNumDataTypes = sizeof(kDataTypes) / sizeof(kDataTypes[0]);

// Bytes of one swizzle span, by CUtensorMapSwizzle value (0: no swizzle).
constexpr int64_t kSwizzleSpan[] = {0, 32, 64, 128};
constexpr const char* kSwizzleName[] = {"none", "32B", "64B", "128B"};

constexpr int64_t kMaxDim = int64_t{1} << 31;
constexpr int64_t kMaxStride = int64_t{1} << 40;
constexpr int64_t kMaxBox = 256;
constexpr int64_t kMaxElementStride = 8;

std::atomic<uint64_t> encode_count{0};

template <size_t N>
std::string List(const std::array<int64_t, N>& values, int64_t count) {
  std::string out = "[";
  for (int64_t i = 0; i < count; ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(values[i]);
  }
  return out + "]";
}

bool KnownDataType(int64_t dtype) { return dtype >= 0 && dtype < kNumDataTypes; }
bool KnownSwizzle(int64_t swizzle) { return swizzle >= 0 && swizzle <= 3; }

ffi::Error RecordError(std::string_view kernel_name, size_t index,
                       const TensorMapRecord& record, const std::string& rule) {
  return InvalidArgument(kernel_name, DescribeTensorMap(index, record, nullptr) +
                                          ": " + rule);
}

ffi::Error CheckRecord(std::string_view kernel_name, size_t index,
                       const TensorMapRecord& r, int64_t num_buffers) {
  if (r.rank < 1 || r.rank > kMaxTensorMapRank) {
    return RecordError(kernel_name, index, r,
                       "rank " + std::to_string(r.rank) +
                           " is outside 1..5, the ranks TMA supports");
  }
  if (!KnownDataType(r.dtype)) {
    return RecordError(kernel_name, index, r,
                       "data type " + std::to_string(r.dtype) +
                           " is not a CUtensorMapDataType of whole bytes "
                           "(0..12)");
  }
  if (r.param < 0 || (num_buffers >= 0 && r.param >= num_buffers)) {
    return RecordError(
        kernel_name, index, r,
        "buffer index " + std::to_string(r.param) +
            " does not name one of the kernel's " +
            std::to_string(num_buffers) + " buffers (inputs then outputs)");
  }
  if (r.interleave != 0) {
    return RecordError(kernel_name, index, r,
                       "interleaved layouts are not supported; interleave "
                       "must be 0 (none)");
  }
  if (!KnownSwizzle(r.swizzle)) {
    return RecordError(kernel_name, index, r,
                       "swizzle " + std::to_string(r.swizzle) +
                           " is not 0 (none), 1 (32B), 2 (64B) or 3 (128B)");
  }
  if (r.l2_promotion < 0 || r.l2_promotion > 3) {
    return RecordError(kernel_name, index, r,
                       "L2 promotion " + std::to_string(r.l2_promotion) +
                           " is not 0 (none), 1 (64B), 2 (128B) or 3 (256B)");
  }
  const int64_t element_bytes = kDataTypes[r.dtype].bytes;
  for (int64_t i = 0; i < r.rank; ++i) {
    if (r.dims[i] < 1 || r.dims[i] > kMaxDim) {
      return RecordError(kernel_name, index, r,
                         "dimension " + std::to_string(i) + " has extent " +
                             std::to_string(r.dims[i]) +
                             "; global dims must be in 1..2^31");
    }
    if (r.box[i] < 1 || r.box[i] > kMaxBox) {
      return RecordError(kernel_name, index, r,
                         "box dimension " + std::to_string(i) + " is " +
                             std::to_string(r.box[i]) +
                             "; box dims must be in 1..256");
    }
    if (r.element_strides[i] < 1 ||
        r.element_strides[i] > kMaxElementStride) {
      return RecordError(kernel_name, index, r,
                         "element stride " + std::to_string(i) + " is " +
                             std::to_string(r.element_strides[i]) +
                             "; element strides must be in 1..8");
    }
  }
  for (int64_t i = 0; i + 1 < r.rank; ++i) {
    const int64_t stride = r.strides[i];
    if (stride <= 0 || stride % 16 != 0 || stride >= kMaxStride) {
      return RecordError(kernel_name, index, r,
                         "the byte stride of dimension " +
                             std::to_string(i + 1) + " is " +
                             std::to_string(stride) +
                             "; global strides must be positive multiples of "
                             "16 bytes below 2^40");
    }
  }
  const int64_t inner_box_bytes = r.box[0] * element_bytes;
  if (inner_box_bytes % 16 != 0) {
    return RecordError(kernel_name, index, r,
                       "the inner box dimension is " +
                           std::to_string(inner_box_bytes) +
                           " bytes; it must be a multiple of 16 bytes");
  }
  if (r.swizzle != 0 && inner_box_bytes > kSwizzleSpan[r.swizzle]) {
    return RecordError(kernel_name, index, r,
                       "the inner box dimension is " +
                           std::to_string(inner_box_bytes) +
                           " bytes, more than the " +
                           kSwizzleName[r.swizzle] + " swizzle span");
  }
  return ffi::Error::Success();
}

}  // namespace

std::string DescribeTensorMap(size_t index, const TensorMapRecord& r,
                              const void* address) {
  const int64_t rank =
      r.rank >= 1 && r.rank <= kMaxTensorMapRank ? r.rank : kMaxTensorMapRank;
  std::string out = "tensor map " + std::to_string(index) + " (buffer " +
                    std::to_string(r.param);
  if (address != nullptr) {
    char text[32];
    std::snprintf(text, sizeof(text), " at %p", address);
    out += text;
  }
  out += ", ";
  out += KnownDataType(r.dtype) ? kDataTypes[r.dtype].name
                                : "dtype " + std::to_string(r.dtype);
  out += ", rank " + std::to_string(r.rank);
  out += ", dims " + List(r.dims, rank);
  out += ", byte strides " + List(r.strides, rank - 1);
  out += ", box " + List(r.box, rank);
  out += ", swizzle ";
  out += KnownSwizzle(r.swizzle) ? kSwizzleName[r.swizzle]
                                 : std::to_string(r.swizzle);
  return out + ")";
}

ffi::ErrorOr<std::vector<TensorMapRecord>> ParseTensorMapRecords(
    std::string_view kernel_name, ffi::Span<const int64_t> flat,
    int64_t num_buffers) {
  if (flat.size() % kTensorMapRecordLength != 0) {
    return ffi::Unexpected(InvalidArgument(
        kernel_name, "the tensor_maps attribute holds " +
                         std::to_string(flat.size()) +
                         " values, not a multiple of the record length " +
                         std::to_string(kTensorMapRecordLength)));
  }
  std::vector<TensorMapRecord> records(flat.size() / kTensorMapRecordLength);
  const int64_t* v = flat.begin();
  for (size_t index = 0; index < records.size(); ++index) {
    TensorMapRecord& r = records[index];
    r.param = *v++;
    r.dtype = *v++;
    r.rank = *v++;
    r.swizzle = *v++;
    r.l2_promotion = *v++;
    r.interleave = *v++;
    for (int64_t& x : r.dims) x = *v++;
    for (int64_t& x : r.strides) x = *v++;
    for (int64_t& x : r.box) x = *v++;
    for (int64_t& x : r.element_strides) x = *v++;
    if (ffi::Error error = CheckRecord(kernel_name, index, r, num_buffers);
        !error.success()) {
      return ffi::Unexpected(std::move(error));
    }
  }
  return records;
}

ffi::Error EncodeTensorMap(const Driver& driver, std::string_view kernel_name,
                           size_t index, const TensorMapRecord& r,
                           void* address, CUtensorMap* out) {
  if (reinterpret_cast<uintptr_t>(address) % 16 != 0) {
    return InvalidArgument(kernel_name,
                           DescribeTensorMap(index, r, address) +
                               ": the global address must be 16-byte aligned");
  }
  cuuint64_t dims[kMaxTensorMapRank];
  cuuint64_t strides[kMaxTensorMapRank - 1];
  cuuint32_t box[kMaxTensorMapRank];
  cuuint32_t element_strides[kMaxTensorMapRank];
  for (int i = 0; i < kMaxTensorMapRank; ++i) {
    dims[i] = static_cast<cuuint64_t>(r.dims[i]);
    box[i] = static_cast<cuuint32_t>(r.box[i]);
    element_strides[i] = static_cast<cuuint32_t>(r.element_strides[i]);
    if (i < kMaxTensorMapRank - 1) {
      strides[i] = static_cast<cuuint64_t>(r.strides[i]);
    }
  }
  encode_count.fetch_add(1, std::memory_order_relaxed);
  CUresult result = driver.TensorMapEncodeTiled(
      out, static_cast<CUtensorMapDataType>(r.dtype),
      static_cast<cuuint32_t>(r.rank), address, dims, strides, box,
      element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
      static_cast<CUtensorMapSwizzle>(r.swizzle),
      static_cast<CUtensorMapL2promotion>(r.l2_promotion),
      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (result != CUDA_SUCCESS) {
    return InvalidArgument(
        kernel_name,
        DescribeTensorMap(index, r, address) +
            ": cuTensorMapEncodeTiled failed: " +
            DescribeResult(driver, result) +
            "; the rules: global address 16-byte aligned, byte strides "
            "multiples of 16 and each at least the previous dimension's "
            "extent, box dims <= 256, inner box bytes a multiple of 16 and "
            "<= the swizzle span");
  }
  return ffi::Error::Success();
}

uint64_t TensorMapEncodeCount() {
  return encode_count.load(std::memory_order_relaxed);
}

}  // namespace jtile
