// Dense prediction on the command line, defined once: `elektronn predict` (local or --host) and
// `elektronn-worker predict` register the same options and turn them into the same
// PredictionSpec (plus the job's resources), and show progress with the same line, so a local
// run and a daemon's job read alike.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "elektronn/v1/jobs.pb.h"
#include "elektronn/v1/training.pb.h"

namespace elektronn {

// What the command line says, as typed; PredictionJobSpec checks and converts it.
struct PredictionFlags {
  std::string model;   // model file, or (with --host) "jobs/N" / "N": that training job's model
  std::string input;   // volume spec
  std::string output;  // volume spec
  std::string patch;   // "z,x,y"
  std::string chunk;   // "z,x,y"
  std::string mfp = "auto";
  std::string pad = "mirror";
  bool as_uint8 = false;
  std::string channels;  // "0,1"
  std::string roi;       // "z0,x0,y0,dz,dx,dy"
  int threads = 0;
  std::string memory_limit = "4G";
  std::string compression = "none";
  bool no_resume = false;
  std::string device = "cpu";
  std::string precision = "fp32";  // or "bf16" (JobResources.precision)
  bool tf32 = false;               // CUDA: JobResources.allow_tf32
};

// Registers MODEL INPUT OUTPUT and every option above on `app` (writing into `*flags`, which must
// outlive parsing). With `positionals_required` false the three positionals may be left out
// (elektronn-worker predict --job-spec takes them from the spec).
void AddPredictionFlags(CLI::App* app, PredictionFlags* flags, bool positionals_required = true);

// The usage examples and defaults shown below the options of `predict --help`.
std::string PredictionHelpFooter();

// A JobSpec with `prediction` (and `resources`: device, cpu_threads, precision) set from `flags`.
// Errors are INVALID_ARGUMENT naming the option, the bad value and what would be valid. The model
// is copied as given (a local run opens it; the client rewrites "N" to "jobs/N" for --host).
absl::StatusOr<v1::JobSpec> PredictionJobSpec(const PredictionFlags& flags);

// "4G", "512M", "100K", "1.5G", "4GiB", "1000" (bytes) -> bytes; K/M/G/T are powers of 1024.
absl::StatusOr<int64_t> ParseByteSize(const std::string& flag, const std::string& text);

// "1,2,3" -> {1,2,3}, exactly `n` values (n = 0: any number), each >= `min`.
absl::StatusOr<std::vector<int64_t>> ParseIntList(const std::string& flag, const std::string& text,
                                                  int n, int64_t min);

// One progress line: "42.0% [########............] 1.23M/2.92M voxels  3.45M voxels/s  ETA
// 0m12s  chunks 12/27" (rate and ETA left out while unknown).
std::string FormatPredictionProgress(const v1::PredictionProgress& p);

// "1.23M", "512k", "17": a count with an SI suffix.
std::string FormatCount(double n);

}  // namespace elektronn
