// Test helper for tests/python/test_volume_readback.py: writes an output with the volume store
// (a known pattern, chunk by chunk) or reads one box of any volume to a raw float32 file, so
// that zarr-python and h5py can check our files and we can check theirs.
//
//   volume_store_tool write SPEC C,Z,X,Y CZ,CX,CY f4|u1 none|zlib:LEVEL|blosc:CNAME:CLEVEL:SHUFFLE
//   volume_store_tool read SPEC Z0,X0,Y0,DZ,DX,DY error|zero|mirror 255|asis OUT.f32
// `read` prints "c z x y dtype" of the volume. Exit status 0 on success, 1 with the error.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "engine/io/volume_store.h"

namespace elektronn {
namespace {

std::vector<int64_t> Ints(const std::string& s) {
  std::vector<int64_t> out;
  for (absl::string_view p : absl::StrSplit(s, ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(p, &v)) return {};
    out.push_back(v);
  }
  return out;
}

// The pattern the Python test expects: (c*37 + z*131 + x*17 + y*3) % 256, as uint8 or /255.
int Pattern(int64_t c, int64_t z, int64_t x, int64_t y) {
  return static_cast<int>((c * 37 + z * 131 + x * 17 + y * 3) % 256);
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "%s\n", s.ToString().c_str());
  return 1;
}

int Write(char** argv) {
  const std::vector<int64_t> shape = Ints(argv[3]), chunk = Ints(argv[4]);
  if (shape.size() != 4 || chunk.size() != 3) return Fail(absl::InvalidArgumentError("shape"));
  VolumeWriterOptions o;
  o.shape = {shape[0], shape[1], shape[2], shape[3]};
  o.chunk = {chunk[0], chunk[1], chunk[2]};
  o.dtype = std::string(argv[5]) == "u1" ? VolumeDtype::kUint8 : VolumeDtype::kFloat32;
  o.offset = {1, 2, 3};
  o.model = "m.mdl";
  o.fingerprint = "fingerprint from the tool";
  const std::vector<std::string> comp = absl::StrSplit(argv[6], ':');
  if (comp[0] == "zlib") {
    o.compression.kind = Compression::Kind::kZlib;
    o.compression.level = std::stoi(comp.at(1));
  } else if (comp[0] == "blosc") {
    o.compression.kind = Compression::Kind::kBlosc;
    o.compression.blosc_cname = comp.at(1);
    o.compression.level = std::stoi(comp.at(2));
    o.compression.blosc_shuffle = comp.at(3) == "1";
  }
  auto w = VolumeWriter::Open(argv[2], o);
  if (!w.ok()) return Fail(w.status());
  for (int64_t iz = 0; iz < (*w)->grid()[0]; ++iz) {
    for (int64_t ix = 0; ix < (*w)->grid()[1]; ++ix) {
      for (int64_t iy = 0; iy < (*w)->grid()[2]; ++iy) {
        const Box b = (*w)->ChunkBox({iz, ix, iy});
        std::vector<uint8_t> u;
        std::vector<float> f;
        for (int64_t c = 0; c < o.shape.c; ++c)
          for (int64_t z = b.z0; z < b.z0 + b.dz; ++z)
            for (int64_t x = b.x0; x < b.x0 + b.dx; ++x)
              for (int64_t y = b.y0; y < b.y0 + b.dy; ++y) {
                u.push_back(static_cast<uint8_t>(Pattern(c, z, x, y)));
                f.push_back(static_cast<float>(Pattern(c, z, x, y)) / 255.f);
              }
        absl::Status s = o.dtype == VolumeDtype::kUint8
                             ? (*w)->WriteChunk({iz, ix, iy}, absl::Span<const uint8_t>(u))
                             : (*w)->WriteChunk({iz, ix, iy}, absl::Span<const float>(f));
        if (!s.ok()) return Fail(s);
      }
    }
  }
  return 0;
}

int Read(char** argv) {
  const std::vector<int64_t> b = Ints(argv[3]);
  if (b.size() != 6) return Fail(absl::InvalidArgumentError("box"));
  const std::string pad = argv[4];
  VolumeReaderOptions ro;
  ro.integers = std::string(argv[5]) == "asis" ? IntegerValues::kAsIs : IntegerValues::kDivideBy255;
  auto r = VolumeReader::Open(argv[2], ro);
  if (!r.ok()) return Fail(r.status());
  const VolumeShape& s = (*r)->shape();
  const Box box{b[0], b[1], b[2], b[3], b[4], b[5]};
  std::vector<float> out(static_cast<size_t>(s.c * box.voxels()));
  absl::Status st = (*r)->Read(box,
                               pad == "mirror" ? PadMode::kMirror
                               : pad == "zero" ? PadMode::kZero
                                               : PadMode::kError,
                               out.data());
  if (!st.ok()) return Fail(st);
  std::ofstream(argv[6], std::ios::binary)
      .write(reinterpret_cast<const char*>(out.data()),
             static_cast<std::streamsize>(out.size() * sizeof(float)));
  std::printf("%ld %ld %ld %ld %s\n", static_cast<long>(s.c), static_cast<long>(s.z),
              static_cast<long>(s.x), static_cast<long>(s.y),
              std::string(DtypeName((*r)->dtype())).c_str());
  return 0;
}

}  // namespace
}  // namespace elektronn

int main(int argc, char** argv) {
  if (argc == 7 && std::strcmp(argv[1], "write") == 0) return elektronn::Write(argv);
  if (argc == 7 && std::strcmp(argv[1], "read") == 0) return elektronn::Read(argv);
  std::fprintf(stderr, "usage: see the top of volume_store_tool.cc\n");
  return 2;
}
