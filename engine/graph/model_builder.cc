// ModelBuilder: ELEKTRONN2's functional API recorded into a ModelSpec.
#include "engine/graph/model_builder.h"

#include "absl/strings/str_cat.h"

namespace elektronn {

ModelBuilder::ModelBuilder(std::string model_name, uint64_t seed) {
  spec_.set_name(std::move(model_name));
  spec_.set_seed(seed);
}

std::string AppendNode(v1::ModelSpec* spec, v1::NodeSpec node) {
  auto taken = [&](const std::string& n) {
    for (const auto& other : spec->nodes()) {
      if (other.name() == n) return true;
    }
    return false;
  };
  std::string name = node.name();
  for (int i = 1; taken(name); ++i) name = absl::StrCat(node.name(), i);
  node.set_name(name);
  *spec->add_nodes() = std::move(node);
  return name;
}

v1::NodeSpec* ModelBuilder::NewNode(const std::string& default_name, const std::string& name,
                                    std::vector<std::string> inputs) {
  v1::NodeSpec n;
  n.set_name(name.empty() ? default_name : name);
  for (auto& i : inputs) n.add_inputs(std::move(i));
  AppendNode(&spec_, std::move(n));
  return spec_.mutable_nodes(spec_.nodes_size() - 1);
}

std::string ModelBuilder::Input(std::vector<int64_t> shape, const std::string& tags,
                                const std::string& name) {
  v1::NodeSpec* n = NewNode("input", name, {});
  for (int64_t s : shape) n->mutable_input()->add_shape(s);
  n->mutable_input()->set_tags(tags);
  return n->name();
}

std::string ModelBuilder::InputLike(const std::string& ref, int64_t override_f,
                                    const std::string& name) {
  v1::NodeSpec* n = NewNode("input", name, {ref});
  n->mutable_input_like()->set_override_f(override_f);
  return n->name();
}

std::string ModelBuilder::Conv(const std::string& parent, int64_t n_f, std::vector<int64_t> filter,
                               std::vector<int64_t> pool, v1::Activation act, v1::ConvMode mode,
                               float dropout, bool mfp, const std::string& name) {
  v1::NodeSpec* n = NewNode("conv", name, {parent});
  v1::ConvOp* c = n->mutable_conv();
  c->set_n_f(n_f);
  for (int64_t f : filter) c->add_filter_shape(f);
  for (int64_t p : pool) c->add_pool_shape(p);
  c->set_activation(act);
  c->set_conv_mode(mode);
  c->set_dropout_rate(dropout);
  c->set_mfp(mfp);
  return n->name();
}

// UpConv family.
std::string ModelBuilder::UpConv(const std::string& parent, int64_t n_f, std::vector<int64_t> pool,
                                 v1::Activation act, bool identity_init, float dropout,
                                 const std::string& name) {
  v1::NodeSpec* n = NewNode("upconv", name, {parent});
  v1::UpConvOp* u = n->mutable_upconv();
  u->set_n_f(n_f);
  for (int64_t p : pool) u->add_pool_shape(p);
  u->set_activation(act);
  u->set_identity_init(identity_init);
  u->set_dropout_rate(dropout);
  return n->name();
}

std::string ModelBuilder::Pool(const std::string& parent, std::vector<int64_t> pool,
                               std::vector<int64_t> stride, v1::PoolMode mode,
                               const std::string& name) {
  v1::NodeSpec* n = NewNode("pool", name, {parent});
  for (int64_t p : pool) n->mutable_pool()->add_pool_shape(p);
  for (int64_t s : stride) n->mutable_pool()->add_stride(s);
  n->mutable_pool()->set_mode(mode);
  return n->name();
}

std::string ModelBuilder::Perceptron(const std::string& parent, int64_t n_f, v1::Activation act,
                                     bool flatten, float dropout, const std::string& name) {
  v1::NodeSpec* n = NewNode("dot", name, {parent});
  n->mutable_perceptron()->set_n_f(n_f);
  n->mutable_perceptron()->set_activation(act);
  n->mutable_perceptron()->set_flatten(flatten);
  n->mutable_perceptron()->set_dropout_rate(dropout);
  return n->name();
}

std::string ModelBuilder::Activation(const std::string& parent, v1::Activation act,
                                     const std::string& name) {
  v1::NodeSpec* n = NewNode("activation", name, {parent});
  n->mutable_activation()->set_activation(act);
  return n->name();
}

std::string ModelBuilder::Softmax(const std::string& parent, int64_t n_class, int64_t n_indep,
                                  const std::string& name) {
  v1::NodeSpec* n = NewNode("softmax", name, {parent});
  n->mutable_softmax()->set_n_class(n_class);
  n->mutable_softmax()->set_n_indep(n_indep);
  return n->name();
}

std::string ModelBuilder::Concat(const std::vector<std::string>& parents, const std::string& axis,
                                 const std::string& name) {
  v1::NodeSpec* n = NewNode("concat", name, parents);
  n->mutable_concat()->set_axis(axis);
  return n->name();
}

std::string ModelBuilder::Crop(const std::string& parent, std::vector<int64_t> crop,
                               const std::string& name) {
  v1::NodeSpec* n = NewNode("crop", name, {parent});
  for (int64_t c : crop) n->mutable_crop()->add_crop(c);
  return n->name();
}

std::string ModelBuilder::Add(const std::string& a, const std::string& b, const std::string& name) {
  v1::NodeSpec* n = NewNode("add", name, {a, b});
  n->mutable_add();
  return n->name();
}

std::string ModelBuilder::MultinoulliNLL(const std::string& pred, const std::string& target,
                                         bool target_is_sparse, std::vector<float> class_weights,
                                         const std::string& name) {
  v1::NodeSpec* n = NewNode("nll", name, {pred, target});
  n->mutable_multinoulli_nll()->set_target_is_sparse(target_is_sparse);
  for (float w : class_weights) n->mutable_multinoulli_nll()->add_class_weights(w);
  return n->name();
}

std::string ModelBuilder::AggregateLoss(const std::vector<std::string>& losses,
                                        std::vector<float> mixing_weights,
                                        const std::string& name) {
  v1::NodeSpec* n = NewNode("total_loss", name, losses);
  n->mutable_aggregate_loss();
  for (float w : mixing_weights) n->mutable_aggregate_loss()->add_mixing_weights(w);
  return n->name();
}

std::string ModelBuilder::Errors(const std::string& pred, const std::string& target,
                                 bool target_is_sparse, const std::string& name) {
  v1::NodeSpec* n = NewNode("errors", name, {pred, target});
  n->mutable_errors()->set_target_is_sparse(target_is_sparse);
  return n->name();
}

void ModelBuilder::Designate(const std::string& input, const std::string& target,
                             const std::string& loss, const std::string& prediction,
                             std::vector<std::string> prediction_ext, const std::string& errors) {
  v1::Designations* d = spec_.mutable_designations();
  d->set_input_node(input);
  d->set_target_node(target);
  d->set_loss_node(loss);
  d->set_prediction_node(prediction);
  for (auto& p : prediction_ext) d->add_prediction_ext(std::move(p));
  d->set_error_node(errors);
}

v1::ModelSpec Neuro3dSpec(std::vector<int64_t> zxy, bool lite) {
  ModelBuilder m(lite ? "neuro3d_lite" : "neuro3d", 1);
  std::string x = m.Input({-1, 1, zxy[0], zxy[1], zxy[2]}, "b,f,z,x,y", "raw");
  struct L {
    int64_t n_f;
    std::vector<int64_t> k, p;
  };
  std::vector<L> layers;
  if (lite) {
    layers = {{20, {1, 4, 4}, {1, 2, 2}}, {40, {3, 3, 3}, {1, 2, 2}}, {150, {2, 4, 4}, {2, 1, 1}},
              {200, {1, 3, 3}, {}},       {200, {1, 3, 3}, {}},       {200, {1, 1, 1}, {}}};
  } else {
    layers = {{20, {1, 6, 6}, {1, 2, 2}}, {30, {1, 5, 5}, {1, 2, 2}}, {40, {1, 5, 5}, {}},
              {80, {4, 4, 4}, {2, 1, 1}}, {100, {3, 4, 4}, {}},       {100, {3, 4, 4}, {}},
              {150, {2, 4, 4}, {}},       {200, {1, 4, 4}, {}},       {200, {1, 4, 4}, {}},
              {200, {1, 1, 1}, {}}};
  }
  for (const L& l : layers) x = m.Conv(x, l.n_f, l.k, l.p);
  x = m.Conv(x, 2, {1, 1, 1}, {}, v1::LIN);
  std::string probs = m.Softmax(x);
  std::string target = m.InputLike(probs, 1, "target");
  std::string nll = m.MultinoulliNLL(probs, target, true);
  std::string loss = m.AggregateLoss({nll}, {}, "loss");
  std::string errors = m.Errors(probs, target, true);
  m.Designate("raw", target, loss, probs, {loss, errors, probs}, errors);
  return m.spec();
}

}  // namespace elektronn
