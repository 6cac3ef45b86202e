// The parity harness's test body and registration (see parity_harness.h).
#include "tests/kernels/parity_harness.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <utility>

namespace elektronn::testing {
namespace {

class ParityTest : public ::testing::Test {
 public:
  ParityTest(ParityCase c, BackendEntry b) : case_(std::move(c)), backend_(std::move(b)) {}

  void TestBody() override {
    auto backend = backend_.create();
    // A listed backend must be usable: a missing one fails, except that a GPU suite (label
    // `gpu`, excluded from the default test preset) skips on a machine without a device. ctest
    // reports those as skipped, not passed (SKIP_REGULAR_EXPRESSION), and gpu-check sets
    // ELK_REQUIRE_GPU so that there a missing device fails.
    if (!backend.ok() && MaySkipWithoutDevice(backend.status())) {
      GTEST_SKIP() << backend_.name << ": " << backend.status().message();
    }
    ASSERT_TRUE(backend.ok()) << backend_.name << " backend absent: " << backend.status();
    InputRng rng(SeedOf(case_.name));
    absl::StatusOr<Outcome> outcome = case_.run(**backend, rng);
    ASSERT_TRUE(outcome.ok()) << outcome.status();
    for (const Comparison& c : outcome->outputs) {
      const double err = NormalisedError(c.got, c.want);
      std::printf("[ parity   ] %-40s %-4s %-10s err %.2e%s\n", case_.name.c_str(),
                  backend_.name.c_str(), c.what.c_str(), err,
                  outcome->impl.empty() ? "" : ("  [" + outcome->impl + "]").c_str());
      EXPECT_LT(err, case_.tolerance)
          << c.what << " of " << case_.name << " on " << backend_.name << " (" << outcome->impl
          << ") differs from the reference: " << FirstMismatch(c);
    }
  }

 private:
  // Where the largest difference is, to tell a layout slip from rounding.
  static std::string FirstMismatch(const Comparison& c) {
    if (c.got.size() != c.want.size()) {
      return absl::StrFormat("%d values, reference has %d", c.got.size(), c.want.size());
    }
    size_t worst = 0;
    double worst_d = -1;
    for (size_t i = 0; i < c.got.size(); ++i) {
      double d = std::fabs(static_cast<double>(c.got[i]) - c.want[i]);
      if (std::isnan(d)) d = std::numeric_limits<double>::infinity();
      if (d > worst_d) worst_d = d, worst = i;
    }
    return absl::StrFormat("largest difference at flat index %d of %d: got %g, want %g", worst,
                           c.got.size(), c.got.empty() ? 0.f : c.got[worst],
                           c.want.empty() ? 0.f : c.want[worst]);
  }

  ParityCase case_;
  BackendEntry backend_;
};

// gtest_main supplies main(), so the table registers itself during static initialisation.
}  // namespace

bool MaySkipWithoutDevice(const absl::Status& create_status) {
  const char* require = std::getenv("ELK_REQUIRE_GPU");
  return absl::IsUnavailable(create_status) && (require == nullptr || *require == '\0');
}

bool RegisterParityCases(const std::vector<ParityCase>& cases) {
  for (const ParityCase& c : cases) {
    for (const BackendEntry& b : Backends()) {
      ::testing::RegisterTest(("Parity/" + c.name).c_str(), b.name.c_str(), nullptr, nullptr,
                              __FILE__, __LINE__,
                              [c, b]() -> ::testing::Test* { return new ParityTest(c, b); });
    }
  }
  return true;
}

}  // namespace elektronn::testing
