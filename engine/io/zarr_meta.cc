// Zarr v2 metadata (`.zarray`) and the chunk codecs: raw, zlib, gzip and blosc.
#include <blosc.h>
#include <zlib.h>

#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/core/status.h"
#include "engine/io/zarr.h"

namespace elektronn {
namespace {

using Json = nlohmann::json;

absl::Status Bad(const std::string& where, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrFormat("Zarr array '%s': %s", where, what));
}

}  // namespace
absl::StatusOr<ZarrArrayMeta> ParseZarrArrayMeta(std::string_view text, const std::string& where) {
  const Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Bad(where, ".zarray is not a JSON object");
  ZarrArrayMeta m;
  if (j.value("zarr_format", 0) != 2) {
    return Bad(where, absl::StrFormat("zarr_format %s; only Zarr v2 is supported",
                                      j.contains("zarr_format") ? j["zarr_format"].dump() : "?"));
  }
  auto ints = [&](const char* key, std::vector<int64_t>* out) -> absl::Status {
    if (!j.contains(key) || !j[key].is_array()) return Bad(where, absl::StrCat("no '", key, "'"));
    for (const Json& v : j[key]) {
      if (!v.is_number_integer()) return Bad(where, absl::StrCat("'", key, "' ", j[key].dump()));
      out->push_back(v.get<int64_t>());
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(ints("shape", &m.shape));
  RETURN_IF_ERROR(ints("chunks", &m.chunks));
  const size_t r = m.shape.size();
  if (r < 2 || r > 4 || m.chunks.size() != r) {
    return Bad(where, absl::StrFormat("shape %s with chunks %s; expected rank 2 (x,y), 3 (z,x,y) "
                                      "or 4 (c,z,x,y) with one chunk size per axis",
                                      j["shape"].dump(), j["chunks"].dump()));
  }
  for (size_t a = 0; a < r; ++a) {
    if (m.shape[a] <= 0 || m.chunks[a] <= 0) {
      return Bad(where, absl::StrFormat("shape %s, chunks %s: every size must be positive",
                                        j["shape"].dump(), j["chunks"].dump()));
    }
  }
  const std::string dtype = j.contains("dtype") && j["dtype"].is_string() ? j["dtype"] : "";
  if (dtype == "|u1" || dtype == "<u1") {
    m.dtype = VolumeDtype::kUint8;
  } else if (dtype == "<u2") {
    m.dtype = VolumeDtype::kUint16;
  } else if (dtype == "<f4") {
    m.dtype = VolumeDtype::kFloat32;
  } else if (dtype == "<f8") {
    m.dtype = VolumeDtype::kFloat64;
  } else {
    return Bad(where, absl::StrFormat("dtype %s is not supported; supported: |u1 (uint8), <u2 "
                                      "(uint16), <f4 (float32), <f8 (float64), little-endian",
                                      j.contains("dtype") ? j["dtype"].dump() : "(none)"));
  }
  if (j.value("order", "") != "C") {
    return Bad(where, absl::StrFormat("order %s; only C order is supported",
                                      j.contains("order") ? j["order"].dump() : "(none)"));
  }
  if (j.contains("filters") && !j["filters"].is_null() &&
      !(j["filters"].is_array() && j["filters"].empty())) {
    return Bad(where,
               absl::StrFormat("filters %s are not supported; expected null", j["filters"].dump()));
  }
  const Json fill = j.value("fill_value", Json());
  if (fill.is_number()) {
    m.fill_value = fill.get<double>();
  } else if (fill.is_string()) {
    const std::string f = fill;
    m.fill_value = f == "NaN"        ? std::numeric_limits<double>::quiet_NaN()
                   : f == "Infinity" ? std::numeric_limits<double>::infinity()
                                     : -std::numeric_limits<double>::infinity();
  }
  const std::string sep = j.value("dimension_separator", ".");
  if (sep != "." && sep != "/") {
    return Bad(where, absl::StrFormat("dimension_separator '%s'; expected '.' or '/'", sep));
  }
  m.separator = sep[0];
  const Json comp = j.value("compressor", Json());
  m.compressor_json = comp.dump();
  const std::string id = comp.is_object() ? comp.value("id", "") : "";
  if (comp.is_null()) {
    m.codec = ZarrArrayMeta::Codec::kNone;
  } else if (id == "zlib") {
    m.codec = ZarrArrayMeta::Codec::kZlib;
  } else if (id == "gzip") {
    m.codec = ZarrArrayMeta::Codec::kGzip;
  } else if (id == "blosc") {
    m.codec = ZarrArrayMeta::Codec::kBlosc;
  } else {
    return Bad(where, absl::StrFormat("compressor %s is not supported; supported: null, zlib, "
                                      "gzip, blosc",
                                      comp.dump()));
  }
  return m;
}

absl::StatusOr<std::string> EncodeZarrChunk(const Compression& c, const void* data, size_t bytes,
                                            size_t typesize) {
  switch (c.kind) {
    case Compression::Kind::kNone:
      return std::string(static_cast<const char*>(data), bytes);
    case Compression::Kind::kZlib: {
      uLongf n = compressBound(bytes);
      std::string out(n, '\0');
      if (compress2(reinterpret_cast<Bytef*>(out.data()), &n, static_cast<const Bytef*>(data),
                    bytes, c.level) != Z_OK) {
        return absl::InternalError(absl::StrFormat("zlib cannot compress %d bytes", bytes));
      }
      out.resize(n);
      return out;
    }
    case Compression::Kind::kBlosc: {
      std::string out(bytes + BLOSC_MAX_OVERHEAD, '\0');
      const int n = blosc_compress_ctx(c.level, c.blosc_shuffle ? BLOSC_SHUFFLE : BLOSC_NOSHUFFLE,
                                       typesize, bytes, data, out.data(), out.size(),
                                       c.blosc_cname.c_str(), /*blocksize=*/0,
                                       /*numinternalthreads=*/1);
      if (n <= 0) {
        return absl::InternalError(
            absl::StrFormat("blosc (%s) cannot compress %d bytes", c.blosc_cname, bytes));
      }
      out.resize(n);
      return out;
    }
  }
  return absl::InternalError("unknown compression");
}

absl::Status DecodeZarrChunk(ZarrArrayMeta::Codec codec, std::string_view in, void* out,
                             size_t bytes, const std::string& where) {
  auto corrupt = [&](const std::string& why) {
    return absl::DataLossError(absl::StrFormat("Zarr chunk '%s': %s", where, why));
  };
  switch (codec) {
    case ZarrArrayMeta::Codec::kNone:
      if (in.size() != bytes) {
        return corrupt(
            absl::StrFormat("holds %d bytes; the chunk shape needs %d", in.size(), bytes));
      }
      std::memcpy(out, in.data(), bytes);
      return absl::OkStatus();
    case ZarrArrayMeta::Codec::kZlib:
    case ZarrArrayMeta::Codec::kGzip: {
      z_stream zs{};
      if (inflateInit2(&zs, 15 + 32) != Z_OK) return corrupt("zlib cannot start");  // zlib|gzip
      zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
      zs.avail_in = static_cast<uInt>(in.size());
      zs.next_out = static_cast<Bytef*>(out);
      zs.avail_out = static_cast<uInt>(bytes);
      const int r = inflate(&zs, Z_FINISH);
      const size_t got = zs.total_out;
      inflateEnd(&zs);
      if (r != Z_STREAM_END || got != bytes) {
        return corrupt(absl::StrFormat("zlib/gzip data does not decode to %d bytes (%s)", bytes,
                                       zs.msg != nullptr ? zs.msg : "truncated or too long"));
      }
      return absl::OkStatus();
    }
    case ZarrArrayMeta::Codec::kBlosc: {
      size_t nbytes = 0;
      if (blosc_cbuffer_validate(in.data(), in.size(), &nbytes) != 0 || nbytes != bytes) {
        return corrupt(absl::StrFormat("not a blosc buffer of %d bytes", bytes));
      }
      if (blosc_decompress_ctx(in.data(), out, bytes, 1) != static_cast<int>(bytes)) {
        return corrupt("blosc cannot decompress it");
      }
      return absl::OkStatus();
    }
  }
  return corrupt("unknown codec");
}

}  // namespace elektronn
