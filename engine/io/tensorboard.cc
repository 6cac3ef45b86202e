// TensorBoard event files: a minimal protobuf wire encoder for Event/Summary and TFRecord framing.
#include "engine/io/tensorboard.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/core/status.h"
#include "engine/io/crc32c.h"

namespace elektronn {
namespace {

// Field numbers from tensorflow/core/util/event.proto and framework/summary.proto.
constexpr int kFieldEventWallTime = 1;     // double
constexpr int kFieldEventStep = 2;         // int64
constexpr int kFieldEventFileVersion = 3;  // string, oneof `what`
constexpr int kFieldEventSummary = 5;      // Summary, oneof `what`
constexpr int kFieldSummaryValue = 1;      // repeated Summary.Value
constexpr int kFieldValueTag = 1;          // string
constexpr int kFieldValueSimpleValue = 2;  // float, oneof `value`
constexpr int kFieldValueImage = 4;        // Summary.Image, oneof `value`
constexpr int kFieldImageHeight = 1;       // int32
constexpr int kFieldImageWidth = 2;        // int32
constexpr int kFieldImageColorspace = 3;   // int32
constexpr int kFieldImageEncoded = 4;      // bytes

// Builds one protobuf message in wire format. Each field is a key varint
// (field_number << 3 | wire_type) followed by the value; all fixed-width values are
// little-endian regardless of the host.
class WireEncoder {
 public:
  void VarintField(int field, uint64_t value) {
    Key(field, kVarint);
    Varint(value);
  }
  // int32/int64 fields are plain varints of the two's complement value, so negative numbers
  // take ten bytes; that is the int64 encoding, not zigzag (which is sint64's).
  void Int64Field(int field, int64_t value) { VarintField(field, static_cast<uint64_t>(value)); }
  void DoubleField(int field, double value) {
    uint64_t bits;
    std::memcpy(&bits, &value, sizeof(bits));
    Key(field, kFixed64);
    Fixed(bits, 8);
  }
  void FloatField(int field, float value) {
    uint32_t bits;
    std::memcpy(&bits, &value, sizeof(bits));
    Key(field, kFixed32);
    Fixed(bits, 4);
  }
  // Strings, bytes and embedded messages: the length as a varint, then the bytes.
  void BytesField(int field, std::string_view bytes) {
    Key(field, kLengthDelimited);
    Varint(bytes.size());
    out_.append(bytes);
  }
  std::string Take() { return std::move(out_); }

 private:
  enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

