// KNOSSOS datasets: knossos.conf errors, cubes assembled across cube borders against the voxel
// formula, missing cubes as zeros, the cache bound, prefetch, eviction by distance, errors and
// multi-feature volumes; every dataset is generated here.
#include "engine/io/knossos.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/io/data_path.h"
#include "engine/io/volume_store.h"
#include "tests/support/test_dir.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

// A voxel value in KNOSSOS coordinates that differs across every cube border.
uint8_t Value(int64_t x, int64_t y, int64_t z) {
  return static_cast<uint8_t>((x * 7 + y * 13 + z * 29) % 251);
}
uint8_t Other(int64_t x, int64_t y, int64_t z) {
  return static_cast<uint8_t>((x + 2 * y + 3 * z) % 256);
}

std::unique_ptr<VolumeReader> Open(const std::string& spec, int64_t max_ram_mb, int n_preload) {
  VolumeReaderOptions o;
  o.knossos_max_ram_mb = max_ram_mb;
  o.knossos_n_preload = n_preload;
  auto r = VolumeReader::Open(spec, o);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *std::move(r) : nullptr;
}

TEST(KnossosConfTest, ParsesWhatKnossosWrites) {
  auto c = ParseKnossosConf(
      "experiment name \"2012-09-28_ex145_07x2\";\nboundary x 1024;\nboundary y 768 ;\n"
      "boundary z 512;\nscale x 22.0;\nscale y 22.0;\nscale z 25.0;\nmagnification 1;\n"
      "cube_edge_length 128;\n",
      "k.conf");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->experiment, "2012-09-28_ex145_07x2");
  EXPECT_EQ(c->boundary, (std::array<int64_t, 3>{1024, 768, 512}));
  EXPECT_EQ(c->scale, (std::array<double, 3>{22, 22, 25}));
}

TEST(KnossosConfTest, ErrorsNameTheFileAndLine) {
  const std::string ok_head = "experiment name \"e\";\nboundary x 10;\nboundary y 10;\n";
  struct Case {
    std::string text, want;
  } cases[] = {
      {ok_head + "boundary z 10\n", "k.conf:4: 'boundary z 10' does not end with ';'"},
      {ok_head + "boundary z -3;\n", "k.conf:4: boundary z is '-3'; it must be a positive"},
      {ok_head + "boundary w 3;\n", "k.conf:4: 'boundary w 3' must be 'boundary x|y|z"},
      {ok_head + "boundary z 5;\nscale x abc;\n", "k.conf:5: scale x is 'abc'"},
      {"experiment name e;\n", "k.conf:1: experiment name e must be quoted"},
      {ok_head, "k.conf: no 'boundary z <voxels>;' line"},
      {"boundary x 1;\nboundary y 1;\nboundary z 1;\n", "k.conf: no 'experiment name"},
  };
  for (const Case& c : cases) {
    auto r = ParseKnossosConf(c.text, "k.conf");
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_NE(r.status().message().find(c.want), std::string::npos)
        << r.status() << "\nwanted: " << c.want;
  }
}

