// Dense prediction of one tile per preview cube and PNG export of its slices.
#include "engine/trainer/preview.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "absl/strings/str_format.h"
#include "engine/core/status.h"
#include "engine/data/h5_volume.h"
#include "engine/io/png.h"
#include "engine/io/tensorboard.h"

namespace elektronn {

absl::StatusOr<std::unique_ptr<PreviewPredictor>> PreviewPredictor::Create(
    const v1::ModelSpec& model, kernels::Backend* backend, const std::string& file,
    const std::string& key, const v1::PreviewKwargs& kwargs) {
  auto p = std::unique_ptr<PreviewPredictor>(new PreviewPredictor());
  p->input_ = model.designations().input_node();
  p->prediction_ = model.designations().prediction_node();
  if (p->prediction_.empty()) {
    return absl::InvalidArgumentError("previews need a designated prediction_node");
  }
  ASSIGN_OR_RETURN(p->net_, Network::Create(model, backend, {1, 0, false}));
  p->net_->set_training(false);
  const TaggedShape& in = p->net_->graph().Find(p->input_)->shape();
  const TaggedShape& out = p->net_->graph().Find(p->prediction_)->shape();
  if (in.ndim() != 3 || out.ndim() != 3 || in.SizeOf('f') != 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "previews need a 3-D network with one input channel and a 3-D prediction; input %s, "
        "prediction %s",
        in.ToString(), out.ToString()));
  }
  std::vector<std::string> keys = {key};
  if (key.empty()) {
    ASSIGN_OR_RETURN(keys, ListH5Datasets(file));
  }
  const auto ps = in.spatial_shape();
  const auto st = out.strides();
  for (const std::string& k : keys) {
    ASSIGN_OR_RETURN(Volume v, ReadH5Volume(file, k, false, H5Values::kRaw));
    for (int a = 0; a < 3; ++a) {
      const int64_t need = ps[a] + st[a] - 1;
      if (v.spatial()[a] < need) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "preview cube '%s' in '%s' has size %d along axis %d; the model needs at least %d "
            "(input patch + stride - 1)",
            k, file, v.spatial()[a], a, need));
      }
    }
    p->cubes_.push_back(std::move(v));
  }
  p->export_class_.assign(kwargs.export_class().begin(), kwargs.export_class().end());
  if (p->export_class_.empty())
    for (int64_t c = 0; c < out.SizeOf('f'); ++c) p->export_class_.push_back(c);
  for (int64_t c : p->export_class_) {
    if (c < 0 || c >= out.SizeOf('f')) {
      return absl::InvalidArgumentError(
          absl::StrFormat("preview_kwargs.export_class %d is not a class of the prediction (0..%d)",
                          c, out.SizeOf('f') - 1));
    }
  }
  if (kwargs.max_z_pred() > 0) p->max_z_pred_ = kwargs.max_z_pred();
  return p;
}

