// The data-directory boundary: every way out of --data-dir is refused, every way in accepted.
#include "engine/io/data_path.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "google/protobuf/descriptor.h"

namespace elektronn {
namespace {
namespace fs = std::filesystem;

class DataPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::temp_directory_path() / ("elk-data-path-" + std::to_string(getpid()));
    fs::remove_all(base_);
    data_ = base_ / "data";
    fs::create_directories(data_ / "vol");
    fs::create_directories(base_ / "data2");  // a sibling whose name extends the data dir's
    fs::create_directories(base_ / "secret");
    std::ofstream(base_ / "secret" / "raw.h5") << "x";
    std::ofstream(data_ / "vol" / "raw.h5") << "x";
    fs::create_directory_symlink(base_ / "secret", data_ / "escape");
    fs::create_symlink(base_ / "secret" / "raw.h5", data_ / "vol" / "link.h5");
    fs::create_directory_symlink(data_ / "vol", data_ / "inner");  // stays inside: fine
  }
  void TearDown() override { fs::remove_all(base_); }

  // A BatchCreatorImage job reading vol/raw.h5 for both data and labels.
  v1::JobSpec Job() const {
    v1::JobSpec job;
    auto* b = job.mutable_training()->mutable_batch_creator_image();
    b->set_d_path("vol/");
    b->set_l_path("vol");
    auto* d = b->add_d_files();
    d->set_file("raw.h5");
    d->set_key("raw");
    *b->add_l_files() = *d;
    return job;
  }

  void ExpectRefused(const v1::JobSpec& job, const std::string& field) const {
    v1::JobSpec copy = job;
    absl::Status s = ConfineJobDataPaths(&copy, data_.string());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(field + " is '"), std::string::npos) << s;
  }

  fs::path base_, data_;
};

TEST_F(DataPathTest, RelativePathsInsideAreAcceptedAndResolved) {
  v1::JobSpec job = Job();
  job.mutable_training()->set_preview_data_path("inner/raw.h5");  // symlink inside, to inside
  ASSERT_TRUE(ConfineJobDataPaths(&job, data_.string()).ok());
  const auto& b = job.training().batch_creator_image();
  const std::string vol = fs::canonical(data_ / "vol").string();
  EXPECT_EQ(b.d_path(), vol);
  EXPECT_EQ(b.l_path(), vol);
  EXPECT_EQ(b.d_files(0).file(), vol + "/raw.h5");
  EXPECT_EQ(job.training().preview_data_path(), vol + "/raw.h5");
  // An absolute path that lies inside is as good as a relative one; so is '..' that stays in.
  auto p = ConfineDataPath("f", (data_ / "vol" / ".." / "vol" / "raw.h5").string(), data_);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(*p, vol + "/raw.h5");
  // A file that does not exist yet is checked lexically below its existing prefix.
  EXPECT_TRUE(ConfineDataPath("f", "vol/new/raw.h5", data_.string()).ok());
  EXPECT_TRUE(ConfineDataPath("f", "", data_.string()).ok());
}

TEST_F(DataPathTest, AbsoluteDataFileIsRefused) {
  v1::JobSpec job = Job();
  job.mutable_training()->mutable_batch_creator_image()->mutable_d_files(0)->set_file(
      (base_ / "secret" / "raw.h5").string());
  ExpectRefused(job, "job.training.batch_creator_image.d_files[0].file");
}

TEST_F(DataPathTest, DotDotInLabelFileIsRefused) {
  v1::JobSpec job = Job();
  job.mutable_training()->mutable_batch_creator_image()->mutable_l_files(0)->set_file(
      "../../secret/raw.h5");
  ExpectRefused(job, "job.training.batch_creator_image.l_files[0].file");
}

TEST_F(DataPathTest, TildeIsRefusedNotExpanded) {
  v1::JobSpec job = Job();
  job.mutable_training()->mutable_batch_creator_image()->set_d_path("~/");
  ExpectRefused(job, "job.training.batch_creator_image.d_path");
  job = Job();
  job.mutable_training()->set_preview_data_path("~/preview.h5");
  ExpectRefused(job, "job.training.preview_data_path");
  job = Job();
  job.mutable_training()->mutable_batch_creator_image()->mutable_d_files(0)->set_file("~/x.h5");
  ExpectRefused(job, "job.training.batch_creator_image.d_files[0].file");
}

