// Dense prediction on the command line: its options, their PredictionSpec, its progress line.
#include "client/prediction_cli.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace elektronn {
namespace {

absl::Status Bad(const std::string& flag, const std::string& value, const std::string& valid) {
  return absl::InvalidArgumentError(absl::StrCat(flag, " is '", value, "'; expected ", valid));
}

}  // namespace

absl::StatusOr<int64_t> ParseByteSize(const std::string& flag, const std::string& text) {
  const std::string valid = "a size in bytes with an optional K, M, G or T suffix, e.g. 4G or 512M";
  absl::string_view s = absl::StripAsciiWhitespace(text);
  std::string upper = absl::AsciiStrToUpper(s);
  absl::string_view u = upper;
  (void)(absl::ConsumeSuffix(&u, "IB") || absl::ConsumeSuffix(&u, "B"));
  double scale = 1;
  if (!u.empty()) {
    switch (u.back()) {
      case 'K':
        scale = 1024.0;
        break;
      case 'M':
        scale = 1024.0 * 1024;
        break;
      case 'G':
        scale = 1024.0 * 1024 * 1024;
        break;
      case 'T':
        scale = 1024.0 * 1024 * 1024 * 1024;
        break;
      default:
        break;
    }
    if (scale != 1) u.remove_suffix(1);
  }
  double v = 0;
  if (u.empty() || !absl::SimpleAtod(u, &v) || !std::isfinite(v) || v < 0 || v * scale > 9.0e18) {
    return Bad(flag, text, valid);
  }
  return static_cast<int64_t>(std::llround(v * scale));
}

absl::StatusOr<std::vector<int64_t>> ParseIntList(const std::string& flag, const std::string& text,
                                                  int n, int64_t min) {
  const std::string valid = n > 0 ? absl::StrCat(n, " comma-separated integers >= ", min)
                                  : absl::StrCat("comma-separated integers >= ", min);
  std::vector<int64_t> out;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &v) || v < min) {
      return Bad(flag, text, valid);
    }
    out.push_back(v);
  }
  if (n > 0 && static_cast<int>(out.size()) != n) return Bad(flag, text, valid);
  return out;
}

void AddPredictionFlags(CLI::App* app, PredictionFlags* f, bool positionals_required) {
  auto* model = app->add_option("model", f->model,
                                "the model file (.h5) written by training, e.g. "
                                "runs/neuro3d/neuro3d-FINAL.h5; with --host also jobs/N or N: "
                                "that training job's final model, else its latest checkpoint");
  auto* input = app->add_option("input", f->input,
                                "input volume: FILE.h5:/DATASET (HDF5), DIR.zarr (Zarr v2) or "
                                "knossos:DIR[,DIR...] (KNOSSOS, one channel per dataset); "
                                "(z,x,y) or (c,z,x,y); integers are divided by 255");
  auto* output = app->add_option("output", f->output,
                                 "output volume, (c,z,x,y): FILE.h5:/DATASET or DIR.zarr; "
                                 "continued where an earlier run of the same command stopped");
  if (positionals_required) {
    model->required();
    input->required();
    output->required();
  }
  app->add_option("--patch", f->patch,
                  "input patch z,x,y of one forward pass, snapped down to a size the net takes "
                  "(default: the largest that fits --memory-limit)");
  app->add_option("--chunk", f->chunk,
                  "output chunk z,x,y: the unit written and resumed (default: whole tiles, "
                  "about 64 per axis)");
  app->add_option("--mfp", f->mfp,
                  "max-fragment-pooling: auto (on when every pooling is inside a Conv), on, off")
      ->check(CLI::IsMember({"auto", "on", "off"}))
      ->capture_default_str();
  app->add_option("--pad", f->pad,
                  "border: mirror (the output covers the whole input, as ELEKTRONN2's pad_raw), "
                  "zero, or none (the output shrinks by the field of view)")
      ->check(CLI::IsMember({"mirror", "zero", "none"}))
      ->capture_default_str();
  app->add_flag("--as-uint8", f->as_uint8, "write probabilities * 255 as uint8 (default float32)");
  app->add_option("--channels", f->channels,
                  "output channels to keep, e.g. 1 or 0,2 (default all)");
  app->add_option("--roi", f->roi,
                  "predict only the input region z0,x0,y0,dz,dx,dy (default: the whole volume)");
  app->add_option("--threads", f->threads, "compute threads (default 0: all cores)")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  app->add_option("--memory-limit", f->memory_limit,
                  "memory for tiles and activations, with a K/M/G suffix")
      ->capture_default_str();
  app->add_option("--compression", f->compression,
                  "Zarr output compression: none, zlib or blosc (HDF5 outputs: none)")
      ->check(CLI::IsMember({"none", "zlib", "blosc"}))
      ->capture_default_str();
  app->add_flag("--no-resume", f->no_resume, "refuse an existing output instead of continuing it");
  app->add_option("--device", f->device,
                  "compute device: cpu, or cuda:N on a build with the CUDA backend")
      ->capture_default_str();
  app->add_flag("--tf32", f->tf32, "CUDA: allow TF32 tensor cores (default: full FP32)");
  app->add_option("--precision", f->precision,
                  "arithmetic of convolutions, matrix products and pooling: fp32, or bf16 "
                  "(mixed precision, on CPUs with AVX512_BF16)")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
}

