// TensorBoard event files: CRC-32C, the reference records byte for byte, and a protobuf decode.
#include "engine/io/tensorboard.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "engine/io/crc32c.h"
#include "engine/io/png.h"
#include "tests/support/test_dir.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

// Bytes from hex that may contain spaces, as the vectors in toolchain-notes.md are written.
std::string Hex(std::string_view hex) {
  std::string digits;
  for (char c : hex) {
    if (c != ' ') digits.push_back(c);
  }
  return absl::HexStringToBytes(digits);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The reference records (toolchain-notes.md, "TensorBoard event files").
const std::string kVersionRecord =
    Hex("1800000000000000 a37f4b22 0900000040fc54d9411a0d627261696e2e4576656e743a32 eced8f9d");
const std::string kLossRecord =
    Hex("1a00000000000000 129bd82d 0900004040fc54d94110012a0d0a0b0a046c6f7373150000003f 97d67404");

TEST(Crc32cTest, CheckValue) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(MaskedCrc32c("123456789"), 0xC78AB0E5u);
  EXPECT_EQ(MaskCrc32c(0xE3069283u), 0xC78AB0E5u);
  EXPECT_EQ(Crc32c(""), 0u);
}

TEST(Crc32cTest, ExtendEqualsWhole) {
  const std::string data = "The quick brown fox jumps over the lazy dog";
  for (size_t split = 0; split <= data.size(); ++split) {
    const uint32_t head = Crc32c(std::string_view(data).substr(0, split));
    EXPECT_EQ(Crc32cExtend(head, data.data() + split, data.size() - split), Crc32c(data))
        << "split at " << split;
  }
}

TEST(EventEncodingTest, FileVersionRecordMatchesReference) {
  const std::string payload = EncodeFileVersionEvent(1700000000.0);
  EXPECT_EQ(absl::BytesToHexString(payload), "0900000040fc54d9411a0d627261696e2e4576656e743a32");
  EXPECT_EQ(absl::BytesToHexString(FrameRecord(payload)), absl::BytesToHexString(kVersionRecord));
}

TEST(EventEncodingTest, ScalarRecordMatchesReference) {
  const std::string payload = EncodeScalarEvent(1700000001.0, 1, "loss", 0.5f);
  EXPECT_EQ(absl::BytesToHexString(payload),
            "0900004040fc54d94110012a0d0a0b0a046c6f7373150000003f");
  EXPECT_EQ(absl::BytesToHexString(FrameRecord(payload)), absl::BytesToHexString(kLossRecord));
}

TEST(EventEncodingTest, Proto3DefaultsOmittedOneofMembersKept) {
  // wall_time 0 and step 0 vanish; summary and simple_value (oneof members) stay even at 0.
  EXPECT_EQ(absl::BytesToHexString(EncodeScalarEvent(0.0, 0, "a", 0.0f)),
            "2a0a0a080a01611500000000");
  // A negative int64 step is a ten-byte varint of its two's complement.
  EXPECT_EQ(absl::BytesToHexString(EncodeScalarEvent(0.0, -1, "a", 0.0f)),
            "10ffffffffffffffffff012a0a0a080a01611500000000");
}

TEST(EventEncodingTest, ImageEvent) {
  const std::string payload = EncodeImageEvent(0.0, 2, "im", "PNG", 5, 7, 3);
  // Event{step=2, summary{value{tag="im", image{height=5, width=7, colorspace=3, "PNG"}}}}
  EXPECT_EQ(absl::BytesToHexString(payload), "10022a130a110a02696d220b0805100718032203504e47");
}

class EventWriterTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::FreshTestDir("tensorboard_test"); }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
};

TEST_F(EventWriterTest, FileBytesMatchReference) {
  absl::StatusOr<std::unique_ptr<EventWriter>> w =
      EventWriter::Create(dir_.string(), "testhost", 1700000000.0, 4242);
  ASSERT_TRUE(w.ok()) << w.status();
  const std::string path = (*w)->path();
  EXPECT_EQ(path, (dir_ / "events.out.tfevents.1700000000.testhost.4242.0").string());
  // Create syncs the version record at once, so the file is valid before any event.
  EXPECT_EQ(ReadFile(path), kVersionRecord);

  ASSERT_TRUE((*w)->AddScalar("loss", 1, 0.5f, 1700000001.0).ok());
  ASSERT_TRUE((*w)->Flush().ok());
  // Flushed bytes are in the file while the writer is still open.
  EXPECT_EQ(absl::BytesToHexString(ReadFile(path)),
            absl::BytesToHexString(kVersionRecord + kLossRecord));
  ASSERT_TRUE((*w)->Close().ok());
  EXPECT_EQ(ReadFile(path), kVersionRecord + kLossRecord);
}

TEST_F(EventWriterTest, FileNameUsesFloorOfWallTime) {
  auto w = EventWriter::Create(dir_.string(), "h", 1700000000.75, 7);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(fs::path((*w)->path()).filename(), "events.out.tfevents.1700000000.h.7.0");
}

