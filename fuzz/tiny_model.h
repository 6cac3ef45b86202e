// The tiny model whose saved file seeds the model-file fuzzer, and into which it loads inputs.
#pragma once

#include <string>

#include "elektronn/v1/model.pb.h"
#include "engine/graph/model_builder.h"

namespace elektronn::fuzz {

// Two small layers (parameters of two shapes), a softmax and its loss: a model file of it with
// Adam state is about 10 KB.
inline v1::ModelSpec TinyModel() {
  ModelBuilder m("tiny", 3);
  std::string x = m.Input({1, 1, 2, 4, 4}, "b,f,z,x,y", "raw");
  std::string c = m.Conv(x, 3, {1, 2, 2}, {}, v1::RELU);
  c = m.Conv(c, 2, {2, 1, 1}, {}, v1::LIN);
  std::string p = m.Softmax(c);
  std::string t = m.InputLike(p, 1, "target");
  std::string nll = m.MultinoulliNLL(p, t, true);
  std::string loss = m.AggregateLoss({nll}, {}, "loss");
  m.Designate(x, t, loss, p);
  return m.spec();
}

}  // namespace elektronn::fuzz
