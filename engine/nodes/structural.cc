// The structural, element-wise and probabilistic nodes of issue 11 (reference §2.1, §2.3, §2.11,
// §2.12): FromTensor (split's pieces), Reshape, Pad, MultMerge, FaithlessMerge, ApplyFunc with
// arguments, Maxout, LRN, GaussianRV and GaussianAEVBPrior.
#include <algorithm>
#include <functional>
#include <numeric>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/nodes/registry.h"

namespace elektronn {
namespace {

uint64_t NodeSeed(const ExecContext& ctx, const Node& n) {
  return ctx.seed ^ std::hash<std::string>{}(n.name());
}

// Axis `tag` of `s`, or an error naming the node and the tags it has.
absl::StatusOr<int> AxisOf(const Node& n, const TaggedShape& s, const std::string& tag) {
  const int a = tag.size() == 1 ? s.TagIndex(tag[0]) : -1;
  if (a < 0) {
    return NodeError(
        n, absl::StrFormat("axis '%s' is not a tag of the input (\"%s\")", tag, s.tags_string()));
  }
  return a;
}

absl::Status SameShapes(const Node& n, const TaggedShape& a, const TaggedShape& b) {
  if (a.sizes() == b.sizes() && a.tags() == b.tags()) return absl::OkStatus();
  return NodeError(n, absl::StrFormat("shapes differ: %s vs %s", a.ToString(), b.ToString()));
}

// A copy of `s` without axis `axis` (its stride and fov go with it when spatial).
absl::StatusOr<TaggedShape> WithoutAxis(const TaggedShape& s, int axis) {
  std::vector<int64_t> sizes, strides, fov;
  std::string tags;
  for (int i = 0; i < s.rank(); ++i) {
    if (i == axis) continue;
    sizes.push_back(s.size(i));
    tags.push_back(s.tags()[i]);
  }
  for (int j = 0; j < s.ndim(); ++j) {
    if (s.spatial_axes()[j] == axis) continue;
    strides.push_back(s.strides()[j]);
    fov.push_back(s.fov()[j]);
  }
  return TaggedShape::Create(sizes, tags, strides, fov);
}

// The box copying all of `src` into a tensor shaped `dst` at `origin` along `axis`.
kernels::BoxCopy Box(const TaggedShape& src, const TaggedShape& dst, int axis, int64_t origin) {
  kernels::BoxCopy box;
  box.src_shape = PhysicalSizes(src);
  box.dst_shape = PhysicalSizes(dst);
  box.extent = box.src_shape;
  box.src_origin.assign(box.src_shape.size(), 0);
  box.dst_origin.assign(box.src_shape.size(), 0);
  box.dst_origin[PhysicalAxis(src, axis)] = origin;
  return box;
}

kernels::BoxCopy Reversed(kernels::BoxCopy b) {
  std::swap(b.src_shape, b.dst_shape);
  std::swap(b.src_origin, b.dst_origin);
  return b;
}

// --- FromTensor ------------------------------------------------------------------------------

// One piece of `split`: entries [start, start + size) of one axis, optionally without the axis.
class SliceNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "FromTensor"; }
  double cost() const override { return 0; }
  absl::Status InferShape() override {
    if (parents_.size() != 1) return NodeError(*this, "needs exactly one input node");
    const v1::SliceOp& op = spec_.slice();
    const TaggedShape& in = parents_[0]->shape();
    ASSIGN_OR_RETURN(axis_, AxisOf(*this, in, op.axis().empty() ? "f" : op.axis()));
    const int64_t n = in.size(axis_);
    if (n == kUnknownSize) {
      return NodeError(*this, absl::StrFormat("axis '%c' has an unknown size (None); split needs "
                                              "a known size",
                                              in.tags()[axis_]));
    }
    if (op.start() < 0 || op.size() < 1 || op.start() + op.size() > n) {
      return NodeError(*this,
                       absl::StrFormat("slice [%d, %d) is outside axis '%c' of size %d", op.start(),
                                       op.start() + op.size(), in.tags()[axis_], n));
    }
    full_ = in;
    full_.set_size(axis_, op.size());
    shape_ = full_;
    if (op.strip() && op.size() == 1) {
      ASSIGN_OR_RETURN(shape_, WithoutAxis(full_, axis_));
      if (in.spatial_axes().end() ==
          std::find(in.spatial_axes().begin(), in.spatial_axes().end(), axis_)) {
        shape_.set_mfp_offsets(in.mfp_offsets());
      }
    }
    return absl::OkStatus();
  }
  std::string details() const override {
    return absl::StrFormat("axis='%c', [%d:%d]", full_.tags()[axis_], spec_.slice().start(),
                           spec_.slice().start() + spec_.slice().size());
  }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    const TaggedShape& in = parents_[0]->shape();
    TaggedShape piece = in;
    piece.set_size(axis_, spec_.slice().size());
    box_.src_shape = PhysicalSizes(in);
    box_.dst_shape = PhysicalSizes(piece);
    box_.extent = box_.dst_shape;
    box_.src_origin.assign(box_.src_shape.size(), 0);
    box_.dst_origin.assign(box_.src_shape.size(), 0);
    box_.src_origin[PhysicalAxis(in, axis_)] = spec_.slice().start();
    parent_numel_ = in.stripnone_prod();
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    ctx.backend->CopyBox(box_, parents_[0]->value(), value_, false);
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    GradTarget t = ParentGrad(0);
    if (!t) return absl::OkStatus();
    if (!t.accumulate) ctx.backend->Fill(t.ptr, 0.f, parent_numel_);
    ctx.backend->CopyBox(Reversed(box_), grad(), t.ptr, true);
    return absl::OkStatus();
  }

 private:
  int axis_ = -1;
  TaggedShape full_;
  kernels::BoxCopy box_;
  int64_t parent_numel_ = 0;
};

