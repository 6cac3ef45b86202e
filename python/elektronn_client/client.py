"""connect() to an elektronnd and the Client: typed helpers for its Jobs, Trainer, Model and Host
services, with host, token and TLS found as the C++ client finds them (client/connection.cc)."""

from __future__ import annotations

import math
import os
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Union

import grpc
import numpy as np

from ._stubs import control_pb2, control_pb2_grpc, jobs_pb2, jobs_pb2_grpc, tensor_pb2, training_pb2
from .errors import ElektronnError, from_rpc_error
from .jobfile import load_job_file

DEFAULT_HOST = "127.0.0.1:7077"
FINAL_STATES = frozenset({jobs_pb2.SUCCEEDED, jobs_pb2.FAILED, jobs_pb2.CANCELLED})
CHUNK_BYTES = 1 << 20  # the daemon's chunk size; requests may be at most 4 MiB

# A job: its number (7), its name as a string ("7", "jobs/000007") or the Job message.
JobRef = Union[int, str, jobs_pb2.Job]
# A reservation: its name ("reservations/000001") or the Reservation message.
ReservationRef = Union[str, jobs_pb2.Reservation]

_DTYPES = {
    tensor_pb2.FLOAT32: np.dtype("<f4"),
    tensor_pb2.INT16: np.dtype("<i2"),
    tensor_pb2.INT32: np.dtype("<i4"),
    tensor_pb2.INT64: np.dtype("<i8"),
    tensor_pb2.UINT8: np.dtype("u1"),
}
_STATISTICS = {
    "parameters": control_pb2.PARAMETERS,
    "gradients": control_pb2.GRADIENTS,
    "activations": control_pb2.ACTIVATIONS,
}


def job_name(job: JobRef) -> str:
    """"jobs/000007" for 7, "7", "jobs/7", "jobs/000007" or a Job (elektronnd pads to 6 digits)."""
    if isinstance(job, jobs_pb2.Job):
        return job.name
    if isinstance(job, bool) or not isinstance(job, (int, str)):
        raise TypeError(f"a job is an int, a str or a Job, not {type(job).__name__}")
    ident = str(job).removeprefix("jobs/")
    if not (ident.isascii() and ident.isdigit()):
        raise ValueError(f"{job!r} is not a job name: expected jobs/ID or ID, e.g. jobs/7 or 7")
    return f"jobs/{int(ident):06d}"


def reservation_name(reservation: ReservationRef) -> str:
    """ "reservations/000001" for that name or a Reservation."""
    if isinstance(reservation, jobs_pb2.Reservation):
        return reservation.name
    return str(reservation)


def default_token_file() -> str:
    """$XDG_STATE_HOME/elektronnd/token, else ~/.local/state/elektronnd/token."""
    state = os.environ.get("XDG_STATE_HOME")
    base = state if state else os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "elektronnd", "token")


def resolve_token(token: str | None = None,
                  token_file: str | os.PathLike[str] | None = None) -> str:
    """`token`, else $ELEKTRONN_TOKEN, else the first line of the token file."""
    if token:
        return token
    if os.environ.get("ELEKTRONN_TOKEN"):
        return os.environ["ELEKTRONN_TOKEN"]
    path = os.fspath(token_file) if token_file else default_token_file()
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
            mode = os.fstat(f.fileno()).st_mode
    except OSError as e:
        raise ElektronnError(
            f"no token: cannot read the token file '{path}' ({e.strerror}); pass "
            "token_file='<state-dir>/token' (elektronnd writes it there), token=..., or set "
            "ELEKTRONN_TOKEN", grpc.StatusCode.UNAUTHENTICATED) from None
    first = text.split("\n", 1)[0].strip()
    if not first:
        raise ElektronnError(f"the token file '{path}' is empty", grpc.StatusCode.UNAUTHENTICATED)
    if mode & 0o077:
        warnings.warn(f"token file '{path}' is accessible by group or others (mode "
                      f"{mode & 0o7777:04o}); anyone who can read it controls the daemon's jobs. "
                      f"Restrict it with: chmod 600 '{path}'", stacklevel=3)
    return first


