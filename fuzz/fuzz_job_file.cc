// libFuzzer target: job-file source text -> JobSpec (Lua sandbox, nm functions, training keys,
// model checks), then the `elektronn check` summaries of whatever loads.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/lua/job_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  elektronn::JobFileOptions options;
  // Small limits keep each input to milliseconds; the limits themselves are what is exercised.
  options.max_instructions = 2'000'000;
  options.max_bytes = size_t{64} << 20;
  options.print = [](std::string_view) {};
  const std::string source(reinterpret_cast<const char*>(data), size);
  auto job = elektronn::LoadJobSource(source, "fuzz.lua", options);
  if (!job.ok()) return 0;
  (void)elektronn::CheckJson(*job);
  (void)elektronn::CheckTable(*job);
  return 0;
}