TEST_F(DataPathTest, SymlinkPointingOutsideIsRefused) {
  v1::JobSpec job = Job();
  job.mutable_training()->mutable_batch_creator_image()->set_l_path("escape");
  ExpectRefused(job, "job.training.batch_creator_image.l_path");
  job = Job();
  job.mutable_training()->mutable_batch_creator_image()->mutable_d_files(0)->set_file("link.h5");
  ExpectRefused(job, "job.training.batch_creator_image.d_files[0].file");
  job = Job();
  job.mutable_training()->set_preview_data_path("escape/raw.h5");
  ExpectRefused(job, "job.training.preview_data_path");
}

// batch_norm family: a fine-tuning job's model file is confined like every other path.
TEST_F(DataPathTest, ModelLoadPathIsConfined) {
  v1::JobSpec job = Job();
  job.mutable_training()->set_model_load_path("inner/raw.h5");
  ASSERT_TRUE(ConfineJobDataPaths(&job, data_.string()).ok());
  EXPECT_EQ(job.training().model_load_path(), fs::canonical(data_ / "vol").string() + "/raw.h5");
  for (const char* bad : {"escape/m.h5", "../m.h5", "~/m.h5", "/etc/passwd"}) {
    job = Job();
    job.mutable_training()->set_model_load_path(bad);
    ExpectRefused(job, "job.training.model_load_path");
  }
}

TEST_F(DataPathTest, SiblingWithCommonPrefixIsOutside) {
  v1::JobSpec job = Job();
  job.mutable_training()->mutable_batch_creator_image()->set_d_path("../data2");
  ExpectRefused(job, "job.training.batch_creator_image.d_path");
  job = Job();
  job.mutable_training()->mutable_batch_creator_image()->set_d_path((base_ / "data2").string());
  ExpectRefused(job, "job.training.batch_creator_image.d_path");
}

TEST_F(DataPathTest, MnistPathIsConfinedAndEmptyMeansDebiansDataset) {
  v1::JobSpec job;
  job.mutable_training()->mutable_mnist()->set_path("/usr/share/");
  ExpectRefused(job, "job.training.mnist.path");
  job.mutable_training()->mutable_mnist()->set_path("");
  ASSERT_TRUE(ConfineJobDataPaths(&job, data_.string()).ok());
  EXPECT_EQ(job.training().mnist().path(), "");
}

// A prediction job: the model file, the input's HDF5 file and the output (a Zarr directory that
// does not exist yet) are confined and resolved; a volume spec keeps its dataset.
TEST_F(DataPathTest, PredictionPathsAreConfinedAndResolved) {
  v1::JobSpec job;
  v1::PredictionSpec* p = job.mutable_prediction();
  p->set_model("inner/raw.h5");
  p->set_input("vol/raw.h5:/raw");
  p->set_output("out/pred.zarr");
  ASSERT_TRUE(ConfineJobDataPaths(&job, data_.string()).ok());
  const std::string d = fs::canonical(data_).string();
  EXPECT_EQ(job.prediction().model(), d + "/vol/raw.h5");
  EXPECT_EQ(job.prediction().input(), d + "/vol/raw.h5:/raw");
  EXPECT_EQ(job.prediction().output(), d + "/out/pred.zarr");
  EXPECT_FALSE(job.has_training()) << "confining a prediction adds no training part";
  EXPECT_FALSE(job.has_model());

  // An HDF5 output (by its extension, or an existing file) confines its file part only.
  job.mutable_prediction()->set_output("new.h5:group/prob");
  ASSERT_TRUE(ConfineJobDataPaths(&job, data_.string()).ok());
  EXPECT_EQ(job.prediction().output(), d + "/new.h5:group/prob");
  std::ofstream(data_ / "vol" / "plain") << "x";
  job.mutable_prediction()->set_input("vol/plain:raw");
  ASSERT_TRUE(ConfineJobDataPaths(&job, data_.string()).ok());
  EXPECT_EQ(job.prediction().input(), d + "/vol/plain:raw");
  EXPECT_EQ(VolumeSpecPath(job.prediction().input(), "/"), d + "/vol/plain");

  // A training job of the daemon is not a path: the daemon resolves it.
  job.mutable_prediction()->set_model("jobs/000007");
  ASSERT_TRUE(ConfineJobDataPaths(&job, data_.string()).ok());
  EXPECT_EQ(job.prediction().model(), "jobs/000007");
  EXPECT_TRUE(IsJobModelReference("jobs/7"));
  EXPECT_FALSE(IsJobModelReference("jobs/7/../../x"));
  EXPECT_FALSE(IsJobModelReference("jobs/"));
  EXPECT_FALSE(IsJobModelReference("7"));
}

