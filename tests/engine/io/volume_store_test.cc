// Volume stores: spec parsing, padded box reads (exact mirror indices), round trips for every
// format x dtype x compressor, crash-resume (killed processes) and the errors users see.
#include "engine/io/volume_store.h"

#include <gtest/gtest.h>
#include <hdf5.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>

#include "engine/io/hdf5_store.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string t = (fs::temp_directory_path() / "elk_volume_XXXXXX").string();
    path_ = ::mkdtemp(t.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// An integer pattern in [0,255]: exact as uint8 and, divided by 255, as float32.
int Pattern(int64_t c, int64_t z, int64_t x, int64_t y) {
  return static_cast<int>((c * 37 + z * 131 + x * 17 + y * 3) % 256);
}

// Writes an HDF5 dataset with the C API (types and ranks our writer never makes).
void WriteH5(const std::string& file, const std::string& key, std::vector<hsize_t> dims, hid_t type,
             const void* data) {
  hid_t f = fs::exists(file) ? H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT)
                             : H5Fcreate(file.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t d = H5Dcreate2(f, key.c_str(), type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(d, 0);
  ASSERT_GE(H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), 0);
  H5Dclose(d);
  H5Pclose(lcpl);
  H5Sclose(space);
  H5Fclose(f);
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// Fills every chunk of `w` not yet done with the pattern (uint8, or float32 = pattern/255).
absl::Status FillChunks(VolumeWriter& w) {
  const VolumeShape& s = w.options().shape;
  for (int64_t iz = 0; iz < w.grid()[0]; ++iz) {
    for (int64_t ix = 0; ix < w.grid()[1]; ++ix) {
      for (int64_t iy = 0; iy < w.grid()[2]; ++iy) {
        const ChunkIndex i{iz, ix, iy};
        if (w.IsDone(i)) continue;
        const Box b = w.ChunkBox(i);
        std::vector<uint8_t> u;
        std::vector<float> f;
        for (int64_t c = 0; c < s.c; ++c)
          for (int64_t z = 0; z < b.dz; ++z)
            for (int64_t x = 0; x < b.dx; ++x)
              for (int64_t y = 0; y < b.dy; ++y) {
                const int v = Pattern(c, b.z0 + z, b.x0 + x, b.y0 + y);
                u.push_back(static_cast<uint8_t>(v));
                f.push_back(static_cast<float>(v) / 255.f);
              }
        absl::Status st = w.options().dtype == VolumeDtype::kUint8
                              ? w.WriteChunk(i, absl::Span<const uint8_t>(u))
                              : w.WriteChunk(i, absl::Span<const float>(f));
        if (!st.ok()) return st;
      }
    }
  }
  return absl::OkStatus();
}

std::vector<float> ReadAll(const VolumeReader& r) {
  const VolumeShape& s = r.shape();
  std::vector<float> out(static_cast<size_t>(s.values()), -1.f);
  EXPECT_TRUE(r.Read({0, 0, 0, s.z, s.x, s.y}, PadMode::kError, out.data()).ok());
  return out;
}

// The expected value read at volume index (c,z,x,y) (integers as is or divided by 255).
float Expected(int64_t c, int64_t z, int64_t x, int64_t y, bool divide) {
  const int v = Pattern(c, z, x, y);
  return divide ? static_cast<float>(v) / 255.f : static_cast<float>(v);
}

TEST(VolumeSpecTest, ParsesHdf5AndZarrSpecs) {
  auto h = ParseVolumeSpec("data/raw.h5:/raw");
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->format, VolumeLocation::Format::kHdf5);
  EXPECT_EQ(h->path, "data/raw.h5");
  EXPECT_EQ(h->dataset, "raw");
  EXPECT_EQ(ParseVolumeSpec("raw.h5:raw")->dataset, "raw");
  EXPECT_EQ(ParseVolumeSpec("x.HDF5:/g/raw")->dataset, "g/raw");
  auto z = ParseVolumeSpec("out/pred.zarr/");
  ASSERT_TRUE(z.ok());
  EXPECT_EQ(z->format, VolumeLocation::Format::kZarr);
  EXPECT_EQ(z->path, "out/pred.zarr");
  EXPECT_EQ(ParseVolumeSpec("g.zarr/a/b")->path, "g.zarr/a/b");
  // An existing file without an HDF5 extension is HDF5 too.
  TempDir dir;
  WriteText(dir / "volume", "x");
  EXPECT_EQ(ParseVolumeSpec(dir / "volume:raw")->format, VolumeLocation::Format::kHdf5);

  auto no_ds = ParseVolumeSpec("raw.h5");
  EXPECT_EQ(no_ds.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(no_ds.status().message().find("raw.h5:/raw"), std::string::npos) << no_ds.status();
  EXPECT_FALSE(ParseVolumeSpec("raw.h5:/").ok());
  EXPECT_FALSE(ParseVolumeSpec("").ok());
}

TEST(MirrorIndexTest, MatchesNumpySymmetricPadding) {
  // numpy.pad(np.arange(5), 12, 'symmetric'): index -12 .. 16.
  const std::vector<int64_t> want5 = {1, 0, 0, 1, 2, 3, 4, 4, 3, 2, 1, 0, 0, 1, 2,
                                      3, 4, 4, 3, 2, 1, 0, 0, 1, 2, 3, 4, 4, 3};
  for (int64_t i = -12; i <= 16; ++i) EXPECT_EQ(MirrorIndex(i, 5), want5[i + 12]) << i;
  // numpy.pad(np.arange(2), 5, 'symmetric') and a single sample.
  const std::vector<int64_t> want2 = {0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1};
  for (int64_t i = -5; i <= 6; ++i) EXPECT_EQ(MirrorIndex(i, 2), want2[i + 5]) << i;
  for (int64_t i = -3; i <= 3; ++i) EXPECT_EQ(MirrorIndex(i, 1), 0);
}

// A (1,1,1,5) volume holding 1..5 along y: the exact samples each padding mode reads.
TEST(VolumeReaderTest, PaddingReadsTheExactSamples) {
  TempDir dir;
  const float v[5] = {1, 2, 3, 4, 5};
  WriteH5(dir / "line.h5", "line", {1, 5}, H5T_NATIVE_FLOAT, v);
  auto r = VolumeReader::Open(dir / "line.h5:/line");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->shape(), (VolumeShape{1, 1, 1, 5}));
  std::vector<float> out(11);
  const Box box{0, 0, -3, 1, 1, 11};
  ASSERT_TRUE((*r)->Read(box, PadMode::kMirror, out.data()).ok());
  EXPECT_EQ(out, (std::vector<float>{3, 2, 1, 1, 2, 3, 4, 5, 5, 4, 3}));
  ASSERT_TRUE((*r)->Read(box, PadMode::kZero, out.data()).ok());
  EXPECT_EQ(out, (std::vector<float>{0, 0, 0, 1, 2, 3, 4, 5, 0, 0, 0}));
  // z and x reach outside too (a single slice mirrors onto itself).
  std::vector<float> out3(3 * 2 * 2);
  ASSERT_TRUE((*r)->Read({-1, -1, 3, 3, 2, 2}, PadMode::kMirror, out3.data()).ok());
  for (int k = 0; k < 6; ++k) {
    EXPECT_EQ(out3[2 * k], 4);
    EXPECT_EQ(out3[2 * k + 1], 5);
  }
  auto err = (*r)->Read(box, PadMode::kError, out.data());
  EXPECT_EQ(err.code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(err.message().find("line.h5:/line"), std::string::npos) << err;
}

// The store kinds a padded read is checked on: HDF5 uint16 (contiguous), HDF5 float32
// (chunked, our writer), Zarr uint8 with blosc, Zarr float32 with zlib.
enum class Source { kH5Uint16, kH5Float, kZarrUint8Blosc, kZarrFloatZlib };

class PaddedReadTest : public ::testing::TestWithParam<Source> {};

TEST_P(PaddedReadTest, BoxesAcrossChunkAndVolumeBordersMatchAReference) {
  TempDir dir;
  const VolumeShape s{2, 7, 9, 11};
  std::string spec;
  if (GetParam() == Source::kH5Uint16) {
    std::vector<uint16_t> data;
    for (int64_t c = 0; c < s.c; ++c)
      for (int64_t z = 0; z < s.z; ++z)
        for (int64_t x = 0; x < s.x; ++x)
          for (int64_t y = 0; y < s.y; ++y) data.push_back(Pattern(c, z, x, y));
    WriteH5(dir / "in.h5", "vol", {2, 7, 9, 11}, H5T_NATIVE_UINT16, data.data());
    spec = dir / "in.h5:/vol";
  } else {
    VolumeWriterOptions o;
    o.shape = s;
    o.chunk = {3, 4, 5};
    if (GetParam() == Source::kH5Float) {
      spec = dir / "in.h5:/vol";  // floats: pattern/255 as stored
    } else if (GetParam() == Source::kZarrUint8Blosc) {
      spec = dir / "in.zarr";
      o.dtype = VolumeDtype::kUint8;
      o.compression.kind = Compression::Kind::kBlosc;
    } else {
      spec = dir / "in.zarr";
      o.compression.kind = Compression::Kind::kZlib;
    }
    auto w = VolumeWriter::Open(spec, o);
    ASSERT_TRUE(w.ok()) << w.status();
    ASSERT_TRUE(FillChunks(**w).ok());
  }
  auto r = VolumeReader::Open(spec);  // integers divided by 255 (the default)
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ((*r)->shape(), s);
  // Inside; across chunk borders; across each volume border; far outside; larger than the
  // volume (mirrored more than once).
  const std::vector<Box> boxes = {{1, 2, 3, 4, 5, 6},    {2, 3, 4, 2, 2, 2},
                                  {-2, 0, 0, 4, 9, 11},  {5, 7, 9, 4, 4, 4},
                                  {-3, -4, -5, 3, 4, 5}, {0, -1, 10, 7, 11, 3},
                                  {20, 0, 0, 2, 2, 2},   {-9, -12, -13, 25, 33, 37}};
  for (const Box& b : boxes) {
    const bool inside = b.z0 >= 0 && b.x0 >= 0 && b.y0 >= 0 && b.z0 + b.dz <= s.z &&
                        b.x0 + b.dx <= s.x && b.y0 + b.dy <= s.y;
    for (PadMode pad : {PadMode::kError, PadMode::kZero, PadMode::kMirror}) {
      std::vector<float> out(static_cast<size_t>(s.c * b.voxels()), -7.f);
      absl::Status st = (*r)->Read(b, pad, out.data());
      if (pad == PadMode::kError && !inside) {
        EXPECT_EQ(st.code(), absl::StatusCode::kOutOfRange) << b.ToString();
        continue;
      }
      ASSERT_TRUE(st.ok()) << st << " " << b.ToString();
      size_t o = 0;
      for (int64_t c = 0; c < s.c; ++c)
        for (int64_t z = b.z0; z < b.z0 + b.dz; ++z)
          for (int64_t x = b.x0; x < b.x0 + b.dx; ++x)
            for (int64_t y = b.y0; y < b.y0 + b.dy; ++y, ++o) {
              // Reference mirror: reflect step by step as numpy's repeated padding does.
              auto reflect = [](int64_t i, int64_t n) {
                while (i < 0 || i >= n) i = i < 0 ? -i - 1 : 2 * n - 1 - i;
                return i;
              };
              const bool in = z >= 0 && z < s.z && x >= 0 && x < s.x && y >= 0 && y < s.y;
              const float want =
                  pad == PadMode::kZero && !in
                      ? 0.f
                      : Expected(c, reflect(z, s.z), reflect(x, s.x), reflect(y, s.y), true);
              ASSERT_EQ(out[o], want)
                  << b.ToString() << " c,z,x,y=" << c << "," << z << "," << x << "," << y;
            }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Stores, PaddedReadTest,
                         ::testing::Values(Source::kH5Uint16, Source::kH5Float,
                                           Source::kZarrUint8Blosc, Source::kZarrFloatZlib));

using RoundTripParam = std::tuple<std::string, VolumeDtype, Compression::Kind>;
class RoundTripTest : public ::testing::TestWithParam<RoundTripParam> {};

TEST_P(RoundTripTest, WritesEveryChunkAndReadsItBackExactly) {
  const auto [name, dtype, comp] = GetParam();
  TempDir dir;
  const std::string spec = dir / name;
  VolumeWriterOptions o;
  o.shape = {3, 10, 13, 9};
  o.chunk = {4, 5, 20};  // y cut to 9; border chunks in z and x
  o.dtype = dtype;
  o.compression.kind = comp;
  o.fingerprint = "fp";
  auto w = VolumeWriter::Open(spec, o);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->grid(), (std::array<int64_t, 3>{3, 3, 1}));
  EXPECT_EQ((*w)->ChunkBox({2, 2, 0}), (Box{8, 10, 0, 2, 3, 9}));
  ASSERT_TRUE(FillChunks(**w).ok());
  EXPECT_EQ((*w)->DoneChunks().size(), 9u);
  w->reset();

  VolumeReaderOptions ro;
  ro.integers = IntegerValues::kAsIs;
  auto r = VolumeReader::Open(spec, ro);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->shape(), o.shape);
  EXPECT_EQ((*r)->dtype(), dtype);
  EXPECT_EQ((*r)->chunk(), (VolumeShape{3, 4, 5, 9}));
  const std::vector<float> got = ReadAll(**r);
  size_t i = 0;
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t z = 0; z < 10; ++z)
      for (int64_t x = 0; x < 13; ++x)
        for (int64_t y = 0; y < 9; ++y, ++i) {
          ASSERT_EQ(got[i], Expected(c, z, x, y, dtype == VolumeDtype::kFloat32)) << i;
        }
}

INSTANTIATE_TEST_SUITE_P(
    Stores, RoundTripTest,
    ::testing::Values(RoundTripParam{"o.h5:/pred", VolumeDtype::kFloat32, Compression::Kind::kNone},
                      RoundTripParam{"o.h5:/g/pred", VolumeDtype::kUint8, Compression::Kind::kNone},
                      RoundTripParam{"o.zarr", VolumeDtype::kFloat32, Compression::Kind::kNone},
                      RoundTripParam{"o.zarr", VolumeDtype::kUint8, Compression::Kind::kNone},
                      RoundTripParam{"o.zarr", VolumeDtype::kFloat32, Compression::Kind::kZlib},
                      RoundTripParam{"o.zarr", VolumeDtype::kUint8, Compression::Kind::kZlib},
                      RoundTripParam{"o.zarr/a/pred", VolumeDtype::kFloat32,
                                     Compression::Kind::kBlosc},
                      RoundTripParam{"o.zarr", VolumeDtype::kUint8, Compression::Kind::kBlosc}));

VolumeWriterOptions ResumeOptions() {
  VolumeWriterOptions o;
  o.shape = {2, 9, 8, 7};
  o.chunk = {4, 4, 4};  // grid 3x2x2 = 12 chunks
  o.model = "m.mdl";
  o.fingerprint = "patch=(23,185,185) mfp=on";
  o.offset = {8, 42, 42};
  return o;
}

// Runs FillChunks in a child process that SIGKILLs itself at `step` of chunk number `kill_at`.
void WriteUntilKilled(const std::string& spec, VolumeWriterOptions o, int kill_at,
                      const std::string& step) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int seen = 0;
    o.test_hook = [&](std::string_view s) {
      if (s == step && seen++ == kill_at) ::raise(SIGKILL);
    };
    auto w = VolumeWriter::Open(spec, o);
    if (w.ok()) (void)FillChunks(**w);
    ::_exit(3);  // only reached when the kill did not happen
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
}

