"""End to end from Python: a real elektronnd on loopback driven by elektronn_client (submit a Lua
job, watch its events, change lr and read it back, parameters as numpy, cancel, errors)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

# Missing test dependencies (python3-grpcio, python3-numpy, the built package) fail the test.
import grpc
import numpy as np

import elektronn_client as ek

JOB = """
save_path = 'ignored'
save_name = 'tiny'
data_class = 'BatchCreatorImage'
data_init_kwargs = {d_path = 'data/', l_path = 'data/',
  d_files = {{'raw_0.h5', 'raw'}, {'raw_1.h5', 'raw'}},
  l_files = {{'barrier_0.h5', 'lab'}, {'barrier_1.h5', 'lab'}},
  aniso_factor = 2, valid_cubes = {1}}
data_batch_args = {warp = 0.5, grey_augment_channels = {0}}
n_steps = 100
max_runtime = 3600
history_freq = 1000000
monitor_batch_size = 2
optimiser = 'Adam'
optimiser_params = {lr = 5e-3, mom = 0.9, beta2 = 0.999, wd = 1e-5}
batch_size = 2
function create_model()
  local inp = nm.Input{{None, 1, 5, 27, 27}, 'b,f,z,x,y', name = 'raw'}
  local out = nm.Conv{inp, 6, {1, 4, 4}, {1, 2, 2}}
  out = nm.Conv{out, 6, {3, 3, 3}}
  out = nm.Conv{out, 2, {1, 1, 1}, activation_func = 'lin'}
  local probs = nm.Softmax{out}
  local target = nm.Input_like{probs, override_f = 1, name = 'target'}
  local nll = nm.MultinoulliNLL{probs, target, target_is_sparse = true}
  local loss = nm.AggregateLoss{nll, name = 'loss'}
  local errors = nm.Errors{probs, target, target_is_sparse = true}
  return nm.designate_nodes{input_node = inp, target_node = target, loss_node = loss,
                            prediction_node = probs, prediction_ext = {loss, errors, probs}}