absl::Status PreviewPredictor::Run(Network& trained, const std::string& dir,
                                   const std::string& name, double hours, int64_t step,
                                   EventWriter* events) {
  for (Parameter* p : net_->params()) {
    ASSIGN_OR_RETURN(Parameter * src, trained.FindParam(p->node, p->name));
    RETURN_IF_ERROR(net_->SetParamValue(*p, trained.ParamValue(*src)));
  }
  const TaggedShape& in = net_->graph().Find(input_)->shape();
  const TaggedShape& out = net_->graph().Find(prediction_)->shape();
  const auto ps = in.spatial_shape();
  const auto os = out.spatial_shape();
  const auto st = out.strides();
  const auto off = out.offsets();
  const int64_t n_class = out.SizeOf('f');
  const double wall_time =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const std::array<int64_t, 3> dense = {os[0] * st[0], os[1] * st[1], os[2] * st[2]};
  std::vector<float> patch(in.stripnone_prod());
  for (size_t ci = 0; ci < cubes_.size(); ++ci) {
    const Volume& v = cubes_[ci];
    // The tile starts so that it is centred in the cube.
    std::array<int64_t, 3> origin;
    for (int a = 0; a < 3; ++a) origin[a] = (v.spatial()[a] - (ps[a] + st[a] - 1)) / 2;
    Volume pred(n_class, dense[0], dense[1], dense[2]);
    for (int64_t dz = 0; dz < st[0]; ++dz)
      for (int64_t dx = 0; dx < st[1]; ++dx)
        for (int64_t dy = 0; dy < st[2]; ++dy) {
          for (int64_t z = 0; z < ps[0]; ++z)
            for (int64_t x = 0; x < ps[1]; ++x)
              for (int64_t y = 0; y < ps[2]; ++y)
                patch[(z * ps[1] + x) * ps[2] + y] =
                    v.at(0, origin[0] + dz + z, origin[1] + dx + x, origin[2] + dy + y);
          RETURN_IF_ERROR(net_->SetInput(input_, patch));
          RETURN_IF_ERROR(net_->Forward());
          ASSIGN_OR_RETURN(std::vector<float> probs, net_->Output(prediction_));
          for (int64_t c = 0; c < n_class; ++c)
            for (int64_t z = 0; z < os[0]; ++z)
              for (int64_t x = 0; x < os[1]; ++x)
                for (int64_t y = 0; y < os[2]; ++y)
                  pred.at(c, z * st[0] + dz, x * st[1] + dx, y * st[2] + dy) =
                      probs[((c * os[0] + z) * os[1] + x) * os[2] + y];
        }
    // The central max_z_pred output slices, and the raw slices they belong to.
    const int64_t nz = std::min<int64_t>(max_z_pred_, dense[0]);
    const int64_t z0 = (dense[0] - nz) / 2;
    for (int64_t k = z0; k < z0 + nz; ++k) {
      for (int64_t c : export_class_) {
        std::vector<uint8_t> img(dense[1] * dense[2]);
        for (int64_t i = 0; i < dense[1] * dense[2]; ++i)
          img[i] = static_cast<uint8_t>(
              std::lround(255 * std::clamp(pred.data[pred.index(c, k, 0, 0) + i], 0.f, 1.f)));
        const std::string file =
            absl::StrFormat("%s/%s-pred-%d-z%d-c%d-%.1fhrs.png", dir, name, ci, k, c, hours);
        RETURN_IF_ERROR(WritePngFile(file, img.data(), static_cast<int>(dense[2]),
                                     static_cast<int>(dense[1]), 1));
        if (events != nullptr && k == z0) {
          ASSIGN_OR_RETURN(std::string png, EncodePng(img.data(), static_cast<int>(dense[2]),
                                                      static_cast<int>(dense[1]), 1));
          RETURN_IF_ERROR(events->AddImage(absl::StrFormat("preview/cube%d/class%d", ci, c), step,
                                           png, static_cast<int>(dense[1]),
                                           static_cast<int>(dense[2]), 1, wall_time));
        }
      }
      if (!raw_written_) {
        std::vector<uint8_t> img(dense[1] * dense[2]);
        for (int64_t x = 0; x < dense[1]; ++x)
          for (int64_t y = 0; y < dense[2]; ++y)
            img[x * dense[2] + y] = static_cast<uint8_t>(
                std::lround(255 * std::clamp(v.at(0, origin[0] + off[0] + k, origin[1] + off[1] + x,
                                                  origin[2] + off[2] + y),
                                             0.f, 1.f)));
        RETURN_IF_ERROR(WritePngFile(absl::StrFormat("%s/%s-raw-%d-z%d.png", dir, name, ci, k),
                                     img.data(), static_cast<int>(dense[2]),
                                     static_cast<int>(dense[1]), 1));
      }
    }
  }
  raw_written_ = true;
  return absl::OkStatus();
}

}  // namespace elektronn
