// HDF5 volumes: round trips per dtype, axis orders, and the error messages users see.
#include "engine/data/h5_volume.h"

#include <gtest/gtest.h>
#include <hdf5.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

std::string TempPath(const std::string& name) {
  const std::string p = absl::StrCat(::testing::TempDir(), "/h5_volume_test_", name);
  fs::remove(p);
  return p;
}

Volume Ramp(int64_t ch, int64_t z, int64_t x, int64_t y, float scale, float offset) {
  Volume v(ch, z, x, y);
  for (size_t i = 0; i < v.data.size(); ++i) v.data[i] = offset + scale * static_cast<float>(i);
  return v;
}

// Writes a dataset of any native type with the C API, to test the reader on types we do not
// write ourselves.
template <typename T>
void WriteRawDataset(const std::string& file, const std::string& key, hid_t type,
                     const std::vector<hsize_t>& dims, const std::vector<T>& data) {
  hid_t f = fs::exists(file) ? H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT)
                             : H5Fcreate(file.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  hid_t s = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  hid_t d = H5Dcreate2(f, key.c_str(), type, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(d, 0);
  ASSERT_GE(H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()), 0);
  H5Dclose(d);
  H5Sclose(s);
  H5Fclose(f);
}

TEST(H5VolumeTest, Uint8RoundTripScalesBy255) {
  const std::string f = TempPath("u8.h5");
  Volume v(1, 3, 4, 5);
  for (size_t i = 0; i < v.data.size(); ++i) v.data[i] = static_cast<float>(i % 256) / 255.0f;
  for (bool compress : {false, true}) {
    ASSERT_TRUE(WriteH5Volume(f, "raw", v, H5Dtype::kUint8, compress).ok());
    absl::StatusOr<Volume> r = ReadH5Volume(f, "raw", false);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->ch, 1);
    EXPECT_EQ(r->z, 3);
    EXPECT_EQ(r->x, 4);
    EXPECT_EQ(r->y, 5);
    EXPECT_EQ(r->data, v.data);
  }
  // As labels, uint8 values stay ids.
  absl::StatusOr<Volume> ids = ReadH5Volume(f, "raw", false, H5Values::kLabels);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(ids->data[7], 7.f);
}

TEST(H5VolumeTest, Int16RoundTripKeepsIds) {
  const std::string f = TempPath("i16.h5");
  Volume v = Ramp(2, 3, 4, 5, 3.f, -60.f);  // 4-D, negative ids included
  ASSERT_TRUE(WriteH5Volume(f, "grp/lab", v, H5Dtype::kInt16, true).ok());
  absl::StatusOr<Volume> r = ReadH5Volume(f, "grp/lab", false);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->ch, 2);
  EXPECT_EQ(r->data, v.data);
  // kRaw: every integer type /255 (ELEKTRONN2's raw cubes).
  absl::StatusOr<Volume> scaled = ReadH5Volume(f, "grp/lab", false, H5Values::kRaw);
  ASSERT_TRUE(scaled.ok());
  EXPECT_FLOAT_EQ(scaled->data[1], -57.f / 255.f);
}

TEST(H5VolumeTest, Float32RoundTripIsExact) {
  const std::string f = TempPath("f32.h5");
  Volume v = Ramp(1, 2, 3, 4, 0.1234f, -1.5f);
  ASSERT_TRUE(WriteH5Volume(f, "data", v, H5Dtype::kFloat32, false).ok());
  // Replacing an existing key, and a second key in the same file.
  Volume w = Ramp(1, 2, 3, 4, 2.f, 0.f);
  ASSERT_TRUE(WriteH5Volume(f, "data", w, H5Dtype::kFloat32, true).ok());
  ASSERT_TRUE(WriteH5Volume(f, "other", v, H5Dtype::kFloat32, false).ok());
  absl::StatusOr<Volume> r = ReadH5Volume(f, "data", false);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->data, w.data);
  r = ReadH5Volume(f, "other", false);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->data, v.data);
}

TEST(H5VolumeTest, ReadsOtherIntegerAndFloatTypes) {
  const std::string f = TempPath("types.h5");
  const std::vector<hsize_t> dims = {2, 2, 3};
  WriteRawDataset<int32_t>(f, "i32", H5T_NATIVE_INT32, dims,
                           {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, -1});
  WriteRawDataset<int64_t>(f, "i64", H5T_NATIVE_INT64, dims,
                           {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100000});
  WriteRawDataset<uint16_t>(f, "u16", H5T_NATIVE_UINT16, dims,
                            {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 65535});
  WriteRawDataset<double>(f, "f64", H5T_NATIVE_DOUBLE, dims,
                          {0, 0.5, 2, 3, 4, 5, 6, 7, 8, 9, 10, -0.25});
  const std::vector<std::pair<std::string, float>> last = {
      {"i32", -1.f}, {"i64", 100000.f}, {"u16", 65535.f}, {"f64", -0.25f}};
  for (const auto& [key, value] : last) {
    absl::StatusOr<Volume> r = ReadH5Volume(f, key, false);
    ASSERT_TRUE(r.ok()) << key << ": " << r.status();
    EXPECT_EQ(r->data.size(), 12u);
    EXPECT_EQ(r->data.back(), value) << key;
    EXPECT_EQ(r->data[4], 4.f) << key;
  }
}

