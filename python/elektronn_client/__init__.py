"""elektronn_client: Python client of elektronnd (ELEKTRONN's training daemon), for notebooks.

    import elektronn_client as ek
    c = ek.connect("127.0.0.1:7077")              # token: $ELEKTRONN_TOKEN or the token file
    job = c.submit_file("job.lua", ["n_steps=5000"])
    c.set_hyperparameters(job, lr=1e-4)
    w = c.get_parameter(job, "conv1", "w")          # a numpy array

The generated messages are re-exported: `ek.training_pb2.JobSpec`, `ek.jobs_pb2.Job`, ...
"""

from ._stubs import control_pb2, jobs_pb2, model_pb2, tensor_pb2, training_pb2
from .client import (DEFAULT_HOST, FINAL_STATES, Client, JobRef, connect, default_token_file,
                     is_loopback, job_name, resolve_token)
from .errors import ElektronnError
from .jobfile import load_job_file

JobState = jobs_pb2.JobState  # JobState.Name(job.state) == "RUNNING"

__all__ = [
    "DEFAULT_HOST", "FINAL_STATES", "Client", "ElektronnError", "JobRef", "JobState", "connect",
    "control_pb2", "default_token_file", "is_loopback", "job_name", "jobs_pb2", "load_job_file",
    "model_pb2", "resolve_token", "tensor_pb2", "training_pb2",
]
