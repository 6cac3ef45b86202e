#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""PyTorch reference half of the neuro3d side-by-side benchmark.

Builds the ELEKTRONN2 ``examples/neuro3d.py`` network (reference section 9.1)
in NCDHW layout with plain PyTorch (CPU, float32) and times a training step
(forward, NLL loss, backward, Adam step) and/or a no-grad forward pass to
softmax probabilities.  Prints one JSON line per case on stdout, e.g.

    {"case": "neuro3d_train", "pytorch_ms": 581.2, "gflop": 123.4, ...}

``--case dense --work DIR`` predicts the volume DIR/raw.h5:/raw densely (stride 1) in one
pass with the weights of DIR/model.h5 (both written by ``neuro3d_dense_bench --case setup``):
the same net with stride-1 max-pools and dilated later layers (tests/python/torch_model.py),
timed in NCDHW and in channels_last_3d, the faster reported, and its probabilities compared
with ours (DIR/<--ours>, a Zarr array (c,z,x,y)) as the max absolute difference.

Run with Debian's python3-torch:  /usr/bin/python3 bench/neuro3d_pytorch.py
(dense: with the generated protos on PYTHONPATH, <build>/python/elektronn_client/_gen)
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# (n_f, kernel (kz, kx, ky), pool or None); the last layer is linear.
LAYERS = [
    (20, (1, 6, 6), (1, 2, 2)),
    (30, (1, 5, 5), (1, 2, 2)),
    (40, (1, 5, 5), None),
    (80, (4, 4, 4), (2, 1, 1)),
    (100, (3, 4, 4), None),
    (100, (3, 4, 4), None),
    (150, (2, 4, 4), None),
    (200, (1, 4, 4), None),
    (200, (1, 4, 4), None),
    (200, (1, 1, 1), None),
    (2, (1, 1, 1), None),
]


def build_net():
    mods, n_in = [], 1
    for i, (n_f, k, pool) in enumerate(LAYERS):
        mods.append(nn.Conv3d(n_in, n_f, k, bias=True))  # 'valid', no padding
        if i < len(LAYERS) - 1:
            mods.append(nn.ReLU())
        if pool is not None:
            mods.append(nn.MaxPool3d(pool, stride=pool))
        n_in = n_f
    return nn.Sequential(*mods)


class UNet3dLite(nn.Module):
    """examples/unet3d_lite.lua (reference section 9.5), UpConv family: valid ReLU convs,
    (1,2,2) max-pools, ConvTranspose3d with kernel = stride = pool and ReLU as UpConv, skip
    connections centre-cropped and concatenated AFTER the upsampled channels (section 2.9)."""

    K1, K3, P = (1, 3, 3), (3, 3, 3), (1, 2, 2)

    def __init__(self):
        super().__init__()
        k1, k3, p = self.K1, self.K3, self.P
        down = [(1, 32, k1), (32, 32, k1), (32, 64, k1), (64, 64, k1), (64, 128, k1),
                (128, 128, k1), (128, 256, k3), (256, 256, k3)]
        self.down = nn.ModuleList(nn.Conv3d(i, o, k) for i, o, k in down)
        # (low-res channels in, upconv channels, skip channels, mconv channels, mconv kernel)
        merges = [(256, 512, 128, 256, k1), (256, 256, 64, 128, k3), (128, 128, 32, 64, k3)]
        self.ups = nn.ModuleList(nn.ConvTranspose3d(i, u, p, stride=p) for i, u, _, _, _ in merges)
        self.mconvs = nn.ModuleList(
            nn.ModuleList([nn.Conv3d(u + s, m, k), nn.Conv3d(m, m, k)])
            for _, u, s, m, k in merges)
        self.barr = nn.Conv3d(64, 2, 1)

    @staticmethod
    def crop(t, like):
        d = [(a - b) // 2 for a, b in zip(t.shape[2:], like.shape[2:])]
        return t[:, :, d[0]:d[0] + like.shape[2], d[1]:d[1] + like.shape[3],
                 d[2]:d[2] + like.shape[4]]

    def forward(self, x):
        skips = []
        for i, conv in enumerate(self.down):
            x = F.relu(conv(x))
            if i in (1, 3, 5):
                skips.append(x)
                x = F.max_pool3d(x, self.P, stride=self.P)
        for up, (ca, cb), skip in zip(self.ups, self.mconvs, reversed(skips)):
            u = F.relu(up(x))
            x = torch.cat([u, self.crop(skip, u)], dim=1)
            x = F.relu(cb(F.relu(ca(x))))
        return self.barr(x)


def unet_flops(net, x):
    """Forward FLOPs of convolutions and transposed convolutions, first-layer FLOPs, output
    shape; a transposed convolution counts 2 * out_channels * in_channels * prod(kernel) per
    input voxel, as bench/neuro3d_bench.cc does."""
    flops = []

    def hook(m, inp, out):
        k = m.kernel_size[0] * m.kernel_size[1] * m.kernel_size[2]
        if isinstance(m, nn.ConvTranspose3d):
            flops.append(2 * inp[0].numel() * m.out_channels * k)
        else:
            flops.append(2 * out.numel() * m.in_channels * k)

    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))]
    with torch.no_grad():
        out = net(x)
    for h in handles:
        h.remove()
    return sum(flops), flops[0], list(out.shape)