TEST(H5VolumeTest, XyzOrderTransposesToZxy) {
  const std::string f = TempPath("xyz.h5");
  // File (x=2, y=3, z=4): value = 100x + 10y + z.
  std::vector<float> d;
  for (int x = 0; x < 2; ++x)
    for (int y = 0; y < 3; ++y)
      for (int z = 0; z < 4; ++z) d.push_back(100.f * x + 10.f * y + z);
  WriteRawDataset<float>(f, "v", H5T_NATIVE_FLOAT, {2, 3, 4}, d);
  absl::StatusOr<Volume> r = ReadH5Volume(f, "v", /*xyz_order=*/true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->z, 4);
  EXPECT_EQ(r->x, 2);
  EXPECT_EQ(r->y, 3);
  EXPECT_EQ(r->at(0, 3, 1, 2), 123.f);
  EXPECT_EQ(r->at(0, 1, 0, 2), 21.f);

  // 4-D (x, y, z, ch).
  std::vector<float> d4;
  for (int x = 0; x < 2; ++x)
    for (int y = 0; y < 3; ++y)
      for (int z = 0; z < 4; ++z)
        for (int c = 0; c < 2; ++c) d4.push_back(1000.f * c + 100.f * x + 10.f * y + z);
  WriteRawDataset<float>(f, "v4", H5T_NATIVE_FLOAT, {2, 3, 4, 2}, d4);
  r = ReadH5Volume(f, "v4", true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->ch, 2);
  EXPECT_EQ(r->at(1, 3, 1, 2), 1123.f);
}

TEST(H5VolumeTest, MissingFileIsNotFound) {
  absl::StatusOr<Volume> r = ReadH5Volume(TempPath("nope.h5"), "raw", false);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("nope.h5"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("no such file"), std::string::npos) << r.status();
}

TEST(H5VolumeTest, NotAnHdf5File) {
  const std::string f = TempPath("text.h5");
  std::ofstream(f) << "hello";
  absl::StatusOr<Volume> r = ReadH5Volume(f, "raw", false);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("not an HDF5 file"), std::string::npos) << r.status();
}

TEST(H5VolumeTest, MissingKeyListsExistingKeys) {
  const std::string f = TempPath("keys.h5");
  ASSERT_TRUE(WriteH5Volume(f, "raw", Volume(1, 2, 2, 2), H5Dtype::kUint8, false).ok());
  ASSERT_TRUE(WriteH5Volume(f, "labels/lab", Volume(1, 2, 2, 2), H5Dtype::kInt16, false).ok());
  absl::StatusOr<Volume> r = ReadH5Volume(f, "label", false);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  const std::string m(r.status().message());
  EXPECT_NE(m.find("no dataset 'label'"), std::string::npos) << m;
  EXPECT_NE(m.find("labels/lab, raw"), std::string::npos) << m;
  EXPECT_NE(m.find("keys.h5"), std::string::npos) << m;
  // A group is not a dataset.
  r = ReadH5Volume(f, "labels", false);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("is a group"), std::string::npos) << r.status();
  absl::StatusOr<std::vector<std::string>> names = ListH5Datasets(f);
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, (std::vector<std::string>{"labels/lab", "raw"}));
}

TEST(H5VolumeTest, WrongRankNamesShapeAndValidLayouts) {
  const std::string f = TempPath("rank.h5");
  WriteRawDataset<float>(f, "flat", H5T_NATIVE_FLOAT, {2, 3}, {1, 2, 3, 4, 5, 6});
  absl::StatusOr<Volume> r = ReadH5Volume(f, "flat", false);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string m(r.status().message());
  EXPECT_NE(m.find("rank 2"), std::string::npos) << m;
  EXPECT_NE(m.find("(2,3)"), std::string::npos) << m;
  EXPECT_NE(m.find("(z,x,y) or (ch,z,x,y)"), std::string::npos) << m;
}

TEST(H5VolumeTest, UnsupportedDtype) {
  const std::string f = TempPath("dtype.h5");
  hid_t file = H5Fcreate(f.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
  hid_t str = H5Tcopy(H5T_C_S1);
  H5Tset_size(str, 4);
  const hsize_t dims[3] = {1, 1, 2};
  hid_t s = H5Screate_simple(3, dims, nullptr);
  hid_t d = H5Dcreate2(file, "names", str, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(H5Dwrite(d, str, H5S_ALL, H5S_ALL, H5P_DEFAULT, "abcdefgh"), 0);
  H5Dclose(d);
  H5Sclose(s);
  H5Tclose(str);
  H5Fclose(file);
  absl::StatusOr<Volume> r = ReadH5Volume(f, "names", false);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string m(r.status().message());
  EXPECT_NE(m.find("element type string"), std::string::npos) << m;
  EXPECT_NE(m.find("float32/float64"), std::string::npos) << m;
}

TEST(H5VolumeTest, Int16RejectsNonIntegralValues) {
  const std::string f = TempPath("bad_i16.h5");
  Volume v(1, 1, 2, 2);
  v.data[3] = 0.5f;
  absl::Status s = WriteH5Volume(f, "lab", v, H5Dtype::kInt16, false);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("0.5"), std::string::npos) << s;
  EXPECT_NE(s.message().find("(0,0,1,1)"), std::string::npos) << s;
  EXPECT_FALSE(fs::exists(f));
}

}  // namespace
}  // namespace elektronn