// --- Reshape ---------------------------------------------------------------------------------

// A transpose between the physical (channels-last) layout and ELEKTRONN2's logical axis order.
struct Relayout {
  std::vector<int64_t> dims;  // of the source
  std::vector<int> perm;
  bool identity = true;
};

Relayout PhysicalToLogical(const TaggedShape& s) {
  Relayout r{PhysicalSizes(s), {}, true};
  for (int i = 0; i < s.rank(); ++i) {
    r.perm.push_back(PhysicalAxis(s, i));
    r.identity = r.identity && r.perm.back() == i;
  }
  return r;
}

Relayout LogicalToPhysical(const TaggedShape& s) {
  Relayout r{s.sizes(), std::vector<int>(s.rank()), true};
  for (int i = 0; i < s.rank(); ++i) {
    r.perm[PhysicalAxis(s, i)] = i;
    r.identity = r.identity && PhysicalAxis(s, i) == i;
  }
  return r;
}

// ELEKTRONN2's Reshape is numpy's C-order reshape in its own axis order (b,f,z,x,y): data moves
// between the f and spatial axes exactly as there, whatever our channels-last layout does.
class ReshapeNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "Reshape"; }
  double cost() const override { return 0; }
  absl::Status InferShape() override {
    if (parents_.size() != 1) return NodeError(*this, "needs exactly one input node");
    const v1::ReshapeOp& op = spec_.reshape();
    const TaggedShape& in = parents_[0]->shape();
    std::string tags = op.tags();
    if (tags.empty()) {
      if (op.shape_size() != in.rank()) {
        return NodeError(*this, absl::StrFormat("shape has %d entries but the input has %d axes; "
                                                "give tags for the new shape",
                                                op.shape_size(), in.rank()));
      }
      tags = in.tags();
    }
    ASSIGN_OR_RETURN(TaggedShape probe,
                     TaggedShape::Create(std::vector<int64_t>(op.shape_size(), 1), tags));
    if (probe.rank() != op.shape_size()) {
      return NodeError(*this, absl::StrFormat("shape has %d entries but tags \"%s\" has %d",
                                              op.shape_size(), probe.tags_string(), probe.rank()));
    }
    const int in_b = in.TagIndex('b'), out_b = probe.TagIndex('b');
    if (in_b > 0 || out_b > 0 || (in_b < 0) != (out_b < 0)) {
      return NodeError(*this, absl::StrFormat("the batch axis must be the first axis of both the "
                                              "input (\"%s\") and the shape (\"%s\"), or of none",
                                              in.tags_string(), probe.tags_string()));
    }
    int64_t want = 1;
    for (int i = 0; i < in.rank(); ++i) {
      if (i == in_b) continue;
      if (in.size(i) == kUnknownSize) {
        return NodeError(*this,
                         absl::StrFormat("input axis '%c' has an unknown size", in.tags()[i]));
      }
      want *= in.size(i);
    }
    std::vector<int64_t> sizes(op.shape().begin(), op.shape().end());
    int infer = -1;
    int64_t have = 1;
    for (int i = 0; i < static_cast<int>(sizes.size()); ++i) {
      if (i == out_b) {
        if (sizes[i] != kUnknownSize && in.size(in_b) != kUnknownSize &&
            sizes[i] != in.size(in_b)) {
          return NodeError(*this, absl::StrFormat("shape gives the batch %d, the input has %d",
                                                  sizes[i], in.size(in_b)));
        }
        sizes[i] = in.size(in_b);
      } else if (sizes[i] == kUnknownSize) {
        if (infer >= 0) {
          return NodeError(*this, absl::StrFormat("shape {%s} has more than one None besides "
                                                  "the batch",
                                                  absl::StrJoin(op.shape(), ", ")));
        }
        infer = i;
      } else if (sizes[i] < 1) {
        return NodeError(*this, absl::StrFormat("shape {%s} has the size %d",
                                                absl::StrJoin(op.shape(), ", "), sizes[i]));
      } else {
        have *= sizes[i];
      }
    }
    if (infer >= 0) {
      if (want % have != 0) {
        return NodeError(*this, absl::StrFormat("cannot infer the None of shape {%s}: %d entries "
                                                "per batch are not divisible by %d",
                                                absl::StrJoin(op.shape(), ", "), want, have));
      }
      sizes[infer] = want / have;
      have = want;
    }
    if (have != want) {
      return NodeError(*this,
                       absl::StrFormat("shape {%s} holds %d entries per batch, the input %s has %d",
                                       absl::StrJoin(op.shape(), ", "), have, in.ToString(), want));
    }
    std::vector<int64_t> strides(op.strides().begin(), op.strides().end());
    std::vector<int64_t> fov(op.fov().begin(), op.fov().end());
    if (strides.empty() && probe.ndim() == in.ndim()) strides = in.strides();
    if (fov.empty() && probe.ndim() == in.ndim()) fov = in.fov();
    auto s = TaggedShape::Create(sizes, tags, strides, fov);
    if (!s.ok()) return NodeError(*this, std::string(s.status().message()));
    shape_ = *std::move(s);
    return absl::OkStatus();
  }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    in_to_logical_ = PhysicalToLogical(parents_[0]->shape());
    logical_to_out_ = LogicalToPhysical(shape_);
    out_to_logical_ = PhysicalToLogical(shape_);
    logical_to_in_ = LogicalToPhysical(parents_[0]->shape());
    if (!in_to_logical_.identity || !logical_to_out_.identity) {
      logical_ = Scratch(ctx.backend, numel_).data();
    }
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    Move(ctx.backend, in_to_logical_, logical_to_out_, parents_[0]->value(), value_, false);
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    if (GradTarget t = ParentGrad(0)) {
      Move(ctx.backend, out_to_logical_, logical_to_in_, grad(), t.ptr, t.accumulate);
    }
    return absl::OkStatus();
  }

 private:
  // src --first--> logical order --second--> dst.
  void Move(kernels::Backend* b, const Relayout& first, const Relayout& second, const float* src,
            float* dst, bool acc) {
    const float* mid = src;
    if (!first.identity) {
      b->Transpose(first.dims, first.perm, src, logical_, false);
      mid = logical_;
    }
    if (second.identity) {
      b->Scale(mid, 1.f, dst, numel_, acc);
    } else {
      b->Transpose(second.dims, second.perm, mid, dst, acc);
    }
  }
  Relayout in_to_logical_, logical_to_out_, out_to_logical_, logical_to_in_;
  float* logical_ = nullptr;
};

