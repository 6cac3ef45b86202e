// Job-file keys of the data family: ID-derived targets (affinities, nhood_targets,
// ids2barriers), lazy-label masks and the non-geometric augmentations, parsed and validated.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "absl/strings/str_replace.h"
#include "engine/lua/job_file.h"

namespace elektronn {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr const char* kJob = R"(save_path = '/tmp/elk'
n_steps = 10
history_freq = 5
max_runtime = 60
monitor_batch_size = 2
optimiser = 'Adam'
optimiser_params = {lr = 0.001}
batch_size = 1
data_class = 'BatchCreatorImage'
data_init_kwargs = {d_path = 'data', l_path = 'data', d_files = {{'raw_0.h5', 'raw'}},
                    l_files = {{'ids_0.h5', 'lab'}}INIT}
data_batch_args = {BATCH}
function create_model()
  local inp = nm.Input{{None, 1, 8, 32, 32}, 'b,f,z,x,y', name = 'raw'}
  local out = nm.Conv{inp, 2, {1, 3, 3}, activation_func = 'lin'}
  local probs = nm.Softmax{out}
  local target = nm.Input_like{probs, override_f = 1, name = 'target'}
  local nll = nm.MultinoulliNLL{probs, target, target_is_sparse = true}
  local loss = nm.AggregateLoss{nll, name = 'loss'}
  return nm.designate_nodes{input_node = inp, target_node = target, loss_node = loss,
                            prediction_node = probs}
end
)";

std::string Job(const std::string& batch, const std::string& init = "") {
  return absl::StrReplaceAll(kJob, {{"BATCH", batch}, {"INIT", init}});
}

v1::TrainingSpec Parse(const std::string& batch, const std::string& init = "") {
  auto job = LoadJobSource(Job(batch, init), "job.lua");
  EXPECT_TRUE(job.ok()) << job.status();
  return job.ok() ? job->training() : v1::TrainingSpec();
}

std::string ErrorOf(const std::string& batch, const std::string& init = "") {
  auto job = LoadJobSource(Job(batch, init), "job.lua");
  EXPECT_FALSE(job.ok()) << "accepted: " << batch << " / " << init;
  return job.ok() ? "" : std::string(job.status().message());
}

TEST(DataKeysTest, AffinitiesAndNhoodTargets) {
  v1::DataBatchArgs a = Parse("affinities = 'affinity'").data_batch_args();
  EXPECT_EQ(a.affinities(), "affinity");
  EXPECT_EQ(a.affinity_nhood_size(), 0);
  EXPECT_EQ(Parse("affinities = false").data_batch_args().affinities(), "");
  a = Parse("affinities = 'affinity', affinity_nhood = {{-1, 0, 0}, {0, 0, 3}}").data_batch_args();
  ASSERT_EQ(a.affinity_nhood_size(), 2);
  EXPECT_EQ(a.affinity_nhood(0).z(), -1);
  EXPECT_EQ(a.affinity_nhood(1).y(), 3);
  a = Parse("nhood_targets = true").data_batch_args();
  EXPECT_TRUE(a.nhood_targets());
  EXPECT_EQ(a.nhood_targets_nhood_size(), 0);
  a = Parse("nhood_targets = {{0, 0, 0}, {0, 1, 0}}").data_batch_args();
  EXPECT_TRUE(a.nhood_targets());
  EXPECT_EQ(a.nhood_targets_nhood_size(), 2);

  EXPECT_THAT(ErrorOf("affinities = 'malis'"),
              HasSubstr("data_batch_args.affinities 'malis' is not supported: MALIS"));
  EXPECT_THAT(ErrorOf("affinities = 'afinity'"),
              HasSubstr("data_batch_args.affinities must be false or 'affinity'"));
  EXPECT_THAT(ErrorOf("affinities = 'affinity', nhood_targets = true"),
              HasSubstr("data_batch_args sets both affinities and nhood_targets"));
  EXPECT_THAT(ErrorOf("affinity_nhood = {{1, 0, 0}}"),
              HasSubstr("data_batch_args.affinity_nhood needs affinities = 'affinity'"));
  EXPECT_THAT(ErrorOf("affinities = 'affinity', affinity_nhood = {{1, 0}}"),
              HasSubstr("data_batch_args.affinity_nhood[1] must be an offset of 3 integers"));
  EXPECT_THAT(ErrorOf("nhood_targets = 'yes'"),
              HasSubstr("data_batch_args.nhood_targets must be true, false or a list of offsets"));
}

