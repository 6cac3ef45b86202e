// examples/rnn_sequence.lua trains through the trainer: PianoRollData feeds the Scan's 'r,b,f'
// input and the next step's target (GRU in nm.Scan, Softmax n_indep = 8), and the loss falls
// clearly within a few hundred steps.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <random>
#include <vector>

#include "engine/data/piano_roll.h"
#include "engine/lua/job_file.h"
#include "engine/trainer/trainer.h"
#include "kernels/backend.h"
#include "tests/support/examples.h"
#include "tests/support/train_losses.h"

namespace elektronn {
namespace {

namespace fs = std::filesystem;

using testing::ExamplePath;

TEST(RnnSequenceTraining, LossFallsOnGeneratedPianoRolls) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("elk_rnn_" + std::to_string(getpid()));
  fs::remove_all(dir);
  auto job = LoadJobFile(ExamplePath("rnn_sequence.lua"));
  ASSERT_TRUE(job.ok()) << job.status();
  const int kSteps = 400;
  auto trained = testing::TrainLosses(
      *job, dir,
      {"n_steps=" + std::to_string(kSteps), "monitor_batch_size=16", "history_freq=100000"});
  ASSERT_TRUE(trained.ok()) << trained.status();
  const std::vector<double>& losses = *trained;
  ASSERT_GE(losses.size(), 40u);
  // 8 binary softmaxes (one per channel): guessing costs ln 2 = 0.69 per channel; predicting
  // each channel's prior (1 in 8 is on) costs H(1/8) = 0.38 without reading the sequence;
  // knowing the melody's step leaves only the noise.
  const double first = std::accumulate(losses.begin(), losses.begin() + 20, 0.0) / 20;
  const double last = std::accumulate(losses.end() - 20, losses.end(), 0.0) / 20;
  EXPECT_GT(losses[0], 0.6) << "the untrained network should guess";
  EXPECT_LT(last, 0.6 * first) << "mean loss of the first 20 steps " << first << ", of the last 20 "
                               << last;
  EXPECT_LT(last, 0.3) << "below the prior's 0.38 only by reading the input";
  std::printf("loss: first step %.3f, mean of the first 20 steps %.3f, of the last 20 %.3f\n",
              losses[0], first, last);
  if (!HasFailure()) fs::remove_all(dir);
}

TEST(PianoRollData, MelodiesMoveByAStepAndTheTargetContinuesThem) {
  BatchGeometry g;
  g.input = *TaggedShape::Create({6, 3, 5}, "r,b,f");
  g.target = *TaggedShape::Create({3, 1}, "b,f");
  v1::PianoRollParams p;
  p.set_noise(0);
  auto d = PianoRollData::Create(p, g);
  ASSERT_TRUE(d.ok()) << d.status();
  std::mt19937_64 rng(1);
  std::vector<float> in(6 * 3 * 5), target(3);
  ASSERT_TRUE((*d)->GetBatch(Split::kTrain, rng, in.data(), target.data()).ok());
  for (int b = 0; b < 3; ++b) {
    std::vector<int> notes;
    for (int t = 0; t < 6; ++t) {
      int on = -1, count = 0;
      for (int c = 0; c < 5; ++c) {
        if (in[(t * 3 + b) * 5 + c] == 1.f) on = c, ++count;
      }
      ASSERT_EQ(count, 1) << "one note per step";
      notes.push_back(on);
    }
    const int step = (notes[1] - notes[0] + 5) % 5;
    EXPECT_TRUE(step == 1 || step == 2) << step;
    for (int t = 1; t < 6; ++t) EXPECT_EQ(notes[t], (notes[t - 1] + step) % 5);
    EXPECT_EQ(target[b], static_cast<float>((notes[5] + step) % 5));
  }
  g.input = *TaggedShape::Create({3, 5}, "b,f");
  auto bad = PianoRollData::Create(p, g);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("needs an input node with tags \"r,b,f\""),
            std::string::npos)
      << bad.status();
}

}  // namespace
}  // namespace elektronn