// --- Pad -------------------------------------------------------------------------------------

// ELEKTRONN2's Pad works only for tags b,f,z,x,y with batch 1 (it warns otherwise); here the
// padding applies to the spatial axes of any layout and batch. fov and strides are kept, as
// Crop keeps them.
class PadNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "Pad"; }
  double cost() const override { return 0; }
  absl::Status InferShape() override {
    if (parents_.size() != 1) return NodeError(*this, "needs exactly one input node");
    const TaggedShape& in = parents_[0]->shape();
    const auto& pad = spec_.pad().pad();
    if (pad.size() != in.ndim()) {
      return NodeError(*this, absl::StrFormat("pad has %d entries, the input has %d spatial axes",
                                              pad.size(), in.ndim()));
    }
    shape_ = in;
    for (int j = 0; j < in.ndim(); ++j) {
      if (pad[j] < 0) {
        return NodeError(
            *this, absl::StrFormat("pad {%s} has a negative entry", absl::StrJoin(pad, ", ")));
      }
      shape_.set_spatial_size(j, in.spatial_shape()[j] + 2 * pad[j]);
    }
    return absl::OkStatus();
  }
  std::string details() const override {
    return absl::StrFormat("pad=[%s], value=%g", absl::StrJoin(spec_.pad().pad(), ", "),
                           spec_.pad().value());
  }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    const TaggedShape& in = parents_[0]->shape();
    box_.src_shape = PhysicalSizes(in);
    box_.dst_shape = PhysicalSizes(shape_);
    box_.extent = box_.src_shape;
    box_.src_origin.assign(box_.src_shape.size(), 0);
    box_.dst_origin.assign(box_.src_shape.size(), 0);
    for (int j = 0; j < in.ndim(); ++j)
      box_.dst_origin[PhysicalAxis(in, in.spatial_axes()[j])] = spec_.pad().pad(j);
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    ctx.backend->Fill(value_, spec_.pad().value(), numel_);
    ctx.backend->CopyBox(box_, parents_[0]->value(), value_, false);
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    if (GradTarget t = ParentGrad(0))
      ctx.backend->CopyBox(Reversed(box_), grad(), t.ptr, t.accumulate);
    return absl::OkStatus();
  }

 private:
  kernels::BoxCopy box_;
};

