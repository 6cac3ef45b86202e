"""The generated protobuf and gRPC modules of proto/elektronn/v1, imported from the build tree."""

import os
import sys

# The build (python/CMakeLists.txt) generates the stubs into _gen/ next to this file. Their own
# imports read `from elektronn.v1 import tensor_pb2`, so _gen must be a root on sys.path.
_GEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_gen")
if not os.path.isdir(os.path.join(_GEN, "elektronn", "v1")):
    raise ImportError(
        f"elektronn_client: no generated stubs in {_GEN}. Import the package from the build "
        "tree (PYTHONPATH=build/<preset>/python) after building the target elektronn_python.")
if _GEN not in sys.path:
    sys.path.insert(0, _GEN)

# pylint: disable=wrong-import-position
from elektronn.v1 import control_pb2, control_pb2_grpc  # noqa: E402
from elektronn.v1 import jobs_pb2, jobs_pb2_grpc  # noqa: E402
from elektronn.v1 import model_pb2, tensor_pb2, training_pb2  # noqa: E402
from elektronn.v1 import shell_pb2, shell_pb2_grpc  # noqa: E402

__all__ = ["control_pb2", "control_pb2_grpc", "jobs_pb2", "jobs_pb2_grpc", "model_pb2",
           "shell_pb2", "shell_pb2_grpc", "tensor_pb2", "training_pb2"]
