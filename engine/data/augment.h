// Non-geometric augmentations of ELEKTRONN2's getbatch (reference §7.5) on one example's raw
// patch, channels first (ch, z, x, y), grey values on the 0-1 scale: Gaussian blur + uniform
// noise ("nga"), blurry blobs, and random erasing with a constant or with noise.
//
// Blobs are cubes of a random edge length (ELEKTRONN2's blob_size_range, numpy randint: [lo, hi))
// at a random position fully inside the patch; per channel a random number of them
// (num_blob_range, [lo, hi)). As in ELEKTRONN2 a blob edge larger than the smallest patch side
// stops the blob creation for that channel. Fix for 2-D networks (patch depth 1): axes of size 1
// are left out of "smallest side" and the blob is one voxel thick there (ELEKTRONN2 would never
// place a blob in a depth-1 patch).
//
// Deterministic in the rng; scratch memory is per thread and grows only with the patch size.
#pragma once

#include <array>
#include <cstdint>
#include <random>

namespace elektronn {

struct BlobOptions {
  int64_t num_lo = 5, num_hi = 15;       // blobs per channel, randint(lo, hi)
  int64_t size_lo = 10, size_hi = 32;    // blob edge length, randint(lo, hi)
  double diffuseness = 0;                // blurry blobs: Gaussian sigma; 0 = uniform in [1, 5)
  float value = 0.f;                     // uniform erasing: the fill value
  float noise_lo = 0.f, noise_hi = 1.f;  // noisy erasing: uniform noise in [lo, hi)
};

// In-place Gaussian blur (sigma in voxels on each axis, kernel radius round(4 sigma) like scipy's
// gaussian_filter, mirror ("reflect") borders) of the box [lo, lo+size) of one channel block of
// shape s. Axes where the box is 1 voxel wide are not blurred.
void GaussianBlurBox(float* channel, const std::array<int64_t, 3>& s,
                     const std::array<int64_t, 3>& lo, const std::array<int64_t, 3>& size,
                     double sigma);

// ELEKTRONN2's nga_blur_noise: Gaussian blur with sigma 1 (QUIRK 5: ELEKTRONN2 discarded the
// blurred result; here the blur is applied, as intended), then additive uniform noise
// 0.15*(U-0.5) on every voxel.
void NgaBlurNoise(float* data, int64_t ch, const std::array<int64_t, 3>& s, std::mt19937_64& rng);

// blurry_blobs: per channel, blobs blurred with sigma = diffuseness (or random in [1,5) per blob).
void BlurryBlobs(float* data, int64_t ch, const std::array<int64_t, 3>& s, const BlobOptions& o,
                 std::mt19937_64& rng);

// uniform_random_erasing: per channel, blobs filled with o.value.
void UniformRandomErasing(float* data, int64_t ch, const std::array<int64_t, 3>& s,
                          const BlobOptions& o, std::mt19937_64& rng);

// noisy_random_erasing: per channel, blobs filled with uniform noise in [noise_lo, noise_hi).
void NoisyRandomErasing(float* data, int64_t ch, const std::array<int64_t, 3>& s,
                        const BlobOptions& o, std::mt19937_64& rng);

}  // namespace elektronn