// --- MultMerge -------------------------------------------------------------------------------

class MultMergeNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "MultMerge"; }
  absl::Status InferShape() override {
    if (parents_.size() != 2) return NodeError(*this, "needs exactly two input nodes");
    RETURN_IF_ERROR(SameShapes(*this, parents_[0]->shape(), parents_[1]->shape()));
    shape_ = parents_[0]->shape();
    return absl::OkStatus();
  }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    ctx.backend->Multiply(parents_[0]->value(), parents_[1]->value(), value_, numel_, false);
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    for (int i = 0; i < 2; ++i) {
      if (GradTarget t = ParentGrad(i)) {
        ctx.backend->Multiply(grad(), parents_[1 - i]->value(), t.ptr, numel_, t.accumulate);
      }
    }
    return absl::OkStatus();
  }
};

// --- FaithlessMerge --------------------------------------------------------------------------

// Concatenation of hard and easy features where, per training step, one Bernoulli(failing_prob)
// draw decides a failure; a failure zeroes the hard branch with probability 1 - hardeasy_ratio
// and the easy branch otherwise (ELEKTRONN2's code; its docstring claims the opposite). Unlike
// ELEKTRONN2 (active at test time too) it only acts in training, as dropout does: a prediction
// should not randomly lose half of its features. The draws are counter-based on (seed, step).
class FaithlessMergeNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "FaithlessMerge"; }
  double cost() const override { return 0; }
  absl::Status InferShape() override {
    if (parents_.size() != 2) {
      return NodeError(*this, "needs exactly two input nodes (hard_features, easy_features)");
    }
    const v1::FaithlessMergeOp& op = spec_.faithless_merge();
    fail_ = op.has_failing_prob() ? op.failing_prob() : 0.5f;
    ratio_ = op.has_hardeasy_ratio() ? op.hardeasy_ratio() : 0.8f;
    if (fail_ < 0 || fail_ > 1) {
      return NodeError(*this, absl::StrFormat("failing_prob must be in [0, 1], got %g", fail_));
    }
    if (ratio_ < 0 || ratio_ > 1) {
      return NodeError(*this, absl::StrFormat("hardeasy_ratio must be in [0, 1], got %g", ratio_));
    }
    const TaggedShape& a = parents_[0]->shape();
    const TaggedShape& b = parents_[1]->shape();
    ASSIGN_OR_RETURN(axis_, AxisOf(*this, a, op.axis().empty() ? "f" : op.axis()));
    if (a.tags() != b.tags()) {
      return NodeError(*this, absl::StrFormat("easy_features has tags \"%s\", hard_features \"%s\"",
                                              b.tags_string(), a.tags_string()));
    }
    for (int i = 0; i < a.rank(); ++i) {
      if (i != axis_ && a.size(i) != b.size(i)) {
        return NodeError(*this, absl::StrFormat("easy_features has %c=%d, hard_features %d",
                                                a.tags()[i], b.size(i), a.size(i)));
      }
    }
    shape_ = a;
    shape_.set_size(axis_, a.size(axis_) + b.size(axis_));
    return absl::OkStatus();
  }
  std::string details() const override {
    return absl::StrFormat("failing_prob=%g, hardeasy_ratio=%g", fail_, ratio_);
  }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    int64_t offset = 0, most = 0;
    for (int i = 0; i < 2; ++i) {
      const TaggedShape& p = parents_[i]->shape();
      boxes_[i] = Box(p, shape_, axis_, offset);
      offset += p.size(axis_);
      most = std::max(most, p.stripnone_prod());
    }
    zeros_ = Scratch(ctx.backend, most).data();
    ctx.backend->Fill(zeros_, 0.f, most);
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    const int dropped = Dropped(ctx);
    for (int i = 0; i < 2; ++i) {
      ctx.backend->CopyBox(boxes_[i], i == dropped ? zeros_ : parents_[i]->value(), value_, false);
    }
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    const int dropped = Dropped(ctx);
    for (int i = 0; i < 2; ++i) {
      GradTarget t = ParentGrad(i);
      if (!t) continue;
      if (i == dropped) {
        if (!t.accumulate) ctx.backend->Fill(t.ptr, 0.f, parents_[i]->numel());
      } else {
        ctx.backend->CopyBox(Reversed(boxes_[i]), grad(), t.ptr, t.accumulate);
      }
    }
    return absl::OkStatus();
  }

 private:
  // The zeroed branch of this step: 0 hard, 1 easy, -1 none.
  int Dropped(const ExecContext& ctx) const {
    if (!ctx.training) return -1;
    auto uniform = [&](uint64_t k) {
      uint64_t x = NodeSeed(ctx, *this) ^ (ctx.step * 0x9E3779B97F4A7C15ull) ^ k;
      for (int r = 0; r < 2; ++r) {  // SplitMix64 rounds
        x += 0x9E3779B97F4A7C15ull;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
        x ^= x >> 31;
      }
      return static_cast<double>(x >> 11) * 0x1p-53;
    };
    if (uniform(1) >= fail_) return -1;
    return uniform(2) < 1.0 - ratio_ ? 0 : 1;
  }
  int axis_ = -1;
  float fail_ = 0.5f, ratio_ = 0.8f;
  kernels::BoxCopy boxes_[2];
  float* zeros_ = nullptr;
};

