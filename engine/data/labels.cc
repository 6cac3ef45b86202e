// Label transforms (reference §7.8): ids2barriers, make_affinities, make_nhood_targets,
// grow_seg.
#include "engine/data/labels.h"

#include <algorithm>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace elektronn {
namespace {

using Shape3 = std::array<int64_t, 3>;

bool Inside(int64_t z, int64_t x, int64_t y, const Shape3& s) {
  return z >= 0 && x >= 0 && y >= 0 && z < s[0] && x < s[1] && y < s[2];
}

absl::Status CheckNhood(const char* fn, const std::vector<Offset3>& nhood) {
  if (nhood.empty()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: nhood is empty; give at least one offset (dz,dx,dy)", fn));
  }
  return absl::OkStatus();
}

// Union-find with path halving.
int64_t Find(std::vector<int64_t>& parent, int64_t i) {
  while (parent[i] != i) {
    parent[i] = parent[parent[i]];
    i = parent[i];
  }
  return i;
}

}  // namespace

std::vector<Offset3> DefaultAffinityNhood() { return {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}; }

std::vector<Offset3> DefaultNhoodTargets() {
  return {{0, 0, 0}, {1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {-1, 0, 0}, {0, -1, 0}, {0, 0, -1}};
}

Volume Ids2Barriers(const Volume& ids, const Ids2BarriersOptions& o) {
  const Shape3 s = ids.spatial();
  Volume out(1, s[0], s[1], s[2]);
  auto id = [&](int64_t z, int64_t x, int64_t y) { return ids.at(0, z, x, y); };
  auto mark = [&](int64_t z, int64_t x, int64_t y) {
    if (Inside(z, x, y, s)) out.at(0, z, x, y) = 1.f;
  };
  for (int a = 0; a < 3; ++a) {
    if (!o.connectivity[a]) continue;
    Offset3 e{0, 0, 0};
    e[a] = 1;
    for (int64_t z = 0; z < s[0]; ++z) {
      for (int64_t x = 0; x < s[1]; ++x) {
        for (int64_t y = 0; y < s[2]; ++y) {
          const int64_t z2 = z + e[0], x2 = x + e[1], y2 = y + e[2];
          if (!Inside(z2, x2, y2, s) || id(z, x, y) == id(z2, x2, y2)) continue;
          mark(z, x, y);
          mark(z2, x2, y2);
          if (o.dilute[a]) {
            mark(z - e[0], x - e[1], y - e[2]);
            mark(z2 + e[0], x2 + e[1], y2 + e[2]);
          }
        }
      }
    }
  }
  if (o.smoothen) {
    Volume sm(1, s[0], s[1], s[2]);
    for (int64_t z = 0; z < s[0]; ++z) {
      for (int64_t x = 0; x < s[1]; ++x) {
        for (int64_t y = 0; y < s[2]; ++y) {
          double acc = 0;
          for (int dz = -1; dz <= 1; ++dz) {
            for (int dx = -1; dx <= 1; ++dx) {
              for (int dy = -1; dy <= 1; ++dy) {
                if (!Inside(z + dz, x + dx, y + dy, s)) continue;
                const int n = std::abs(dz) + std::abs(dx) + std::abs(dy);
                const double w = n == 0 ? 1.0 : n == 1 ? 0.5 : n == 2 ? 0.3 : 0.2;
                acc += w * out.at(0, z + dz, x + dx, y + dy);
              }
            }
          }
          sm.at(0, z, x, y) = acc > 4.0 ? 1.f : 0.f;
        }
      }
    }
    out = std::move(sm);
  }
  if (o.ecs != EcsMode::kNone) {
    for (int64_t v = 0; v < out.voxels(); ++v) {
      if (ids.data[v] != 0.f) continue;
      if (o.ecs == EcsMode::kBarrier) {
        out.data[v] = 1.f;
      } else if (out.data[v] == 0.f) {
        out.data[v] = 2.f;
      }
    }
  }
  return out;
}

void AffinitiesInCut(const float* ids, const Shape3& cut, const Shape3& margin,
                     const Shape3& out_shape, const std::vector<Offset3>& nhood, float undefined,
                     float* out) {
  float* o = out;
  for (const Offset3& n : nhood) {
    for (int64_t z = 0; z < out_shape[0]; ++z) {
      for (int64_t x = 0; x < out_shape[1]; ++x) {
        for (int64_t y = 0; y < out_shape[2]; ++y) {
          const int64_t cz = z + margin[0], cx = x + margin[1], cy = y + margin[2];
          const int64_t pz = cz + n[0], px = cx + n[1], py = cy + n[2];
          if (!Inside(pz, px, py, cut)) {
            *o++ = undefined;
            continue;
          }
          const float a = ids[(cz * cut[1] + cx) * cut[2] + cy];
          const float b = ids[(pz * cut[1] + px) * cut[2] + py];
          *o++ = (a == b && a > 0.f && b > 0.f) ? 1.f : 0.f;
        }
      }
    }
  }
}

void NhoodTargetsInCut(const float* ids, const Shape3& cut, const Shape3& margin,
                       const Shape3& out_shape, const std::vector<Offset3>& nhood, float undefined,
                       float* out) {
  float* o = out;
  for (const Offset3& n : nhood) {
    for (int64_t z = 0; z < out_shape[0]; ++z) {
      for (int64_t x = 0; x < out_shape[1]; ++x) {
        for (int64_t y = 0; y < out_shape[2]; ++y) {
          const int64_t pz = z + margin[0] + n[0], px = x + margin[1] + n[1],
                        py = y + margin[2] + n[2];
          *o++ = Inside(pz, px, py, cut) ? ids[(pz * cut[1] + px) * cut[2] + py] : undefined;
        }
      }
    }
  }
}

absl::StatusOr<Affinities> MakeAffinities(const Volume& ids, const std::vector<Offset3>& nhood,
                                          int64_t size_thresh) {
  if (auto s = CheckNhood("make_affinities", nhood); !s.ok()) return s;
  const Shape3 s = ids.spatial();
  const int64_t nv = ids.voxels();
  Affinities r;
  r.aff = Volume(static_cast<int64_t>(nhood.size()), s[0], s[1], s[2]);
  AffinitiesInCut(ids.data.data(), s, {0, 0, 0}, s, nhood, 0.f, r.aff.data.data());
  // Connected components over the edges that are 1.
  std::vector<int64_t> parent(nv);
  std::iota(parent.begin(), parent.end(), 0);
  for (size_t e = 0; e < nhood.size(); ++e) {
    const Offset3& n = nhood[e];
    for (int64_t z = 0; z < s[0]; ++z) {
      for (int64_t x = 0; x < s[1]; ++x) {
        for (int64_t y = 0; y < s[2]; ++y) {
          if (r.aff.at(static_cast<int64_t>(e), z, x, y) == 0.f) continue;
          const int64_t a = Find(parent, (z * s[1] + x) * s[2] + y);
          const int64_t b = Find(parent, ((z + n[0]) * s[1] + x + n[1]) * s[2] + y + n[2]);
          if (a != b) parent[std::max(a, b)] = std::min(a, b);
        }
      }
    }
  }
  std::vector<int64_t> size(nv, 0), first(nv, -1);
  for (int64_t v = 0; v < nv; ++v) {
    const int64_t root = Find(parent, v);
    if (size[root]++ == 0) first[root] = v;
  }
  std::vector<int64_t> roots;
  for (int64_t v = 0; v < nv; ++v) {
    if (size[v] > 0) roots.push_back(v);
  }
  std::stable_sort(roots.begin(), roots.end(), [&](int64_t a, int64_t b) {
    return size[a] != size[b] ? size[a] > size[b] : first[a] < first[b];
  });
  std::vector<int64_t> label(nv, 0);
  int64_t next = 1;
  for (int64_t root : roots) label[root] = size[root] >= size_thresh ? next++ : 0;
  r.seg = Volume(1, s[0], s[1], s[2]);
  for (int64_t v = 0; v < nv; ++v) {
    r.seg.data[v] = static_cast<float>(label[Find(parent, v)]);
  }
  return r;
}

absl::StatusOr<Volume> MakeNhoodTargets(const Volume& ids, const std::vector<Offset3>& nhood) {
  if (auto s = CheckNhood("make_nhood_targets", nhood); !s.ok()) return s;
  const Shape3 s = ids.spatial();
  Volume out(static_cast<int64_t>(nhood.size()), s[0], s[1], s[2]);
  NhoodTargetsInCut(ids.data.data(), s, {0, 0, 0}, s, nhood, -1.f, out.data.data());
  return out;
}

Volume GrowSeg(const Volume& ids, const std::array<int64_t, 3>& steps) {
  const Shape3 s = ids.spatial();
  Volume cur(1, s[0], s[1], s[2]);
  std::copy(ids.data.begin(), ids.data.begin() + ids.voxels(), cur.data.begin());
  const int64_t rounds = std::max({steps[0], steps[1], steps[2], int64_t{0}});
  for (int64_t t = 1; t <= rounds; ++t) {
    Volume next = cur;
    for (int64_t z = 0; z < s[0]; ++z) {
      for (int64_t x = 0; x < s[1]; ++x) {
        for (int64_t y = 0; y < s[2]; ++y) {
          if (cur.at(0, z, x, y) != 0.f) continue;
          float best = 0.f;
          for (int a = 0; a < 3; ++a) {
            if (steps[a] < t) continue;
            for (int d : {-1, 1}) {
              Offset3 p{z, x, y};
              p[a] += d;
              if (!Inside(p[0], p[1], p[2], s)) continue;
              const float v = cur.at(0, p[0], p[1], p[2]);
              if (v != 0.f && (best == 0.f || v < best)) best = v;
            }
          }
          next.at(0, z, x, y) = best;
        }
      }
    }
    cur = std::move(next);
  }
  return cur;
}

}  // namespace elektronn
