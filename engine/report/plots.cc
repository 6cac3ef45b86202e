// Training plots drawn with cairo: a small axes layer (ticks, labels, legends) and two figures.
#include "engine/report/plots.h"

#include <cairo.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"

namespace elektronn {
namespace {

// cairo is thread-safe as long as each thread draws on its own surface, which is all we do;
// nothing below keeps global state.

constexpr char kFont[] = "DejaVu Sans";
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr int kMaxDrawnPoints = 2000;  // Longer series are subsampled, as ELEKTRONN2 did.
constexpr int kStatsWindow = 200;      // Mean +- std lines of the last this many losses.
constexpr int kErrorSmoothing = 8;

struct Rgb {
  double r, g, b;
};
constexpr Rgb kBlack{0, 0, 0};
constexpr Rgb kDarkGrey{0.25, 0.25, 0.25};
constexpr Rgb kGridGrey{0.88, 0.88, 0.88};
constexpr Rgb kGreen{0.17, 0.63, 0.17};
constexpr Rgb kRed{0.84, 0.15, 0.16};
constexpr Rgb kBlue{0.12, 0.47, 0.71};
constexpr Rgb kOrange{1.0, 0.50, 0.05};
constexpr Rgb kPurple{0.58, 0.40, 0.74};

struct Style {
  Rgb colour = kBlack;
  double width = 1.5;
  bool dashed = false;
  double alpha = 1.0;
  bool markers = false;  // A dot on every point, not only on isolated ones.
};

struct Range {
  double lo = 0, hi = 1;
};

// Values beyond this are treated as "off the chart" and do not widen a range.
constexpr double kHuge = 1e100;

bool Usable(double v) { return std::isfinite(v) && std::abs(v) < kHuge; }

// Collects finite values and yields a padded, never empty or degenerate, axis range.
class RangeBuilder {
 public:
  void Add(double v) {
    if (!Usable(v)) return;
    lo_ = std::min(lo_, v);
    hi_ = std::max(hi_, v);
  }
  void Add(const std::vector<double>& vs) {
    for (double v : vs) Add(v);
  }
  bool empty() const { return lo_ > hi_; }
  // Caps the upper end (e.g. at mean + 2 std) without going below the lower end.
  void CapHigh(double cap) {
    if (!empty() && Usable(cap)) hi_ = std::max(lo_, std::min(hi_, cap));
  }
  // A single value v becomes v +- 10 %, or +- `zero_pad` when v is 0.
  Range Padded(double frac = 0.04, double zero_pad = 1.0) const {
    if (empty()) return {0, 1};
    const double span = hi_ - lo_;
    if (span <= 1e-12 * std::max(1.0, std::abs(hi_))) {
      const double pad = lo_ != 0 ? std::abs(lo_) * 0.1 : zero_pad;
      return {lo_ - pad, hi_ + pad};
    }
    return {lo_ - span * frac, hi_ + span * frac};
  }