TEST(KnossosConfTest, MissingConfNamesBothPlaces) {
  const fs::path dir = testing::FreshTestDir("knossos");
  auto r = VolumeReader::Open(absl::StrCat("knossos:", dir.string()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("mag1/knossos.conf"), std::string::npos) << r.status();
}

TEST(KnossosReaderTest, AssemblesBoxesAcrossCubeBordersAsTheFormulaSays) {
  const fs::path dir = testing::FreshTestDir("knossos");
  // KNOSSOS (x, y, z) = (300, 200, 150): 3 x 2 x 2 cubes, the last ones partly past the boundary.
  ASSERT_TRUE(WriteKnossosDataset(dir.string(), "exp", {300, 200, 150}, Value).ok());
  auto r = Open(absl::StrCat("knossos:", dir.string()), 100, 0);
  ASSERT_NE(r, nullptr);
  // The volume is (z, x, y) = KNOSSOS (z, y, x).
  EXPECT_EQ(r->shape(), (VolumeShape{1, 150, 200, 300}));
  EXPECT_EQ(r->dtype(), VolumeDtype::kUint8);
  for (const Box& b : {Box{100, 90, 250, 40, 60, 50}, Box{0, 0, 0, 150, 200, 300},
                       Box{127, 127, 127, 2, 2, 2}, Box{-5, 190, 290, 10, 20, 20}}) {
    std::vector<float> out(b.voxels(), -1.f);
    ASSERT_TRUE(r->Read(b, PadMode::kZero, out.data()).ok()) << b.ToString();
    size_t i = 0, wrong = 0;
    for (int64_t z = b.z0; z < b.z0 + b.dz; ++z) {
      for (int64_t x = b.x0; x < b.x0 + b.dx; ++x) {
        for (int64_t y = b.y0; y < b.y0 + b.dy; ++y, ++i) {
          const bool inside = z >= 0 && z < 150 && x >= 0 && x < 200 && y >= 0 && y < 300;
          const float want = inside ? Value(y, x, z) / 255.f : 0.f;
          wrong += out[i] != want;
        }
      }
    }
    EXPECT_EQ(wrong, 0u) << b.ToString();
  }
}

TEST(KnossosReaderTest, MissingCubeFilesReadAsZeros) {
  const fs::path dir = testing::FreshTestDir("knossos");
  ASSERT_TRUE(
      WriteKnossosDataset(dir.string(), "exp", {256, 256, 128}, Value,
                          [](int64_t cx, int64_t cy, int64_t) { return cx != 1 || cy != 0; })
          .ok());
  auto r = Open(absl::StrCat("knossos:", dir.string()), 100, 0);
  ASSERT_NE(r, nullptr);
  // KNOSSOS cube x=1, y=0 is volume x in [0,128), y in [128,256).
  std::vector<float> out(4 * 4);
  ASSERT_TRUE(r->Read(Box{5, 126, 126, 1, 4, 4}, PadMode::kError, out.data()).ok());
  for (int64_t x = 0; x < 4; ++x) {
    for (int64_t y = 0; y < 4; ++y) {
      const int64_t vx = 126 + x, vy = 126 + y;
      const float want = (vx < 128 && vy >= 128) ? 0.f : Value(vy, vx, 5) / 255.f;
      EXPECT_EQ(out[x * 4 + y], want) << vx << "," << vy;
    }
  }
  EXPECT_EQ(KnossosStats(*r)[0].missing, 1);
}

TEST(KnossosReaderTest, CacheHoldsNoMoreCubesThanTheBudgetAndEvictsTheFarthest) {
  const fs::path dir = testing::FreshTestDir("knossos");
  // One row of 6 cubes along KNOSSOS x (the volume's y).
  ASSERT_TRUE(WriteKnossosDataset(dir.string(), "exp", {6 * 128, 128, 128}, Value).ok());
  auto r = Open(absl::StrCat("knossos:", dir.string()), 8, 0);  // 8 MB = 4 cubes
  ASSERT_NE(r, nullptr);
  auto read_cube = [&](int64_t cy) {
    std::vector<float> out(8);
    EXPECT_TRUE(r->Read(Box{0, 0, cy * 128 + 3, 2, 2, 2}, PadMode::kError, out.data()).ok());
    EXPECT_EQ(out[0], Value(cy * 128 + 3, 0, 0) / 255.f);
  };
  auto loads = [&] { return KnossosStats(*r)[0].loads; };
  // Least recently used would now drop cube 3; by distance to the next request (cube 4) it is
  // cube 0, although it was used last.
  for (int64_t cy : {3, 2, 1, 0}) read_cube(cy);
  EXPECT_EQ(loads(), 4);
  read_cube(0);
  EXPECT_EQ(loads(), 4) << "a cached cube was read again";
  read_cube(4);
  EXPECT_EQ(loads(), 5);
  read_cube(3);
  EXPECT_EQ(loads(), 5) << "the nearest cube was evicted";
  read_cube(0);
  EXPECT_EQ(loads(), 6) << "the farthest cube was kept";
  for (int i = 0; i < 30; ++i) read_cube((i * 7) % 6);
  const KnossosCacheStats s = KnossosStats(*r)[0];
  EXPECT_EQ(s.capacity, 4);
  EXPECT_LE(s.max_resident, 4);
  EXPECT_EQ(s.evictions, s.loads - 4);
}

TEST(KnossosReaderTest, ARequestLargerThanTheCacheIsRefused) {
  const fs::path dir = testing::FreshTestDir("knossos");
  ASSERT_TRUE(WriteKnossosDataset(dir.string(), "exp", {256, 256, 256}, Value).ok());
  auto r = Open(absl::StrCat("knossos:", dir.string()), 8, 0);  // 4 cubes
  ASSERT_NE(r, nullptr);
  std::vector<float> out(20 * 20 * 20);
  absl::Status s = r->Read(Box{120, 120, 120, 20, 20, 20}, PadMode::kError, out.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(s.message().find("needs 8 cubes of 128^3 but the cache holds 4"), std::string::npos)
      << s;
  EXPECT_TRUE(r->Read(Box{0, 120, 120, 20, 20, 20}, PadMode::kError, out.data()).ok());
}

TEST(KnossosReaderTest, OutOfBoundsBoxesAreRefusedUnlessPadded) {
  const fs::path dir = testing::FreshTestDir("knossos");
  ASSERT_TRUE(WriteKnossosDataset(dir.string(), "exp", {200, 130, 140}, Value).ok());
  auto r = Open(absl::StrCat("knossos:", dir.string()), 100, 0);
  ASSERT_NE(r, nullptr);
  std::vector<float> out(10 * 10 * 10);
  absl::Status s = r->Read(Box{135, 0, 0, 10, 10, 10}, PadMode::kError, out.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange) << s;
  EXPECT_TRUE(r->Read(Box{135, 0, 0, 10, 10, 10}, PadMode::kMirror, out.data()).ok());
  EXPECT_EQ(out[9 * 100], Value(0, 0, 135) / 255.f);  // z = 144 mirrors to 135
}

// 5 x 5 x 5 cubes of which only the column KNOSSOS x = y = 2 has files (missing cubes are
// loads too, of zeros), so the test writes 10 MB instead of 250.
absl::Status WriteSparseGrid(const std::string& dir) {
  return WriteKnossosDataset(dir, "exp", {5 * 128, 5 * 128, 5 * 128}, Value,
                             [](int64_t cx, int64_t cy, int64_t) { return cx == 2 && cy == 2; });
}

TEST(KnossosReaderTest, PrefetchLoadsTheNeighbourhoodInTheBackground) {
  const fs::path dir = testing::FreshTestDir("knossos");
  ASSERT_TRUE(WriteSparseGrid(dir.string()).ok());
  auto r = Open(absl::StrCat("knossos:", dir.string()), 1000, 2);
  ASSERT_NE(r, nullptr);
  std::vector<float> out(8);
  // Cube (z, x, y) = (2, 2, 2), the dataset's centre.
  ASSERT_TRUE(r->Read(Box{260, 260, 260, 2, 2, 2}, PadMode::kError, out.data()).ok());
  KnossosWaitForPrefetch(*r);
  KnossosCacheStats s = KnossosStats(*r)[0];
  // ±2 in x and y, ±1 in z (halved): 3 x 5 x 5 = 75 cubes, 74 of them prefetched.
  EXPECT_EQ(s.loads, 75);
  EXPECT_EQ(s.prefetched, 74);
  // Reads anywhere in the neighbourhood load nothing more. Each read prefetches around itself
  // too; waiting for that keeps the counts deterministic.
  ASSERT_TRUE(r->Read(Box{130, 0, 0, 2, 2, 2}, PadMode::kError, out.data()).ok());
  KnossosWaitForPrefetch(*r);
  ASSERT_TRUE(r->Read(Box{500, 300, 300, 2, 2, 2}, PadMode::kError, out.data()).ok());
  KnossosWaitForPrefetch(*r);
  EXPECT_EQ(out[7], Value(301, 301, 501) / 255.f);
  s = KnossosStats(*r)[0];
  EXPECT_EQ(s.loads - s.prefetched, 1) << "a neighbour was loaded by a request, not prefetched";
  // Cube (0, 4, 4) lies outside all three neighbourhoods ((2,2,2): z 1-3; (1,0,0): z 0-2, x and
  // y 0-2; (3,2,2): z 2-4): the request loads it.
  ASSERT_TRUE(r->Read(Box{2, 4 * 128 + 2, 4 * 128 + 2, 2, 2, 2}, PadMode::kError, out.data()).ok());
  s = KnossosStats(*r)[0];
  EXPECT_EQ(s.loads - s.prefetched, 2);
}

TEST(KnossosReaderTest, PrefetchStaysWithinTheCache) {
  const fs::path dir = testing::FreshTestDir("knossos");
  ASSERT_TRUE(WriteSparseGrid(dir.string()).ok());
  auto r = Open(absl::StrCat("knossos:", dir.string()), 20, 2);  // 10 cubes
  ASSERT_NE(r, nullptr);
  std::vector<float> out(8);
  for (int64_t i = 0; i < 5; ++i) {
    ASSERT_TRUE(r->Read(Box{260, i * 128, 260, 2, 2, 2}, PadMode::kError, out.data()).ok());
    KnossosWaitForPrefetch(*r);
  }
  const KnossosCacheStats s = KnossosStats(*r)[0];
  EXPECT_EQ(s.max_resident, 10);
  EXPECT_GT(s.prefetched, 9);
}

TEST(KnossosReaderTest, SeveralDatasetsAreChannels) {
  const fs::path dir = testing::FreshTestDir("knossos");
  const std::string a = (dir / "raw").string(), b = (dir / "membranes").string();
  ASSERT_TRUE(WriteKnossosDataset(a, "raw", {200, 150, 140}, Value).ok());
  ASSERT_TRUE(WriteKnossosDataset(b, "mem", {200, 150, 140}, Other).ok());
  auto r = Open(absl::StrCat("knossos:", a, ",", b), 100, 0);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->shape(), (VolumeShape{2, 140, 150, 200}));
  const Box box{120, 120, 120, 10, 10, 10};
  std::vector<float> out(2 * box.voxels());
  ASSERT_TRUE(r->Read(box, PadMode::kError, out.data()).ok());
  size_t wrong = 0, i = 0;
  for (int c = 0; c < 2; ++c) {
    for (int64_t z = 120; z < 130; ++z) {
      for (int64_t x = 120; x < 130; ++x) {
        for (int64_t y = 120; y < 130; ++y, ++i) {
          wrong += out[i] != (c == 0 ? Value(y, x, z) : Other(y, x, z)) / 255.f;
        }
      }
    }
  }
  EXPECT_EQ(wrong, 0u);
  ASSERT_EQ(KnossosStats(*r).size(), 2u);
  EXPECT_EQ(KnossosStats(*r)[1].capacity, 25);  // 100 MB split between two datasets

  const std::string c = (dir / "small").string();
  ASSERT_TRUE(WriteKnossosDataset(c, "small", {100, 150, 140}, Value).ok());
  auto bad = VolumeReader::Open(absl::StrCat("knossos:", a, ",", c));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("must have one extent"), std::string::npos) << bad.status();
}