def is_loopback(host: str) -> bool:
    """True for "unix:..." targets, localhost and 127.0.0.0/8 or ::1 addresses."""
    if host.startswith(("unix:", "unix-abstract:")):
        return True
    h = host
    for scheme in ("dns:///", "ipv4:", "ipv6:"):
        h = h.removeprefix(scheme)
    if h.startswith("["):
        h = h[1:].split("]", 1)[0]
    elif h.count(":") == 1:
        h = h.split(":", 1)[0]
    h = h.lower()
    return h in ("localhost", "::1") or h.startswith("127.")


def connect(host: str | None = None, token: str | None = None,
            token_file: str | os.PathLike[str] | None = None,
            tls_ca: str | os.PathLike[str] | None = None, insecure: bool = False,
            timeout: float = 30.0) -> Client:
    """A Client of the elektronnd at `host` (default $ELEKTRONN_HOST, else 127.0.0.1:7077;
    "unix:/path" works too). The token is `token`, else $ELEKTRONN_TOKEN, else the first line
    of `token_file` (default ~/.local/state/elektronnd/token). `tls_ca` is the PEM file of the
    CA that signed the daemon's certificate; without it only loopback hosts are dialled, unless
    `insecure` (the token then travels in clear). `timeout`: seconds per unary call."""
    host = host or os.environ.get("ELEKTRONN_HOST") or DEFAULT_HOST
    secret = resolve_token(token, token_file)
    if tls_ca:
        try:
            with open(tls_ca, "rb") as f:
                pem = f.read()
        except OSError as e:
            raise ElektronnError(f"tls_ca: cannot read the PEM file '{os.fspath(tls_ca)}' "
                                 f"({e.strerror})", grpc.StatusCode.INVALID_ARGUMENT) from None
        channel = grpc.secure_channel(host, grpc.ssl_channel_credentials(root_certificates=pem))
    elif is_loopback(host) or insecure:
        channel = grpc.insecure_channel(host)
    else:
        raise ElektronnError(
            f"refusing a plaintext connection to the non-loopback host '{host}': the token would "
            "travel unencrypted. Pass tls_ca='ca.pem' (the CA of the daemon's certificate), or "
            "insecure=True if the network is trusted", grpc.StatusCode.INVALID_ARGUMENT)
    return Client(channel, host, secret, timeout)


