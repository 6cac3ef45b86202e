// KNOSSOS datasets: knossos.conf, cube files, the bounded cube cache and its prefetch thread.
#include "engine/io/knossos.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;
constexpr int64_t kEdge = kKnossosCubeEdge;
constexpr int64_t kCubeBytes = kEdge * kEdge * kEdge;

// A cube's position in the grid, in the volume's axes (z, x, y) = KNOSSOS (z, y, x).
struct CubeKey {
  int64_t z = 0, x = 0, y = 0;
  auto operator<=>(const CubeKey&) const = default;
};

// ELEKTRONN2's eviction order: anisotropic distance, z counted twice (cubes are isotropic in
// voxels but EM data is usually twice as coarse in z, and prefetch reaches half as far).
int64_t Distance2(const CubeKey& a, const CubeKey& b) {
  const int64_t dz = 2 * (a.z - b.z), dx = a.x - b.x, dy = a.y - b.y;
  return dz * dz + dx * dx + dy * dy;
}

// Null: a missing file (zeros). Allocated without zero-filling: fread overwrites every byte.
using CubeData = std::shared_ptr<const uint8_t[]>;

// One dataset: its cube files and their cache. Thread-safe.
class KnossosDataset {
 public:
  KnossosDataset(std::string root, KnossosConf conf, int64_t capacity, int n_preload,
                 IntegerValues integers)
      : root_(std::move(root)),
        conf_(std::move(conf)),
        n_preload_(n_preload),
        divisor_(integers == IntegerValues::kDivideBy255 ? 255.f : 1.f) {
    // A division, as ELEKTRONN2 and the HDF5/Zarr readers do (float32(v) / 255 bit for bit).
    for (int v = 0; v < 256; ++v) lut_[v] = static_cast<float>(v) / divisor_;
    grid_ = {CeilDiv(conf_.boundary[2]), CeilDiv(conf_.boundary[1]), CeilDiv(conf_.boundary[0])};
    stats_.capacity = capacity;
    if (n_preload_ > 0) worker_ = std::thread([this] { PrefetchLoop(); });
  }
  ~KnossosDataset() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
  }

  const std::string& root() const { return root_; }

  // Fills out[dz][dx][dy] with the box (inside the volume).
  absl::Status Read(const Box& box, float* out) {
    const CubeKey lo{box.z0 / kEdge, box.x0 / kEdge, box.y0 / kEdge};
    const CubeKey hi{(box.z0 + box.dz - 1) / kEdge, (box.x0 + box.dx - 1) / kEdge,
                     (box.y0 + box.dy - 1) / kEdge};
    std::vector<CubeKey> wanted;
    for (int64_t z = lo.z; z <= hi.z; ++z) {
      for (int64_t x = lo.x; x <= hi.x; ++x) {
        for (int64_t y = lo.y; y <= hi.y; ++y) wanted.push_back({z, x, y});
      }
    }
    if (static_cast<int64_t>(wanted.size()) > stats_.capacity) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "KNOSSOS dataset '%s': box %s needs %d cubes of 128^3 but the cache holds %d (%d MB "
          "per dataset); raise max_ram to at least %d MB or read smaller boxes",
          root_, box.ToString(), wanted.size(), stats_.capacity, stats_.capacity * kCubeBytes >> 20,
          (wanted.size() * kCubeBytes >> 20) + 1));
    }
    const CubeKey centre{(lo.z + hi.z) / 2, (lo.x + hi.x) / 2, (lo.y + hi.y) / 2};
    std::map<CubeKey, CubeData> got;
    absl::Status fetched = Fetch(wanted, centre, &got);
    if (!fetched.ok()) return fetched;
    CopyOut(box, got, out);
    return absl::OkStatus();
  }

  KnossosCacheStats stats() {
    std::lock_guard<std::mutex> l(mu_);
    return stats_;
  }

  void WaitForPrefetch() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return queue_.empty() && !worker_busy_; });
  }

 private:
  static int64_t CeilDiv(int64_t n) { return (n + kEdge - 1) / kEdge; }

  bool InGrid(const CubeKey& k) const {
    return k.z >= 0 && k.x >= 0 && k.y >= 0 && k.z < grid_[0] && k.x < grid_[1] && k.y < grid_[2];
  }

  std::string CubePath(const CubeKey& k) const {
    // File names count in KNOSSOS's (x, y, z): x = our y, y = our x.
    return absl::StrFormat("%s/x%04d/y%04d/z%04d/%s_mag1_x%04d_y%04d_z%04d.raw", root_, k.y, k.x,
                           k.z, conf_.experiment, k.y, k.x, k.z);
  }

  // Cube buffers are recycled: a fresh 2 MiB allocation is mapped anew by malloc and
  // page-faulted on every read, which costs as much as the read itself (bench/knossos_bench).
  std::shared_ptr<uint8_t[]> TakeBuffer() {
    {
      std::lock_guard<std::mutex> l(pool_mu_);
      if (!pool_.empty()) {
        std::shared_ptr<uint8_t[]> b = std::move(pool_.back());
        pool_.pop_back();
        return b;
      }
    }
    return std::make_shared_for_overwrite<uint8_t[]>(kCubeBytes);
  }
  // An evicted cube's buffer, unless a request still holds it.
  void GiveBackBuffer(CubeData data) {
    if (data == nullptr || data.use_count() != 1) return;
    std::lock_guard<std::mutex> l(pool_mu_);
    if (pool_.size() < 8) pool_.push_back(std::const_pointer_cast<uint8_t[]>(std::move(data)));
  }

  // Reads one cube file; a missing file is a cube of zeros (null).
  absl::StatusOr<CubeData> LoadCube(const CubeKey& k) {
    const std::string path = CubePath(k);
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) {
      if (errno == ENOENT) return CubeData();
      return absl::UnavailableError(
          absl::StrFormat("KNOSSOS cube '%s' cannot be opened: %s", path, std::strerror(errno)));
    }
    std::shared_ptr<uint8_t[]> data = TakeBuffer();
    const size_t n = std::fread(data.get(), 1, kCubeBytes, f);
    std::fclose(f);
    if (static_cast<int64_t>(n) != kCubeBytes) {
      return absl::DataLossError(absl::StrFormat(
          "KNOSSOS cube '%s' holds %d bytes; a cube file is 128^3 = %d bytes of uint8", path, n,
          kCubeBytes));
    }
    return CubeData(std::move(data));
  }

  // Under mu_: makes room for one cube. `protect` may not be evicted; with `not_nearer_than`
  // set, only cubes farther from the centre than that are (prefetch never displaces nearer
  // cubes). False when nothing may go.
  bool MakeRoom(const std::set<CubeKey>& protect, int64_t not_nearer_than) {
    while (static_cast<int64_t>(cache_.size()) >= stats_.capacity) {
      auto victim = cache_.end();
      int64_t worst = -1;
      for (auto it = cache_.begin(); it != cache_.end(); ++it) {
        if (protect.count(it->first)) continue;
        const int64_t d = Distance2(it->first, centre_);
        if (d > worst) {
          worst = d;
          victim = it;
        }
      }
      if (victim == cache_.end() || worst <= not_nearer_than) return false;
      GiveBackBuffer(std::move(victim->second));
      cache_.erase(victim);
      ++stats_.evictions;
    }
    return true;
  }

  void Insert(const CubeKey& k, CubeData data) {
    cache_[k] = std::move(data);
    stats_.max_resident = std::max<int64_t>(stats_.max_resident, cache_.size());
  }

  // Brings every wanted cube into `got` (loading those not cached) and re-aims the prefetch.
  absl::Status Fetch(const std::vector<CubeKey>& wanted, const CubeKey& centre,
                     std::map<CubeKey, CubeData>* got) {
    const std::set<CubeKey> protect(wanted.begin(), wanted.end());
    std::unique_lock<std::mutex> l(mu_);
    centre_ = centre;
    AimPrefetch(protect);
    while (got->size() < wanted.size()) {
      std::vector<CubeKey> to_load;
      bool waiting = false;
      for (const CubeKey& k : wanted) {
        if (got->count(k)) continue;
        if (auto it = cache_.find(k); it != cache_.end()) {
          (*got)[k] = it->second;  // held here even if evicted later
        } else if (loading_.count(k)) {
          waiting = true;
        } else {
          to_load.push_back(k);
          loading_.insert(k);
        }
      }
      if (!to_load.empty()) {
        l.unlock();
        std::vector<absl::StatusOr<CubeData>> loaded;
        for (const CubeKey& k : to_load) loaded.push_back(LoadCube(k));
        l.lock();
        absl::Status first = absl::OkStatus();
        for (size_t i = 0; i < to_load.size(); ++i) {
          loading_.erase(to_load[i]);
          ++stats_.loads;
          if (!loaded[i].ok()) {
            if (first.ok()) first = loaded[i].status();
            continue;
          }
          if (*loaded[i] == nullptr) ++stats_.missing;
          (*got)[to_load[i]] = *loaded[i];
          MakeRoom(protect, -1);  // always succeeds: the request fits the cache
          Insert(to_load[i], *loaded[i]);
        }
        cv_.notify_all();
        if (!first.ok()) return first;
      } else if (waiting) {
        cv_.wait(l);
      }
    }
    return absl::OkStatus();
  }

  // Under mu_: the prefetch queue becomes the neighbourhood of the centre (±n in x, y and
  // ±ceil(n/2) in z, clipped to the grid), nearest first, without the cubes being requested.
  void AimPrefetch(const std::set<CubeKey>& requested) {
    queue_.clear();
    if (n_preload_ <= 0) return;
    const int64_t n = n_preload_, nz = (n_preload_ + 1) / 2;
    std::vector<CubeKey> around;
    for (int64_t z = centre_.z - nz; z <= centre_.z + nz; ++z) {
      for (int64_t x = centre_.x - n; x <= centre_.x + n; ++x) {
        for (int64_t y = centre_.y - n; y <= centre_.y + n; ++y) {
          const CubeKey k{z, x, y};
          if (InGrid(k) && !requested.count(k) && !cache_.count(k)) around.push_back(k);
        }
      }
    }
    std::stable_sort(around.begin(), around.end(), [&](const CubeKey& a, const CubeKey& b) {
      return Distance2(a, centre_) < Distance2(b, centre_);
    });
    queue_.assign(around.begin(), around.end());
    cv_.notify_all();
  }

  void PrefetchLoop() {
    std::unique_lock<std::mutex> l(mu_);
    while (true) {
      cv_.notify_all();  // WaitForPrefetch re-checks after every item, skipped ones included
      cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      const CubeKey k = queue_.front();
      queue_.pop_front();
      if (cache_.count(k) || loading_.count(k)) continue;
      // Worth a slot only if something farther from the centre can make room.
      if (static_cast<int64_t>(cache_.size()) >= stats_.capacity) {
        const int64_t d = Distance2(k, centre_);
        bool farther = false;
        for (const auto& [key, data] : cache_) farther |= Distance2(key, centre_) > d;
        if (!farther) {
          queue_.clear();  // the rest is no nearer
          cv_.notify_all();
          continue;
        }
      }
      loading_.insert(k);
      worker_busy_ = true;
      l.unlock();
      absl::StatusOr<CubeData> data = LoadCube(k);
      l.lock();
      worker_busy_ = false;
      loading_.erase(k);
      if (data.ok()) {
        ++stats_.loads;
        ++stats_.prefetched;
        if (*data == nullptr) ++stats_.missing;
        if (MakeRoom({}, Distance2(k, centre_))) Insert(k, *std::move(data));
      }  // a failing file is reported when a request needs it
      cv_.notify_all();
    }
  }

  void CopyOut(const Box& box, const std::map<CubeKey, CubeData>& got, float* out) const {
    for (const auto& [k, data] : got) {
      // The part of the box inside this cube, in volume coordinates.
      const int64_t z0 = std::max(box.z0, k.z * kEdge),
                    z1 = std::min(box.z0 + box.dz, (k.z + 1) * kEdge);
      const int64_t x0 = std::max(box.x0, k.x * kEdge),
                    x1 = std::min(box.x0 + box.dx, (k.x + 1) * kEdge);
      const int64_t y0 = std::max(box.y0, k.y * kEdge),
                    y1 = std::min(box.y0 + box.dy, (k.y + 1) * kEdge);
      for (int64_t z = z0; z < z1; ++z) {
        for (int64_t x = x0; x < x1; ++x) {
          float* dst = out + ((z - box.z0) * box.dx + (x - box.x0)) * box.dy + (y0 - box.y0);
          if (data == nullptr) {
            std::fill(dst, dst + (y1 - y0), 0.f);
            continue;
          }
          const uint8_t* src = data.get() +
                               ((z - k.z * kEdge) * kEdge + (x - k.x * kEdge)) * kEdge +
                               (y0 - k.y * kEdge);
          for (int64_t i = 0; i < y1 - y0; ++i) dst[i] = lut_[src[i]];
        }
      }
    }
  }

  const std::string root_;
  const KnossosConf conf_;
  const int n_preload_;
  const float divisor_;
  std::array<float, 256> lut_{};
  std::array<int64_t, 3> grid_{};  // cubes per axis (z, x, y)

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<CubeKey, CubeData> cache_;
  std::mutex pool_mu_;
  std::vector<std::shared_ptr<uint8_t[]>> pool_;  // evicted cube buffers for the next loads
  std::set<CubeKey> loading_;
  std::deque<CubeKey> queue_;
  CubeKey centre_;
  KnossosCacheStats stats_;
  bool stop_ = false, worker_busy_ = false;
  std::thread worker_;
};