TEST(KnossosSpecTest, ParsedConfinedAndNeverWritten) {
  auto loc = ParseVolumeSpec("knossos:a/b,c");
  ASSERT_TRUE(loc.ok());
  EXPECT_EQ(loc->format, VolumeLocation::Format::kKnossos);
  EXPECT_EQ(loc->path, "a/b,c");
  EXPECT_EQ(loc->ToString(), "knossos:a/b,c");
  EXPECT_FALSE(ParseVolumeSpec("knossos:a,,b").ok());
  EXPECT_FALSE(VolumeWriter::Open("knossos:a", VolumeWriterOptions{.shape = {1, 2, 2, 2}}).ok());
  const fs::path dir = testing::FreshTestDir("knossos_opts");
  ASSERT_TRUE(WriteKnossosDataset(dir.string(), "e", {10, 10, 10}, Value).ok());
  VolumeReaderOptions o;
  o.knossos_n_preload = 17;
  auto r = VolumeReader::Open(absl::StrCat("knossos:", dir.string()), o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("n_preload 17; valid: 0 (no prefetch) to 16"),
            std::string::npos)
      << r.status();
  o.knossos_n_preload = 0;
  o.knossos_max_ram_mb = 1;
  r = VolumeReader::Open(absl::StrCat("knossos:", dir.string()), o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("holds no cube"), std::string::npos) << r.status();

  const fs::path data = testing::FreshTestDir("knossos");
  fs::create_directories(data / "em");
  auto in = ConfineVolumeSpec("input", "knossos:em,em2", data.string());
  ASSERT_TRUE(in.ok()) << in.status();
  EXPECT_EQ(*in, absl::StrCat("knossos:", fs::canonical(data).string(), "/em,",
                              fs::canonical(data).string(), "/em2"));
  for (const char* escape : {"knossos:/etc", "knossos:em,../x", "knossos:../x"}) {
    EXPECT_FALSE(ConfineVolumeSpec("input", escape, data.string()).ok()) << escape;
  }
  v1::JobSpec job;
  auto* b = job.mutable_training()->mutable_batch_creator_image();
  b->set_d_path("em");
  auto* f = b->add_d_files();
  f->set_file("raw,../../outside");
  f->set_key("knossos");
  absl::Status s = ConfineJobDataPaths(&job, data.string());
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("d_files[0].file"), std::string::npos) << s;
  f->set_file("raw,mem");
  s = ConfineJobDataPaths(&job, data.string());
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(f->file(), absl::StrCat(fs::canonical(data).string(), "/em/raw,",
                                    fs::canonical(data).string(), "/em/mem"));
}

}  // namespace
}  // namespace elektronn