 private:
  double lo_ = std::numeric_limits<double>::infinity();
  double hi_ = -std::numeric_limits<double>::infinity();
};

// Tick positions at 1, 2, 2.5 or 5 times a power of ten, about `target` of them.
std::vector<double> NiceTicks(Range r, int target, bool integer) {
  const double raw = (r.hi - r.lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = 10 * mag;
  for (double m : {1.0, 2.0, 2.5, 5.0}) {
    if (m * mag >= raw * (1 - 1e-9)) {
      step = m * mag;
      break;
    }
  }
  if (integer) step = std::max(1.0, std::round(step));
  std::vector<double> ticks;
  const double first = std::ceil(r.lo / step - 1e-9) * step;
  for (int i = 0; i < 100; ++i) {
    double t = first + i * step;
    if (t > r.hi + step * 1e-9) break;
    if (std::abs(t) < step * 1e-9) t = 0;
    ticks.push_back(t);
  }
  return ticks;
}

// The shortest labels (fixed or scientific by magnitude) that still tell the ticks apart.
std::vector<std::string> TickLabels(const std::vector<double>& ticks) {
  if (ticks.empty()) return {};
  double max_abs = 0;
  for (double t : ticks) max_abs = std::max(max_abs, std::abs(t));
  const double step = ticks.size() > 1 ? ticks[1] - ticks[0] : std::max(max_abs, 1.0);
  const bool sci = max_abs >= 1e5 || (max_abs > 0 && max_abs < 1e-3);
  std::vector<std::string> labels(ticks.size());
  for (int precision = 0; precision <= 8; ++precision) {
    bool exact = true;
    for (size_t i = 0; i < ticks.size(); ++i) {
      if (ticks[i] == 0) {
        labels[i] = "0";
        continue;
      }
      labels[i] = sci ? absl::StrFormat("%.*e", precision, ticks[i])
                      : absl::StrFormat("%.*f", precision, ticks[i]);
      exact = exact && std::abs(std::strtod(labels[i].c_str(), nullptr) - ticks[i]) <= step * 1e-3;
    }
    if (exact) break;
  }
  for (std::string& l : labels) {
    l = absl::StrReplaceAll(l, {{"e-0", "e-"}, {"e+0", "e"}, {"e+", "e"}});
    if (l == "-0") l = "0";
  }
  return labels;
}

// Draws UTF-8 text; (ha, va) place the anchor: 0 = left/top, 0.5 = centre, 1 = right/bottom.
void Text(cairo_t* cr, double x, double y, const std::string& s, double size, double ha, double va,
          Rgb colour = kBlack, bool bold = false, double angle = 0) {
  cairo_save(cr);
  cairo_select_font_face(cr, kFont, CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
  cairo_font_extents_t fe;
  cairo_font_extents(cr, &fe);
  cairo_text_extents_t te;
  cairo_text_extents(cr, s.c_str(), &te);
  cairo_translate(cr, x, y);
  cairo_rotate(cr, angle);
  cairo_move_to(cr, -ha * te.x_advance, fe.ascent - va * (fe.ascent + fe.descent));
  cairo_set_source_rgb(cr, colour.r, colour.g, colour.b);
  cairo_show_text(cr, s.c_str());
  cairo_restore(cr);
}

double TextWidth(cairo_t* cr, const std::string& s, double size) {
  cairo_save(cr);
  cairo_select_font_face(cr, kFont, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
  cairo_text_extents_t te;
  cairo_text_extents(cr, s.c_str(), &te);
  cairo_restore(cr);
  return te.x_advance;
}

void SetSource(cairo_t* cr, Rgb c, double alpha = 1.0) {
  cairo_set_source_rgba(cr, c.r, c.g, c.b, alpha);
}

void ApplyStyle(cairo_t* cr, const Style& s) {
  SetSource(cr, s.colour, s.alpha);
  cairo_set_line_width(cr, s.width);
  cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
  cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
  if (s.dashed) {
    const double dash[] = {6.0, 4.0};
    cairo_set_dash(cr, dash, 2, 0);
  } else {
    cairo_set_dash(cr, nullptr, 0, 0);
  }
}

constexpr double kTickFont = 13;
constexpr double kLabelFont = 14;
constexpr double kTitleFont = 15;

struct LegendEntry {
  std::string label;
  Style style;
  bool marker_only = false;
};

// One plotting frame with data ranges. Twins share the frame (and the record of where data
// was drawn, which the legend uses to find an empty corner) but have their own y range.
class Panel {
 public:
  Panel(cairo_t* cr, double x, double y, double w, double h, Range xr, Range yr)
      : cr_(cr),
        x_(x),
        y_(y),
        w_(w),
        h_(h),
        xr_(xr),
        yr_(yr),
        drawn_(std::make_shared<std::vector<std::pair<double, double>>>()) {}

  Panel Twin(Range yr) const {
    Panel p = *this;
    p.yr_ = yr;
    return p;
  }
  const Range& y_range() const { return yr_; }

  // Pixel coordinates, clamped far outside the frame so cairo's fixed point never overflows.
  double Px(double v) const {
    return std::clamp(x_ + (v - xr_.lo) / (xr_.hi - xr_.lo) * w_, -1e6, 1e6);
  }
  double Py(double v) const {
    return std::clamp(y_ + h_ - (v - yr_.lo) / (yr_.hi - yr_.lo) * h_, -1e6, 1e6);
  }

  void Background(bool integer_x) const {
    cairo_save(cr_);
    cairo_set_source_rgb(cr_, 1, 1, 1);
    cairo_rectangle(cr_, x_, y_, w_, h_);
    cairo_fill(cr_);
    ApplyStyle(cr_, {kGridGrey, 1.0});
    for (double t : NiceTicks(xr_, 8, integer_x)) {
      const double px = std::round(Px(t)) + 0.5;
      cairo_move_to(cr_, px, y_);
      cairo_line_to(cr_, px, y_ + h_);
    }
    for (double t : NiceTicks(yr_, 5, false)) {
      const double py = std::round(Py(t)) + 0.5;
      cairo_move_to(cr_, x_, py);
      cairo_line_to(cr_, x_ + w_, py);
    }
    cairo_stroke(cr_);
    cairo_restore(cr_);
  }

  void Frame() const {
    cairo_save(cr_);
    ApplyStyle(cr_, {kBlack, 1.0});
    cairo_rectangle(cr_, std::round(x_) + 0.5, std::round(y_) + 0.5, std::round(w_),
                    std::round(h_));
    cairo_stroke(cr_);
    cairo_restore(cr_);
  }

  void XAxis(const std::string& label, bool integer) const {
    cairo_save(cr_);
    ApplyStyle(cr_, {kBlack, 1.0});
    const std::vector<double> ticks = NiceTicks(xr_, 8, integer);
    const std::vector<std::string> labels = TickLabels(ticks);
    for (size_t i = 0; i < ticks.size(); ++i) {
      const double px = std::round(Px(ticks[i])) + 0.5;
      cairo_move_to(cr_, px, y_ + h_);
      cairo_line_to(cr_, px, y_ + h_ + 5);
      Text(cr_, px, y_ + h_ + 7, labels[i], kTickFont, 0.5, 0);
    }
    cairo_stroke(cr_);
    Text(cr_, x_ + w_ / 2, y_ + h_ + 25, label, kLabelFont, 0.5, 0);
    cairo_restore(cr_);
  }

  // A y axis on the left, or on the right `offset` pixels beyond the frame, in `colour`.
  void YAxis(const std::string& label, bool right = false, double offset = 0,
             Rgb colour = kBlack) const {
    cairo_save(cr_);
    ApplyStyle(cr_, {colour, 1.0});
    const double spine = right ? std::round(x_ + w_ + offset) + 0.5 : std::round(x_) + 0.5;
    const double dir = right ? 1 : -1;
    if (offset != 0) {
      cairo_move_to(cr_, spine, y_);
      cairo_line_to(cr_, spine, y_ + h_);
    }
    const std::vector<double> ticks = NiceTicks(yr_, 5, false);
    const std::vector<std::string> labels = TickLabels(ticks);
    double widest = 0;
    for (size_t i = 0; i < ticks.size(); ++i) {
      const double py = std::round(Py(ticks[i])) + 0.5;
      cairo_move_to(cr_, spine, py);
      cairo_line_to(cr_, spine + dir * 5, py);
      Text(cr_, spine + dir * 7, py, labels[i], kTickFont, right ? 0 : 1, 0.5, colour);
      widest = std::max(widest, TextWidth(cr_, labels[i], kTickFont));
    }
    cairo_stroke(cr_);
    Text(cr_, spine + dir * (widest + 12), y_ + h_ / 2, label, kLabelFont, 0.5, right ? 0 : 1,
         colour, false, -M_PI / 2);
    cairo_restore(cr_);
  }

  void Title(const std::string& title) const {
    Text(cr_, x_ + w_ / 2, y_ - 8, title, kTitleFont, 0.5, 1, kBlack, true);
  }

  // A polyline broken at non-finite values; points with no finite neighbour get a dot so a
  // single value still shows.
  void Line(const std::vector<double>& xs, const std::vector<double>& ys, const Style& s) const {
    const size_t n = std::min(xs.size(), ys.size());
    auto ok = [&](size_t i) { return i < n && std::isfinite(xs[i]) && std::isfinite(ys[i]); };
    cairo_save(cr_);
    Clip();
    ApplyStyle(cr_, s);
    bool open = false;
    double last_x = 0, last_y = 0;
    for (size_t i = 0; i < n; ++i) {
      if (!ok(i)) {
        open = false;
        continue;
      }
      const double px = Px(xs[i]), py = Py(ys[i]);
      if (open) {
        RecordSegment(last_x, last_y, px, py);
        cairo_line_to(cr_, px, py);
      } else {
        Record(px, py);
        cairo_move_to(cr_, px, py);
        open = true;
      }
      last_x = px;
      last_y = py;
    }
    cairo_stroke(cr_);
    cairo_set_dash(cr_, nullptr, 0, 0);
    for (size_t i = 0; i < n; ++i) {
      const bool isolated = (i == 0 || !ok(i - 1)) && !ok(i + 1);
      if (ok(i) && (s.markers || isolated)) {
        cairo_new_sub_path(cr_);
        cairo_arc(cr_, Px(xs[i]), Py(ys[i]), std::max(2.5, s.width * 1.6), 0, 2 * M_PI);
      }
    }
    cairo_fill(cr_);
    cairo_restore(cr_);
  }

  // Filled dots, each in its own grey level (0 = black).
  void GreyDots(const std::vector<double>& xs, const std::vector<double>& ys,
                const std::vector<double>& grey, double radius) const {
    cairo_save(cr_);
    Clip();
    for (size_t i = 0; i < xs.size(); ++i) {
      if (!std::isfinite(xs[i]) || !std::isfinite(ys[i])) continue;
      const double px = Px(xs[i]), py = Py(ys[i]);
      Record(px, py);
      cairo_set_source_rgb(cr_, grey[i], grey[i], grey[i]);
      cairo_arc(cr_, px, py, radius, 0, 2 * M_PI);
      cairo_fill(cr_);
    }
    cairo_restore(cr_);
  }

  void HLine(double y, const Style& s) const {
    if (!std::isfinite(y)) return;
    cairo_save(cr_);
    Clip();
    ApplyStyle(cr_, s);
    const double py = Py(y);
    RecordSegment(x_, py, x_ + w_, py);
    cairo_move_to(cr_, x_, py);
    cairo_line_to(cr_, x_ + w_, py);
    cairo_stroke(cr_);
    cairo_restore(cr_);
  }

  // A grey remark in the middle of the frame, e.g. when a series has no finite value.
  void Note(const std::string& text) const {
    Text(cr_, x_ + w_ / 2, y_ + h_ / 2, text, kLabelFont, 0.5, 0.5, kDarkGrey);
  }

  // A boxed legend in whichever corner covers the fewest drawn points.
  void Legend(const std::vector<LegendEntry>& entries) const {
    if (entries.empty()) return;
    const double row = 18, sample = 28, pad = 6;
    double text_w = 0;
    for (const LegendEntry& e : entries) text_w = std::max(text_w, TextWidth(cr_, e.label, 12));
    const double bw = pad * 3 + sample + text_w, bh = pad * 2 + row * entries.size();
    double best_x = x_ + w_ - bw - 6, best_y = y_ + 6;
    size_t best_count = std::numeric_limits<size_t>::max();
    for (int corner = 0; corner < 4; ++corner) {  // upper right, upper left, lower right, left
      const double bx = (corner % 2 == 0) ? x_ + w_ - bw - 6 : x_ + 6;
      const double by = (corner < 2) ? y_ + 6 : y_ + h_ - bh - 6;
      size_t count = 0;
      for (const auto& [px, py] : *drawn_) {
        count += px >= bx && px <= bx + bw && py >= by && py <= by + bh;
      }
      if (count < best_count) {
        best_count = count;
        best_x = bx;
        best_y = by;
      }
    }
    cairo_save(cr_);
    cairo_rectangle(cr_, best_x, best_y, bw, bh);
    cairo_set_source_rgba(cr_, 1, 1, 1, 0.85);
    cairo_fill_preserve(cr_);
    ApplyStyle(cr_, {{0.7, 0.7, 0.7}, 1.0});
    cairo_stroke(cr_);
    for (size_t i = 0; i < entries.size(); ++i) {
      const LegendEntry& e = entries[i];
      const double cy = best_y + pad + row * (i + 0.5);
      const double sx = best_x + pad;
      Style s = e.style;
      s.alpha = std::max(s.alpha, 0.8);
      ApplyStyle(cr_, s);
      if (e.marker_only) {
        cairo_arc(cr_, sx + sample / 2, cy, 3.5, 0, 2 * M_PI);
        cairo_fill(cr_);
      } else {
        cairo_move_to(cr_, sx, cy);
        cairo_line_to(cr_, sx + sample, cy);
        cairo_stroke(cr_);
      }
      Text(cr_, sx + sample + pad, cy, e.label, 12, 0, 0.5);
    }
    cairo_restore(cr_);
  }

 private:
  void Clip() const {
    cairo_rectangle(cr_, x_, y_, w_, h_);
    cairo_clip(cr_);
  }
  void Record(double px, double py) const {
    if (px >= x_ && px <= x_ + w_ && py >= y_ && py <= y_ + h_) drawn_->emplace_back(px, py);
  }
  // Samples a drawn segment every few pixels, so long straight segments count for the legend.
  void RecordSegment(double x0, double y0, double x1, double y1) const {
    const double len = std::hypot(x1 - x0, y1 - y0);
    const int steps = static_cast<int>(std::min(std::ceil(len / 4), 2000.0));
    for (int k = 1; k <= std::max(steps, 1); ++k) {
      const double f = static_cast<double>(k) / std::max(steps, 1);
      Record(x0 + f * (x1 - x0), y0 + f * (y1 - y0));
    }
  }

  cairo_t* cr_;
  double x_, y_, w_, h_;
  Range xr_, yr_;
  std::shared_ptr<std::vector<std::pair<double, double>>> drawn_;
};

// Trailing mean over the last `window` entries, ignoring non-finite ones (NaN where none).
std::vector<double> MovingAverage(const std::vector<double>& v, int window) {
  std::vector<double> out(v.size(), kNaN);
  double sum = 0;
  int count = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    if (std::isfinite(v[i])) {
      sum += v[i];
      ++count;
    }
    if (i >= static_cast<size_t>(window) && std::isfinite(v[i - window])) {
      sum -= v[i - window];
      --count;
    }
    if (count > 0) out[i] = sum / count;
  }
  return out;
}

// Mean and (population) standard deviation of the finite values in v[begin, end).
std::pair<double, double> MeanStd(const std::vector<double>& v, size_t begin, size_t end) {
  double sum = 0, sq = 0;
  int n = 0;
  for (size_t i = begin; i < end; ++i) {
    if (!Usable(v[i])) continue;
    sum += v[i];
    ++n;
  }
  if (n == 0) return {kNaN, kNaN};
  const double mean = sum / n;
  for (size_t i = begin; i < end; ++i) {
    if (Usable(v[i])) sq += (v[i] - mean) * (v[i] - mean);
  }
  return {mean, std::sqrt(sq / n)};
}

// Every s-th element, s chosen so that at most kMaxDrawnPoints remain; the last one is kept.
std::vector<double> Subsample(const std::vector<double>& v) {
  const size_t stride = (v.size() + kMaxDrawnPoints - 1) / kMaxDrawnPoints;
  if (stride <= 1) return v;
  std::vector<double> out;
  for (size_t i = 0; i < v.size(); i += stride) out.push_back(v[i]);
  if ((v.size() - 1) % stride != 0) out.push_back(v.back());
  return out;
}

bool AnyFinite(const std::vector<double>& v) {
  return std::any_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); });
}

double LastFinite(const std::vector<double>& v) {
  for (auto it = v.rbegin(); it != v.rend(); ++it) {
    if (std::isfinite(*it)) return *it;
  }
  return kNaN;
}

std::string Compact(double v) {
  return std::isfinite(v) ? absl::StrFormat("%.4g", v) : std::string("n/a");
}

// A white image surface with its drawing context, released together.
struct Canvas {
  Canvas(int width, int height)
      : surface(cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height),
                cairo_surface_destroy),
        cr(cairo_create(surface.get()), cairo_destroy) {
    cairo_set_source_rgb(cr.get(), 1, 1, 1);
    cairo_paint(cr.get());
  }
  std::unique_ptr<cairo_surface_t, decltype(&cairo_surface_destroy)> surface;
  std::unique_ptr<cairo_t, decltype(&cairo_destroy)> cr;
};