TEST_F(DataPathTest, PredictionPathsLeavingTheDataDirAreRefused) {
  auto job = [](const std::string& model, const std::string& input, const std::string& output) {
    v1::JobSpec j;
    j.mutable_prediction()->set_model(model);
    j.mutable_prediction()->set_input(input);
    j.mutable_prediction()->set_output(output);
    return j;
  };
  const std::string ok_model = "vol/raw.h5", ok_in = "vol/raw.h5:/raw", ok_out = "pred.zarr";
  ExpectRefused(job("/etc/passwd", ok_in, ok_out), "job.prediction.model");
  ExpectRefused(job("jobs/7/../../../../etc/passwd", ok_in, ok_out), "job.prediction.model");
  ExpectRefused(job("", ok_in, ok_out), "job.prediction.model");
  ExpectRefused(job(ok_model, "../secret/raw.h5:/raw", ok_out), "job.prediction.input");
  ExpectRefused(job(ok_model, "escape/raw.h5:/raw", ok_out), "job.prediction.input");
  ExpectRefused(job(ok_model, "vol/link.h5:/raw", ok_out), "job.prediction.input");
  ExpectRefused(job(ok_model, "~/raw.zarr", ok_out), "job.prediction.input");
  ExpectRefused(job(ok_model, "", ok_out), "job.prediction.input");
  ExpectRefused(job(ok_model, ok_in, "escape/pred.zarr"), "job.prediction.output");
  ExpectRefused(job(ok_model, ok_in, "/tmp/pred.h5:/prob"), "job.prediction.output");
  ExpectRefused(job(ok_model, ok_in, "../data2/pred.zarr"), "job.prediction.output");
  ExpectRefused(job(ok_model, ok_in, (base_ / "secret" / "raw.h5").string() + ":/x"),
                "job.prediction.output");
}

// Every string field of a JobSpec whose name says it is a path, file or directory must be
// either confined by ConfineJobDataPaths or set by the daemon itself. A path field added later
// fails here until it is confined (or declared daemon-owned) on purpose.
void CollectPathLikeFields(const google::protobuf::Descriptor* d, const std::string& prefix,
                           std::set<const google::protobuf::Descriptor*>* seen,
                           std::set<std::string>* out) {
  if (!seen->insert(d).second) return;
  for (int i = 0; i < d->field_count(); ++i) {
    const auto* f = d->field(i);
    const std::string name = prefix + f->name();
    if (f->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE) {
      CollectPathLikeFields(f->message_type(), f->message_type()->name() + ".", seen, out);
    } else if (f->type() == google::protobuf::FieldDescriptor::TYPE_STRING) {
      for (const char* word : {"path", "file", "dir", "folder", "model", "input", "output"}) {
        if (f->name().find(word) != std::string::npos) out->insert(name);
      }
    }
  }
}

TEST(DataPathFieldsTest, EveryPathFieldOfAJobSpecIsAccountedFor) {
  std::set<const google::protobuf::Descriptor*> seen;
  std::set<std::string> fields;
  CollectPathLikeFields(v1::JobSpec::descriptor(), "JobSpec.", &seen, &fields);
  const std::set<std::string> confined = {"BatchCreatorImageParams.d_path",
                                          "BatchCreatorImageParams.l_path",
                                          "H5Dataset.file",
                                          "MnistParams.path",
                                          "TrainingSpec.preview_data_path",
                                          "TrainingSpec.model_load_path",  // batch_norm
                                          "PredictionSpec.model",
                                          "PredictionSpec.input",
                                          "PredictionSpec.output"};
  // Set by elektronnd whatever the job says (JobManager::Create), or names only.
  const std::set<std::string> not_read = {
      "TrainingSpec.save_path", "JobSpec.job_file_name", "JobSpec.job_file_source",
      // node names, not files
      "Designations.debug_outputs", "Designations.input_node", "NodeSpec.inputs"};
  for (const std::string& f : fields) {
    EXPECT_TRUE(confined.count(f) || not_read.count(f))
        << f << " looks like a path: confine it in ConfineJobDataPaths (engine/io/data_path.cc) "
        << "and list it here";
  }
  for (const std::string& f : confined) EXPECT_TRUE(fields.count(f)) << f << " is gone";
}

}  // namespace
}  // namespace elektronn