class KnossosReader : public VolumeReader {
 public:
  KnossosReader(VolumeLocation loc, VolumeShape shape,
                std::vector<std::unique_ptr<KnossosDataset>> datasets)
      : VolumeReader(std::move(loc), shape,
                     VolumeShape{shape.c, std::min(shape.z, kEdge), std::min(shape.x, kEdge),
                                 std::min(shape.y, kEdge)},
                     VolumeDtype::kUint8),
        datasets_(std::move(datasets)) {}

  std::vector<KnossosCacheStats> Stats() const {
    std::vector<KnossosCacheStats> s;
    for (const auto& d : datasets_) s.push_back(d->stats());
    return s;
  }
  void WaitForPrefetch() const {
    for (const auto& d : datasets_) d->WaitForPrefetch();
  }

 protected:
  absl::Status ReadInside(const Box& box, float* out) const override {
    for (size_t c = 0; c < datasets_.size(); ++c) {
      absl::Status s = datasets_[c]->Read(box, out + static_cast<int64_t>(c) * box.voxels());
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<KnossosDataset>> datasets_;
};

absl::Status ConfError(const std::string& where, int line, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrFormat("%s:%d: %s", where, line, what));
}

}  // namespace

absl::StatusOr<KnossosConf> ParseKnossosConf(const std::string& text, const std::string& where) {
  KnossosConf conf;
  bool have_name = false;
  std::array<bool, 3> have_boundary{};
  int line_no = 0;
  for (absl::string_view raw_line : absl::StrSplit(text, '\n')) {
    ++line_no;
    absl::string_view line = absl::StripAsciiWhitespace(raw_line);
    if (line.empty()) continue;
    if (!absl::ConsumeSuffix(&line, ";")) {
      return ConfError(where, line_no,
                       absl::StrFormat("'%s' does not end with ';' (knossos.conf lines are "
                                       "'key value;', e.g. 'boundary x 1024;')",
                                       line));
    }
    line = absl::StripAsciiWhitespace(line);
    if (absl::ConsumePrefix(&line, "experiment name")) {
      line = absl::StripAsciiWhitespace(line);
      if (line.size() < 2 || line.front() != '"' || line.back() != '"') {
        return ConfError(where, line_no,
                         absl::StrFormat("experiment name %s must be quoted, e.g. "
                                         "'experiment name \"my_dataset\";'",
                                         line));
      }
      conf.experiment = std::string(line.substr(1, line.size() - 2));
      if (conf.experiment.empty() || conf.experiment.find('/') != std::string::npos) {
        return ConfError(where, line_no,
                         absl::StrFormat("experiment name \"%s\" must be non-empty and hold no "
                                         "'/' (it is part of every cube file name)",
                                         conf.experiment));
      }
      have_name = true;
      continue;
    }
    std::vector<absl::string_view> words =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    const absl::string_view key = words[0];
    if (key == "boundary" || key == "scale") {
      if (words.size() != 3 || words[1].size() != 1 ||
          std::string("xyz").find(words[1][0]) == std::string::npos) {
        return ConfError(where, line_no,
                         absl::StrFormat("'%s' must be '%s x|y|z <value>;'", line, key));
      }
      const int a = words[1][0] - 'x';
      if (key == "boundary") {
        int64_t v = 0;
        if (!absl::SimpleAtoi(words[2], &v) || v <= 0) {
          return ConfError(where, line_no,
                           absl::StrFormat("boundary %c is '%s'; it must be a positive integer "
                                           "(voxels)",
                                           words[1][0], words[2]));
        }
        conf.boundary[a] = v;
        have_boundary[a] = true;
      } else {
        double v = 0;
        if (!absl::SimpleAtod(words[2], &v) || !(v > 0)) {
          return ConfError(where, line_no,
                           absl::StrFormat("scale %c is '%s'; it must be a positive number "
                                           "(nm per voxel)",
                                           words[1][0], words[2]));
        }
        conf.scale[a] = v;
      }
    } else if (key == "magnification") {
      int64_t v = 0;
      if (words.size() != 2 || !absl::SimpleAtoi(words[1], &v) || v < 1) {
        return ConfError(where, line_no,
                         absl::StrFormat("'%s' must be 'magnification <positive integer>;'", line));
      }
      conf.magnification = v;
    }  // other keys (cube_edge_length, compression_ratio, ...) carry nothing we read
  }
  if (!have_name) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: no 'experiment name \"...\";' line (it names every cube file)", where));
  }
  for (int a = 0; a < 3; ++a) {
    if (!have_boundary[a]) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: no 'boundary %c <voxels>;' line (the dataset's extent along %c)",
                          where, static_cast<char>('x' + a), static_cast<char>('x' + a)));
    }
  }
  return conf;
}