// --- ApplyFunc with arguments ------------------------------------------------------------------

kernels::ScalarFunction ToScalarFunction(v1::ApplyFunction f) {
  switch (f) {
    case v1::APPLY_POW:
      return kernels::ScalarFunction::kPow;
    case v1::APPLY_CLIP:
      return kernels::ScalarFunction::kClip;
    case v1::APPLY_EXP:
      return kernels::ScalarFunction::kExp;
    case v1::APPLY_LOG:
      return kernels::ScalarFunction::kLog;
    default:
      return kernels::ScalarFunction::kAffine;
  }
}

// ELEKTRONN2 declares ApplyFunc's shape as the parent's whatever the functor does; `mean` here
// has its true shape, one value (shape (1,), tags "f"), like AggregateLoss.
class ApplyFuncNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "ApplyFunc"; }
  absl::Status InferShape() override {
    if (parents_.size() != 1) return NodeError(*this, "needs exactly one input node");
    const v1::ApplyFuncOp& op = spec_.apply_func();
    if (op.function() == v1::APPLY_UNSPECIFIED) return NodeError(*this, "has no function set");
    if (op.function() == v1::APPLY_CLIP && op.a() > op.b()) {
      return NodeError(*this, absl::StrFormat("clip bounds [%g, %g] are reversed", op.a(), op.b()));
    }
    if (op.function() == v1::APPLY_MEAN) {
      ASSIGN_OR_RETURN(shape_, TaggedShape::Create({1}, "f"));
    } else {
      shape_ = parents_[0]->shape();
    }
    return absl::OkStatus();
  }
  std::string details() const override {
    return absl::StrFormat("%s(a=%g, b=%g)", v1::ApplyFunction_Name(spec_.apply_func().function()),
                           spec_.apply_func().a(), spec_.apply_func().b());
  }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    const v1::ApplyFuncOp& op = spec_.apply_func();
    const Node& p = *parents_[0];
    if (op.function() == v1::APPLY_MEAN) {
      const float v = static_cast<float>(ctx.backend->Sum(p.value(), p.numel()) / p.numel());
      ctx.backend->Upload(&v, value_, 1);
    } else {
      ctx.backend->ScalarFunctionForward(ToScalarFunction(op.function()), op.a(), op.b(), p.value(),
                                         value_, numel_);
    }
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    GradTarget t = ParentGrad(0);
    if (!t) return absl::OkStatus();
    const v1::ApplyFuncOp& op = spec_.apply_func();
    const Node& p = *parents_[0];
    if (op.function() == v1::APPLY_MEAN) {
      float g = 0;
      ctx.backend->Download(grad(), &g, 1);
      const float c = g / static_cast<float>(p.numel());
      if (t.accumulate) {  // t += c
        ctx.backend->ScalarFunctionForward(kernels::ScalarFunction::kAffine, 1.f, c, t.ptr, t.ptr,
                                           p.numel());
      } else {
        ctx.backend->Fill(t.ptr, c, p.numel());
      }
    } else {
      ctx.backend->ScalarFunctionBackward(ToScalarFunction(op.function()), op.a(), op.b(),
                                          p.value(), grad(), t.ptr, numel_, t.accumulate);
    }
    return absl::OkStatus();
  }
};