using CrashParam = std::tuple<std::string, std::string>;
class CrashResumeTest : public ::testing::TestWithParam<CrashParam> {};

TEST_P(CrashResumeTest, KilledRunResumesBitIdentical) {
  const auto [name, step] = GetParam();
  TempDir dir;
  const std::string spec = dir / name;
  const VolumeWriterOptions o = ResumeOptions();
  WriteUntilKilled(spec, o, /*kill_at=*/4, step);

  auto w = VolumeWriter::Open(spec, o);
  ASSERT_TRUE(w.ok()) << w.status();
  // Chunks 0..3 finished; chunk 4 counts only when the kill came after it was marked done.
  const size_t done = step == "chunk done" ? 5 : 4;
  const std::vector<ChunkIndex> got = (*w)->DoneChunks();
  ASSERT_EQ(got.size(), done);
  for (size_t k = 0; k < done; ++k) {
    EXPECT_EQ(got[k], (ChunkIndex{int64_t(k) / 4, (int64_t(k) / 2) % 2, int64_t(k) % 2}));
  }
  ASSERT_TRUE(FillChunks(**w).ok());
  EXPECT_EQ((*w)->DoneChunks().size(), 12u);
  w->reset();

  // The same run uninterrupted, elsewhere: every value identical.
  const std::string clean =
      name.find(".zarr") != std::string::npos ? dir / "clean.zarr" : dir / "clean.h5:/pred";
  auto c = VolumeWriter::Open(clean, o);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(FillChunks(**c).ok());
  c->reset();
  auto r1 = VolumeReader::Open(spec);
  auto r2 = VolumeReader::Open(clean);
  ASSERT_TRUE(r1.ok() && r2.ok());
  const std::vector<float> a = ReadAll(**r1), b = ReadAll(**r2);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  size_t i = 0;
  for (int64_t ch = 0; ch < 2; ++ch)
    for (int64_t z = 0; z < 9; ++z)
      for (int64_t x = 0; x < 8; ++x)
        for (int64_t y = 0; y < 7; ++y, ++i) ASSERT_EQ(a[i], Expected(ch, z, x, y, true));
}