struct FdSink {
  int fd;
  int err = 0;
};

cairo_status_t WriteToFd(void* closure, const unsigned char* data, unsigned int length) {
  auto* sink = static_cast<FdSink*>(closure);
  while (length > 0) {
    const ssize_t n = ::write(sink->fd, data, length);
    if (n < 0) {
      if (errno == EINTR) continue;
      sink->err = errno;
      return CAIRO_STATUS_WRITE_ERROR;
    }
    data += n;
    length -= static_cast<unsigned int>(n);
  }
  return CAIRO_STATUS_SUCCESS;
}

// Encodes the canvas as PNG into a temporary file beside `path`, then renames it over `path`,
// so readers never see a half-written image.
absl::Status SavePng(Canvas& canvas, const std::string& path, const std::string& what) {
  const std::string prefix = absl::StrFormat("%s '%s'", what, path);
  const cairo_status_t drawn = cairo_status(canvas.cr.get());
  if (drawn != CAIRO_STATUS_SUCCESS) {
    return absl::InternalError(
        absl::StrCat(prefix, ": drawing failed: ", cairo_status_to_string(drawn)));
  }
  cairo_surface_flush(canvas.surface.get());
  std::string tmp = absl::StrCat(path, ".tmp-XXXXXX");
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0) {
    std::string dir = std::filesystem::path(path).parent_path().string();
    if (dir.empty()) dir = ".";
    return absl::ErrnoToStatus(
        errno, absl::StrFormat("%s: cannot create a temporary file in '%s'", prefix, dir));
  }
  ::fchmod(fd, 0644);  // mkstemp makes it private; a plot is for everyone to look at.
  FdSink sink{fd};
  const cairo_status_t written =
      cairo_surface_write_to_png_stream(canvas.surface.get(), WriteToFd, &sink);
  absl::Status status;
  if (written != CAIRO_STATUS_SUCCESS) {
    status =
        sink.err != 0
            ? absl::ErrnoToStatus(sink.err, absl::StrFormat("%s: cannot write '%s'", prefix, tmp))
            : absl::InternalError(
                  absl::StrCat(prefix, ": PNG encoding failed: ", cairo_status_to_string(written)));
  }
  if (::close(fd) != 0 && status.ok()) {
    status = absl::ErrnoToStatus(errno, absl::StrFormat("%s: cannot close '%s'", prefix, tmp));
  }
  if (status.ok() && std::rename(tmp.c_str(), path.c_str()) != 0) {
    status =
        absl::ErrnoToStatus(errno, absl::StrFormat("%s: cannot rename '%s' over it", prefix, tmp));
  }
  if (!status.ok()) ::unlink(tmp.c_str());
  return status;
}