absl::StatusOr<std::string> FindKnossosConf(const std::string& dir) {
  std::error_code ec;
  for (const std::string& p :
       {absl::StrCat(dir, "/mag1/knossos.conf"), absl::StrCat(dir, "/knossos.conf")}) {
    if (fs::is_regular_file(p, ec)) return p;
  }
  return absl::NotFoundError(absl::StrFormat(
      "KNOSSOS dataset '%s': neither '%s/mag1/knossos.conf' nor '%s/knossos.conf' exists; name "
      "the directory that holds the dataset's knossos.conf or its mag1 folder",
      dir, dir, dir));
}

absl::StatusOr<std::unique_ptr<VolumeReader>> OpenKnossosReader(const VolumeLocation& location,
                                                                const KnossosOptions& options) {
  std::vector<std::string> dirs = absl::StrSplit(location.path, ',');
  if (options.max_ram_mb <= 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "KNOSSOS '%s': max_ram %d MB must be positive", location.ToString(), options.max_ram_mb));
  }
  // The prefetch box has (2n+1)^2 (n+1) cubes; beyond 16 it exceeds any sensible cache.
  if (options.n_preload < 0 || options.n_preload > kMaxPreload) {
    return absl::InvalidArgumentError(
        absl::StrFormat("KNOSSOS '%s': n_preload %d; valid: 0 (no prefetch) to %d cubes",
                        location.ToString(), options.n_preload, kMaxPreload));
  }
  const int64_t per_dataset =
      (options.max_ram_mb << 20) / static_cast<int64_t>(dirs.size()) / kCubeBytes;
  if (per_dataset < 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "KNOSSOS '%s': max_ram %d MB holds no cube of 2 MB per dataset (%d datasets); give at "
        "least %d MB",
        location.ToString(), options.max_ram_mb, dirs.size(), 2 * dirs.size()));
  }
  std::vector<std::unique_ptr<KnossosDataset>> datasets;
  std::array<int64_t, 3> boundary{};
  std::string first;
  for (const std::string& dir : dirs) {
    absl::StatusOr<std::string> conf_path = FindKnossosConf(dir);
    if (!conf_path.ok()) return conf_path.status();
    std::ifstream in(*conf_path);
    std::stringstream text;
    text << in.rdbuf();
    if (!in.good() && !in.eof()) {
      return absl::UnavailableError(absl::StrFormat("'%s' cannot be read", *conf_path));
    }
    absl::StatusOr<KnossosConf> conf = ParseKnossosConf(text.str(), *conf_path);
    if (!conf.ok()) return conf.status();
    if (conf->magnification != 1) {
      return absl::UnimplementedError(absl::StrFormat(
          "'%s' describes magnification %d; only mag1 datasets are read (name the mag1 folder's "
          "parent)",
          *conf_path, conf->magnification));
    }
    if (datasets.empty()) {
      boundary = conf->boundary;
      first = *conf_path;
    } else if (conf->boundary != boundary) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "KNOSSOS features must have one extent: '%s' has boundary (x,y,z)=(%d,%d,%d) but '%s' "
          "has (%d,%d,%d)",
          *conf_path, conf->boundary[0], conf->boundary[1], conf->boundary[2], first, boundary[0],
          boundary[1], boundary[2]));
    }
    datasets.push_back(std::make_unique<KnossosDataset>(fs::path(*conf_path).parent_path().string(),
                                                        *std::move(conf), per_dataset,
                                                        options.n_preload, options.integers));
  }
  const VolumeShape shape{static_cast<int64_t>(dirs.size()), boundary[2], boundary[1], boundary[0]};
  return std::unique_ptr<VolumeReader>(new KnossosReader(location, shape, std::move(datasets)));
}

