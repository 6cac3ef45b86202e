// Zarr v2 arrays as volume stores: `.zarray` metadata, the raw/zlib/gzip/blosc chunk codecs, and
// the reader and crash-safe writer behind VolumeReader/VolumeWriter (see volume_store.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/io/volume_store.h"

namespace elektronn {

// The parts of a `.zarray` we use. Arrays of rank 2..4 map onto (c,z,x,y) as described in
// volume_store.h.
struct ZarrArrayMeta {
  std::vector<int64_t> shape;
  std::vector<int64_t> chunks;
  VolumeDtype dtype = VolumeDtype::kFloat32;
  double fill_value = 0;
  // The compressor object as stored ("null" when none), and what it decodes as.
  std::string compressor_json = "null";
  enum class Codec { kNone, kZlib, kGzip, kBlosc };
  Codec codec = Codec::kNone;
  char separator = '.';
};

// Parses `.zarray` text; errors name `where` and what would be valid (zarr_format 2, order "C",
// no filters, little-endian uint8/uint16/float32/float64, compressor null/zlib/gzip/blosc).
absl::StatusOr<ZarrArrayMeta> ParseZarrArrayMeta(std::string_view json, const std::string& where);

// Chunk codecs. `typesize` is the element size (blosc shuffles by it).
absl::StatusOr<std::string> EncodeZarrChunk(const Compression& compression, const void* data,
                                            size_t bytes, size_t typesize);
absl::Status DecodeZarrChunk(ZarrArrayMeta::Codec codec, std::string_view encoded, void* out,
                             size_t bytes, const std::string& where);

absl::StatusOr<std::unique_ptr<VolumeReader>> OpenZarrReader(const VolumeLocation& location,
                                                             const VolumeReaderOptions& options);
// `options` are validated by VolumeWriter::Open (chunk already cut to the shape).
absl::StatusOr<std::unique_ptr<VolumeWriter>> OpenZarrWriter(const VolumeLocation& location,
                                                             const VolumeWriterOptions& options);

}  // namespace elektronn
