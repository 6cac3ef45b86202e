"""Fidelity against PyTorch: neuro3d_lite as exported by tests/tools/fidelity_export (model file,
one batch, our forward output, loss and parameter gradients) is rebuilt in PyTorch from the model
file alone (spec + parameters, read with h5py) and must agree: forward within 1e-4 and gradients
within 1e-3, each as max |ours - torch| / max |torch| per tensor, with torch in float64.

Layouts: our canonical conv weight is (out, in, kz, kx, ky) on logical b,f,z,x,y tensors, and our
convolution is a cross-correlation (kernels/README.md), which is exactly torch's conv3d: no
transpose, no flip. (ELEKTRONN2's Theano convs were true convolutions; importing its weights
flips them, which is not what this test is about.)"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import unittest

# Missing test dependencies (python3-torch, python3-h5py, python3-numpy, the generated protos)
# fail the test: never skipped.
import h5py
import numpy as np
import torch

from torch_model import TorchNet, read_model_file

FORWARD_TOL = 1e-4
GRAD_TOL = 1e-3


def binary(variable: str) -> str:
    path = os.environ.get(variable, "")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"${variable} must name the built fidelity_export (got {path!r})")
    return path


def normalised_error(ours: np.ndarray, ref: np.ndarray) -> float:
    scale = float(np.abs(ref).max())
    return float(np.abs(ours.astype(np.float64) - ref).max()) / (scale if scale > 0 else 1.0)


class TorchFidelityTest(unittest.TestCase):
    def test_neuro3d_lite_forward_and_gradients_match_pytorch(self):
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
        with tempfile.TemporaryDirectory() as out:
            subprocess.run([binary("ELK_FIDELITY_EXPORT_BIN"), out], check=True, timeout=120)
            spec, params = read_model_file(os.path.join(out, "model.h5"), torch.float64,
                                           requires_grad=True)
            with h5py.File(os.path.join(out, "reference.h5"), "r") as r:
                x = r["input"][()]
                t = r["target"][()]
                probs = r["probs"][()]
                loss = float(r["loss"][()])
                grads = {f"{node}/{name}": d[()] for node, g in r["grads"].items()
                         for name, d in g.items()}

        self.assertEqual(spec.name, "neuro3d_lite")
        n_conv = sum(1 for n in spec.nodes if n.HasField("conv"))
        self.assertEqual(n_conv, 7)
        self.assertEqual(set(grads), set(params))
        d = spec.designations
        net = TorchNet(spec, params)
        v = net.forward({d.input_node: torch.tensor(x, dtype=torch.float64),
                         d.target_node: torch.tensor(t, dtype=torch.float64)})
        torch_probs = v[d.prediction_node].detach().numpy()
        self.assertEqual(torch_probs.shape, probs.shape)
        fwd_err = normalised_error(probs, torch_probs)
        torch_loss = v[d.loss_node]
        loss_err = abs(loss - torch_loss.item()) / abs(torch_loss.item())
        torch_loss.backward()
        grad_errs = {k: normalised_error(grads[k], params[k].grad.numpy()) for k in sorted(params)}
        worst = max(grad_errs, key=grad_errs.get)
        print(f"forward max normalised error {fwd_err:.2e}, loss relative error {loss_err:.2e}, "
              f"worst gradient {worst} {grad_errs[worst]:.2e}", file=sys.stderr)
        for k, e in grad_errs.items():
            print(f"  grad {k:10s} {e:.2e}  (max |grad| "
                  f"{np.abs(params[k].grad.numpy()).max():.3e})", file=sys.stderr)
        self.assertLess(fwd_err, FORWARD_TOL)
        self.assertLess(loss_err, FORWARD_TOL)
        for k, e in grad_errs.items():
            self.assertGreater(np.abs(params[k].grad.numpy()).max(), 0, k)
            self.assertLess(e, GRAD_TOL, k)


if __name__ == "__main__":
    unittest.main()