std::string PredictionHelpFooter() {
  return "Examples:\n"
         "  elektronn predict runs/neuro3d/neuro3d-FINAL.h5 data/raw_0.h5:/raw pred.zarr\n"
         "  elektronn predict model.h5 big.zarr pred.h5:/prob --patch 23,185,185 --as-uint8 \\\n"
         "      --channels 1 --roi 0,0,0,64,512,512 --memory-limit 8G --threads 8\n"
         "  elektronn predict 7 data/raw_0.h5:/raw out/pred.zarr --host gpu1:7077 --follow\n"
         "      (a prediction job on the daemon with training job 7's model; paths are inside\n"
         "      the daemon's --data-dir)\n"
         "Ctrl-C (or SIGTERM) stops once the output chunks in flight are written; the output is\n"
         "resumable: run the same command again and it continues where it stopped, ending\n"
         "bit-identical to an uninterrupted run.";
}

absl::StatusOr<v1::JobSpec> PredictionJobSpec(const PredictionFlags& f) {
  v1::JobSpec job;
  v1::PredictionSpec* p = job.mutable_prediction();
  if (f.model.empty()) return absl::InvalidArgumentError("predict needs MODEL, INPUT and OUTPUT");
  if (f.input.empty()) return absl::InvalidArgumentError("predict needs an INPUT volume");
  if (f.output.empty()) return absl::InvalidArgumentError("predict needs an OUTPUT volume");
  p->set_model(f.model);
  p->set_input(f.input);
  p->set_output(f.output);
  if (!f.patch.empty()) {
    auto v = ParseIntList("--patch", f.patch, 3, 1);
    if (!v.ok()) return v.status();
    p->mutable_patch()->Add(v->begin(), v->end());
  }
  if (!f.chunk.empty()) {
    auto v = ParseIntList("--chunk", f.chunk, 3, 1);
    if (!v.ok()) return v.status();
    p->mutable_chunk()->Add(v->begin(), v->end());
  }
  if (f.mfp == "auto") {
    p->set_mfp(v1::PredictionSpec::MFP_AUTO);
  } else if (f.mfp == "on") {
    p->set_mfp(v1::PredictionSpec::MFP_ON);
  } else if (f.mfp == "off") {
    p->set_mfp(v1::PredictionSpec::MFP_OFF);
  } else {
    return Bad("--mfp", f.mfp, "auto, on or off");
  }
  if (f.pad == "mirror") {
    p->set_pad(v1::PredictionSpec::PAD_MIRROR);
  } else if (f.pad == "zero") {
    p->set_pad(v1::PredictionSpec::PAD_ZERO);
  } else if (f.pad == "none") {
    p->set_pad(v1::PredictionSpec::PAD_NONE);
  } else {
    return Bad("--pad", f.pad, "mirror, zero or none");
  }
  p->set_as_uint8(f.as_uint8);
  if (!f.channels.empty()) {
    auto v = ParseIntList("--channels", f.channels, 0, 0);
    if (!v.ok()) return v.status();
    std::set<int64_t> seen;
    for (int64_t c : *v) {
      if (!seen.insert(c).second || c > 65535) {
        return Bad("--channels", f.channels, "distinct channel numbers, e.g. 0,2");
      }
      p->add_channels(static_cast<int32_t>(c));
    }
  }
  if (!f.roi.empty()) {
    auto v = ParseIntList("--roi", f.roi, 6, 0);
    if (!v.ok()) return v.status();
    if ((*v)[3] < 1 || (*v)[4] < 1 || (*v)[5] < 1) {
      return Bad("--roi", f.roi, "z0,x0,y0,dz,dx,dy with origins >= 0 and sizes >= 1");
    }
    p->mutable_roi()->Add(v->begin(), v->end());
  }
  auto memory = ParseByteSize("--memory-limit", f.memory_limit);
  if (!memory.ok()) return memory.status();
  if (*memory < (int64_t{16} << 20)) {
    return Bad("--memory-limit", f.memory_limit, "at least 16M");
  }
  p->set_memory_limit(*memory);
  if (f.compression != "none" && f.compression != "zlib" && f.compression != "blosc") {
    return Bad("--compression", f.compression, "none, zlib or blosc");
  }
  p->set_compression(f.compression);
  if (f.threads < 0) return Bad("--threads", std::to_string(f.threads), "0 (all cores) or more");
  job.mutable_resources()->set_cpu_threads(f.threads);
  job.mutable_resources()->set_device(f.device);
  if (f.precision != "fp32" && f.precision != "bf16")
    return Bad("--precision", f.precision, "fp32 or bf16");
  job.mutable_resources()->set_precision(f.precision);
  job.mutable_resources()->set_allow_tf32(f.tf32);
  return job;
}