  void Key(int field, WireType type) { Varint((static_cast<uint64_t>(field) << 3) | type); }
  // Seven bits per byte, least significant group first, high bit set on all but the last.
  void Varint(uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>((v & 0x7F) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  void Fixed(uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  }

  std::string out_;
};

void AppendFixed32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

// The Event fields every record shares. proto3 omits a plain scalar field equal to its
// default; for floating point protobuf compares the bit pattern, so -0.0 is written.
void EncodeEventHeader(WireEncoder& event, double wall_time, int64_t step) {
  uint64_t bits;
  std::memcpy(&bits, &wall_time, sizeof(bits));
  if (bits != 0) event.DoubleField(kFieldEventWallTime, wall_time);
  if (step != 0) event.Int64Field(kFieldEventStep, step);
}

// Event{wall_time, step, summary{value{<value>}}}, `value` being a serialised Summary.Value.
std::string EncodeSummaryEvent(double wall_time, int64_t step, std::string_view value) {
  WireEncoder summary;
  summary.BytesField(kFieldSummaryValue, value);
  WireEncoder event;
  EncodeEventHeader(event, wall_time, step);
  event.BytesField(kFieldEventSummary, summary.Take());
  return event.Take();
}

absl::Status ErrnoError(int err, const std::string& path, std::string_view what) {
  if (err == 0) err = EIO;  // stdio does not always set errno
  return absl::Status(absl::ErrnoToStatusCode(err),
                      absl::StrFormat("event file '%s': %s: %s", path, what, std::strerror(err)));
}

absl::Status SyncDirectory(const std::string& dir, const std::string& path) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, path, absl::StrFormat("cannot open directory '%s'", dir));
  const int r = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (r != 0) return ErrnoError(err, path, absl::StrFormat("cannot fsync directory '%s'", dir));
  return absl::OkStatus();
}

// Far more writers than any training directory sees; a bound keeps a broken filesystem from
// spinning forever.
constexpr int kMaxFileIndex = 100000;

}  // namespace

std::string FrameRecord(std::string_view payload) {
  std::string header;
  const uint64_t length = payload.size();
  for (int i = 0; i < 8; ++i) header.push_back(static_cast<char>((length >> (8 * i)) & 0xFF));
  std::string record;
  record.reserve(8 + 4 + payload.size() + 4);
  record.append(header);
  AppendFixed32(record, MaskedCrc32c(header));
  record.append(payload);
  AppendFixed32(record, MaskedCrc32c(payload));
  return record;
}

std::string EncodeFileVersionEvent(double wall_time) {
  WireEncoder event;
  EncodeEventHeader(event, wall_time, 0);
  event.BytesField(kFieldEventFileVersion, kEventFileVersion);
  return event.Take();
}

std::string EncodeScalarEvent(double wall_time, int64_t step, std::string_view tag, float value) {
  WireEncoder v;
  v.BytesField(kFieldValueTag, tag);
  v.FloatField(kFieldValueSimpleValue, value);  // a oneof member: written even when 0
  return EncodeSummaryEvent(wall_time, step, v.Take());
}

std::string EncodeImageEvent(double wall_time, int64_t step, std::string_view tag,
                             std::string_view encoded_image, int height, int width,
                             int colorspace) {
  WireEncoder image;
  if (height != 0) image.Int64Field(kFieldImageHeight, height);
  if (width != 0) image.Int64Field(kFieldImageWidth, width);
  if (colorspace != 0) image.Int64Field(kFieldImageColorspace, colorspace);
  if (!encoded_image.empty()) image.BytesField(kFieldImageEncoded, encoded_image);
  WireEncoder v;
  v.BytesField(kFieldValueTag, tag);
  v.BytesField(kFieldValueImage, image.Take());
  return EncodeSummaryEvent(wall_time, step, v.Take());
}

absl::StatusOr<std::unique_ptr<EventWriter>> EventWriter::Create(const std::string& dir,
                                                                 const std::string& hostname,
                                                                 double wall_time, int pid) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::NotFoundError(
        absl::StrFormat("event file directory '%s' does not exist or is not a directory", dir));
  }
  if (hostname.empty() || hostname.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "event file in '%s': hostname '%s' cannot be part of a file name; need a non-empty "
        "name without '/'",
        dir, hostname));
  }
  if (!std::isfinite(wall_time)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "event file in '%s': wall_time %f is not a finite number of Unix seconds", dir, wall_time));
  }

  const std::string prefix =
      absl::StrCat(dir, "/events.out.tfevents.", static_cast<int64_t>(std::floor(wall_time)), ".",
                   hostname, ".", pid, ".");
  std::string path;
  int fd = -1;
  for (int n = 0; n < kMaxFileIndex && fd < 0; ++n) {
    path = absl::StrCat(prefix, n);
    // O_EXCL makes "find a free n" and "take it" one atomic step, even across processes.
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST) return ErrnoError(errno, path, "cannot create");
  }
  if (fd < 0) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("event file '%s<n>': all n in [0, %d) are taken", prefix, kMaxFileIndex));
  }
  std::FILE* file = ::fdopen(fd, "wb");
  if (file == nullptr) {
    const int err = errno;
    ::close(fd);
    ::unlink(path.c_str());
    return ErrnoError(err, path, "cannot open a stream on it");
  }

  std::unique_ptr<EventWriter> writer(new EventWriter(path, file));
  absl::Status s = writer->WriteEvent(EncodeFileVersionEvent(wall_time));
  if (s.ok()) s = writer->Flush();
  // A new file is only durable once its directory entry is.
  if (s.ok()) s = SyncDirectory(dir, path);
  if (!s.ok()) {
    writer->Close().IgnoreError();
    ::unlink(path.c_str());  // a file without its version record would confuse readers
    return s;
  }
  return writer;
}

EventWriter::~EventWriter() {
  if (file_ != nullptr) Close().IgnoreError();
}

absl::Status EventWriter::Usable() const {
  if (file_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrFormat("event file '%s': the writer is closed", path_));
  }
  return failure_;
}

absl::Status EventWriter::WriteEvent(std::string_view payload) {
  RETURN_IF_ERROR(Usable());
  const std::string record = FrameRecord(payload);
  errno = 0;
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size()) {
    failure_ = ErrnoError(errno, path_, "cannot append an event");
  }
  return failure_;
}

absl::Status EventWriter::AddScalar(std::string_view tag, int64_t step, float value,
                                    double wall_time) {
  if (tag.empty()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("event file '%s': scalar at step %d has an empty tag", path_, step));
  }
  return WriteEvent(EncodeScalarEvent(wall_time, step, tag, value));
}

absl::Status EventWriter::AddImage(std::string_view tag, int64_t step, std::string_view png_bytes,
                                   int height, int width, int colorspace, double wall_time) {
  if (tag.empty()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("event file '%s': image at step %d has an empty tag", path_, step));
  }
  if (png_bytes.empty() || height < 1 || width < 1 || colorspace < 1 || colorspace > 4) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "event file '%s': image '%s' at step %d: %d bytes, height %d, width %d, colorspace "
        "%d; need non-empty bytes, height and width >= 1, colorspace 1 (grey), 2 "
        "(grey+alpha), 3 (RGB) or 4 (RGBA)",
        path_, tag, step, png_bytes.size(), height, width, colorspace));
  }
  return WriteEvent(EncodeImageEvent(wall_time, step, tag, png_bytes, height, width, colorspace));
}

absl::Status EventWriter::Flush() {
  RETURN_IF_ERROR(Usable());
  errno = 0;
  if (std::fflush(file_) != 0) {
    failure_ = ErrnoError(errno, path_, "cannot flush");
  } else if (::fsync(::fileno(file_)) != 0) {
    failure_ = ErrnoError(errno, path_, "cannot fsync");
  }
  return failure_;
}

absl::Status EventWriter::Close() {
  if (file_ == nullptr) return Usable();
  absl::Status s = failure_.ok() ? Flush() : failure_;
  errno = 0;
  if (std::fclose(file_) != 0 && s.ok()) s = ErrnoError(errno, path_, "cannot close");
  file_ = nullptr;
  return s;
}

}  // namespace elektronn