INSTANTIATE_TEST_SUITE_P(Stores, CrashResumeTest,
                         ::testing::Combine(::testing::Values("out.zarr", "out.h5:/pred"),
                                            ::testing::Values("chunk data written", "chunk done")));

TEST(ResumeTest, ZarrLeftoverTemporaryChunkIsNotDone) {
  TempDir dir;
  const VolumeWriterOptions o = ResumeOptions();
  {
    auto w = VolumeWriter::Open(dir / "out.zarr", o);
    ASSERT_TRUE(w.ok());
    const Box b = (*w)->ChunkBox({0, 0, 0});
    std::vector<float> zeros(static_cast<size_t>(2 * b.voxels()), 0.f);
    ASSERT_TRUE((*w)->WriteChunk({0, 0, 0}, absl::Span<const float>(zeros)).ok());
  }
  WriteText(dir / "out.zarr/.0.0.1.1.partial", "torn");
  WriteText(dir / "out.zarr/0.0.1.1.partial", "torn");
  auto w = VolumeWriter::Open(dir / "out.zarr", o);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->DoneChunks(), (std::vector<ChunkIndex>{{0, 0, 0}}));
}

TEST(ResumeTest, Hdf5TornOrStaleProgressRecordsAreIgnored) {
  TempDir dir;
  const std::string spec = dir / "out.h5:/pred";
  const VolumeWriterOptions o = ResumeOptions();
  const std::string progress = Hdf5ProgressPath(*ParseVolumeSpec(spec));
  EXPECT_EQ(progress, dir / "out.h5.pred.progress");
  {
    auto w = VolumeWriter::Open(spec, o);
    ASSERT_TRUE(w.ok()) << w.status();
    const Box b = (*w)->ChunkBox({0, 1, 1});
    std::vector<float> v(static_cast<size_t>(2 * b.voxels()), 0.5f);
    ASSERT_TRUE((*w)->WriteChunk({0, 1, 1}, absl::Span<const float>(v)).ok());
  }
  std::ofstream(progress, std::ios::app) << "1 0 0 deadbeef\n2 1";  // bad CRC, then torn
  {
    auto w = VolumeWriter::Open(spec, o);
    ASSERT_TRUE(w.ok()) << w.status();
    EXPECT_EQ((*w)->DoneChunks(), (std::vector<ChunkIndex>{{0, 1, 1}}));
    ASSERT_TRUE(FillChunks(**w).ok());  // appends after the truncated tail
  }
  auto w = VolumeWriter::Open(spec, o);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->DoneChunks().size(), 12u);
  w->reset();
  // A new output of the same name, and the old sidecar still there (a crash between creating
  // the dataset and starting its sidecar): the old records are not the new output's.
  fs::copy_file(progress, dir / "old.progress");
  fs::remove(dir / "out.h5");
  {
    auto fresh = VolumeWriter::Open(spec, o);
    ASSERT_TRUE(fresh.ok()) << fresh.status();
    EXPECT_TRUE((*fresh)->DoneChunks().empty());
  }
  fs::copy_file(dir / "old.progress", progress, fs::copy_options::overwrite_existing);
  auto reopened = VolumeWriter::Open(spec, o);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_TRUE((*reopened)->DoneChunks().empty());
}

