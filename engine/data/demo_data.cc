// Demo data: anisotropic Voronoi "cells" rendered as EM-like grey values with barrier labels.
#include "engine/data/demo_data.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/core/status.h"
#include "engine/data/h5_volume.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

// Counter-based randomness: every value is a hash of (seed, cube, stream, index), so results do
// not depend on thread scheduling.
uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

class Hasher {
 public:
  Hasher(uint64_t seed, int cube, uint64_t stream)
      : base_(SplitMix(SplitMix(SplitMix(seed) ^ static_cast<uint64_t>(cube)) ^ stream)) {}
  uint64_t Bits(uint64_t i) const { return SplitMix(base_ ^ SplitMix(i)); }
  double Unit(uint64_t i) const { return static_cast<double>(Bits(i) >> 11) * 0x1.0p-53; }
  // Standard normal by Box-Muller from two hashes.
  double Normal(uint64_t i) const {
    const double u1 = (static_cast<double>(Bits(2 * i) >> 11) + 0.5) * 0x1.0p-53;
    const double u2 = Unit(2 * i + 1);
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  }

 private:
  uint64_t base_;
};

enum Stream : uint64_t { kSeeds = 1, kTones, kTexture, kBlobs, kNoise, kPatches };

struct Seed {
  float z, x, y;  // isotropic coordinates (z already multiplied by aniso_factor)
  float tone;     // cytoplasm grey value of this cell
  bool present;
};

}  // namespace

void GenerateDemoCube(const DemoDataOptions& o, const std::array<int64_t, 3>& shape, int cube_index,
                      Volume* raw, Volume* barrier) {
  GenerateDemoCube(o, shape, cube_index, raw, barrier, nullptr);
}

