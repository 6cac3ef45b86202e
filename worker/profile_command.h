// `elektronn-worker profile job.lua` (`elektronn profile` execs it): per-node forward and
// backward times of the job's model on random input of its patch shape, on the CPU backend
// (ELEKTRONN2's Model.measure_exectimes, reference §3.7).
#pragma once

#include <cstdint>
#include <string>

#include "CLI/CLI.hpp"

namespace elektronn {

struct ProfileCommand {
  std::string job_path;
  int steps = 10;          // timed forward+backward passes, after one untimed warm-up
  int64_t batch_size = 0;  // 0: the job's batch_size
  int threads = 0;         // 0: the job's cpu_threads (0: every core)
  bool json = false;
  CLI::App* app = nullptr;
};

// Registers the `profile` subcommand on `app`; its options write into `*command`.
CLI::App* AddProfileCommand(CLI::App& app, ProfileCommand* command);
// Runs it; returns the exit code (0, 2 for bad arguments, 1 for other errors).
int RunProfileCommand(const ProfileCommand& command);

}  // namespace elektronn