std::string FormatCount(double n) {
  if (n >= 1e12) return absl::StrFormat("%.3gT", n / 1e12);
  if (n >= 1e9) return absl::StrFormat("%.3gG", n / 1e9);
  if (n >= 1e6) return absl::StrFormat("%.3gM", n / 1e6);
  if (n >= 1e4) return absl::StrFormat("%.3gk", n / 1e3);
  return absl::StrFormat("%.0f", n);
}

std::string FormatPredictionProgress(const v1::PredictionProgress& p) {
  const int64_t total = p.voxels_total();
  const int64_t done = std::clamp<int64_t>(p.voxels_done(), 0, std::max<int64_t>(total, 0));
  const double fraction = total > 0 ? static_cast<double>(done) / total : 0;
  constexpr int kWidth = 20;
  const int filled = static_cast<int>(fraction * kWidth);
  std::string line =
      absl::StrFormat("%5.1f%% [%s%s] %s/%s voxels", 100 * fraction, std::string(filled, '#'),
                      std::string(kWidth - filled, '.'), FormatCount(static_cast<double>(done)),
                      FormatCount(static_cast<double>(total)));
  if (p.voxels_per_second() > 0) {
    absl::StrAppend(&line, "  ", FormatCount(p.voxels_per_second()), " voxels/s");
  }
  if (p.eta_seconds() > 0 && done < total) {
    const int64_t eta = static_cast<int64_t>(std::ceil(p.eta_seconds()));
    absl::StrAppend(&line, eta >= 3600
                               ? absl::StrFormat("  ETA %dh%02dm", eta / 3600, eta % 3600 / 60)
                               : absl::StrFormat("  ETA %dm%02ds", eta / 60, eta % 60));
  }
  if (p.chunks_total() > 0) {
    absl::StrAppend(&line, absl::StrFormat("  chunks %d/%d", p.chunks_done(), p.chunks_total()));
  }
  return line;
}

}  // namespace elektronn
