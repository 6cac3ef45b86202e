// PNG encoding through libpng, with its longjmp error reporting turned into absl::Status.
#include "engine/io/png.h"

#include <fcntl.h>
#include <png.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <new>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/core/status.h"

namespace elektronn {
namespace {

// Everything libpng's callbacks touch. Plain data: libpng leaves by longjmp, which must not skip
// destructors, so no C++ object with one lives in the frames between setjmp and longjmp.
struct PngWriteContext {
  std::string* out;
  bool out_of_memory;
  char error[256];
  char warning[256];  // the last warning; libpng often says why just before a generic error
};

void WriteCallback(png_structp png, png_bytep data, size_t length) {
  auto* ctx = static_cast<PngWriteContext*>(png_get_io_ptr(png));
  try {
    ctx->out->append(reinterpret_cast<const char*>(data), length);
  } catch (const std::bad_alloc&) {
    ctx->out_of_memory = true;
  }
  // Outside the catch block: longjmp out of a handler would leak the exception object.
  if (ctx->out_of_memory) png_error(png, "out of memory while collecting the encoded bytes");
}

void FlushCallback(png_structp) {}  // the output is a string; nothing to flush

void ErrorCallback(png_structp png, png_const_charp message) {
  auto* ctx = static_cast<PngWriteContext*>(png_get_error_ptr(png));
  std::snprintf(ctx->error, sizeof(ctx->error), "%s", message);
  png_longjmp(png, 1);
}

// A warning alone leaves a valid PNG, so it is only kept to explain a following error (e.g.
// "Image width exceeds user limit in IHDR" before "Invalid IHDR data").
void WarningCallback(png_structp png, png_const_charp message) {
  auto* ctx = static_cast<PngWriteContext*>(png_get_error_ptr(png));
  std::snprintf(ctx->warning, sizeof(ctx->warning), "%s", message);
}

// Runs the libpng write sequence; false (with ctx->error set) on any libpng error.
bool RunPngWrite(PngWriteContext* ctx, png_bytep* rows, png_uint_32 width, png_uint_32 height,
                 int color_type) {
  png_structp png =
      png_create_write_struct(PNG_LIBPNG_VER_STRING, ctx, ErrorCallback, WarningCallback);
  if (png == nullptr) {
    std::snprintf(ctx->error, sizeof(ctx->error), "libpng could not allocate its write state");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_write_struct(&png, nullptr);
    std::snprintf(ctx->error, sizeof(ctx->error), "libpng could not allocate its info struct");
    return false;
  }
  // `png` and `info` are not modified after this point, so they survive the longjmp intact.
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_set_write_fn(png, ctx, WriteCallback, FlushCallback);
  png_set_IHDR(png, info, width, height, 8, color_type, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

absl::Status ErrnoError(int err, const std::string& path, std::string_view what) {
  return absl::Status(absl::ErrnoToStatusCode(err),
                      absl::StrFormat("PNG file '%s': %s: %s", path, what, std::strerror(err)));
}

absl::Status WriteAll(int fd, std::string_view bytes, const std::string& tmp,
                      const std::string& path) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, path, absl::StrFormat("cannot write the temporary file '%s'", tmp));
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status WriteTemporary(const std::string& tmp, std::string_view bytes,
                            const std::string& path) {
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return ErrnoError(errno, path, absl::StrFormat("cannot create the temporary file '%s'", tmp));
  }
  absl::Status s = WriteAll(fd, bytes, tmp, path);
  // Without the fsync, a crash after the rename could leave `path` naming an empty file.
  if (s.ok() && ::fsync(fd) != 0) {
    s = ErrnoError(errno, path, absl::StrFormat("cannot fsync the temporary file '%s'", tmp));
  }
  if (::close(fd) != 0 && s.ok()) {
    s = ErrnoError(errno, path, absl::StrFormat("cannot close the temporary file '%s'", tmp));
  }
  return s;
}

}  // namespace

absl::StatusOr<std::string> EncodePng(const uint8_t* pixels, int width, int height, int channels) {
  if (pixels == nullptr) return absl::InvalidArgumentError("EncodePng: pixels is null");
  if (width < 1 || height < 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "EncodePng: image size %dx%d (width x height) is empty; both must be at least 1", width,
        height));
  }
  int color_type = 0;
  switch (channels) {
    case 1:
      color_type = PNG_COLOR_TYPE_GRAY;
      break;
    case 2:
      color_type = PNG_COLOR_TYPE_GRAY_ALPHA;
      break;
    case 3:
      color_type = PNG_COLOR_TYPE_RGB;
      break;
    case 4:
      color_type = PNG_COLOR_TYPE_RGBA;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrFormat(
          "EncodePng: %d channels; valid are 1 (grey), 2 (grey+alpha), 3 (RGB), 4 (RGBA)",
          channels));
  }

  // libpng wants mutable row pointers but only reads through them when writing.
  const size_t row_bytes = static_cast<size_t>(width) * static_cast<size_t>(channels);
  std::vector<png_bytep> rows(static_cast<size_t>(height));
  for (size_t y = 0; y < rows.size(); ++y) rows[y] = const_cast<png_bytep>(pixels + y * row_bytes);

  std::string out;
  PngWriteContext ctx{&out, false, {}, {}};
  if (!RunPngWrite(&ctx, rows.data(), static_cast<png_uint_32>(width),
                   static_cast<png_uint_32>(height), color_type)) {
    const auto code = ctx.out_of_memory ? absl::StatusCode::kResourceExhausted
                                        : absl::StatusCode::kInvalidArgument;
    const std::string why = ctx.warning[0] == '\0'
                                ? std::string(ctx.error)
                                : absl::StrCat(ctx.error, " (", ctx.warning, ")");
    return absl::Status(code, absl::StrFormat("EncodePng: libpng failed on a %dx%d image with %d "
                                              "channels: %s",
                                              width, height, channels, why));
  }
  return out;
}