TEST(ResumeTest, DifferentArgumentsAreRefused) {
  for (const std::string name : {"out.zarr", "out.h5:/pred"}) {
    TempDir dir;
    const std::string spec = dir / name;
    const VolumeWriterOptions o = ResumeOptions();
    ASSERT_TRUE(VolumeWriter::Open(spec, o).ok());
    auto expect_refused = [&](VolumeWriterOptions changed, const std::string& what) {
      auto w = VolumeWriter::Open(spec, changed);
      EXPECT_EQ(w.status().code(), absl::StatusCode::kFailedPrecondition) << name << " " << what;
      EXPECT_NE(w.status().message().find(what), std::string::npos) << w.status();
    };
    VolumeWriterOptions c = o;
    c.fingerprint = "patch=(23,185,185) mfp=off";
    expect_refused(c,
                   "fingerprint of the arguments was 'patch=(23,185,185) mfp=on', now "
                   "'patch=(23,185,185) mfp=off'");
    c = o;
    c.shape.x = 9;
    expect_refused(c, "shape was (c,z,x,y)=(2,9,8,7), now (c,z,x,y)=(2,9,9,7)");
    c = o;
    c.chunk = {4, 4, 2};
    expect_refused(c, "chunk (z,x,y) was (4,4,4), now (4,4,2)");
    c = o;
    c.dtype = VolumeDtype::kUint8;
    expect_refused(c, "dtype was float32, now uint8");
    c = o;
    c.offset = {0, 0, 0};
    expect_refused(c, "offset (z,x,y) was (8,42,42)");
    c = o;
    c.model = "other.mdl";
    expect_refused(c, "model was 'm.mdl', now 'other.mdl'");
    if (name == "out.zarr") {
      c = o;
      c.compression.kind = Compression::Kind::kBlosc;
      expect_refused(c, "compression was none, now blosc lz4 clevel 5 shuffle");
    }
    c = o;
    c.resume = false;
    EXPECT_EQ(VolumeWriter::Open(spec, c).status().code(), absl::StatusCode::kAlreadyExists);
    EXPECT_TRUE(VolumeWriter::Open(spec, o).ok());
  }
}