std::vector<KnossosCacheStats> KnossosStats(const VolumeReader& reader) {
  const auto* k = dynamic_cast<const KnossosReader*>(&reader);
  return k == nullptr ? std::vector<KnossosCacheStats>() : k->Stats();
}

void KnossosWaitForPrefetch(const VolumeReader& reader) {
  if (const auto* k = dynamic_cast<const KnossosReader*>(&reader)) k->WaitForPrefetch();
}

absl::Status WriteKnossosDataset(const std::string& dir, const std::string& experiment,
                                 std::array<int64_t, 3> b,
                                 const std::function<uint8_t(int64_t, int64_t, int64_t)>& value,
                                 const std::function<bool(int64_t, int64_t, int64_t)>& keep) {
  const std::string root = absl::StrCat(dir, "/mag1");
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot create '", root, "': ", ec.message()));
  {
    std::ofstream conf(absl::StrCat(root, "/knossos.conf"));
    conf << "experiment name \"" << experiment << "\";\n"
         << "boundary x " << b[0] << ";\nboundary y " << b[1] << ";\nboundary z " << b[2] << ";\n"
         << "scale x 10.0;\nscale y 10.0;\nscale z 20.0;\nmagnification 1;\n";
    if (!conf.good())
      return absl::UnavailableError(absl::StrCat("cannot write ", root, "/knossos.conf"));
  }
  std::vector<uint8_t> cube(kCubeBytes);
  for (int64_t cz = 0; cz * kEdge < b[2]; ++cz) {
    for (int64_t cy = 0; cy * kEdge < b[1]; ++cy) {
      for (int64_t cx = 0; cx * kEdge < b[0]; ++cx) {
        if (keep && !keep(cx, cy, cz)) continue;
        size_t i = 0;
        for (int64_t z = cz * kEdge; z < (cz + 1) * kEdge; ++z) {
          for (int64_t y = cy * kEdge; y < (cy + 1) * kEdge; ++y) {
            for (int64_t x = cx * kEdge; x < (cx + 1) * kEdge; ++x, ++i) {
              cube[i] = (x < b[0] && y < b[1] && z < b[2]) ? value(x, y, z) : 0;
            }
          }
        }
        const std::string sub = absl::StrFormat("%s/x%04d/y%04d/z%04d", root, cx, cy, cz);
        fs::create_directories(sub, ec);
        if (ec) return absl::UnavailableError(absl::StrCat("cannot create '", sub, "'"));
        const std::string path =
            absl::StrFormat("%s/%s_mag1_x%04d_y%04d_z%04d.raw", sub, experiment, cx, cy, cz);
        std::FILE* f = std::fopen(path.c_str(), "wb");
        if (f == nullptr) return absl::UnavailableError(absl::StrCat("cannot write '", path, "'"));
        const size_t n = std::fwrite(cube.data(), 1, cube.size(), f);
        const bool closed = std::fclose(f) == 0;
        if (n != cube.size() || !closed) {
          return absl::UnavailableError(absl::StrCat("cannot write '", path, "'"));
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace elektronn