// --- Maxout ----------------------------------------------------------------------------------

// ELEKTRONN2's `maxout <k>` activation, made to work (QUIRK 15): output channel c is the max of
// the k consecutive input channels c*k .. c*k+k-1 (Theano's max over x[:, i::k] for i < k, which
// is what ELEKTRONN2's code meant), so the layer has f/k output channels; f must divide by k.
class MaxoutNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "Maxout"; }
  absl::Status InferShape() override {
    if (parents_.size() != 1) return NodeError(*this, "needs exactly one input node");
    const TaggedShape& in = parents_[0]->shape();
    const int64_t k = spec_.maxout().k();
    if (k < 1) return NodeError(*this, absl::StrFormat("k must be at least 1, got %d", k));
    const int f = in.TagIndex('f');
    if (f < 0 || in.size(f) == kUnknownSize) {
      return NodeError(
          *this, absl::StrFormat("needs an input with a known 'f' axis, got %s", in.ToString()));
    }
    if (in.size(f) % k != 0) {
      return NodeError(
          *this, absl::StrFormat("maxout %d needs a channel count divisible by %d, "
                                 "the input has f=%d; use n_f=%d or %d",
                                 k, k, in.size(f), in.size(f) / k * k, (in.size(f) / k + 1) * k));
    }
    shape_ = in;
    shape_.set_size(f, in.size(f) / k);
    return absl::OkStatus();
  }
  std::string details() const override { return absl::StrFormat("k=%d", spec_.maxout().k()); }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    const Node& p = *parents_[0];
    ctx.backend->MaxoutForward(p.value(), value_, p.rows(), p.channels(), spec_.maxout().k());
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    const Node& p = *parents_[0];
    if (GradTarget t = ParentGrad(0)) {
      ctx.backend->MaxoutBackward(p.value(), grad(), t.ptr, p.rows(), p.channels(),
                                  spec_.maxout().k(), t.accumulate);
    }
    return absl::OkStatus();
  }
};

// --- LRN -------------------------------------------------------------------------------------