end
"""

DEADLINE_S = 60.0  # of every single wait below; the whole test takes well under 30 s


def binary(variable: str) -> str:
    """A built binary whose path the build passes in `variable`."""
    path = os.environ.get(variable, "")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"${variable} must name a built executable (got {path!r}); run the "
                           "test through ctest")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaemonClientTest(unittest.TestCase):
    """One daemon for the class, in a temporary directory with demo data and a job file."""

    elektronn = ""
    dir = ""
    daemon: subprocess.Popen[bytes] | None = None
    client: ek.Client

    @classmethod
    def setUpClass(cls) -> None:
        cls.elektronn = binary("ELK_ELEKTRONN_BIN")
        elektronnd = binary("ELK_ELEKTRONND_BIN")
        worker = binary("ELK_WORKER_BIN")
        cls.dir = tempfile.mkdtemp(prefix="elk_python_")
        env = dict(os.environ, ELEKTRONN_WORKER=worker, OMP_NUM_THREADS="1")
        subprocess.run([cls.elektronn, "make-demo-data", os.path.join(cls.dir, "data")],
                       env=env, check=True, timeout=DEADLINE_S, stdout=subprocess.DEVNULL)
        with open(os.path.join(cls.dir, "job.lua"), "w", encoding="utf-8") as f:
            f.write(JOB)
        state = os.path.join(cls.dir, "state")
        # One test-only GPU (elektronnd --fake-gpus) for the reservation helpers.
        gpus = os.path.join(cls.dir, "gpus.json")
        with open(gpus, "w", encoding="utf-8") as f:
            f.write('{"gpus": [{"uuid": "GPU-py-0"}]}')
        for _ in range(3):  # another process may take the port first
            port = free_port()
            with open(os.path.join(cls.dir, "daemon.log"), "ab") as log:
                cls.daemon = subprocess.Popen(
                    [elektronnd, "--listen", f"127.0.0.1:{port}", "--state-dir", state,
                     "--data-dir", cls.dir, "--worker-binary", worker, "--worker-threads", "1",
                     "--worker-status-interval", "0.1", "--fake-gpus", gpus, "--capacity", "2"],
                    stdout=log, stderr=log, env=env)
            if cls._wait_until_serving(port, os.path.join(state, "token")):
                return
            cls._stop_daemon()
        cls.tearDownClass()
        raise RuntimeError("elektronnd did not come up:\n" + cls._log_tail())

    @classmethod
    def _wait_until_serving(cls, port: int, token_file: str) -> bool:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline and cls.daemon and cls.daemon.poll() is None:
            if os.path.exists(token_file):
                try:
                    cls.client = ek.connect(f"127.0.0.1:{port}", token_file=token_file,
                                            timeout=10)
                    cls.client.resources()
                    return True
                except ek.ElektronnError:
                    pass
            time.sleep(0.05)
        return False

    @classmethod
    def _stop_daemon(cls) -> int | None:
        """SIGTERM, then the exit status (SIGKILL and None if it outlives the deadline)."""
        if cls.daemon is None or cls.daemon.poll() is not None:
            return None if cls.daemon is None else cls.daemon.returncode
        cls.daemon.send_signal(signal.SIGTERM)
        try:
            return cls.daemon.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            cls.daemon.kill()
            cls.daemon.wait()
            return None

    @classmethod
    def _log_tail(cls, lines: int = 40) -> str:
        try:
            with open(os.path.join(cls.dir, "daemon.log"), encoding="utf-8",
                      errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no daemon log)"

    @classmethod
    def tearDownClass(cls) -> None:
        running = cls.daemon is not None and cls.daemon.poll() is None
        status = cls._stop_daemon()
        cls.daemon = None
        if hasattr(cls, "client"):
            cls.client.close()
        print("--- daemon log (tail):\n" + cls._log_tail(), file=sys.stderr)
        shutil.rmtree(cls.dir, ignore_errors=True)
        if running and status != 0:
            raise AssertionError(f"elektronnd did not stop cleanly on SIGTERM: status {status}")

    def job_file(self) -> str:
        return os.path.join(self.dir, "job.lua")

    def test_job_from_python(self) -> None:
        c = self.client
        job = c.submit_file(self.job_file(), ["n_steps=1000000"], elektronn=self.elektronn)
        self.assertRegex(job.name, r"^jobs/\d{6}$")
        self.assertEqual(job.spec.training.n_steps, 1000000, "the --set override")
        self.assertEqual(job.spec.job_file_name, os.path.abspath(self.job_file()))
        number = int(job.name.removeprefix("jobs/"))
        self.assertEqual(c.get(number).name, job.name)
        self.assertEqual(c.get(str(number)).name, job.name)
        self.assertIn(job.name, [j.name for j in c.list()])

        # Events: state changes, then progress; stop at the first status past step 0.
        states, last = [], None
        for event in c.watch(job, timeout=DEADLINE_S):
            kind = event.WhichOneof("kind")
            if kind == "state":
                states.append(ek.JobState.Name(event.state))
            if kind == "status" and event.status.step > 0:
                last = event
                break
        self.assertIsNotNone(last, "the stream ended without a status event")
        self.assertIn("RUNNING", states)
        self.assertAlmostEqual(last.status.learning_rate, 5e-3, delta=1e-9)
        self.assertEqual(c.get(job).state, ek.jobs_pb2.RUNNING)

        # lr through UpdateHyperparameters: only the masked field changes.
        before = c.hyperparameters(job)
        self.assertAlmostEqual(before.learning_rate, 5e-3, delta=1e-9)
        after = c.set_hyperparameters(job, lr=1e-5)
        self.assertAlmostEqual(after.learning_rate, 1e-5, delta=1e-12)
        read = c.hyperparameters(job)
        self.assertAlmostEqual(read.learning_rate, 1e-5, delta=1e-12)
        self.assertAlmostEqual(read.momentum, before.momentum, delta=1e-12)
        self.assertAlmostEqual(read.beta2, before.beta2, delta=1e-12)
        self.assertAlmostEqual(read.weight_decay, before.weight_decay, delta=1e-12)
        self.assertGreaterEqual(read.step, after.step)
        # ... and training runs with it: a later status event reports it.
        for event in c.watch(job, from_sequence=last.sequence + 1, timeout=DEADLINE_S):
            if event.WhichOneof("kind") == "status" and event.status.step > read.step:
                self.assertAlmostEqual(event.status.learning_rate, 1e-5, delta=1e-12)
                break
        else:
            self.fail("no status event after the lr change")

        # mixing (the AggregateLoss weights, one here: 1 in the job file) changes alone too.
        self.assertAlmostEqual(read.mixing, 1.0, delta=1e-9)
        mixed = c.set_hyperparameters(job, mixing=0.25)
        self.assertAlmostEqual(mixed.mixing, 0.25, delta=1e-9)
        self.assertAlmostEqual(mixed.learning_rate, 1e-5, delta=1e-12)
        self.assertAlmostEqual(c.hyperparameters(job).mixing, 0.25, delta=1e-9)

        # The model: parameters as numpy arrays, read and written.
        params = c.parameters(job)
        self.assertTrue(params)
        p = params[0]
        w = c.get_parameter(job, p.node, p.param)
        self.assertIsInstance(w, np.ndarray)
        self.assertEqual(w.dtype, np.float32)
        self.assertEqual(w.shape, tuple(p.shape))
        self.assertGreater(w.size, 1)
        self.assertTrue(np.isfinite(w).all())
        self.assertGreater(float(np.abs(w).max()), 0.0, "initialised weights are not all 0")
        target = np.linspace(-0.5, 0.5, w.size, dtype=np.float32).reshape(w.shape)
        info = c.set_parameter(job, p.node, p.param, target)
        self.assertEqual(tuple(info.shape), w.shape)
        # Training goes on with lr 1e-5: Adam moves each weight by about 1e-5 per step.
        np.testing.assert_allclose(c.get_parameter(job, p.node, p.param), target, atol=0.02)
        model = c.model(job)
        self.assertIn(p.node, [n.name for n in model.nodes])
        self.assertGreaterEqual(model.total_params, w.size)
        self.assertTrue(c.statistics(job, "gradients").tensors)
        path = os.path.join(self.dir, "export.h5")
        size = c.export_model(job, path)
        with open(path, "rb") as f:
            self.assertEqual(f.read(8), b"\x89HDF\r\n\x1a\n")
        self.assertEqual(os.path.getsize(path), size)
        self.assertIn(job.name, c.resources().running_jobs)

        # Cancel: the job ends CANCELLED; then it is in the wrong state for anything else.
        c.cancel(job)
        self.assertEqual(c.wait(job, timeout=DEADLINE_S).state, ek.jobs_pb2.CANCELLED)
        with self.assertRaises(ek.ElektronnError) as e:
            c.pause(job)
        self.assertEqual(e.exception.code, grpc.StatusCode.FAILED_PRECONDITION)
        self.assertEqual(e.exception.reason, "BAD_STATE")

    def test_errors_carry_status_and_reason(self) -> None:
        with self.assertRaises(ek.ElektronnError) as e:
            self.client.get(999999)
        self.assertEqual(e.exception.code, grpc.StatusCode.NOT_FOUND)
        self.assertEqual(e.exception.reason, "JOB_NOT_FOUND")
        self.assertIn("jobs/999999", str(e.exception))
        with ek.connect(self.client.host, token="wrong") as wrong:
            with self.assertRaises(ek.ElektronnError) as e:
                wrong.list()
        self.assertEqual(e.exception.code, grpc.StatusCode.UNAUTHENTICATED)
        self.assertEqual(e.exception.reason, "UNAUTHENTICATED")
        with self.assertRaises(ValueError):
            self.client.get("seven")
        with self.assertRaises(ValueError):
            self.client.set_hyperparameters(1)  # nothing to set

    def test_reservations(self) -> None:
        c = self.client
        r = c.reserve("py-a", gpus=1, ttl=60, owner="test_client")
        self.assertEqual(list(r.gpu_uuids), ["GPU-py-0"])
        self.assertEqual(r.state, ek.jobs_pb2.ACTIVE)
        self.assertEqual(c.reserve("py-a", gpus=1, ttl=60, owner="test_client").name, r.name)
        with self.assertRaises(ek.ElektronnError) as e:
            c.reserve("py-b", gpu_uuids=["GPU-py-0"], ttl=60)
        self.assertEqual(e.exception.code, grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(e.exception.reason, "GPU_BUSY")
        self.assertIn(r.name, [x.name for x in c.reservations()])
        renewed = c.renew_reservation(r, ttl=120)
        self.assertGreater(renewed.expire_time.ToNanoseconds(), r.expire_time.ToNanoseconds())

        # A job on the reservation, created paused with a deadline, started by resume().
        spec = ek.load_job_file(self.job_file(), ["n_steps=1000000"], elektronn=self.elektronn)
        job = c.submit(spec, reservation=r, start_paused=True, resume_by=time.time() + 60)
        self.assertEqual(job.state, ek.jobs_pb2.PAUSED)
        self.assertEqual(job.reservation, r.name)
        self.assertTrue(job.HasField("resume_by"))
        self.assertEqual(c.reservation(r).state, ek.jobs_pb2.CONSUMED)
        c.resume(job)
        c.cancel(job)
        self.assertEqual(c.wait(job, timeout=DEADLINE_S).state, ek.jobs_pb2.CANCELLED)
        deadline = time.monotonic() + DEADLINE_S
        while c.reservation(r).state != ek.jobs_pb2.RELEASED and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(c.reservation(r).state, ek.jobs_pb2.RELEASED)

        other = c.reserve("py-c", gpus=1, ttl=60)
        self.assertEqual(c.release_reservation(other.name).state, ek.jobs_pb2.RELEASED)
        self.assertEqual(c.release_reservation(other).state, ek.jobs_pb2.RELEASED)  # idempotent

    def test_spec_of_job_files(self) -> None:
        spec = ek.load_job_file(self.job_file(), ["n_steps=777"], elektronn=self.elektronn)
        self.assertEqual(spec.training.n_steps, 777)
        self.assertEqual(spec.training.optimiser, "Adam")
        self.assertTrue(spec.model.nodes)
        out = os.path.join(self.dir, "job.spec")
        subprocess.run([self.elektronn, "spec", self.job_file(), "--set", "n_steps=777", "-o",
                        out], check=True, timeout=DEADLINE_S)
        with open(out, "rb") as f:
            self.assertEqual(ek.training_pb2.JobSpec.FromString(f.read()), spec)
        # A data path outside the daemon's data directory: refused with the spec's reason.
        spec.training.batch_creator_image.d_path = "/etc/"
        with self.assertRaises(ek.ElektronnError) as e:
            self.client.submit(spec)
        self.assertEqual(e.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(e.exception.reason, "INVALID_JOB_SPEC")
        broken = os.path.join(self.dir, "broken.lua")
        with open(broken, "w", encoding="utf-8") as f:
            f.write("n_steps = = 3\n")
        with self.assertRaises(ek.ElektronnError) as e:
            ek.load_job_file(broken, elektronn=self.elektronn)
        self.assertIn("broken.lua", str(e.exception))


if __name__ == "__main__":
    unittest.main()