// center_cubes (reference §7.8) is a file-preparation helper in ELEKTRONN2, not a
// BatchCreatorImage argument: false is accepted (nothing to do), anything else is refused with
// what to do instead.
TEST(DataKeysTest, CenterCubesIsAPreparationHelperNotAnOption) {
  Parse("", ", center_cubes = false");
  EXPECT_THAT(ErrorOf("", ", center_cubes = true"),
              HasSubstr("data_init_kwargs.center_cubes is not supported: ELEKTRONN2's "
                        "center_cubes is a helper for preparing files"));
  EXPECT_THAT(ErrorOf("", ", center_cubes = true"), HasSubstr("already centred on it"));
}

TEST(DataKeysTest, LazyLabelMasks) {
  EXPECT_TRUE(Parse("ret_ll_mask = true").data_batch_args().ret_ll_mask());
  EXPECT_THAT(ErrorOf("ret_ll_mask = 1"),
              HasSubstr("data_batch_args.ret_ll_mask must be true or false"));
}

TEST(DataKeysTest, Augmentations) {
  v1::DataBatchArgs a =
      Parse(
          "nga_blur_noise_probability = 0.3, blurry_blobs_probability = true, "
          "blurry_blobs_args = {diffuseness = 2, num_blob_range = {1, 3}, blob_size_range = {4, "
          "8}}, "
          "uniform_random_erasing_probability = 0.2, uniform_random_erasing_args = {value = 0.5}, "
          "noisy_random_erasing_probability = false, "
          "noisy_random_erasing_args = {noise_range = {0.2, 0.8}}")
          .data_batch_args();
  EXPECT_DOUBLE_EQ(a.nga_blur_noise_probability(), 0.3);
  EXPECT_DOUBLE_EQ(a.blurry_blobs_probability(), 1.0);
  EXPECT_DOUBLE_EQ(a.blurry_blobs_args().diffuseness(), 2.0);
  EXPECT_THAT(a.blurry_blobs_args().num_blob_range(), ElementsAre(1, 3));
  EXPECT_THAT(a.blurry_blobs_args().blob_size_range(), ElementsAre(4, 8));
  EXPECT_DOUBLE_EQ(a.uniform_random_erasing_probability(), 0.2);
  EXPECT_DOUBLE_EQ(a.uniform_random_erasing_args().value(), 0.5);
  EXPECT_DOUBLE_EQ(a.noisy_random_erasing_probability(), 0.0);
  EXPECT_THAT(a.noisy_random_erasing_args().noise_range(), ElementsAre(0.2, 0.8));
  // ELEKTRONN2's falsy diffuseness: a random sigma per blob.
  EXPECT_FALSE(Parse("blurry_blobs_args = {diffuseness = false}")
                   .data_batch_args()
                   .blurry_blobs_args()
                   .has_diffuseness());

  EXPECT_THAT(ErrorOf("nga_blur_noise_probability = 2"),
              HasSubstr("data_batch_args.nga_blur_noise_probability must be in [0, 1], got 2"));
  EXPECT_THAT(ErrorOf("blurry_blobs_args = {num_blob_range = {5, 5}}"),
              HasSubstr("data_batch_args.blurry_blobs_args.num_blob_range must be {lo, hi} with "
                        "0 <= lo < hi"));
  EXPECT_THAT(ErrorOf("uniform_random_erasing_args = {blob_size_range = {0, 4}}"),
              HasSubstr("uniform_random_erasing_args.blob_size_range entries must be at least "
                        "1, got 0"));
  EXPECT_THAT(ErrorOf("noisy_random_erasing_args = {noise_range = {1, 0}}"),
              HasSubstr("noisy_random_erasing_args.noise_range must be {lo, hi} with lo < hi"));
  // Each args table takes only its own keys.
  EXPECT_THAT(ErrorOf("uniform_random_erasing_args = {noise_range = {0, 1}}"),
              HasSubstr("uniform_random_erasing_args has an unknown key 'noise_range'"));
  EXPECT_THAT(ErrorOf("blurry_blobs_args = {value = 1}"),
              HasSubstr("blurry_blobs_args has an unknown key 'value'"));
}