absl::Status WritePngFile(const std::string& path, const uint8_t* pixels, int width, int height,
                          int channels) {
  absl::StatusOr<std::string> png = EncodePng(pixels, width, height, channels);
  if (!png.ok()) {
    return absl::Status(png.status().code(),
                        absl::StrFormat("PNG file '%s': %s", path, png.status().message()));
  }
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return absl::NotFoundError(
        absl::StrFormat("PNG file '%s': directory '%s' does not exist", path, dir.string()));
  }

  const std::string tmp = absl::StrCat(path, ".tmp-", ::getpid());
  absl::Status s = WriteTemporary(tmp, *png, path);
  if (s.ok() && std::rename(tmp.c_str(), path.c_str()) != 0) {
    s = ErrnoError(errno, path, absl::StrFormat("cannot rename '%s' over it", tmp));
  }
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  // The rename is durable only once the directory entry is on disk.
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) {
    return ErrnoError(errno, path,
                      absl::StrFormat("cannot open directory '%s' to sync it", dir.string()));
  }
  const int r = ::fsync(dir_fd);
  const int err = errno;
  ::close(dir_fd);
  if (r != 0)
    return ErrnoError(err, path, absl::StrFormat("cannot fsync directory '%s'", dir.string()));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> FloatToGrey8(std::span<const float> values, float min_value,
                                                  float max_value) {
  if (!std::isfinite(min_value) || !std::isfinite(max_value) || !(min_value < max_value)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "FloatToGrey8: value range [%g, %g] is invalid; need finite bounds with min < max",
        min_value, max_value));
  }
  // In double so that a range like [-FLT_MAX, FLT_MAX] does not overflow to inf.
  const double lo = min_value;
  const double scale = 255.0 / (static_cast<double>(max_value) - lo);
  std::vector<uint8_t> grey(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    const double v = (static_cast<double>(values[i]) - lo) * scale;
    if (!(v > 0.0)) {  // also catches NaN
      grey[i] = 0;
    } else if (v >= 255.0) {
      grey[i] = 255;
    } else {
      grey[i] = static_cast<uint8_t>(v + 0.5);
    }
  }
  return grey;
}

}  // namespace elektronn
