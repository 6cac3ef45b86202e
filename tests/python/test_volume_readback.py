"""The volume stores against the reference readers: zarr-python and h5py read what we write
(every dtype x compressor), and we read what zarr-python and h5py write (blosc, zlib, gzip,
nested keys, uint16, missing chunks), box by box with numpy.pad's 'symmetric' and zero padding
as the reference. Missing zarr, numcodecs or h5py fail the test (Debian's python3-zarr,
python3-h5py); nothing is skipped."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import unittest

import h5py
import numcodecs
import numpy as np
import zarr

TOOL = os.environ.get("ELK_VOLUME_TOOL", "")


def pattern(shape):
    """(c*37 + z*131 + x*17 + y*3) % 256 over (c,z,x,y), as volume_store_tool writes it."""
    c, z, x, y = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return (c * 37 + z * 131 + x * 17 + y * 3) % 256


def run_tool(*args):
    r = subprocess.run([TOOL, *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"volume_store_tool {' '.join(map(str, args))}: {r.stderr}")
    return r.stdout


class OurOutputsTest(unittest.TestCase):
    """zarr-python and h5py read our outputs exactly, with our metadata."""

    SHAPE = (2, 9, 14, 11)
    CHUNK = (4, 5, 6)

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.dir.cleanup()

    def expected(self, dtype):
        p = pattern(self.SHAPE)
        if dtype == "u1":
            return p.astype(np.uint8)
        return p.astype(np.float32) / np.float32(255)

    def test_zarr_every_dtype_and_compressor(self):
        compressors = {
            "none": None,
            "zlib:1": {"id": "zlib", "level": 1},
            "zlib:9": {"id": "zlib", "level": 9},
            "blosc:lz4:5:1": {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1,
                              "blocksize": 0},
            "blosc:zstd:3:0": {"id": "blosc", "cname": "zstd", "clevel": 3, "shuffle": 0,
                               "blocksize": 0},
        }
        for dtype in ("f4", "u1"):
            for comp, config in compressors.items():
                with self.subTest(dtype=dtype, compressor=comp):
                    path = os.path.join(self.dir.name, f"{dtype}-{comp.replace(':', '_')}.zarr")
                    run_tool("write", path, ",".join(map(str, self.SHAPE)),
                             ",".join(map(str, self.CHUNK)), dtype, comp)
                    a = zarr.open(path, mode="r")
                    self.assertIsInstance(a, zarr.Array)
                    self.assertEqual(a.shape, self.SHAPE)
                    self.assertEqual(a.chunks, (2,) + self.CHUNK)
                    self.assertEqual(a.dtype, np.dtype(np.uint8 if dtype == "u1" else "<f4"))
                    self.assertEqual(a.order, "C")
                    if config is None:
                        self.assertIsNone(a.compressor)
                    else:
                        self.assertEqual(a.compressor.get_config(), config)
                    self.assertEqual(a.nchunks_initialized, a.nchunks)
                    got = a[...]
                    np.testing.assert_array_equal(got, self.expected(dtype))
                    self.assertEqual(got.tobytes(), self.expected(dtype).tobytes())
                    attrs = a.attrs["elektronn"]
                    self.assertEqual(attrs["fingerprint"], "fingerprint from the tool")
                    self.assertEqual(attrs["model"], "m.mdl")
                    self.assertEqual(attrs["offset"], [1, 2, 3])

    def test_zarr_array_inside_a_group(self):
        root = os.path.join(self.dir.name, "g.zarr")
        run_tool("write", root + "/a/pred", ",".join(map(str, self.SHAPE)), "4,5,6", "f4",
                 "blosc:lz4:5:1")
        g = zarr.open_group(root, mode="r")
        np.testing.assert_array_equal(g["a/pred"][...], self.expected("f4"))
        self.assertEqual(list(g.group_keys()), ["a"])

    def test_hdf5_every_dtype(self):
        for dtype in ("f4", "u1"):
            with self.subTest(dtype=dtype):
                path = os.path.join(self.dir.name, f"{dtype}.h5")
                run_tool("write", path + ":/pred", ",".join(map(str, self.SHAPE)),
                         ",".join(map(str, self.CHUNK)), dtype, "none")
                with h5py.File(path, "r") as f:
                    d = f["pred"]
                    self.assertEqual(d.shape, self.SHAPE)
                    self.assertEqual(d.chunks, (2,) + self.CHUNK)
                    self.assertEqual(d.dtype, np.dtype(np.uint8 if dtype == "u1" else "<f4"))
                    np.testing.assert_array_equal(d[...], self.expected(dtype))
                    self.assertEqual(d[...].tobytes(), self.expected(dtype).tobytes())
                    fp = d.attrs["elektronn_fingerprint"]
                    fp = fp.decode() if isinstance(fp, bytes) else str(fp)
                    self.assertEqual(fp, "fingerprint from the tool")
                    self.assertEqual(list(d.attrs["elektronn_offset"]), [1, 2, 3])
                with open(path + ".pred.progress") as p:
                    lines = p.read().splitlines()
                self.assertTrue(lines[0].startswith("elektronn-progress 1 "))
                self.assertEqual(len(lines) - 1, 3 * 3 * 2)  # one record per chunk


class TheirVolumesTest(unittest.TestCase):
    """We read arrays written by zarr-python and h5py, box by box, padded like numpy.pad."""

    # Inside; across chunk borders; across the volume's borders; far outside; larger than the
    # volume (reflected more than once).
    BOXES = [(1, 2, 3, 4, 5, 6), (-2, -3, -1, 5, 6, 7), (5, 10, 8, 6, 7, 9),
             (-10, -15, -13, 27, 40, 36), (20, 30, 30, 2, 2, 2)]

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.rng = np.random.default_rng(7)

    def tearDown(self):
        self.dir.cleanup()

    def check_boxes(self, spec, data, ints):
        """data: the volume as (c,z,x,y); ints: integers are divided by 255 when read."""
        full = data.astype(np.float32)
        if ints:
            full = full / np.float32(255)
        c, z, x, y = data.shape
        for box in self.BOXES:
            z0, x0, y0, dz, dx, dy = box
            pad = [(0, 0)] + [(max(0, -o), max(0, o + d - n))
                              for o, d, n in ((z0, dz, z), (x0, dx, x), (y0, dy, y))]
            sl = (slice(None),) + tuple(slice(o + p[0], o + p[0] + d) for o, d, p in
                                        ((z0, dz, pad[1]), (x0, dx, pad[2]), (y0, dy, pad[3])))
            for mode in ("mirror", "zero", "error"):
                out = os.path.join(self.dir.name, "box.f32")
                inside = all(p == (0, 0) for p in pad)
                if mode == "error" and not inside:
                    r = subprocess.run([TOOL, "read", spec, ",".join(map(str, box)), mode, "255",
                                        out], capture_output=True, text=True)
                    self.assertEqual(r.returncode, 1)
                    self.assertIn("reaches outside the volume", r.stderr)
                    continue
                header = run_tool("read", spec, ",".join(map(str, box)), mode, "255", out)
                self.assertEqual(header.split()[:4], [str(v) for v in data.shape])
                got = np.fromfile(out, dtype=np.float32).reshape(c, dz, dx, dy)
                if mode == "mirror":
                    want = np.pad(full, pad, mode="symmetric")[sl]
                else:
                    want = np.pad(full, pad, mode="constant")[sl]
                np.testing.assert_array_equal(got, want, err_msg=f"{spec} {box} {mode}")

    def test_zarr_python_compressors(self):
        compressors = {
            "blosc-lz4": numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE),
            "blosc-zstd-bitshuffle": numcodecs.Blosc(cname="zstd", clevel=3,
                                                     shuffle=numcodecs.Blosc.BITSHUFFLE),
            "zlib": numcodecs.Zlib(level=6),
            "gzip": numcodecs.GZip(level=4),
            "none": None,
        }
        for name, comp in compressors.items():
            for dtype in (np.uint8, np.uint16, np.float32):
                with self.subTest(compressor=name, dtype=np.dtype(dtype).name):
                    path = os.path.join(self.dir.name, f"{name}-{np.dtype(dtype).name}.zarr")
                    if dtype == np.float32:
                        data = self.rng.random((2, 9, 13, 11), dtype=np.float32)
                        arr = data
                    else:
                        arr = self.rng.integers(0, 1000 if dtype == np.uint16 else 256,
                                                (9, 13, 11)).astype(dtype)
                        data = arr[None]
                    z = zarr.open(path, mode="w", shape=arr.shape, dtype=arr.dtype,
                                  chunks=(4,) * (arr.ndim - 3) + (4, 5, 3), compressor=comp)
                    z[...] = arr
                    self.check_boxes(path, data, ints=dtype != np.float32)

    def test_zarr_python_nested_keys_and_missing_chunks(self):
        path = os.path.join(self.dir.name, "nested.zarr")
        z = zarr.open(path, mode="w", shape=(9, 13, 11), chunks=(4, 5, 3), dtype=np.uint8,
                      fill_value=17, dimension_separator="/",
                      compressor=numcodecs.Blosc(cname="lz4"))
        z[0:4, 0:10, :] = 200  # the other chunks are never written
        self.assertLess(z.nchunks_initialized, z.nchunks)
        self.check_boxes(path, z[...][None], ints=True)

    def test_h5py_gzip_chunked(self):
        path = os.path.join(self.dir.name, "raw.h5")
        arr = self.rng.integers(0, 256, (9, 13, 11)).astype(np.uint8)
        with h5py.File(path, "w") as f:
            f.create_dataset("em/raw", data=arr, chunks=(4, 5, 3), compression="gzip",
                             shuffle=True)
        self.check_boxes(path + ":/em/raw", arr[None], ints=True)
        self.check_boxes(path + ":em/raw", arr[None], ints=True)


if __name__ == "__main__":
    if not os.access(TOOL, os.X_OK):
        sys.exit(f"$ELK_VOLUME_TOOL must name the built volume_store_tool (got {TOOL!r})")
    unittest.main()
