"""Lua job files as JobSpecs: `elektronn spec` runs the Lua (Python cannot) and prints the spec."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable

from ._stubs import training_pb2
from .errors import ElektronnError, from_exit_code


def load_job_file(path: str | os.PathLike[str], overrides: Iterable[str] = (),
                  elektronn: str = "elektronn",
                  timeout: float | None = 120.0) -> training_pb2.JobSpec:
    """The JobSpec that `elektronn submit PATH --set K=V...` would send.

    `overrides` are "key=value" strings as for `--set` (e.g. "n_steps=500", "lr=1e-4");
    `elektronn` is the client binary (a path, or a name looked up in $PATH)."""
    command = [elektronn, "spec", os.fspath(path)]
    for kv in overrides:
        command += ["--set", kv]
    try:
        run = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError as e:
        raise ElektronnError(
            f"cannot run '{elektronn}' to read the job file: {e.strerror}; pass "
            "elektronn='/path/to/elektronn' or put it on $PATH") from None
    except subprocess.TimeoutExpired:
        raise ElektronnError(f"'{' '.join(command)}' did not finish within {timeout} s") from None
    if run.returncode != 0:
        text = run.stderr.decode("utf-8", "replace").strip()
        lines = [line.removeprefix("error: ") for line in text.splitlines()]
        raise from_exit_code(run.returncode,
                             "\n".join(lines) or f"elektronn spec exited with {run.returncode}")
    if run.stderr:  # the job file's print() output, as `elektronn submit` shows it
        sys.stderr.write(run.stderr.decode("utf-8", "replace"))
    return training_pb2.JobSpec.FromString(run.stdout)