TEST_F(EventWriterTest, TwoWritersNeverShareAFile) {
  auto a = EventWriter::Create(dir_.string(), "host", 1700000000.0, 1);
  auto b = EventWriter::Create(dir_.string(), "host", 1700000000.0, 1);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(fs::path((*a)->path()).filename(), "events.out.tfevents.1700000000.host.1.0");
  EXPECT_EQ(fs::path((*b)->path()).filename(), "events.out.tfevents.1700000000.host.1.1");
  ASSERT_TRUE((*a)->AddScalar("x", 1, 1.0f, 1700000001.0).ok());
  ASSERT_TRUE((*a)->Close().ok());
  ASSERT_TRUE((*b)->Close().ok());
  EXPECT_EQ(ReadFile((*b)->path()), kVersionRecord);
}

TEST_F(EventWriterTest, DestructorFlushes) {
  std::string path;
  {
    auto w = EventWriter::Create(dir_.string(), "testhost", 1700000000.0, 4242);
    ASSERT_TRUE(w.ok()) << w.status();
    path = (*w)->path();
    ASSERT_TRUE((*w)->AddScalar("loss", 1, 0.5f, 1700000001.0).ok());
  }
  EXPECT_EQ(ReadFile(path), kVersionRecord + kLossRecord);
}