void GenerateDemoCube(const DemoDataOptions& o, const std::array<int64_t, 3>& shape, int cube_index,
                      Volume* raw, Volume* barrier, Volume* ids) {
  const int64_t nz = shape[0], nx = shape[1], ny = shape[2];
  *raw = Volume(1, nz, nx, ny);
  *barrier = Volume(1, nz, nx, ny);
  const double aniso = o.aniso_factor;
  const double cell = std::max(o.cell_size, 4.0);

  // Jittered grid of seeds over the isotropic extent, one cell of margin on each side.
  const Hasher seed_hash(o.seed, cube_index, kSeeds), tone_hash(o.seed, cube_index, kTones);
  const int64_t gz = static_cast<int64_t>(std::ceil(nz * aniso / cell)) + 2;
  const int64_t gx = static_cast<int64_t>(std::ceil(nx / cell)) + 2;
  const int64_t gy = static_cast<int64_t>(std::ceil(ny / cell)) + 2;
  std::vector<Seed> seeds(static_cast<size_t>(gz * gx * gy));
  for (int64_t c = 0; c < static_cast<int64_t>(seeds.size()); ++c) {
    const int64_t a = c / (gx * gy), b = (c / gy) % gx, d = c % gy;
    Seed& s = seeds[c];
    s.z = static_cast<float>((a - 1 + seed_hash.Unit(4 * c)) * cell);
    s.x = static_cast<float>((b - 1 + seed_hash.Unit(4 * c + 1)) * cell);
    s.y = static_cast<float>((d - 1 + seed_hash.Unit(4 * c + 2)) * cell);
    s.present = seed_hash.Unit(4 * c + 3) >= o.empty_cell_fraction;
    s.tone = static_cast<float>(0.56 + 0.12 * tone_hash.Unit(c));
  }

  // Smooth intracellular texture: value noise on a coarse grid (8 xy voxels, 8/aniso z).
  const Hasher tex_hash(o.seed, cube_index, kTexture);
  const double tex_step_xy = 8.0, tex_step_z = std::max(1.0, 8.0 / aniso);
  const int64_t tz = static_cast<int64_t>(nz / tex_step_z) + 2;
  const int64_t tx = static_cast<int64_t>(nx / tex_step_xy) + 2;
  const int64_t ty = static_cast<int64_t>(ny / tex_step_xy) + 2;
  std::vector<float> tex(static_cast<size_t>(tz * tx * ty));
  for (size_t i = 0; i < tex.size(); ++i) tex[i] = static_cast<float>(2.0 * tex_hash.Unit(i) - 1.0);

  std::vector<int32_t> cell_of(static_cast<size_t>(nz * nx * ny));
  std::vector<float> grey(static_cast<size_t>(nz * nx * ny));
  const float half_thick = static_cast<float>(o.membrane_thickness / 2.0);
  const float sigma_m = std::max(half_thick, 0.5f);
  const Hasher noise_hash(o.seed, cube_index, kNoise);

#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t k = 0; k < nz; ++k) {
    const float pz = static_cast<float>(k * aniso);
    const int64_t cz = static_cast<int64_t>(pz / cell) + 1;
    const double fz = k / tex_step_z;
    const int64_t t0z = static_cast<int64_t>(fz);
    const float wz = static_cast<float>(fz - t0z);
    for (int64_t i = 0; i < nx; ++i) {
      const float px = static_cast<float>(i);
      const int64_t cx = static_cast<int64_t>(px / cell) + 1;
      const double fx = i / tex_step_xy;
      const int64_t t0x = static_cast<int64_t>(fx);
      const float wx = static_cast<float>(fx - t0x);
      for (int64_t j = 0; j < ny; ++j) {
        const float py = static_cast<float>(j);
        const int64_t cy = static_cast<int64_t>(py / cell) + 1;
        // Nearest and second-nearest seed among the 5x5x5 neighbouring grid cells.
        float d1 = std::numeric_limits<float>::max(), d2 = d1;
        int64_t s1 = -1, s2 = -1;
        for (int64_t a = std::max<int64_t>(cz - 2, 0); a <= std::min(cz + 2, gz - 1); ++a) {
          for (int64_t b = std::max<int64_t>(cx - 2, 0); b <= std::min(cx + 2, gx - 1); ++b) {
            const int64_t row = (a * gx + b) * gy;
            for (int64_t c = std::max<int64_t>(cy - 2, 0); c <= std::min(cy + 2, gy - 1); ++c) {
              const Seed& s = seeds[row + c];
              if (!s.present) continue;
              const float dz = s.z - pz, dx = s.x - px, dy = s.y - py;
              const float d = dz * dz + dx * dx + dy * dy;
              if (d < d1) {
                d2 = d1;
                s2 = s1;
                d1 = d;
                s1 = row + c;
              } else if (d < d2) {
                d2 = d;
                s2 = row + c;
              }
            }
          }
        }
        const int64_t v = (k * nx + i) * ny + j;
        float face = 1e3f;  // distance to the bisecting plane of the two nearest seeds
        float tone = 0.6f;
        if (s1 >= 0) {
          tone = seeds[s1].tone;
          if (s2 >= 0) {
            const Seed &a = seeds[s1], &b = seeds[s2];
            const float dz = a.z - b.z, dx = a.x - b.x, dy = a.y - b.y;
            face = (d2 - d1) / (2.0f * std::sqrt(dz * dz + dx * dx + dy * dy));
          }
        }
        cell_of[v] = static_cast<int32_t>(s1);
        barrier->data[v] = face < half_thick ? 1.f : 0.f;
        // Texture, trilinear.
        const double fy = j / tex_step_xy;
        const int64_t t0y = static_cast<int64_t>(fy);
        const float wy = static_cast<float>(fy - t0y);
        auto T = [&](int64_t a, int64_t b, int64_t c) { return tex[(a * tx + b) * ty + c]; };
        const float t00 = T(t0z, t0x, t0y) + wy * (T(t0z, t0x, t0y + 1) - T(t0z, t0x, t0y));
        const float t01 =
            T(t0z, t0x + 1, t0y) + wy * (T(t0z, t0x + 1, t0y + 1) - T(t0z, t0x + 1, t0y));
        const float t10 =
            T(t0z + 1, t0x, t0y) + wy * (T(t0z + 1, t0x, t0y + 1) - T(t0z + 1, t0x, t0y));
        const float t11 = T(t0z + 1, t0x + 1, t0y) +
                          wy * (T(t0z + 1, t0x + 1, t0y + 1) - T(t0z + 1, t0x + 1, t0y));
        const float t0 = t00 + wx * (t01 - t00), t1 = t10 + wx * (t11 - t10);
        const float texture = 0.05f * (t0 + wz * (t1 - t0));
        const float m = std::exp(-face * face / (2.0f * sigma_m * sigma_m));
        grey[v] = (tone + texture) * (1.0f - 0.65f * m);
      }
    }
  }

  // Vesicle-like dark blobs, about three per cell, each kept inside its own cell.
  const Hasher blob_hash(o.seed, cube_index, kBlobs);
  const double cells = nz * aniso * nx * ny / (cell * cell * cell);
  const int64_t n_blobs = static_cast<int64_t>(3.0 * cells);
  for (int64_t n = 0; n < n_blobs; ++n) {
    const double bz = blob_hash.Unit(5 * n) * nz, bx = blob_hash.Unit(5 * n + 1) * nx,
                 by = blob_hash.Unit(5 * n + 2) * ny;
    const double rho = 1.2 + 1.8 * blob_hash.Unit(5 * n + 3);  // xy voxels
    const double depth = 0.25 + 0.25 * blob_hash.Unit(5 * n + 4);
    const int64_t ck = std::clamp<int64_t>(static_cast<int64_t>(bz), 0, nz - 1);
    const int64_t ci = std::clamp<int64_t>(static_cast<int64_t>(bx), 0, nx - 1);
    const int64_t cj = std::clamp<int64_t>(static_cast<int64_t>(by), 0, ny - 1);
    const int32_t owner = cell_of[(ck * nx + ci) * ny + cj];
    if (barrier->data[(ck * nx + ci) * ny + cj] > 0.f) continue;
    const double rz = 2.0 * rho / aniso, rxy = 2.0 * rho;
    for (int64_t k = std::max<int64_t>(0, static_cast<int64_t>(bz - rz));
         k <= std::min<int64_t>(nz - 1, static_cast<int64_t>(bz + rz)); ++k) {
      for (int64_t i = std::max<int64_t>(0, static_cast<int64_t>(bx - rxy));
           i <= std::min<int64_t>(nx - 1, static_cast<int64_t>(bx + rxy)); ++i) {
        for (int64_t j = std::max<int64_t>(0, static_cast<int64_t>(by - rxy));
             j <= std::min<int64_t>(ny - 1, static_cast<int64_t>(by + rxy)); ++j) {
          const int64_t v = (k * nx + i) * ny + j;
          if (cell_of[v] != owner) continue;
          const double dz = (k - bz) * aniso, dx = i - bx, dy = j - by;
          const double r2 = (dz * dz + dx * dx + dy * dy) / (rho * rho);
          grey[v] *= static_cast<float>(1.0 - depth * std::exp(-0.5 * r2));
        }
      }
    }
  }

  // Segmentation IDs: the cells numbered 1, 2, ... in order of first appearance (raster order).
  if (ids != nullptr) {
    *ids = Volume(1, nz, nx, ny);
    std::vector<int32_t> id_of(seeds.size(), 0);
    int32_t next = 0;
    for (size_t v = 0; v < cell_of.size(); ++v) {
      int32_t& id = id_of[static_cast<size_t>(cell_of[v])];
      if (id == 0) id = ++next;
      ids->data[v] = static_cast<float>(id);
    }
  }

  // Gaussian noise, then a slight [1 2 1]/4 blur along x and y (not z: sections are thick).
  std::vector<float>& out = raw->data;
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < nz; ++k) {
    std::vector<float> row(static_cast<size_t>(nx * ny));
    float* g = &grey[static_cast<size_t>(k * nx * ny)];
    for (int64_t v = 0; v < nx * ny; ++v) {
      g[v] += static_cast<float>(o.noise_sigma * noise_hash.Normal(k * nx * ny + v));
    }
    for (int64_t i = 0; i < nx; ++i) {
      for (int64_t j = 0; j < ny; ++j) {
        const float l = g[i * ny + std::max<int64_t>(j - 1, 0)];
        const float r = g[i * ny + std::min<int64_t>(j + 1, ny - 1)];
        row[i * ny + j] = 0.25f * l + 0.5f * g[i * ny + j] + 0.25f * r;
      }
    }
    for (int64_t i = 0; i < nx; ++i) {
      const float* up = &row[std::max<int64_t>(i - 1, 0) * ny];
      const float* mid = &row[i * ny];
      const float* down = &row[std::min<int64_t>(i + 1, nx - 1) * ny];
      float* dst = &out[static_cast<size_t>((k * nx + i) * ny)];
      for (int64_t j = 0; j < ny; ++j) {
        dst[j] = std::clamp(0.25f * up[j] + 0.5f * mid[j] + 0.25f * down[j], 0.f, 1.f);
      }
    }
  }
}