TEST(DataKeysTest, Ids2Barriers) {
  v1::TrainingSpec t = Parse("", ", ids2barriers = true");
  EXPECT_TRUE(t.batch_creator_image().has_ids2barriers());
  EXPECT_FALSE(Parse("", ", ids2barriers = false").batch_creator_image().has_ids2barriers());
  t = Parse("",
            ", ids2barriers = {dilute = {false, true, true}, connectivity = {false, true, true}, "
            "ecs_as_barr = 'new_class', smoothen = true}");
  const v1::Ids2BarriersArgs& a = t.batch_creator_image().ids2barriers();
  EXPECT_THAT(a.dilute(), ElementsAre(false, true, true));
  EXPECT_THAT(a.connectivity(), ElementsAre(false, true, true));
  EXPECT_EQ(a.ecs_as_barr(), "new_class");
  EXPECT_TRUE(a.smoothen());
  EXPECT_EQ(Parse("", ", ids2barriers = {ecs_as_barr = false}")
                .batch_creator_image()
                .ids2barriers()
                .ecs_as_barr(),
            "false");

  EXPECT_THAT(ErrorOf("", ", ids2barriers = {dilute = {true, true}}"),
              HasSubstr("data_init_kwargs.ids2barriers.dilute must list 3 booleans (z, x, y), "
                        "got 2"));
  EXPECT_THAT(ErrorOf("", ", ids2barriers = {ecs_as_barr = 'ecs'}"),
              HasSubstr("ids2barriers.ecs_as_barr must be true, false or 'new_class'"));
  EXPECT_THAT(ErrorOf("", ", ids2barriers = {smooth = true}"),
              HasSubstr("ids2barriers has an unknown key 'smooth'"));
}

// target_vec_ix / target_discrete_ix (reference §7.2, §7.4): 0-based target channels; the
// channel count is checked when the data is built against the model's target node.
TEST(DataKeysTest, TargetVecAndDiscreteIx) {
  v1::BatchCreatorImageParams p =
      Parse("", ", target_vec_ix = {{0, 1, 2}, {4, 5, 6}}, target_discrete_ix = {3}")
          .batch_creator_image();
  ASSERT_EQ(p.target_vec_ix_size(), 2);
  EXPECT_THAT(p.target_vec_ix(0).ix(), ElementsAre(0, 1, 2));
  EXPECT_THAT(p.target_vec_ix(1).ix(), ElementsAre(4, 5, 6));
  ASSERT_TRUE(p.has_target_discrete_ix());
  EXPECT_THAT(p.target_discrete_ix().ix(), ElementsAre(3));
  // Unset (false / absent): every channel discrete; {}: none.
  EXPECT_FALSE(
      Parse("", ", target_discrete_ix = false").batch_creator_image().has_target_discrete_ix());
  EXPECT_FALSE(Parse("").batch_creator_image().has_target_discrete_ix());
  p = Parse("", ", target_discrete_ix = {}").batch_creator_image();
  EXPECT_TRUE(p.has_target_discrete_ix());
  EXPECT_EQ(p.target_discrete_ix().ix_size(), 0);
  EXPECT_EQ(Parse("", ", target_vec_ix = false").batch_creator_image().target_vec_ix_size(), 0);

  EXPECT_THAT(ErrorOf("", ", target_vec_ix = {{0, 1}}"),
              HasSubstr("data_init_kwargs.target_vec_ix[1] must be a triple of target channel "
                        "indices {cz, cx, cy}"));
  EXPECT_THAT(ErrorOf("", ", target_vec_ix = {{0, 1, 2}, {2, 3, 4}}"),
              HasSubstr("data_init_kwargs.target_vec_ix[2] names channel 2, which is already "
                        "part of a vector"));
  EXPECT_THAT(ErrorOf("", ", target_vec_ix = {{0, -1, 2}}"),
              HasSubstr("target_vec_ix[1] channel -1 is negative"));
  EXPECT_THAT(ErrorOf("", ", target_discrete_ix = {0, 0}"),
              HasSubstr("data_init_kwargs.target_discrete_ix lists channel 0 twice"));
  EXPECT_THAT(ErrorOf("", ", target_discrete_ix = {-1}"),
              HasSubstr("data_init_kwargs.target_discrete_ix entries must be at least 0, got -1"));
}

// The shipped affinity example parses, with the keys it is about.
TEST(DataKeysTest, AffinityExample) {
  std::string path = "examples/neuro3d_affinity.lua";
  for (std::filesystem::path p = std::filesystem::read_symlink("/proc/self/exe");
       !p.empty() && p != p.root_path(); p = p.parent_path()) {
    if (std::filesystem::exists(p / path)) {
      path = (p / path).string();
      break;
    }
  }
  auto job = LoadJobFile(path);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->training().data_batch_args().affinities(), "affinity");
  EXPECT_EQ(job->training().batch_creator_image().l_files(0).file(), "ids_0.h5");
}

}  // namespace
}  // namespace elektronn
