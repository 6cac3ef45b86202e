// Configuration of elektronnd as plain structs: where it listens, TLS, and the job supervisor.
#pragma once

#include <string>

namespace elektronn {

struct TlsOptions {
  std::string cert_file;       // PEM server certificate chain; empty = no TLS
  std::string key_file;        // PEM private key of cert_file
  std::string client_ca_file;  // PEM CA; when set, clients must present a certificate it signed
  bool enabled() const { return !cert_file.empty(); }
};

struct ListenOptions {
  std::string address = "127.0.0.1:7077";  // host:port or unix:PATH
  TlsOptions tls;
  bool insecure = false;  // allow plaintext on a non-loopback address (prints a warning)
};

struct DaemonOptions {
  std::string state_dir;           // jobs, token and everything that survives restarts
  std::string data_dir;            // relative data paths of jobs resolve against it
  std::string worker_binary;       // elektronn-worker: trains (or predicts with) one job
  int capacity = 1;                // jobs that may run at once
  int max_restarts = 0;            // restarts of a crashed worker from its checkpoint (0 = FAILED)
  double status_interval_s = 1.0;  // --status-interval given to workers
  int worker_omp_threads = 0;      // OMP_NUM_THREADS for workers; 0 = inherit
  double cancel_grace_s = 10.0;    // SIGTERM -> SIGKILL delay when cancelling
  double stale_worker_wait_s = 30.0;  // on start: wait this long for workers of a killed daemon
};

}  // namespace elektronn