// Local response normalisation (reference §2.11). 'spatial': the mean of x^2 over an odd window
// of the spatial axes ('same' zero padding, always divided by the full window size, as
// ELEKTRONN2's constant-filter convolution does); 'channel': over an odd number of neighbouring
// channels with the first/last channel replicated at the edges. alpha, k and beta are fixed
// options (ELEKTRONN2 keeps them as non-trainable parameters).
class LrnNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "LRN"; }
  absl::Status InferShape() override {
    if (parents_.size() != 1) return NodeError(*this, "needs exactly one input node");
    const v1::LrnOp& op = spec_.lrn();
    const TaggedShape& in = parents_[0]->shape();
    const bool channel = op.mode() == v1::LRN_CHANNEL;
    const int want = channel ? 1 : in.ndim();
    if (!channel && in.ndim() == 0) {
      return NodeError(*this, "mode 'spatial' needs an input with spatial axes; use 'channel'");
    }
    if (op.filter_shape_size() != want) {
      return NodeError(*this,
                       absl::StrFormat("filter_shape {%s} must have %d entr%s for mode "
                                       "'%s'",
                                       absl::StrJoin(op.filter_shape(), ", "), want,
                                       want == 1 ? "y" : "ies", channel ? "channel" : "spatial"));
    }
    for (int64_t w : op.filter_shape()) {
      if (w < 1 || w % 2 == 0) {
        return NodeError(*this, absl::StrFormat("filter_shape {%s} must have odd positive "
                                                "entries",
                                                absl::StrJoin(op.filter_shape(), ", ")));
      }
    }
    // The spatial axes must be the innermost ones before 'f' in the channels-last layout.
    for (int i = 0; i < in.rank(); ++i) {
      const char t = in.tags()[i];
      if (t != 'f' && t != 'z' && t != 'x' && t != 'y' && in.ndim() > 0 &&
          i > in.spatial_axes()[0]) {
        return NodeError(*this, absl::StrFormat("axis '%c' lies between spatial axes in \"%s\"", t,
                                                in.tags_string()));
      }
    }
    desc_.channel_mode = channel;
    desc_.window.assign(op.filter_shape().begin(), op.filter_shape().end());
    desc_.alpha = op.has_alpha() ? op.alpha() : 1e-4f;
    desc_.k = op.has_k() ? op.k() : 1.f;
    desc_.beta = op.has_beta() ? op.beta() : 0.75f;
    shape_ = in;
    return absl::OkStatus();
  }
  std::string details() const override {
    return absl::StrFormat("%s [%s], alpha=%g, k=%g, beta=%g",
                           desc_.channel_mode ? "channel" : "spatial",
                           absl::StrJoin(desc_.window, ","), desc_.alpha, desc_.k, desc_.beta);
  }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    desc_.spatial = shape_.spatial_shape();
    desc_.channels = channels();
    int64_t vox = 1;
    for (int64_t s : desc_.spatial) vox *= s;
    desc_.batch = numel_ / (vox * desc_.channels);
    workspace_ = Scratch(ctx.backend, 2 * numel_).data();
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    ctx.backend->LrnForward(desc_, parents_[0]->value(), value_, workspace_);
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    if (GradTarget t = ParentGrad(0)) {
      ctx.backend->LrnBackward(desc_, parents_[0]->value(), grad(), t.ptr, workspace_,
                               t.accumulate);
    }
    return absl::OkStatus();
  }

 private:
  kernels::LrnDesc desc_;
  float* workspace_ = nullptr;
};

// --- GaussianRV and its prior ----------------------------------------------------------------

// Reparameterised sample mu + exp(log_sig) * eps (reference §2.12), drawn in training and
// prediction alike as ELEKTRONN2 does. n_samples > 0 inserts an 's' axis of that size right of
// 'b' (QUIRK 15: ELEKTRONN2's code concatenates the samples along 'b' instead, mixing samples with
// instances); n_samples = 0 draws one sample without the axis.
class GaussianRvNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "GaussianRV"; }
  absl::Status InferShape() override {
    if (parents_.size() != 2)
      return NodeError(*this, "needs exactly two input nodes (mu, log_sig)");
    const TaggedShape& mu = parents_[0]->shape();
    RETURN_IF_ERROR(SameShapes(*this, mu, parents_[1]->shape()));
    const int64_t n = spec_.gaussian_rv().n_samples();
    if (n < 0) return NodeError(*this, absl::StrFormat("n_samples must be >= 0, got %d", n));
    shape_ = mu;
    if (n == 0) return absl::OkStatus();
    const int b = mu.TagIndex('b');
    if (b < 0 || mu.HasTag('s')) {
      return NodeError(*this, absl::StrFormat("n_samples=%d needs an input with a 'b' axis and "
                                              "no 's' axis, got \"%s\"",
                                              n, mu.tags_string()));
    }
    std::vector<int64_t> sizes = mu.sizes();
    std::string tags = mu.tags();
    sizes.insert(sizes.begin() + b + 1, n);
    tags.insert(tags.begin() + b + 1, 's');
    ASSIGN_OR_RETURN(shape_, TaggedShape::Create(sizes, tags, mu.strides(), mu.fov()));
    shape_.set_mfp_offsets(mu.mfp_offsets());
    return absl::OkStatus();
  }
  std::string details() const override {
    return absl::StrFormat("n_samples=%d", spec_.gaussian_rv().n_samples());
  }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    const TaggedShape& mu = parents_[0]->shape();
    samples_ = std::max<int64_t>(1, spec_.gaussian_rv().n_samples());
    outer_ = 1;
    if (spec_.gaussian_rv().n_samples() > 0) {
      const std::vector<int64_t> phys = PhysicalSizes(mu);
      for (int i = 0; i <= PhysicalAxis(mu, mu.TagIndex('b')); ++i) outer_ *= phys[i];
    }
    inner_ = mu.stripnone_prod() / outer_;
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    ctx.backend->GaussianSample(parents_[0]->value(), parents_[1]->value(), value_, outer_,
                                samples_, inner_, NodeSeed(ctx, *this), ctx.step);
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    GradTarget mu = ParentGrad(0), ls = ParentGrad(1);
    if (!mu && !ls) return absl::OkStatus();
    ctx.backend->GaussianSampleBackward(parents_[0]->value(), value_, grad(), mu.ptr, mu.accumulate,
                                        ls.ptr, ls.accumulate, outer_, samples_, inner_);
    return absl::OkStatus();
  }

 private:
  int64_t outer_ = 1, samples_ = 1, inner_ = 1;
};

