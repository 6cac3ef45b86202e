"""A model file's network (spec + parameters, read with h5py) rebuilt in PyTorch, for the
fidelity test (tests/python/test_torch_fidelity.py) and the dense-prediction benchmark
(bench/neuro3d_pytorch.py), so both read the file the same way.

Layouts: our canonical conv weight is (out, in, kz, kx, ky) on logical b,f,z,x,y tensors, and our
convolution is a cross-correlation (kernels/README.md), which is exactly torch's conv3d: no
transpose, no flip.

Dense mode computes a strided net's stride-1 output in one pass, the PyTorch equivalent of
max-fragment-pooling (reference section 2.6): every max-pool slides with stride 1, and every
layer after a pooling dilates its convolution (and its own pooling window) by the product of
the pools before it, per axis. On an input of n voxels per axis the output has n - fov + 1,
the same as our MFP net's FragmentsToDense output for that input."""

from __future__ import annotations

import time

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from elektronn.v1 import model_pb2

ACTIVATIONS = {
    model_pb2.ACTIVATION_UNSPECIFIED: torch.relu,
    model_pb2.RELU: torch.relu,
    model_pb2.LIN: lambda x: x,
    model_pb2.TANH: torch.tanh,
    model_pb2.SIGMOID: torch.sigmoid,
}


def read_model_file(path: str, dtype=torch.float64, requires_grad: bool = False):
    """(spec, params) of a model file (engine/io/model_file.h); params keyed "node/param", in
    canonical layout."""
    with h5py.File(path, "r") as m:
        spec = model_pb2.ModelSpec.FromString(m["spec"][()].tobytes())
        params = {}
        for node, group in m["params"].items():
            for name, d in group.items():
                params[f"{node}/{name}"] = torch.tensor(
                    d[()].astype(np.float64), dtype=dtype, requires_grad=requires_grad)
    return spec, params


class TorchNet:
    """The spec's nodes as PyTorch operations, evaluated in spec order (dtype: the params')."""

    def __init__(self, spec: model_pb2.ModelSpec, params: dict[str, torch.Tensor],
                 dense: bool = False):
        self.spec = spec
        self.params = params
        self.dense = dense
        self.conv_flops = 0  # of the last forward: 2 per multiply-add, from the real shapes

    def param(self, node: str, name: str) -> torch.Tensor:
        return self.params[f"{node}/{name}"]

    def forward(self, feeds: dict[str, torch.Tensor], until: str | None = None,
                seconds: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
        """Values of the nodes up to and including `until` (all when None); `seconds`, when
        given, receives each node's time."""
        v: dict[str, torch.Tensor] = {}
        self.conv_flops = 0
        dilation: dict[str, list[int]] = {}  # dense mode: the spacing of a node's voxels
        for n in self.spec.nodes:
            t0 = time.perf_counter()
            op = n.WhichOneof("op")
            ins = [v[i] for i in n.inputs]
            if op in ("input", "input_like"):
                v[n.name] = feeds[n.name]
            elif op == "conv":
                d = dilation.get(n.inputs[0], [1] * len(n.conv.filter_shape))
                v[n.name], dilation[n.name] = self.conv(n, ins[0], d)
            elif op == "softmax":
                f = ins[0].shape[1]
                n_indep = n.softmax.n_indep or 1
                n_class = n.softmax.n_class or f // n_indep
                x = ins[0].reshape(ins[0].shape[0], n_indep, n_class, *ins[0].shape[2:])
                v[n.name] = torch.softmax(x, dim=2).reshape(ins[0].shape)
            elif op == "multinoulli_nll":
                v[n.name] = self.nll(n, ins[0], ins[1])
            elif op == "aggregate_loss":
                w = list(n.aggregate_loss.mixing_weights) or [1.0] * len(ins)
                v[n.name] = sum(wi * x.mean() for wi, x in zip(w, ins)) / len(ins)
            elif op == "errors":
                continue  # not differentiable, not compared
            else:
                raise NotImplementedError(f"node '{n.name}': op {op} has no PyTorch rebuild here")
            if op != "conv" and n.inputs and n.inputs[0] in dilation:
                dilation[n.name] = dilation[n.inputs[0]]  # element-wise ops keep the spacing
            if seconds is not None:
                seconds[n.name] = time.perf_counter() - t0
            if n.name == until:
                break
        return v

    def conv(self, n, x: torch.Tensor, dilation: list[int]) -> tuple[torch.Tensor, list[int]]:
        """The node's output and, in dense mode, the dilation of the nodes after it."""
        c = n.conv
        if c.dropout_rate != 0 or (c.mfp and not self.dense):
            raise NotImplementedError(f"Conv '{n.name}': mfp/dropout not rebuilt here")
        k = list(c.filter_shape)
        pad = {model_pb2.VALID: [0] * len(k), model_pb2.SAME: [f // 2 for f in k],
               model_pb2.FULL: [f - 1 for f in k]}[c.conv_mode]
        if self.dense and c.conv_mode != model_pb2.VALID:
            raise NotImplementedError(f"Conv '{n.name}': dense mode rebuilds valid convs only")
        w, b = self.param(n.name, "w"), self.param(n.name, "b")
        y = F.conv3d(x, w, b, padding=pad, dilation=dilation if self.dense else 1)
        self.conv_flops += 2 * y.numel() * w[0].numel()
        pool = list(c.pool_shape) or [1] * len(k)
        if any(p > 1 for p in pool):
            if self.dense:
                y = F.max_pool3d(y, kernel_size=pool, stride=1, dilation=dilation)
                dilation = [d * p for d, p in zip(dilation, pool)]
            else:
                y = F.max_pool3d(y, kernel_size=pool, stride=pool)
        return ACTIVATIONS[c.activation](y), dilation

    @staticmethod
    def nll(n, p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """engine/nodes/losses.cc + the CPU backend: per voxel -sum_c w_c t_c log(p_c + 1e-5),
        scaled so that its mean over all voxels is the sum over labelled ones / n_labelled."""
        o = n.multinoulli_nll
        if not o.target_is_sparse:
            raise NotImplementedError("dense targets not rebuilt here")
        b, f = p.shape[:2]
        n_class = f  # n_indep = 1 (neuro3d_lite); checked against the softmax by shape
        labels = t[:, 0]
        labelled = (labels >= 0) & (labels < n_class)
        onehot = torch.zeros_like(p)
        idx = labels.clamp(min=0).long().unsqueeze(1)
        onehot.scatter_(1, idx, 1.0)
        onehot = onehot * labelled.unsqueeze(1)
        cw = torch.tensor(list(o.class_weights) or [1.0] * n_class, dtype=p.dtype)
        per_voxel = -(onehot * cw.view(1, -1, 1, 1, 1) * torch.log(p + 1e-5)).sum(1, keepdim=True)
        rows = per_voxel.numel()
        scale = rows * f / (labelled.sum().item() + 1e-5) / n_class
        return scale * per_voxel
