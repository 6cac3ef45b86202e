// TensorBoard event files: scalars and images a trainer logs, readable by stock TensorBoard.
//
// A file `events.out.tfevents.<unix time>.<host>.<pid>.<n>` holds TFRecords, each
//   uint64 length | uint32 masked_crc32c(length bytes) | payload | uint32 masked_crc32c(payload)
// (little-endian), whose payload is a serialised tensorflow.Event. The first record carries
// file_version "brain.Event:2". The messages are encoded by hand (no TensorFlow protos in
// Debian); the field numbers mirror tensorflow/core/util/event.proto and summary.proto.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace elektronn {

inline constexpr char kEventFileVersion[] = "brain.Event:2";

// ---------------------------------------------------------------------------------------------
// Wire format. Public so tests (and anything streaming events elsewhere) can get the exact
// bytes without a file. Fields equal to their proto3 default (wall_time 0, step 0) are omitted,
// as protobuf's own serialiser does; oneof members (file_version, summary, simple_value, image)
// are always written.

// Frames one serialised Event as a TFRecord: length, its masked CRC, payload, payload's CRC.
std::string FrameRecord(std::string_view payload);

// Event{wall_time, file_version = "brain.Event:2"}.
std::string EncodeFileVersionEvent(double wall_time);

// Event{wall_time, step, summary{value{tag, simple_value}}}.
std::string EncodeScalarEvent(double wall_time, int64_t step, std::string_view tag, float value);

// Event{wall_time, step, summary{value{tag, image{height, width, colorspace,
// encoded_image_string}}}}. Does not validate; EventWriter::AddImage does.
std::string EncodeImageEvent(double wall_time, int64_t step, std::string_view tag,
                             std::string_view encoded_image, int height, int width, int colorspace);

// ---------------------------------------------------------------------------------------------

// Appends events to one new event file. Not thread-safe: one writer belongs to one trainer
// loop. After a write error the writer stays failed and every later call returns that error,
// because a torn record would make TensorBoard stop reading at it anyway.
class EventWriter {
 public:
  // Creates `<dir>/events.out.tfevents.<floor(wall_time)>.<hostname>.<pid>.<n>` with the
  // smallest n >= 0 whose file does not exist yet (exclusive create, so two writers, even in
  // two processes, never share a file), writes the file_version record, and syncs the file and
  // the directory. `dir` must exist (NotFound otherwise); `hostname` must be non-empty without
  // '/'; `wall_time` is Unix seconds and must be finite. The caller passes the clock, host and
  // pid so tests control the name.
  static absl::StatusOr<std::unique_ptr<EventWriter>> Create(const std::string& dir,
                                                             const std::string& hostname,
                                                             double wall_time, int pid);

  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  // Flushes and closes; errors at this point are lost, so call Close() to see them.
  ~EventWriter();

  // Logs one scalar (TensorBoard's "Scalars" tab). `tag` must be non-empty.
  absl::Status AddScalar(std::string_view tag, int64_t step, float value, double wall_time);

  // Logs one encoded image (e.g. EncodePng's output; TensorBoard's "Images" tab). `colorspace`
  // is the channel count: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA. InvalidArgument for an empty
  // tag or image, a height or width < 1, or a colorspace outside 1..4.
  absl::Status AddImage(std::string_view tag, int64_t step, std::string_view png_bytes, int height,
                        int width, int colorspace, double wall_time);

  // Pushes buffered events to the kernel (fflush) and to disk (fsync), so a crash of the
  // process or the machine loses only events added after the last Flush.
  absl::Status Flush();

  // Flushes and closes the file. Later calls return FailedPrecondition.
  absl::Status Close();

  // The event file's full path.
  const std::string& path() const { return path_; }

 private:
  EventWriter(std::string path, std::FILE* file) : path_(std::move(path)), file_(file) {}

  absl::Status WriteEvent(std::string_view payload);
  absl::Status Usable() const;

  std::string path_;
  std::FILE* file_;       // null once closed
  absl::Status failure_;  // the first I/O error; sticky
};

}  // namespace elektronn