template <typename T>
void ExpectError(const absl::StatusOr<T>& s, absl::StatusCode code, const std::string& text) {
  EXPECT_EQ(s.status().code(), code) << s.status();
  EXPECT_NE(s.status().message().find(text), std::string::npos) << s.status();
}

TEST(VolumeErrorsTest, NameTheProblemAndWhatWouldBeValid) {
  TempDir dir;
  ExpectError(VolumeReader::Open(dir / "missing.h5:/raw"), absl::StatusCode::kNotFound,
              "no such file");
  ExpectError(VolumeReader::Open(dir / "missing.zarr"), absl::StatusCode::kNotFound,
              "no such file or directory");
  const float f5[32] = {};
  WriteH5(dir / "in.h5", "raw", {2, 2, 2, 2}, H5T_NATIVE_FLOAT, f5);
  WriteH5(dir / "in.h5", "grp/lab", {2, 2, 2}, H5T_NATIVE_FLOAT, f5);
  WriteH5(dir / "in.h5", "five", {2, 2, 2, 2, 2}, H5T_NATIVE_FLOAT, f5);
  WriteH5(dir / "in.h5", "one", {8}, H5T_NATIVE_FLOAT, f5);
  const int32_t i32[8] = {};
  WriteH5(dir / "in.h5", "ids", {2, 2, 2}, H5T_NATIVE_INT32, i32);
  ExpectError(VolumeReader::Open(dir / "in.h5:/nope"), absl::StatusCode::kNotFound,
              "has no dataset '/nope'; datasets in the file: /five, /grp/lab, /ids, /one, /raw");
  EXPECT_TRUE(VolumeReader::Open(dir / "in.h5:/ids").ok());
  ExpectError(VolumeReader::Open(dir / "in.h5:/grp"), absl::StatusCode::kInvalidArgument,
              "'/grp' is a group, not a dataset");
  ExpectError(VolumeReader::Open(dir / "in.h5:/five"), absl::StatusCode::kInvalidArgument,
              "has shape (2,2,2,2,2); expected a non-empty (x,y), (z,x,y) or (c,z,x,y)");
  ExpectError(VolumeReader::Open(dir / "in.h5:/one"), absl::StatusCode::kInvalidArgument,
              "has shape (8)");
  // Integer ids of any width are read (streamed label cubes); other types are refused.
  {
    VolumeReaderOptions as_is;
    as_is.integers = IntegerValues::kAsIs;
    const int32_t ids[8] = {1, 2, 3, 4, 5, 6, 7, 70000};
    WriteH5(dir / "in.h5", "ids2", {2, 2, 2}, H5T_NATIVE_INT32, ids);
    auto r = VolumeReader::Open(dir / "in.h5:/ids2", as_is);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ((*r)->dtype(), VolumeDtype::kInt32);
    std::vector<float> v(8);
    ASSERT_TRUE((*r)->Read({0, 0, 0, 2, 2, 2}, PadMode::kError, v.data()).ok());
    EXPECT_EQ(v, (std::vector<float>{1, 2, 3, 4, 5, 6, 7, 70000}));
    hid_t str = H5Tcopy(H5T_C_S1);
    const char chars[8] = {};
    WriteH5(dir / "text.h5", "text", {2, 2, 2}, str, chars);
    H5Tclose(str);
  }
  ExpectError(VolumeReader::Open(dir / "text.h5:/text"), absl::StatusCode::kInvalidArgument,
              "element type a non-numeric type; supported are integers of 8 to 64 bits, float32 "
              "and float64");
  EXPECT_TRUE(VolumeReader::Open(dir / "in.h5:grp/lab").ok());

  // Zarr metadata we cannot read.
  fs::create_directories(dir / "z.zarr");
  const std::string meta =
      R"({"zarr_format": 2, "shape": [4, 4, 4], "chunks": [2, 2, 2], "dtype": "DT",)"
      R"( "order": "OR", "fill_value": 0, "compressor": CO, "filters": null})";
  auto zarray = [&](const std::string& dt, const std::string& order, const std::string& co) {
    std::string m = meta;
    m.replace(m.find("DT"), 2, dt);
    m.replace(m.find("OR"), 2, order);
    m.replace(m.find("CO"), 2, co);
    WriteText(dir / "z.zarr/.zarray", m);
    return VolumeReader::Open(dir / "z.zarr");
  };
  EXPECT_TRUE(zarray("<f4", "C", "null").ok());
  ExpectError(zarray("<i8", "C", "null"), absl::StatusCode::kInvalidArgument,
              "dtype \"<i8\" is not supported; supported: |u1 (uint8)");
  ExpectError(zarray(">f4", "C", "null"), absl::StatusCode::kInvalidArgument, "little-endian");
  ExpectError(zarray("<f4", "F", "null"), absl::StatusCode::kInvalidArgument,
              "order \"F\"; only C order");
  ExpectError(zarray("<f4", "C", R"({"id": "zstd", "level": 1})"),
              absl::StatusCode::kInvalidArgument,
              "compressor {\"id\":\"zstd\",\"level\":1} is not supported; supported: null, "
              "zlib, gzip, blosc");
  // A group: the arrays it holds are listed.
  VolumeWriterOptions o;
  o.shape = {1, 2, 2, 2};
  ASSERT_TRUE(VolumeWriter::Open(dir / "g.zarr/a/pred", o).ok());
  ExpectError(VolumeReader::Open(dir / "g.zarr"), absl::StatusCode::kNotFound,
              "is a Zarr group, not an array; arrays in it: a/pred");

  // Outputs.
  o.compression.kind = Compression::Kind::kZlib;
  ExpectError(VolumeWriter::Open(dir / "o.h5:/pred", o), absl::StatusCode::kInvalidArgument,
              "HDF5 outputs are written uncompressed");
  o.compression = {};
  ExpectError(VolumeWriter::Open(dir / "in.h5:/raw", o), absl::StatusCode::kFailedPrecondition,
              "was not written by elektronn");
  fs::create_directories(dir / "busy");
  WriteText(dir / "busy/notes.txt", "x");
  ExpectError(VolumeWriter::Open(dir / "busy", o), absl::StatusCode::kFailedPrecondition,
              "is a directory that is not a Zarr array (it holds notes.txt)");
  o.dtype = VolumeDtype::kUint16;
  ExpectError(VolumeWriter::Open(dir / "u16.zarr", o), absl::StatusCode::kInvalidArgument,
              "outputs are float32 or uint8");
  o.dtype = VolumeDtype::kFloat32;
  o.chunk = {0, 4, 4};
  ExpectError(VolumeWriter::Open(dir / "c.zarr", o), absl::StatusCode::kInvalidArgument,
              "chunk (z,x,y)=(0,4,4) must be positive");
  // Chunk arguments.
  o.chunk = {2, 2, 2};
  auto w = VolumeWriter::Open(dir / "ok.zarr", o);
  ASSERT_TRUE(w.ok());
  std::vector<float> v(8);
  EXPECT_EQ((*w)->WriteChunk({1, 0, 0}, absl::Span<const float>(v)).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ((*w)->WriteChunk({0, 0, 0}, absl::Span<const float>(v.data(), 7)).code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<uint8_t> u(8);
  EXPECT_EQ((*w)->WriteChunk({0, 0, 0}, absl::Span<const uint8_t>(u)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(VolumeReaderTest, ZarrMissingChunksReadAsFillValue) {
  TempDir dir;
  fs::create_directories(dir / "f.zarr");
  WriteText(dir / "f.zarr/.zarray",
            R"({"zarr_format": 2, "shape": [3, 5], "chunks": [2, 2], "dtype": "|u1",)"
            R"( "order": "C", "fill_value": 51, "compressor": null, "filters": null})");
  auto r = VolumeReader::Open(dir / "f.zarr");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->shape(), (VolumeShape{1, 1, 3, 5}));  // 2-D: (x,y)
  std::vector<float> out(15);
  ASSERT_TRUE((*r)->Read({0, 0, 0, 1, 3, 5}, PadMode::kError, out.data()).ok());
  for (float v : out) EXPECT_EQ(v, 51.f / 255.f);
}

}  // namespace
}  // namespace elektronn