class Client:
    """One daemon: jobs (submit, get, list, pause, resume, cancel, watch, wait), a running job's
    trainer (hyperparameters, set_hyperparameters) and model (model, parameters, get_parameter,
    set_parameter, statistics, export_model), and the host (resources). Jobs are given as 7,
    "7", "jobs/000007" or a Job. Failed calls raise ElektronnError."""

    def __init__(self, channel: grpc.Channel, host: str, token: str,
                 timeout: float = 30.0) -> None:
        self.host = host
        self.timeout = timeout
        self._channel = channel
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._jobs = jobs_pb2_grpc.JobsStub(channel)
        self._hosts = jobs_pb2_grpc.HostStub(channel)
        self._reservations = jobs_pb2_grpc.ReservationsStub(channel)
        self._trainer = control_pb2_grpc.TrainerStub(channel)
        self._model = control_pb2_grpc.ModelStub(channel)

    def __repr__(self) -> str:
        return f"elektronn_client.Client({self.host!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channel (and any stream still open on it)."""
        self._channel.close()

    # ---- Calls ----

    def _unary(self, method: Callable[..., Any], request: Any,
               timeout: float | None = None) -> Any:
        try:
            return method(request, metadata=self._metadata, timeout=timeout or self.timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e, self.host) from None

    def _stream(self, method: Callable[..., Any], request: Any,
                timeout: float | None) -> Iterator[Any]:
        call = method(request, metadata=self._metadata, timeout=timeout)
        try:
            yield from call
        except grpc.RpcError as e:
            raise from_rpc_error(e, self.host) from None
        finally:
            call.cancel()  # a consumer that stops early ends the stream

    # ---- Jobs ----

    def submit(self, spec: training_pb2.JobSpec, request_id: str | None = None, *,
               reservation: ReservationRef | None = None, start_paused: bool = False,
               resume_by: float | None = None) -> jobs_pb2.Job:
        """Creates a job from a JobSpec. A retry with the same `request_id` returns the same
        job (default: a fresh random id). `reservation`: run it on that reservation of this
        daemon (it takes the reserved GPUs, threads and memory). `start_paused`: created
        PAUSED, it starts on resume(); with `resume_by` (Unix seconds) it is cancelled if not
        resumed by then."""
        request = jobs_pb2.CreateJobRequest(job=spec, request_id=request_id or uuid.uuid4().hex,
                                            start_paused=start_paused)
        if reservation is not None:
            request.reservation = reservation_name(reservation)
        if resume_by is not None:
            request.resume_by.FromNanoseconds(int(resume_by * 1e9))
        return self._unary(self._jobs.CreateJob, request)

    def submit_file(self, path: str | os.PathLike[str], overrides: Iterable[str] = (),
                    request_id: str | None = None, elektronn: str = "elektronn") -> jobs_pb2.Job:
        """`elektronn submit PATH --set K=V...`: the Lua job file runs here through the
        `elektronn` binary (see load_job_file), the spec goes to the daemon."""
        return self.submit(load_job_file(path, overrides, elektronn), request_id)

    def get(self, job: JobRef) -> jobs_pb2.Job:
        """The job, with its state, step and loss."""
        return self._unary(self._jobs.GetJob, jobs_pb2.GetJobRequest(name=job_name(job)))

    def list(self, page_size: int = 100) -> list[jobs_pb2.Job]:
        """All jobs (every page)."""
        jobs: list[jobs_pb2.Job] = []
        request = jobs_pb2.ListJobsRequest(page_size=page_size)
        while True:
            response = self._unary(self._jobs.ListJobs, request)
            jobs.extend(response.jobs)
            if not response.next_page_token:
                return jobs
            request.page_token = response.next_page_token

    def pause(self, job: JobRef) -> jobs_pb2.Job:
        """Checkpoints a running job and stops it at the next step boundary."""
        return self._unary(self._jobs.PauseJob, jobs_pb2.PauseJobRequest(name=job_name(job)))

    def resume(self, job: JobRef) -> jobs_pb2.Job:
        """Restarts a paused job from its checkpoint."""
        return self._unary(self._jobs.ResumeJob, jobs_pb2.ResumeJobRequest(name=job_name(job)))

    def cancel(self, job: JobRef) -> jobs_pb2.Job:
        """Stops a job for good."""
        return self._unary(self._jobs.CancelJob, jobs_pb2.CancelJobRequest(name=job_name(job)))

    def watch(self, job: JobRef, from_sequence: int = 0, follow: bool = True,
              timeout: float | None = None) -> Iterator[jobs_pb2.JobEvent]:
        """The job's events from `from_sequence` on (0: all stored), then, if `follow`, live
        ones until the job ends. Each event has one of `state`, `log_line` or `status` (a
        StatusUpdate with step, loss, learning_rate, ...): `event.WhichOneof("kind")`.
        `timeout`: seconds for the whole stream (None: no limit). Breaking out of the loop
        ends the stream."""
        request = jobs_pb2.WatchJobRequest(name=job_name(job), from_sequence=from_sequence,
                                           follow=follow)
        return self._stream(self._jobs.WatchJob, request, timeout)

    def wait(self, job: JobRef, timeout: float | None = None) -> jobs_pb2.Job:
        """Blocks until the job is SUCCEEDED, FAILED or CANCELLED (or `timeout` seconds pass:
        ElektronnError DEADLINE_EXCEEDED) and returns it."""
        current = self.get(job)
        if current.state not in FINAL_STATES:
            for event in self.watch(current, timeout=timeout):
                if event.WhichOneof("kind") == "state" and event.state in FINAL_STATES:
                    break
        return self.get(job)

    # ---- Trainer (a running job) ----

    def hyperparameters(self, job: JobRef) -> control_pb2.Hyperparameters:
        """The live hyper-parameters, read at a step boundary (`step` says which)."""
        request = control_pb2.GetHyperparametersRequest(name=job_name(job))
        return self._unary(self._trainer.GetHyperparameters, request)

    def set_hyperparameters(self, job: JobRef, *, lr: float | None = None,
                            momentum: float | None = None, weight_decay: float | None = None,
                            beta2: float | None = None, dropout_rate: float | None = None,
                            gradnet_rate: float | None = None,
                            history_freq: int | None = None,
                            mixing: float | None = None) -> control_pb2.Hyperparameters:
        """Changes the given hyper-parameters (only those) at the next step boundary and
        returns all of them as they are then. `mixing` is ELEKTRONN2's model.mixing as one
        number: the first AggregateLoss node's weights are all set to it when they are equal,
        else scaled together so that the first one becomes it (FAILED_PRECONDITION when the
        model has no AggregateLoss)."""
        values = {"learning_rate": lr, "momentum": momentum, "weight_decay": weight_decay,
                  "beta2": beta2, "dropout_rate": dropout_rate, "gradnet_rate": gradnet_rate,
                  "history_freq": history_freq, "mixing": mixing}
        request = control_pb2.UpdateHyperparametersRequest(name=job_name(job))
        for path, value in values.items():
            if value is not None:
                setattr(request.hyperparameters, path, value)
                request.update_mask.paths.append(path)
        if not request.update_mask.paths:
            raise ValueError("set_hyperparameters needs at least one of lr, momentum, "
                             "weight_decay, beta2, dropout_rate, gradnet_rate, history_freq, "
                             "mixing")
        return self._unary(self._trainer.UpdateHyperparameters, request)

    # ---- Model (a running job) ----

    def model(self, job: JobRef) -> control_pb2.ModelInfo:
        """The network: each node's op, shape, field of view and parameter count."""
        return self._unary(self._model.GetModel, control_pb2.GetModelRequest(name=job_name(job)))

    def parameters(self, job: JobRef) -> list[control_pb2.ParameterInfo]:
        """Every parameter tensor: node, param ("w", "b", ...), shape, trainable."""
        request = control_pb2.ListParametersRequest(name=job_name(job))
        return list(self._unary(self._model.ListParameters, request).parameters)

    def get_parameter(self, job: JobRef, node: str, param: str,
                      timeout: float | None = None) -> np.ndarray:
        """One parameter tensor as a numpy array (a copy, read at a step boundary)."""
        request = control_pb2.GetParameterRequest(name=job_name(job), node=node, param=param)
        return _to_array(self._stream(self._model.GetParameter, request,
                                      timeout or self.timeout))

    def set_parameter(self, job: JobRef, node: str, param: str,
                      value: np.ndarray) -> control_pb2.ParameterInfo:
        """Replaces a parameter tensor at the next step boundary; `value` must have its shape
        (see parameters()) and is sent as float32."""
        name = job_name(job)
        array = np.ascontiguousarray(value, dtype="<f4")
        data = array.tobytes()

        def chunks() -> Iterator[control_pb2.SetParameterChunk]:
            first = control_pb2.SetParameterChunk(name=name, node=node, param=param)
            first.chunk.tensor.shape.extend(array.shape)
            first.chunk.tensor.dtype = tensor_pb2.FLOAT32
            first.chunk.data = data[:CHUNK_BYTES]
            yield first
            for start in range(CHUNK_BYTES, len(data), CHUNK_BYTES):
                yield control_pb2.SetParameterChunk(
                    chunk=control_pb2.TensorChunk(data=data[start:start + CHUNK_BYTES]))

        return self._unary(self._model.SetParameter, chunks())

    def statistics(self, job: JobRef, kind: str = "parameters") -> control_pb2.Statistics:
        """Mean, std, median |x| and non-finite count per tensor of the "parameters",
        "gradients" or "activations"."""
        if kind not in _STATISTICS:
            raise ValueError(f"kind is one of {', '.join(_STATISTICS)}, not {kind!r}")
        request = control_pb2.GetStatisticsRequest(name=job_name(job), kind=_STATISTICS[kind])
        return self._unary(self._model.GetStatistics, request)

    def export_model(self, job: JobRef, path: str | os.PathLike[str],
                     timeout: float | None = None) -> int:
        """Writes the running model (HDF5, with optimiser state) to `path`; returns its size."""
        request = control_pb2.ExportModelRequest(name=job_name(job))
        partial = os.fspath(path) + ".part"  # no half-written model under `path`
        size = 0
        try:
            with open(partial, "wb") as f:
                for chunk in self._stream(self._model.ExportModel, request,
                                          timeout or max(self.timeout, 300.0)):
                    f.write(chunk.data)
                    size += len(chunk.data)
            os.replace(partial, path)
        finally:
            if os.path.exists(partial):
                os.remove(partial)
        return size

    # ---- Host ----

    def resources(self) -> jobs_pb2.Resources:
        """The daemon's host: CPUs, load, memory, disk, GPUs, running jobs, capacity."""
        return self._unary(self._hosts.GetResources, jobs_pb2.GetResourcesRequest())

    # ---- Reservations (what elektronn-sched uses for a gang start) ----

    def reserve(self, request_id: str, *, gpus: int = 0, gpu_uuids: Iterable[str] = (),
                cpu_threads: int = 0, memory_bytes: int = 0, ttl: float = 30.0,
                owner: str = "") -> jobs_pb2.Reservation:
        """Leases resources for a coming job: `gpus` free GPUs, or the GPUs `gpu_uuids`, plus
        CPU threads and memory, for `ttl` seconds unless renewed. A retry with the same
        `request_id` returns the same reservation. RESOURCE_EXHAUSTED (reason GPU_BUSY,
        CAPACITY, CPU_THREADS or MEMORY) names what is taken."""
        request = jobs_pb2.ReserveRequest(
            request_id=request_id, owner=owner,
            resources=jobs_pb2.ReservationResources(gpu_count=gpus, gpu_uuids=list(gpu_uuids),
                                                    cpu_threads=cpu_threads,
                                                    memory_bytes=memory_bytes))
        request.ttl.FromNanoseconds(int(ttl * 1e9))
        return self._unary(self._reservations.Reserve, request)

    def renew_reservation(self, reservation: ReservationRef,
                          ttl: float = 30.0) -> jobs_pb2.Reservation:
        """Moves the lease's end to `ttl` seconds from now."""
        request = jobs_pb2.RenewReservationRequest(name=reservation_name(reservation))
        request.ttl.FromNanoseconds(int(ttl * 1e9))
        return self._unary(self._reservations.RenewReservation, request)

    def release_reservation(self, reservation: ReservationRef) -> jobs_pb2.Reservation:
        """Ends a reservation that no job consumed (idempotent)."""
        return self._unary(self._reservations.ReleaseReservation,
                           jobs_pb2.ReleaseReservationRequest(name=reservation_name(reservation)))

    def reservation(self, reservation: ReservationRef) -> jobs_pb2.Reservation:
        """One reservation, in whatever state it is."""
        return self._unary(self._reservations.GetReservation,
                           jobs_pb2.GetReservationRequest(name=reservation_name(reservation)))

    def reservations(self, include_ended: bool = False) -> list[jobs_pb2.Reservation]:
        """The reservations that hold resources now (and the ended ones, if asked)."""
        response = self._unary(self._reservations.ListReservations,
                               jobs_pb2.ListReservationsRequest(include_ended=include_ended))
        return list(response.reservations)


def _to_array(chunks: Iterable[control_pb2.TensorChunk]) -> np.ndarray:
    """Reassembles a TensorChunk stream: the first chunk's header, every chunk's bytes."""
    header: tensor_pb2.Tensor | None = None
    data = bytearray()
    for chunk in chunks:
        if chunk.HasField("tensor"):
            if header is None:
                header = chunk.tensor
            data += chunk.tensor.data
        data += chunk.data
    if header is None:
        raise ElektronnError("the tensor stream carried no header", grpc.StatusCode.DATA_LOSS)
    dtype = _DTYPES.get(header.dtype)
    if dtype is None:
        raise ElektronnError(f"unknown tensor dtype {header.dtype}", grpc.StatusCode.DATA_LOSS)
    shape = tuple(header.shape)
    if math.prod(shape) * dtype.itemsize != len(data):
        raise ElektronnError(f"a tensor of shape {shape} and dtype {dtype} needs "
                             f"{math.prod(shape) * dtype.itemsize} bytes; the stream carried "
                             f"{len(data)}", grpc.StatusCode.DATA_LOSS)
    return np.frombuffer(data, dtype=dtype).reshape(shape)