absl::Status MakeDemoData(const std::string& dir, const DemoDataOptions& options) {
  if (options.num_cubes < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("demo data: num_cubes=%d; need at least 1", options.num_cubes));
  }
  for (const auto& s : {options.shape, options.preview_shape}) {
    if (s[0] < 1 || s[1] < 1 || s[2] < 1) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "demo data: cube shape (%d,%d,%d) must be positive in z, x and y", s[0], s[1], s[2]));
    }
  }
  if (!(options.aniso_factor > 0.0) || !(options.cell_size > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("demo data: aniso_factor=%g and cell_size=%g must be positive",
                        options.aniso_factor, options.cell_size));
  }
  if (options.patches_per_cube < 0 ||
      (options.patches_per_cube > 0 && (options.patch_side < 1 || options.patch_side % 2 == 0))) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "demo data: patches_per_cube=%d must be >= 0 and patch_side=%d odd and positive",
        options.patches_per_cube, options.patch_side));
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrFormat("demo data: cannot create directory '%s': %s", dir, ec.message()));
  }
  auto fresh = [&](const std::string& name) -> absl::StatusOr<std::string> {
    const std::string path = (fs::path(dir) / name).string();
    std::error_code rm;
    fs::remove(path, rm);  // HDF5 never shrinks files; start each one anew
    if (rm) {
      return absl::PermissionDeniedError(
          absl::StrFormat("demo data: cannot replace '%s': %s", path, rm.message()));
    }
    return path;
  };
  Volume raw, barrier, ids;
  for (int i = 0; i < options.num_cubes; ++i) {
    GenerateDemoCube(options, options.shape, i, &raw, &barrier, &ids);
    // Cell IDs for affinity / ids2barriers training: int16 while they fit.
    int64_t max_id = 0;
    for (float v : ids.data) max_id = std::max(max_id, static_cast<int64_t>(v));
    ASSIGN_OR_RETURN(std::string ids_path, fresh(absl::StrCat("ids_", i, ".h5")));
    RETURN_IF_ERROR(WriteH5Volume(ids_path, "lab", ids,
                                  max_id <= 32767 ? H5Dtype::kInt16 : H5Dtype::kFloat32,
                                  options.compress));
    ASSIGN_OR_RETURN(std::string raw_path, fresh(absl::StrCat("raw_", i, ".h5")));
    RETURN_IF_ERROR(WriteH5Volume(raw_path, "raw", raw, H5Dtype::kUint8, options.compress));
    ASSIGN_OR_RETURN(std::string lab_path, fresh(absl::StrCat("barrier_", i, ".h5")));
    RETURN_IF_ERROR(WriteH5Volume(lab_path, "lab", barrier, H5Dtype::kInt16, options.compress));
    const int64_t side = options.patch_side, n = options.patches_per_cube;
    if (n > 0 && raw.x >= side && raw.y >= side) {
      Volume patches(1, n, side, side);
      H5Array labels{{n, 1}, {}};
      const Hasher pick(options.seed, i, kPatches);
      uint64_t draw = 0;
      for (int64_t k = 0; k < n; ++k) {
        // Alternating classes; positions drawn until the centre has the wanted label (a few
        // thousand tries at most, else whatever was drawn last).
        const float want = static_cast<float>(k % 2);
        int64_t z = 0, x = 0, y = 0;
        for (int t = 0; t < 4096; ++t, draw += 3) {
          z = static_cast<int64_t>(pick.Unit(draw) * raw.z);
          x = static_cast<int64_t>(pick.Unit(draw + 1) * (raw.x - side + 1));
          y = static_cast<int64_t>(pick.Unit(draw + 2) * (raw.y - side + 1));
          if (barrier.at(0, z, x + side / 2, y + side / 2) == want) break;
        }
        for (int64_t a = 0; a < side; ++a)
          for (int64_t b = 0; b < side; ++b) patches.at(0, k, a, b) = raw.at(0, z, x + a, y + b);
        labels.data.push_back(barrier.at(0, z, x + side / 2, y + side / 2));
      }
      ASSIGN_OR_RETURN(std::string patch_path, fresh(absl::StrCat("patches_", i, ".h5")));
      RETURN_IF_ERROR(WriteH5Volume(patch_path, "raw", patches, H5Dtype::kUint8, options.compress));
      RETURN_IF_ERROR(WriteH5Int16Array(patch_path, "lab", labels));
    }
  }
  GenerateDemoCube(options, options.preview_shape, options.num_cubes, &raw, &barrier);
  ASSIGN_OR_RETURN(std::string preview_path, fresh("preview.h5"));
  return WriteH5Volume(preview_path, "raw", raw, H5Dtype::kUint8, options.compress);
}

}  // namespace elektronn