TEST_F(EventWriterTest, Errors) {
  const std::string missing = (dir_ / "no_such_dir").string();
  auto w = EventWriter::Create(missing, "h", 1.0, 1);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(w.status().message().find(missing), std::string_view::npos) << w.status();

  EXPECT_EQ(EventWriter::Create(dir_.string(), "", 1.0, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EventWriter::Create(dir_.string(), "a/b", 1.0, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EventWriter::Create(dir_.string(), "h", std::nan(""), 1).status().code(),
            absl::StatusCode::kInvalidArgument);

  w = EventWriter::Create(dir_.string(), "h", 1.0, 1);
  ASSERT_TRUE(w.ok()) << w.status();
  EventWriter& writer = **w;
  absl::Status s = writer.AddScalar("", 1, 1.0f, 2.0);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("empty tag"), std::string_view::npos) << s;
  EXPECT_EQ(writer.AddImage("im", 1, "", 1, 1, 1, 2.0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(writer.AddImage("im", 1, "x", 0, 1, 1, 2.0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(writer.AddImage("im", 1, "x", 1, 1, 5, 2.0).code(), absl::StatusCode::kInvalidArgument);
  // Rejected events leave the file untouched.
  ASSERT_TRUE(writer.Close().ok());
  EXPECT_EQ(ReadFile(writer.path()), FrameRecord(EncodeFileVersionEvent(1.0)));

  s = writer.AddScalar("x", 1, 1.0f, 2.0);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find(writer.path()), std::string_view::npos) << s;
  EXPECT_EQ(writer.Flush().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(writer.Close().code(), absl::StatusCode::kFailedPrecondition);
}

// ---------------------------------------------------------------------------------------------
// An independent reader: Python frames the records, checks both CRCs, and decodes the Events
// with google.protobuf from a FileDescriptorProto mirroring TensorFlow's field numbers.

constexpr char kDecodeScript[] = R"PY(
import sys
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

def make_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table

TABLE = make_table()

def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF

def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF

assert crc32c(b"123456789") == 0xE3069283

F = descriptor_pb2.FieldDescriptorProto
fdp = descriptor_pb2.FileDescriptorProto(name="tb_events.proto", package="tensorflow",
                                         syntax="proto3")

def message(name, oneof, fields):
    m = fdp.message_type.add(name=name)
    if oneof:
        m.oneof_decl.add(name=oneof)
    for fname, number, ftype, extra in fields:
        f = m.field.add(name=fname, number=number, type=ftype, label=F.LABEL_OPTIONAL)
        if "msg" in extra:
            f.type_name = ".tensorflow." + extra["msg"]
        if extra.get("repeated"):
            f.label = F.LABEL_REPEATED
        if extra.get("oneof"):
            f.oneof_index = 0

message("Event", "what", [
    ("wall_time", 1, F.TYPE_DOUBLE, {}),
    ("step", 2, F.TYPE_INT64, {}),
    ("file_version", 3, F.TYPE_STRING, {"oneof": True}),
    ("summary", 5, F.TYPE_MESSAGE, {"oneof": True, "msg": "Summary"}),
])
message("Summary", None, [("value", 1, F.TYPE_MESSAGE, {"repeated": True, "msg": "Value"})])
message("Value", "value", [
    ("tag", 1, F.TYPE_STRING, {}),
    ("simple_value", 2, F.TYPE_FLOAT, {"oneof": True}),
    ("image", 4, F.TYPE_MESSAGE, {"oneof": True, "msg": "Image"}),
])
message("Image", None, [
    ("height", 1, F.TYPE_INT32, {}),
    ("width", 2, F.TYPE_INT32, {}),
    ("colorspace", 3, F.TYPE_INT32, {}),
    ("encoded_image_string", 4, F.TYPE_BYTES, {}),
])

pool = descriptor_pool.DescriptorPool()
pool.Add(fdp)
descriptor = pool.FindMessageTypeByName("tensorflow.Event")
if hasattr(message_factory, "GetMessageClass"):
    Event = message_factory.GetMessageClass(descriptor)
else:
    Event = message_factory.MessageFactory(pool).GetPrototype(descriptor)

data = open(sys.argv[1], "rb").read()
pos = 0
while pos < len(data):
    assert pos + 12 <= len(data), "truncated header at %d" % pos
    header = data[pos:pos + 8]
    length = int.from_bytes(header, "little")
    assert int.from_bytes(data[pos + 8:pos + 12], "little") == masked(header), "length crc"
    payload = data[pos + 12:pos + 12 + length]
    assert len(payload) == length, "truncated payload at %d" % pos
    trailer = data[pos + 12 + length:pos + 16 + length]
    assert int.from_bytes(trailer, "little") == masked(payload), "payload crc at %d" % pos
    pos += 16 + length

    event = Event()
    event.ParseFromString(payload)
    # Our hand encoding must be exactly what protobuf itself would write.
    assert event.SerializeToString(deterministic=True) == payload, payload.hex()
    kind = event.WhichOneof("what")
    if kind == "file_version":
        print("version", repr(event.wall_time), event.step, event.file_version)
        continue
    assert kind == "summary", kind
    for v in event.summary.value:
        if v.WhichOneof("value") == "simple_value":
            print("scalar", repr(event.wall_time), event.step, v.tag, repr(v.simple_value))
        else:
            im = v.image
            print("image", repr(event.wall_time), event.step, v.tag, im.height, im.width,
                  im.colorspace, len(im.encoded_image_string),
                  im.encoded_image_string.startswith(b"\x89PNG\r\n\x1a\n"))
)PY";

bool HavePythonProtobuf() {
  return std::system("/usr/bin/python3 -c 'import google.protobuf' >/dev/null 2>&1") == 0;
}

// Runs `command`, returning its exit status and, in `output`, stdout and stderr.
int RunCommand(const std::string& command, std::string* output) {
  std::FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) output->append(buf, n);
  return ::pclose(pipe);
}

TEST_F(EventWriterTest, DecodesWithGoogleProtobuf) {
  // A missing test dependency is a failure, not a skip (scripts/test installs it).
  ASSERT_TRUE(HavePythonProtobuf())
      << "/usr/bin/python3 cannot import google.protobuf: apt-get install python3-protobuf";
  // A 6x4 RGB gradient as the preview image.
  constexpr int kWidth = 6, kHeight = 4;
  std::vector<uint8_t> pixels;
  for (int y = 0; y < kHeight; ++y) {
    for (int x = 0; x < kWidth; ++x) {
      pixels.insert(pixels.end(), {static_cast<uint8_t>(40 * x), static_cast<uint8_t>(60 * y),
                                   static_cast<uint8_t>(200)});
    }
  }
  absl::StatusOr<std::string> png = EncodePng(pixels.data(), kWidth, kHeight, 3);
  ASSERT_TRUE(png.ok()) << png.status();

  auto w = EventWriter::Create(dir_.string(), "testhost", 1700000000.0, 99);
  ASSERT_TRUE(w.ok()) << w.status();
  EventWriter& writer = **w;
  ASSERT_TRUE(writer.AddScalar("loss", 1, 0.5f, 1700000001.0).ok());
  ASSERT_TRUE(writer.AddScalar("loss", 2, 0.25f, 1700000002.5).ok());
  ASSERT_TRUE(writer.AddScalar("lr", 0, 0.0f, 1700000003.0).ok());
  ASSERT_TRUE(writer.AddScalar("big step", int64_t{1} << 40, -1.25f, 1700000004.0).ok());
  ASSERT_TRUE(writer.AddScalar("negative step", -3, 3.0f, 1700000005.0).ok());
  ASSERT_TRUE(writer.AddImage("preview/xy", 2, *png, kHeight, kWidth, 3, 1700000006.0).ok());
  ASSERT_TRUE(writer.Close().ok());

  const std::string script = (dir_ / "decode.py").string();
  std::ofstream(script) << kDecodeScript;
  std::string output;
  const int status =
      RunCommand(absl::StrCat("/usr/bin/python3 '", script, "' '", writer.path(), "'"), &output);
  ASSERT_EQ(status, 0) << output;
  EXPECT_EQ(output, absl::StrCat("version 1700000000.0 0 brain.Event:2\n"
                                 "scalar 1700000001.0 1 loss 0.5\n"
                                 "scalar 1700000002.5 2 loss 0.25\n"
                                 "scalar 1700000003.0 0 lr 0.0\n"
                                 "scalar 1700000004.0 1099511627776 big step -1.25\n"
                                 "scalar 1700000005.0 -3 negative step 3.0\n"
                                 "image 1700000006.0 2 preview/xy 4 6 3 ",
                                 png->size(), " True\n"));
}

}  // namespace
}  // namespace elektronn