def conv_flops(net, x):
    """Forward conv FLOPs and first-layer FLOPs, measured from real shapes."""
    total = first = 0
    with torch.no_grad():
        for m in net:
            x = m(x)
            if isinstance(m, nn.Conv3d):
                f = 2 * x.numel() * m.in_channels * m.kernel_size[0] \
                    * m.kernel_size[1] * m.kernel_size[2]
                first = first or f
                total += f
    return total, first, list(x.shape)


def bench(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def dense(a):
    """One-pass dense prediction of DIR/raw.h5 with DIR/model.h5, as JSON."""
    import h5py
    import numpy as np
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                    "..", "tests", "python"))
    from torch_model import TorchNet, read_model_file

    spec, params = read_model_file(os.path.join(a.work, "model.h5"), torch.float32)
    with h5py.File(os.path.join(a.work, "raw.h5"), "r") as f:
        raw = f["raw"][()]
    x = torch.from_numpy(raw.astype(np.float32) / 255).reshape(1, 1, *raw.shape)
    d = spec.designations
    result = {}
    formats = {"ncdhw": torch.contiguous_format, "channels_last_3d": torch.channels_last_3d}
    for fmt_name, fmt in formats.items():
        if a.memory_format not in ("both", fmt_name):
            continue
        p = {k: (t.contiguous(memory_format=fmt) if t.dim() == 5 else t) for k, t in params.items()}
        net = TorchNet(spec, p, dense=True)
        xf = x.contiguous(memory_format=fmt)

        def forward():
            with torch.no_grad():
                return net.forward({d.input_node: xf}, until=d.prediction_node)[d.prediction_node]

        for _ in range(a.warmup):
            forward()
        times, probs = [], None
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            probs = forward()
            times.append(time.perf_counter() - t0)
        result[fmt_name] = (statistics.median(times), probs, net.conv_flops)
    best = min(result, key=lambda k: result[k][0])
    seconds, probs, flops = result[best]
    if a.profile:  # per node, in the faster layout, to stderr
        fmt = torch.channels_last_3d if best == "channels_last_3d" else torch.contiguous_format
        p = {k: (t.contiguous(memory_format=fmt) if t.dim() == 5 else t) for k, t in params.items()}
        net, per_node = TorchNet(spec, p, dense=True), {}
        with torch.no_grad():
            net.forward({d.input_node: x.contiguous(memory_format=fmt)}, until=d.prediction_node,
                        seconds=per_node)
        for name, s in per_node.items():
            print(f"{name:10s} {s * 1e3:10.1f} ms", file=sys.stderr)
    probs = probs[0].contiguous().numpy()  # (c, z, x, y)
    out = {
        "case": "neuro3d_dense",
        "pytorch_s": round(seconds, 3),
        "voxels": int(np.prod(probs.shape[1:])),
        "vox_s": round(float(np.prod(probs.shape[1:])) / seconds, 1),
        "gflop": round(flops / 1e9, 1),
        "gflops": round(flops / 1e9 / seconds, 1),
        "memory_format": best,
        "seconds_per_format": {k: round(v[0], 3) for k, v in result.items()},
        "output": list(probs.shape),
        "threads": a.threads,
        "torch": torch.__version__,
    }
    ours_path = os.path.join(a.work, a.ours)
    if os.path.isdir(ours_path):
        import zarr
        ours = zarr.open(ours_path, mode="r")[...]
        out["compared_with"] = a.ours
        out["max_abs_diff"] = (float(np.abs(ours.astype(np.float64) - probs).max())
                               if ours.shape == probs.shape else
                               f"shapes differ: ours {list(ours.shape)}")
    print(json.dumps(out), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--case", choices=["train", "forward", "all", "dense"], default="all")
    ap.add_argument("--work", help="dense: the directory of neuro3d_dense_bench --case setup")
    ap.add_argument("--ours", default="pred.zarr", help="dense: our output in --work to compare")
    ap.add_argument("--profile", action="store_true", help="dense: per-node times to stderr")
    ap.add_argument("--memory-format", choices=["both", "ncdhw", "channels_last_3d"],
                    default="both", help="dense: the layouts to time (the faster counts)")
    ap.add_argument("--input", default="23,185,185", help="z,x,y")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--net", choices=["neuro3d", "unet3d_lite"], default="neuro3d")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="bf16: torch.autocast('cpu', bfloat16) with channels_last_3d tensors "
                         "(cases named <net>_<case>_bf16)")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.case == "dense":
        if not a.work:
            ap.error("--case dense needs --work DIR")
        return dense(a)
    zxy = [int(s) for s in a.input.split(",")]
    if a.net == "unet3d_lite":  # UpConv family
        zxy = [22, 140, 140] if a.input == "23,185,185" else zxy
        net = UNet3dLite().float()
        x = torch.randn(a.batch, 1, *zxy)
        fwd_flops, first_flops, out_shape = unet_flops(net, x)
    else:
        net = build_net().float()
        x = torch.randn(a.batch, 1, *zxy)
        fwd_flops, first_flops, out_shape = conv_flops(net, x)
    target = torch.randint(0, 2, [out_shape[0]] + out_shape[2:])
    opt = torch.optim.Adam(net.parameters(), lr=5e-4, betas=(0.9, 0.999), eps=1e-5)
    bf16 = a.precision == "bf16"
    suffix = "_bf16" if bf16 else ""
    if bf16:  # PyTorch's recommended CPU mixed precision: bf16 autocast, channels-last 3-D
        net = net.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)

    def run_net(inp):
        if not bf16:
            return net(inp)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(inp)
        return out.float()  # softmax, loss and everything reduced in fp32, as ours

    def train_step():
        loss = F.nll_loss(F.log_softmax(run_net(x), dim=1), target)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)

    def forward():
        with torch.no_grad():
            return F.softmax(run_net(x), dim=1)

    cases = {
        # forward + backward data + backward weights; no backward data for layer 1
        "train": (train_step, 3 * fwd_flops - first_flops),
        "forward": (forward, fwd_flops),
    }
    for name in (["train", "forward"] if a.case == "all" else [a.case]):
        fn, flops = cases[name]
        ms = bench(fn, a.warmup, a.repeats)
        print(json.dumps({
            "case": a.net + "_" + name + suffix,
            "pytorch_ms": round(ms, 1),
            "gflop": round(flops / 1e9, 2),
            "gflops": round(flops / 1e9 / (ms / 1e3), 1),
            "threads": a.threads,
            "torch": torch.__version__,
            "output_shape": out_shape,
        }), flush=True)


if __name__ == "__main__":
    main()