// Figure geometry shared by both plots: frames stacked vertically, aligned on x.
constexpr int kWidth = 1000;
constexpr double kLeft = 90;
constexpr double kPanelTop = 34;     // Room for the title above each frame.
constexpr double kPanelBottom = 52;  // Room for tick labels and the x label below.

struct Slot {
  double x, y, w, h;
};

Slot PanelSlot(int index, int count, int height, double right_margin) {
  const double slot_h = static_cast<double>(height) / count;
  return {kLeft, slot_h * index + kPanelTop, kWidth - kLeft - right_margin,
          slot_h - kPanelTop - kPanelBottom};
}

Panel MakePanel(cairo_t* cr, const Slot& s, Range xr, Range yr) {
  return Panel(cr, s.x, s.y, s.w, s.h, xr, yr);
}

std::string Runtime(double seconds) {
  if (!std::isfinite(seconds)) return "n/a";
  if (seconds < 120) return absl::StrFormat("%.0f s", seconds);
  if (seconds < 2 * 3600) return absl::StrFormat("%.1f min", seconds / 60);
  return absl::StrFormat("%.2f h", seconds / 3600);
}

}  // namespace

absl::Status PlotHistory(const std::string& png_path, const std::vector<HistoryRow>& rows,
                         bool classification) {
  constexpr char kWhat[] = "history plot";
  if (png_path.empty()) return absl::InvalidArgumentError("history plot: the output path is empty");
  if (rows.empty()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s '%s': no history rows to plot; a history needs at least one monitored update", kWhat,
        png_path));
  }
  const size_t n = rows.size();
  std::vector<double> step(n), train_loss(n), valid_loss(n), gain(n), train_err(n), valid_err(n),
      lr(n), mom(n);
  for (size_t i = 0; i < n; ++i) {
    const HistoryRow& r = rows[i];
    step[i] = static_cast<double>(r.step);
    train_loss[i] = r.train_loss;
    valid_loss[i] = r.valid_loss;
    gain[i] = r.loss_gain;
    train_err[i] = r.train_err;
    valid_err[i] = r.valid_err;
    lr[i] = r.lr;
    mom[i] = r.mom;
  }
  const std::vector<double> train_err_sma = MovingAverage(train_err, kErrorSmoothing);
  const std::vector<double> valid_err_sma = MovingAverage(valid_err, kErrorSmoothing);
  const bool has_valid_loss = AnyFinite(valid_loss);
  const bool has_valid_err = AnyFinite(valid_err);

  // Long histories are thinned for drawing only; averages above use every row.
  const std::vector<double> x = Subsample(step);
  auto S = [](const std::vector<double>& v) { return Subsample(v); };

  constexpr int kHeight = 800;
  constexpr double kRight = 170;  // Two extra y axes (LR, momentum) to the right of panel 2.
  Canvas canvas(kWidth, kHeight);
  cairo_t* cr = canvas.cr.get();
  RangeBuilder xb;
  xb.Add(step);
  const Range xr = xb.Padded(0.02);
  const std::string x_label = "update steps";

  // Panel 1: losses.
  {
    RangeBuilder yb;
    yb.Add(train_loss);
    yb.Add(valid_loss);
    Panel p = MakePanel(cr, PanelSlot(0, 3, kHeight, kRight), xr, yb.Padded());
    p.Background(true);
    const bool dots = n <= 60;
    p.Line(x, S(train_loss), {kGreen, 1.8, false, 1.0, dots});
    p.Line(x, S(valid_loss), {kRed, 1.8, false, 1.0, dots});
    if (!AnyFinite(train_loss) && !has_valid_loss) p.Note("no finite loss values");
    p.Frame();
    p.XAxis(x_label, true);
    p.YAxis("loss");
    p.Title(absl::StrFormat("Loss at step %d (%s): train %s, valid %s", rows.back().step,
                            Runtime(rows.back().time_s), Compact(LastFinite(train_loss)),
                            Compact(LastFinite(valid_loss))));
    std::vector<LegendEntry> legend = {{"train", {kGreen, 1.8}}};
    if (has_valid_loss) legend.push_back({"valid", {kRed, 1.8}});
    p.Legend(legend);
  }

  // Panel 2: loss gain, with learning rate and momentum on their own axes at the right.
  {
    RangeBuilder gb, lb, mb;
    gb.Add(gain);
    gb.Add(0.0);
    lb.Add(lr);
    mb.Add(mom);
    Panel p = MakePanel(cr, PanelSlot(1, 3, kHeight, kRight), xr, gb.Padded());
    Panel p_lr = p.Twin(lb.Padded());
    Panel p_mom = p.Twin(mb.Padded());
    p.Background(true);
    p.HLine(0.0, {kDarkGrey, 1.0, true, 0.6});
    p_mom.Line(x, S(mom), {kPurple, 1.5, true});
    p_lr.Line(x, S(lr), {kOrange, 2.0});
    p.Line(x, S(gain), {kBlue, 1.5, false, 1.0, n <= 60});
    p.Frame();
    p.XAxis(x_label, true);
    // The three axes take the colours of their curves, which says more than a legend that
    // would have to cover one of them.
    p.YAxis("loss gain (after - before update)", false, 0, kBlue);
    p_lr.YAxis("learning rate", true, 0, {0.8, 0.38, 0.0});
    p_mom.YAxis("momentum", true, 82, kPurple);
    p.Title(absl::StrFormat("Loss gain per monitored update; LR %s, momentum %s",
                            Compact(LastFinite(lr)), Compact(LastFinite(mom))));
  }

  // Panel 3: errors, raw (dashed) and smoothed.
  {
    RangeBuilder yb;
    yb.Add(train_err);
    yb.Add(valid_err);
    Panel p = MakePanel(cr, PanelSlot(2, 3, kHeight, kRight), xr, yb.Padded());
    p.Background(true);
    p.Line(x, S(train_err), {kGreen, 1.2, true, 0.6});
    p.Line(x, S(valid_err), {kRed, 1.2, true, 0.6});
    p.Line(x, S(train_err_sma), {kGreen, 2.0});
    p.Line(x, S(valid_err_sma), {kRed, 2.0});
    if (!AnyFinite(train_err) && !has_valid_err) p.Note("no finite error values");
    p.Frame();
    p.XAxis(x_label, true);
    p.YAxis(classification ? "error [%]" : "error");
    auto with_unit = [&](double v) {
      return std::isfinite(v) && classification ? absl::StrCat(Compact(v), "%") : Compact(v);
    };
    p.Title(absl::StrFormat("Error (%d-point moving average solid): train %s, valid %s",
                            kErrorSmoothing, with_unit(LastFinite(train_err)),
                            with_unit(LastFinite(valid_err))));
    std::vector<LegendEntry> legend = {{"train", {kGreen, 1.2, true}},
                                       {"train, moving avg.", {kGreen, 2.0}}};
    if (has_valid_err) {
      legend.push_back({"valid", {kRed, 1.2, true}});
      legend.push_back({"valid, moving avg.", {kRed, 2.0}});
    }
    p.Legend(legend);
  }
  return SavePng(canvas, png_path, kWhat);
}

