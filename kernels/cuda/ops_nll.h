// MultinoulliNLL and the error counts of the CUDA backend (reference §2.13), as templates over an
// executor (see bodies.h): one thread per voxel row, the normalisers reduced in double. The same
// expressions as kernels/cpu/losses.cc and CountErrors in kernels/cpu/cpu_backend.cc.
#pragma once

#include "kernels/cuda/bodies.h"

namespace elektronn::kernels::cuda::ops {

using NllDesc = Backend::NllDesc;

constexpr float kLogEps = 1e-5f;  // ELEKTRONN2's EPS inside every log

// -x log(y) with ELEKTRONN2's xlogy0 convention (0 where x == 0).
ELK_HD inline float NegXLogY(float x, float y) { return x == 0.f ? 0.f : -x * logf(y); }

ELK_HD inline int64_t NllBatchOf(const NllDesc& d, int64_t r) {
  return r / MaxI(1, d.rows / MaxI(1, d.batch));
}

// The target of class c in group g of row r after the class-labelled mask (before weakness).
ELK_HD inline float NllHardTarget(const NllDesc& d, const float* t, int64_t r, int64_t g, int64_t c,
                                  int64_t b) {
  float v;
  if (d.sparse) {
    const float id = t[r * (d.channels / d.n_class) + g];
    v = (id >= 0.f && id < static_cast<float>(d.n_class) && static_cast<int64_t>(id) == c) ? 1.f
                                                                                           : 0.f;
  } else {
    v = t[r * d.channels + g * d.n_class + c];
  }
  if (d.mask_class_labeled) v *= d.mask_class_labeled[b * d.channels + g * d.n_class + c];
  return v;
}

inline double NllScale(const NllDesc& d, double n_total) {
  const int64_t n_indep = d.channels / d.n_class;
  return static_cast<double>(d.rows * d.channels) / (n_total + 1e-5) / n_indep / d.n_class;
}

// One element of a row as the loss sees it: effective target, not-present mask, weight, and the
// weakness applied to it (0 when the group is unlabelled).
struct NllElement {
  int64_t i;
  float tv, m, w, weak;
};

ELK_HD inline bool NllGroupLabelled(const NllDesc& d, const float* t, int64_t r, int64_t g,
                                    int64_t b) {
  if (!(d.weakness > 0)) return false;
  bool labelled = false;
  for (int64_t c = 0; c < d.n_class; ++c) labelled |= NllHardTarget(d, t, r, g, c, b) != 0.f;
  return labelled;
}

ELK_HD inline NllElement NllElementAt(const NllDesc& d, const float* p, const float* t, int64_t r,
                                      int64_t g, int64_t c, int64_t b, bool labelled) {
  NllElement e;
  e.i = r * d.channels + g * d.n_class + c;
  e.tv = NllHardTarget(d, t, r, g, c, b);
  if (labelled) e.tv = (1.f - d.weakness) * e.tv + d.weakness * p[e.i];
  const float cw = d.class_weights ? d.class_weights[c] : 1.f;
  const float ew = d.example_weights ? d.example_weights[r] : 1.f;
  e.m =
      d.mask_class_not_present ? d.mask_class_not_present[b * d.channels + g * d.n_class + c] : 0.f;
  e.w = cw * ew;
  e.weak = labelled ? d.weakness : 0.f;
  return e;
}

template <class Exec>
double NllForward(Exec& ex, const NllDesc& d, const float* p, const float* t, float* loss) {
  const int64_t n_indep = d.channels / d.n_class;
  const double n_total =
      ex.template Reduce<1>(
            d.rows,
            ELK_LAMBDA(int64_t r) {
              const int64_t b = NllBatchOf(d, r);
              double n = 0;
              for (int64_t g = 0; g < n_indep; ++g)
                for (int64_t c = 0; c < d.n_class; ++c) {
                  n += NllHardTarget(d, t, r, g, c, b);
                  if (d.mask_class_not_present)
                    n += d.mask_class_not_present[b * d.channels + g * d.n_class + c];
                }
              return One(n);
            })
          .v[0];
  if (!ex.ok()) return 0;
  const float scale = static_cast<float>(NllScale(d, n_total));
  ex.ForEach(
      d.rows, ELK_LAMBDA(int64_t r) {
        const int64_t b = NllBatchOf(d, r);
        float s = 0.f;
        for (int64_t g = 0; g < n_indep; ++g) {
          const bool labelled = NllGroupLabelled(d, t, r, g, b);
          for (int64_t c = 0; c < d.n_class; ++c) {
            const NllElement e = NllElementAt(d, p, t, r, g, c, b, labelled);
            s += NegXLogY(e.tv * e.w, p[e.i] + kLogEps) +
                 NegXLogY(e.m * e.w, 1.f - p[e.i] + kLogEps);
          }
        }
        loss[r] = scale * s;
      });
  return n_total;
}

template <class Exec>
void NllBackward(Exec& ex, const NllDesc& d, const float* p, const float* t, const float* dl,
                 double n_total, float* dp, bool acc) {
  const int64_t n_indep = d.channels / d.n_class;
  const float scale = static_cast<float>(NllScale(d, n_total));
  ex.ForEach(
      d.rows, ELK_LAMBDA(int64_t r) {
        const int64_t b = NllBatchOf(d, r);
        const float k = dl[r] * scale;
        for (int64_t g = 0; g < n_indep; ++g) {
          const bool labelled = NllGroupLabelled(d, t, r, g, b);
          for (int64_t c = 0; c < d.n_class; ++c) {
            const NllElement e = NllElementAt(d, p, t, r, g, c, b, labelled);
            float v = 0.f;
            if (e.tv != 0.f) v -= e.tv * e.w / (p[e.i] + kLogEps);
            // The weakened target depends on p too: d/dp of -(a + weak p) log(p + eps).
            if (e.weak != 0.f) v -= e.weak * e.w * logf(p[e.i] + kLogEps);
            if (e.m != 0.f) v += e.m * e.w / (1.f - p[e.i] + kLogEps);
            dp[e.i] = Store(dp[e.i], k * v, acc);
          }
        }
      });
}

// The loss is linear in each weight: dL/dcw_c is the class-c term without the class weight,
// reduced per class over rows.
template <class Exec>
void NllClassWeightsBackward(Exec& ex, const NllDesc& d, const float* p, const float* t,
                             const float* dl, double n_total, float* dcw, bool acc) {
  const int64_t n_indep = d.channels / d.n_class;
  const double scale = NllScale(d, n_total);
  ex.template ColumnReduce<1>(
      d.rows, d.n_class,
      ELK_LAMBDA(int64_t r, int64_t c) {
        const int64_t b = NllBatchOf(d, r);
        const double k = dl[r] * scale;
        const float ew = d.example_weights ? d.example_weights[r] : 1.f;
        double s = 0;
        for (int64_t g = 0; g < n_indep; ++g) {
          const bool labelled = NllGroupLabelled(d, t, r, g, b);
          const NllElement e = NllElementAt(d, p, t, r, g, c, b, labelled);
          s += k *
               (NegXLogY(e.tv * ew, p[e.i] + kLogEps) + NegXLogY(e.m * ew, 1.f - p[e.i] + kLogEps));
        }
        return One(s);
      },
      ELK_LAMBDA(int64_t c, Sums<1> s) {
        dcw[c] = Store(dcw[c], static_cast<float>(s.v[0]), acc);
      });
}

// Per row and group: (wrong, labelled) of the first arg-max against the label.
template <class Exec>
void CountErrors(Exec& ex, const float* p, const float* t, int64_t rows, int64_t ch,
                 int64_t n_class, bool sparse, int64_t* wrong, int64_t* labelled) {
  const int64_t n_indep = ch / n_class;
  const Sums<2> s = ex.template Reduce<2>(
      rows * n_indep, ELK_LAMBDA(int64_t j) {
        const int64_t r = j / n_indep, gi = j % n_indep;
        const float* g = p + r * ch + gi * n_class;
        int64_t am = 0;
        for (int64_t c = 1; c < n_class; ++c)
          if (g[am] < g[c]) am = c;  // std::max_element: the first maximum
        int64_t truth = -1;
        if (sparse) {
          const float id = t[r * n_indep + gi];
          if (id >= 0.f && id < n_class) truth = static_cast<int64_t>(id);
        } else {
          const float* tg = t + r * ch + gi * n_class;
          bool any = false;
          int64_t tm = 0;
          for (int64_t c = 0; c < n_class; ++c) {
            any |= tg[c] != 0.f;
            if (tg[tm] < tg[c]) tm = c;
          }
          if (any) truth = tm;
        }
        if (truth < 0) return Two(0, 0);
        return Two(am != truth ? 1 : 0, 1);
      });
  *wrong = ex.ok() ? static_cast<int64_t>(s.v[0]) : 0;
  *labelled = ex.ok() ? static_cast<int64_t>(s.v[1]) : 0;
}

}  // namespace elektronn::kernels::cuda::ops