// ELEKTRONN2's make_priorlayer: the element-wise KL term 0.5 (mu^2 + sigma^2 - 1 - 2 log sigma)
// of N(mu, sigma) against N(0, 1); AggregateLoss takes its mean like any loss's.
class GaussianAevbPriorNode : public Node {
 public:
  using Node::Node;
  std::string op() const override { return "GaussianAEVBPrior"; }
  absl::Status InferShape() override {
    if (parents_.size() != 2)
      return NodeError(*this, "needs exactly two input nodes (mu, log_sig)");
    RETURN_IF_ERROR(SameShapes(*this, parents_[0]->shape(), parents_[1]->shape()));
    shape_ = parents_[0]->shape();
    return absl::OkStatus();
  }
  absl::Status Compile(ExecContext& ctx) override {
    AllocateOutput(ctx.backend);
    return absl::OkStatus();
  }
  absl::Status Forward(ExecContext& ctx) override {
    ctx.backend->GaussianPriorForward(parents_[0]->value(), parents_[1]->value(), value_, numel_);
    return absl::OkStatus();
  }
  absl::Status Backward(ExecContext& ctx) override {
    GradTarget mu = ParentGrad(0), ls = ParentGrad(1);
    if (!mu && !ls) return absl::OkStatus();
    ctx.backend->GaussianPriorBackward(parents_[0]->value(), parents_[1]->value(), grad(), mu.ptr,
                                       mu.accumulate, ls.ptr, ls.accumulate, numel_);
    return absl::OkStatus();
  }
};

}  // namespace

std::unique_ptr<Node> MakeSlice(const v1::NodeSpec& s) { return std::make_unique<SliceNode>(s); }
std::unique_ptr<Node> MakeReshape(const v1::NodeSpec& s) {
  return std::make_unique<ReshapeNode>(s);
}
std::unique_ptr<Node> MakePad(const v1::NodeSpec& s) { return std::make_unique<PadNode>(s); }
std::unique_ptr<Node> MakeMultMerge(const v1::NodeSpec& s) {
  return std::make_unique<MultMergeNode>(s);
}
std::unique_ptr<Node> MakeFaithlessMerge(const v1::NodeSpec& s) {
  return std::make_unique<FaithlessMergeNode>(s);
}
std::unique_ptr<Node> MakeApplyFunc(const v1::NodeSpec& s) {
  return std::make_unique<ApplyFuncNode>(s);
}
std::unique_ptr<Node> MakeMaxout(const v1::NodeSpec& s) { return std::make_unique<MaxoutNode>(s); }
std::unique_ptr<Node> MakeLrn(const v1::NodeSpec& s) { return std::make_unique<LrnNode>(s); }
std::unique_ptr<Node> MakeGaussianRv(const v1::NodeSpec& s) {
  return std::make_unique<GaussianRvNode>(s);
}
std::unique_ptr<Node> MakeGaussianAevbPrior(const v1::NodeSpec& s) {
  return std::make_unique<GaussianAevbPriorNode>(s);
}

}  // namespace elektronn
