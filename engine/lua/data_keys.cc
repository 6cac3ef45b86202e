// The data keys of a job file: data_init_kwargs (BatchCreatorImage's files, targets and
// modes; the other data classes' arguments) and data_batch_args (augmentation).
#include "engine/lua/internal/data_keys.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "engine/core/status.h"

namespace elektronn::lua {

using Spec = v1::TrainingSpec;

namespace {

// d_files / l_files: a list of {file_name, dataset_key} pairs.
absl::Status ReadH5Files(const KeyReader& r,
                         google::protobuf::RepeatedPtrField<v1::H5Dataset>* out) {
  ASSIGN_OR_RETURN(int n, r.Length());
  if (n == 0) return r.Error("must list at least one {file, dataset_key} pair");
  for (int i = 1; i <= n; ++i) {
    lua_rawgeti(r.L(), -1, i);
    const KeyReader e = r.Entry(i);
    auto len = SequenceLength(r.L(), -1);
    std::string file, key;
    bool ok = len.ok() && *len == 2;
    if (ok) {
      lua_rawgeti(r.L(), -1, 1);
      ok = lua_type(r.L(), -1) == LUA_TSTRING;
      if (ok) file = lua_tostring(r.L(), -1);
      lua_rawgeti(r.L(), -2, 2);
      ok = ok && lua_type(r.L(), -1) == LUA_TSTRING;
      if (ok) key = lua_tostring(r.L(), -1);
      lua_pop(r.L(), 2);
    }
    const std::string found = Describe(r.L(), -1);
    lua_pop(r.L(), 1);
    if (!ok || file.empty() || key.empty()) {
      return e.Error(
          "must be a pair of strings {file_name, dataset_key}, e.g. "
          "{'raw_0.h5', 'raw'}; got " +
          found);
    }
    v1::H5Dataset* d = out->Add();
    d->set_file(file);
    d->set_key(key);
  }
  return absl::OkStatus();
}

// Data family: ids2barriers = true | {dilute=, connectivity=, ecs_as_barr=, smoothen=}.
absl::Status ReadIds2Barriers(const KeyReader& r, v1::BatchCreatorImageParams* p) {
  if (lua_type(r.L(), -1) == LUA_TBOOLEAN) {
    if (lua_toboolean(r.L(), -1)) p->mutable_ids2barriers();
    return absl::OkStatus();
  }
  v1::Ids2BarriersArgs* a = p->mutable_ids2barriers();
  return r.Fields(
      {"dilute", "connectivity", "ecs_as_barr", "smoothen"}, {},
      [&](const std::string& key, const KeyReader& f) -> absl::Status {
        if (key == "dilute" || key == "connectivity") {
          ASSIGN_OR_RETURN(int n, f.Length());
          if (n != 3) return f.Error(absl::StrFormat("must list 3 booleans (z, x, y), got %d", n));
          for (int i = 1; i <= 3; ++i) {
            lua_rawgeti(f.L(), -1, i);
            auto b = f.Entry(i).Bool();
            lua_pop(f.L(), 1);
            if (!b.ok()) return b.status();
            key == "dilute" ? a->add_dilute(*b) : a->add_connectivity(*b);
          }
        } else if (key == "ecs_as_barr") {
          if (lua_type(f.L(), -1) == LUA_TBOOLEAN) {
            a->set_ecs_as_barr(lua_toboolean(f.L(), -1) ? "true" : "false");
          } else {
            auto v = f.Choice({"new_class"});
            if (!v.ok()) return f.Error("must be true, false or 'new_class'");
            a->set_ecs_as_barr(*v);
          }
        } else {
          ASSIGN_OR_RETURN(bool b, f.Bool());
          a->set_smoothen(b);
        }
        return absl::OkStatus();
      });
}

// target_vec_ix = {{0, 1, 2}, ...}: triples of target channels (z, x, y components); a channel
// in at most one triple. Checked against the target's channel count when the data is built.
absl::Status ReadTargetVecIx(const KeyReader& r, v1::BatchCreatorImageParams* p) {
  if (r.IsNeutral()) return absl::OkStatus();
  ASSIGN_OR_RETURN(int n, r.Length());
  std::set<int64_t> seen;
  for (int i = 1; i <= n; ++i) {
    lua_rawgeti(r.L(), -1, i);
    auto v = ReadIntList(r.L(), -1);
    const std::string found = Describe(r.L(), -1);
    lua_pop(r.L(), 1);
    if (!v.ok() || v->size() != 3) {
      return r.Entry(i).Error(
          "must be a triple of target channel indices {cz, cx, cy} (the z, x, y components of "
          "a vector), got " +
          found);
    }
    v1::ChannelList* t = p->add_target_vec_ix();
    for (int64_t c : *v) {
      if (c < 0) return r.Entry(i).Error(absl::StrFormat("channel %d is negative", c));
      if (!seen.insert(c).second) {
        return r.Entry(i).Error(absl::StrFormat(
            "names channel %d, which is already part of a vector; each channel belongs to at "
            "most one triple",
            c));
      }
      t->add_ix(c);
    }
  }
  return absl::OkStatus();
}

// target_discrete_ix = {3, ...}: nearest-neighbour channels; {} = none; false/None = all.
absl::Status ReadTargetDiscreteIx(const KeyReader& r, v1::BatchCreatorImageParams* p) {
  if (lua_type(r.L(), -1) != LUA_TTABLE && r.IsNeutral()) return absl::OkStatus();
  ASSIGN_OR_RETURN(auto v, r.Ints(0));
  std::set<int64_t> seen;
  v1::ChannelList* d = p->mutable_target_discrete_ix();
  for (int64_t c : v) {
    if (!seen.insert(c).second) return r.Error(absl::StrFormat("lists channel %d twice", c));
    d->add_ix(c);
  }
  return absl::OkStatus();
}

absl::Status ReadBatchCreatorImage(const KeyReader& r, v1::BatchCreatorImageParams* p) {
  RETURN_IF_ERROR(
      r.Fields({"d_path", "l_path", "d_files", "l_files", "cube_prios", "valid_cubes",
                "border_mode", "aniso_factor", "zxy", "ids2barriers", "h5stream", "max_ram",
                "n_preload", "target_vec_ix", "target_discrete_ix"},
               {// Reference §7.8: center_cubes(c1, c2, crop) is a helper of ELEKTRONN2's
                // data/image.py for preparing files, never a BatchCreatorImage argument (its
                // constructor would raise a TypeError). Accepted as false, refused otherwise.
                {"center_cubes",
                 "ELEKTRONN2's center_cubes is a helper for preparing files "
                 "(elektronn2.data.image.center_cubes: centre-crop or zero-pad two volumes to "
                 "one shape), not a BatchCreatorImage argument; a label cube smaller than its raw "
                 "cube by an even number of voxels per axis is already centred on it, so only "
                 "files whose sizes differ otherwise need it, before training"}},
               [&](const std::string& key, const KeyReader& f) -> absl::Status {
                 if (key == "d_path" || key == "l_path") {
                   ASSIGN_OR_RETURN(std::string v, f.String(true));
                   key == "d_path" ? p->set_d_path(v) : p->set_l_path(v);
                 } else if (key == "d_files") {
                   return ReadH5Files(f, p->mutable_d_files());
                 } else if (key == "l_files") {
                   return ReadH5Files(f, p->mutable_l_files());
                 } else if (key == "cube_prios") {
                   ASSIGN_OR_RETURN(auto v, f.Numbers());
                   for (double x : v) {
                     if (x < 0)
                       return f.Error(absl::StrFormat("entries must not be negative, got %g", x));
                     p->add_cube_prios(x);
                   }
                 } else if (key == "valid_cubes") {
                   ASSIGN_OR_RETURN(auto v, f.Ints(0));
                   for (int64_t x : v) p->add_valid_cubes(x);
                 } else if (key == "border_mode") {
                   ASSIGN_OR_RETURN(std::string v, f.Choice({"crop", "keep", "mirror", "0-pad"}));
                   p->set_border_mode(v);
                 } else if (key == "aniso_factor") {
                   ASSIGN_OR_RETURN(double v, f.Number(1e-9));
                   p->set_aniso_factor(v);
                 } else if (key == "ids2barriers") {
                   return ReadIds2Barriers(f, p);
                 } else if (key == "target_vec_ix") {
                   return ReadTargetVecIx(f, p);
                 } else if (key == "target_discrete_ix") {
                   return ReadTargetDiscreteIx(f, p);
                 } else if (key == "h5stream") {
                   ASSIGN_OR_RETURN(bool v, f.Bool());
                   p->set_h5stream(v);
                 } else if (key == "max_ram") {
                   ASSIGN_OR_RETURN(double v, f.Number(1, 1e9));  // MB
                   p->set_max_ram(static_cast<int64_t>(v));
                 } else if (key == "n_preload") {
                   ASSIGN_OR_RETURN(auto v, f.Int(0));
                   if (v > 16) return f.Error(absl::StrFormat("is %d; valid: 0 to 16 cubes", v));
                   p->set_n_preload(static_cast<int32_t>(v));
                 } else {
                   ASSIGN_OR_RETURN(bool zxy, f.Bool());
                   p->set_xyz_order(!zxy);
                 }
                 return absl::OkStatus();
               }));
  if (p->d_files_size() == 0 || p->l_files_size() == 0) {
    return r.Error("needs d_files and l_files: lists of {file_name, dataset_key} pairs");
  }
  if (p->d_files_size() != p->l_files_size()) {
    return r.Error(absl::StrFormat("lists %d d_files but %d l_files; they pair up one to one",
                                   p->d_files_size(), p->l_files_size()));
  }
  const int n = p->d_files_size();
  for (int64_t v : p->valid_cubes()) {
    if (v >= n) {
      return r.Field("valid_cubes")
          .Error(absl::StrFormat("names cube %d, but there are %d cubes (indices 0..%d)", v, n,
                                 n - 1));
    }
  }
  if (p->cube_prios_size() > 0 && p->cube_prios_size() != n) {
    return r.Field("cube_prios")
        .Error(absl::StrFormat("has %d entries for %d cubes", p->cube_prios_size(), n));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ReadDataInitKwargs(const KeyReader& r, Spec* spec) {
  if (spec->data_class() == "BatchCreatorImage") {
    return ReadBatchCreatorImage(r, spec->mutable_batch_creator_image());
  }
  if (spec->data_class() == "PianoRollData") {
    v1::PianoRollParams* p = spec->mutable_piano_roll();
    return r.Fields({"noise", "max_step"}, {},
                    [&](const std::string& key, const KeyReader& f) -> absl::Status {
                      if (key == "noise") {
                        ASSIGN_OR_RETURN(double v, f.Number(0));
                        p->set_noise(v);
                      } else {
                        ASSIGN_OR_RETURN(int64_t v, f.Int(1));
                        p->set_max_step(v);
                      }
                      return absl::OkStatus();
                    });
  }
  v1::MnistParams* m = spec->mutable_mnist();
  return r.Fields({"path"}, {}, [&](const std::string&, const KeyReader& f) -> absl::Status {
    ASSIGN_OR_RETURN(std::string v, f.String());
    m->set_path(v);
    return absl::OkStatus();
  });
}

namespace {

absl::Status ReadWarpArgs(const KeyReader& r, v1::WarpArgs* w) {
  return r.Fields({"sample_aniso", "perspective", "lock_z", "no_x_flip", "warp_amount"}, {},
                  [&](const std::string& key, const KeyReader& f) -> absl::Status {
                    if (key == "warp_amount") {
                      ASSIGN_OR_RETURN(double v, f.Number(0));
                      w->set_warp_amount(v);
                      return absl::OkStatus();
                    }
                    ASSIGN_OR_RETURN(bool b, f.Bool());
                    if (key == "sample_aniso") w->set_sample_aniso(b);
                    if (key == "perspective") w->set_perspective(b);
                    if (key == "lock_z") w->set_lock_z(b);
                    if (key == "no_x_flip") w->set_no_x_flip(b);
                    return absl::OkStatus();
                  });
}

// Data family: a list of offsets {{dz,dx,dy}, ...}.
absl::Status ReadNhood(const KeyReader& r,
                       google::protobuf::RepeatedPtrField<v1::NhoodOffset>* out) {
  ASSIGN_OR_RETURN(int n, r.Length());
  if (n == 0) return r.Error("must list at least one offset {dz, dx, dy}");
  for (int i = 1; i <= n; ++i) {
    lua_rawgeti(r.L(), -1, i);
    auto v = ReadIntList(r.L(), -1);
    const std::string found = Describe(r.L(), -1);
    lua_pop(r.L(), 1);
    if (!v.ok() || v->size() != 3) {
      return r.Entry(i).Error("must be an offset of 3 integers {dz, dx, dy}, got " + found);
    }
    v1::NhoodOffset* o = out->Add();
    o->set_z((*v)[0]);
    o->set_x((*v)[1]);
    o->set_y((*v)[2]);
  }
  return absl::OkStatus();
}

// Data family: blurry_blobs_args / *_random_erasing_args tables.
absl::Status ReadBlobArgs(const KeyReader& r, const std::string& which, v1::BlobArgs* a) {
  std::vector<std::string> keys = {"num_blob_range", "blob_size_range"};
  if (which == "blurry_blobs") keys.push_back("diffuseness");
  if (which == "uniform_random_erasing") keys.push_back("value");
  if (which == "noisy_random_erasing") keys.push_back("noise_range");
  return r.Fields(keys, {}, [&](const std::string& key, const KeyReader& f) -> absl::Status {
    if (key == "diffuseness") {
      if (f.IsNeutral()) return absl::OkStatus();  // falsy: random sigma per blob
      ASSIGN_OR_RETURN(double v, f.Number(1e-9));
      a->set_diffuseness(v);
    } else if (key == "value") {
      ASSIGN_OR_RETURN(double v, f.Number(-1e300));
      a->set_value(v);
    } else if (key == "noise_range") {
      ASSIGN_OR_RETURN(auto v, f.Numbers());
      if (v.size() != 2 || !(v[1] > v[0])) {
        return f.Error("must be {lo, hi} with lo < hi (grey values on the 0-1 scale)");
      }
      for (double x : v) a->add_noise_range(x);
    } else {
      const int64_t min = key == "num_blob_range" ? 0 : 1;
      ASSIGN_OR_RETURN(auto v, f.Ints(min));
      if (v.size() != 2 || !(v[1] > v[0])) {
        return f.Error(absl::StrFormat(
            "must be {lo, hi} with %d <= lo < hi (drawn like numpy's randint(lo, hi))", min));
      }
      for (int64_t x : v) {
        key == "num_blob_range" ? a->add_num_blob_range(x) : a->add_blob_size_range(x);
      }
    }
    return absl::OkStatus();
  });
}

}  // namespace

absl::Status ReadDataBatchArgs(const KeyReader& r, Spec* spec) {
  v1::DataBatchArgs* d = spec->mutable_data_batch_args();
  const std::string trainer = "the trainer sets it";
  RETURN_IF_ERROR(r.Fields(
      {"grey_augment_channels", "warp", "warp_args", "ignore_thresh", "force_dense",
       // Data family: ID-derived targets, lazy-label masks, augmentations.
       "affinities", "affinity_nhood", "nhood_targets", "ret_ll_mask", "nga_blur_noise_probability",
       "blurry_blobs_probability", "blurry_blobs_args", "noisy_random_erasing_probability",
       "noisy_random_erasing_args", "uniform_random_erasing_probability",
       "uniform_random_erasing_args"},
      {{"batch_size", trainer}, {"source", trainer}},
      [&](const std::string& key, const KeyReader& f) -> absl::Status {
        if (key == "affinities") {
          if (f.IsNeutral()) return absl::OkStatus();
          auto v = f.Choice({"affinity", "malis"});
          if (!v.ok()) return f.Error("must be false or 'affinity'");
          if (*v == "malis") {
            return f.Error(
                "'malis' is not supported: MALIS affinity training (MalisNLL and "
                "its relabelled segmentation) is not implemented; use 'affinity'");
          }
          d->set_affinities(*v);
          return absl::OkStatus();
        }
        if (key == "affinity_nhood") return ReadNhood(f, d->mutable_affinity_nhood());
        if (key == "nhood_targets") {
          if (lua_type(f.L(), -1) == LUA_TBOOLEAN) {
            d->set_nhood_targets(lua_toboolean(f.L(), -1));
            return absl::OkStatus();
          }
          if (lua_type(f.L(), -1) != LUA_TTABLE) {
            return f.Error(
                "must be true, false or a list of offsets {{dz,dx,dy}, "
                "...}, got " +
                Describe(f.L(), -1));
          }
          d->set_nhood_targets(true);
          return ReadNhood(f, d->mutable_nhood_targets_nhood());
        }
        if (key == "ret_ll_mask") {
          ASSIGN_OR_RETURN(bool b, f.Bool());
          d->set_ret_ll_mask(b);
          return absl::OkStatus();
        }
        if (absl::EndsWith(key, "_probability")) {
          double v = 0;
          if (lua_type(f.L(), -1) == LUA_TBOOLEAN) {
            v = lua_toboolean(f.L(), -1) ? 1.0 : 0.0;
          } else {
            ASSIGN_OR_RETURN(v, f.Number(0, 1));
          }
          if (key == "nga_blur_noise_probability") {
            d->set_nga_blur_noise_probability(v);
          } else if (key == "blurry_blobs_probability") {
            d->set_blurry_blobs_probability(v);
          } else if (key == "noisy_random_erasing_probability") {
            d->set_noisy_random_erasing_probability(v);
          } else {
            d->set_uniform_random_erasing_probability(v);
          }
          return absl::OkStatus();
        }
        if (key == "blurry_blobs_args") {
          return ReadBlobArgs(f, "blurry_blobs", d->mutable_blurry_blobs_args());
        }
        if (key == "noisy_random_erasing_args") {
          return ReadBlobArgs(f, "noisy_random_erasing", d->mutable_noisy_random_erasing_args());
        }
        if (key == "uniform_random_erasing_args") {
          return ReadBlobArgs(f, "uniform_random_erasing",
                              d->mutable_uniform_random_erasing_args());
        }
        if (key == "grey_augment_channels") {
          if (f.IsNeutral()) return absl::OkStatus();
          ASSIGN_OR_RETURN(auto v, f.Ints(0));
          for (int64_t c : v) d->add_grey_augment_channels(c);
        } else if (key == "warp") {
          if (lua_type(f.L(), -1) == LUA_TBOOLEAN) {
            d->set_warp(lua_toboolean(f.L(), -1) ? 1.0 : 0.0);
          } else {
            ASSIGN_OR_RETURN(double v, f.Number(0, 1));
            d->set_warp(v);
          }
        } else if (key == "warp_args") {
          return ReadWarpArgs(f, d->mutable_warp_args());
        } else if (key == "ignore_thresh") {
          if (lua_type(f.L(), -1) == LUA_TBOOLEAN && !lua_toboolean(f.L(), -1)) {
            return absl::OkStatus();
          }
          ASSIGN_OR_RETURN(double v, f.Number(0, 1));
          d->set_ignore_thresh(v);
        } else {
          ASSIGN_OR_RETURN(bool b, f.Bool());
          d->set_force_dense(b);
        }
        return absl::OkStatus();
      }));
  // Data family: cross-key checks.
  if (!d->affinities().empty() && d->nhood_targets()) {
    return r.Error("sets both affinities and nhood_targets; choose one kind of ID-derived target");
  }
  if (d->affinity_nhood_size() > 0 && d->affinities().empty()) {
    return r.Field("affinity_nhood").Error("needs affinities = 'affinity'");
  }
  return absl::OkStatus();
}

}  // namespace elektronn::lua