absl::Status PlotTimeline(const std::string& png_path, const std::vector<TimelinePoint>& points,
                          int smoothing_length) {
  constexpr char kWhat[] = "timeline plot";
  if (png_path.empty()) {
    return absl::InvalidArgumentError("timeline plot: the output path is empty");
  }
  if (points.empty()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s '%s': no timeline points to plot; a timeline needs at least one training step", kWhat,
        png_path));
  }
  if (smoothing_length < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s '%s': smoothing_length is %d; it must be at least 1 (default 200)",
                        kWhat, png_path, smoothing_length));
  }
  const size_t n = points.size();
  std::vector<double> time_s(n), loss(n), prevalence(n);
  for (size_t i = 0; i < n; ++i) {
    time_s[i] = points[i].time_s;
    loss[i] = Usable(points[i].loss) ? points[i].loss : kNaN;
    prevalence[i] = points[i].batch_char;
  }
  const std::vector<double> sma = MovingAverage(loss, smoothing_length);
  const auto [all_mean, all_std] = MeanStd(loss, 0, n);
  const size_t tail = n > kStatsWindow ? n - kStatsWindow : 0;
  const auto [tail_mean, tail_std] = MeanStd(loss, tail, n);

  // Hours once training has run for two hours, minutes before.
  double t_end = 0;
  for (double t : time_s) {
    if (Usable(t)) t_end = std::max(t_end, t);
  }
  const bool hours = t_end >= 2 * 3600;
  const double unit = hours ? 3600 : 60;
  std::vector<double> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = time_s[i] / unit;

  // The y range shows the bulk of the losses: clipped at mean + 2 std of all of them, but
  // always including the statistics lines of the recent losses.
  RangeBuilder yb;
  yb.Add(loss);
  yb.CapHigh(std::max(all_mean + 2 * all_std, tail_mean + tail_std));
  const Range yr = yb.Padded();

  constexpr int kHeight = 800;
  constexpr double kRight = 40;
  Canvas canvas(kWidth, kHeight);
  cairo_t* cr = canvas.cr.get();

  // Panel 1: loss per step over time.
  {
    RangeBuilder xb;
    xb.Add(0.0);  // Training time starts at 0.
    xb.Add(t);
    Panel p = MakePanel(cr, PanelSlot(0, 2, kHeight, kRight), xb.Padded(0.01), yr);
    p.Background(false);
    p.Line(Subsample(t), Subsample(loss), {kBlue, 1.0, false, 0.55});
    p.Line(Subsample(t), Subsample(sma), {kBlack, 2.0});
    p.HLine(tail_mean, {kRed, 1.5});
    p.HLine(tail_mean + tail_std, {kRed, 1.2, true});
    p.HLine(tail_mean - tail_std, {kRed, 1.2, true});
    if (!AnyFinite(loss)) p.Note("no finite loss values");
    p.Frame();
    p.XAxis(hours ? "training time [h]" : "training time [min]", false);
    p.YAxis("loss");
    p.Title(absl::StrFormat("Loss per step: %d step%s in %s, last %d: %s \xC2\xB1 %s", n,
                            n == 1 ? "" : "s", Runtime(t_end), std::min<size_t>(n, kStatsWindow),
                            Compact(tail_mean), Compact(tail_std)));
    p.Legend({{"loss", {kBlue, 1.5, false, 0.55}},
              {absl::StrFormat("moving average (%d steps)", smoothing_length), {kBlack, 2.0}},
              {absl::StrFormat("mean of last %d", std::min<size_t>(n, kStatsWindow)), {kRed, 1.5}},
              {"mean \xC2\xB1 std", {kRed, 1.2, true}}});
  }

  // Panel 2: loss against batch prevalence; darker dots are more recent steps.
  {
    RangeBuilder xb;
    xb.Add(prevalence);
    Panel p = MakePanel(cr, PanelSlot(1, 2, kHeight, kRight), xb.Padded(0.04, 0.1), yr);
    p.Background(false);
    const std::vector<double> xs = Subsample(prevalence), ys = Subsample(loss);
    std::vector<double> grey(xs.size());
    for (size_t i = 0; i < grey.size(); ++i) {
      const double age = grey.size() > 1 ? 1.0 - static_cast<double>(i) / (grey.size() - 1) : 0;
      grey[i] = 0.85 * age;
    }
    p.GreyDots(xs, ys, grey, 2.5);
    if (!AnyFinite(loss)) p.Note("no finite loss values");
    p.Frame();
    p.XAxis("batch prevalence (mean of target channel 0)", false);
    p.YAxis("loss");
    p.Title("Loss vs. batch prevalence (darker = more recent)");
    p.Legend({{"oldest steps", {{0.85, 0.85, 0.85}, 1.0}, true},
              {"most recent steps", {kBlack, 1.0}, true}});
  }
  return SavePng(canvas, png_path, kWhat);
}

}  // namespace elektronn
