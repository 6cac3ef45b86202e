// The one-step model of a saved recurrent model, as a model file.
#include "engine/io/one_step_file.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_format.h"
#include "engine/core/status.h"
#include "engine/graph/network.h"
#include "engine/graph/one_step.h"
#include "engine/io/model_file.h"

namespace elektronn {

absl::StatusOr<OneStepFileReport> WriteOneStepModelFile(const std::string& in,
                                                        const std::string& out,
                                                        kernels::Backend* backend) {
  ASSIGN_OR_RETURN(ModelFileContents f, ReadModelFile(in));
  ASSIGN_OR_RETURN(v1::ModelSpec one, OneStepModel(f.spec));
  ASSIGN_OR_RETURN(std::unique_ptr<Network> net, Network::Create(one, backend));
  OneStepFileReport report;
  absl::flat_hash_set<std::string> used;
  for (Parameter* p : net->params()) {
    auto it = f.params.find(p->key());
    if (it == f.params.end()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "'%s' has no parameter %s, which its one-step model needs", in, p->key()));
    }
    RETURN_IF_ERROR(net->SetParamValue(*p, it->second));
    if (f.constant_params.contains(p->key())) p->trainable = false;
    used.insert(p->key());
  }
  for (const auto& [key, value] : f.params)
    if (!used.contains(key)) report.dropped_params.push_back(key);
  for (const auto& n : net->graph().nodes())
    if (n->is_source() && n->parents().empty()) report.inputs.push_back(n->name());
  RETURN_IF_ERROR(SaveModel(out, *net, nullptr));
  return report;
}

}  // namespace elektronn
