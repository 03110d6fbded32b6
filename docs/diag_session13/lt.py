"""Session 13: out = r + y W^T by cuBLASLt with C = r and D a new tensor (ctypes; the library
torch already loaded). torch.addmm(r, y, W.t()) into a new tensor first copies r into it; with
C != D the epilogue reads r and writes out, so the norm need not write a copy of its input.

    lt = CublasLt(); out = lt.residual_linear(r, y, w)    # r [M, N], y [M, K], w [N, K]
"""
import ctypes

import torch

_COMPUTE_32F, _R_32F = 68, 0
_DTYPE = {torch.bfloat16: 14, torch.float16: 2}
_TRANSA, _TRANSB = 3, 4
_OP_N, _OP_T = 0, 1
_PREF_MAX_WORKSPACE_BYTES = 1
_WORKSPACE = 32 << 20


class _Heuristic(ctypes.Structure):
    _fields_ = [("algo", ctypes.c_uint64 * 8), ("workspaceSize", ctypes.c_size_t),
                ("state", ctypes.c_int), ("wavesCount", ctypes.c_float),
                ("reserved", ctypes.c_int * 4)]


def _library_path():
    """The libcublasLt torch's CUDA build loaded (after a first matmul), from /proc/self/maps."""
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if "libcublasLt.so" in path:
                return path
    return None


class CublasLt:
    def __init__(self, device=None):
        device = torch.device("cuda", torch.cuda.current_device() if device is None else device)
        a = torch.zeros(16, 16, device=device)
        a @ a  # torch loads cuBLAS(Lt) on its first matmul
        path = _library_path()
        if path is None:
            raise RuntimeError("libcublasLt is not loaded in this process")
        lib = self.lib = ctypes.CDLL(path)
        vp, i, sz, u64, i64 = (ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint64,
                               ctypes.c_int64)
        pvp = ctypes.POINTER(vp)
        for name, args in (
            ("cublasLtCreate", [pvp]),
            ("cublasLtMatmulDescCreate", [pvp, i, i]),
            ("cublasLtMatmulDescSetAttribute", [vp, i, vp, sz]),
            ("cublasLtMatrixLayoutCreate", [pvp, i, u64, u64, i64]),
            ("cublasLtMatmulPreferenceCreate", [pvp]),
            ("cublasLtMatmulPreferenceSetAttribute", [vp, i, vp, sz]),
            ("cublasLtMatmulAlgoGetHeuristic", [vp, vp, vp, vp, vp, vp, vp, i,
                                                ctypes.POINTER(_Heuristic), ctypes.POINTER(i)]),
            ("cublasLtMatmul", [vp, vp, vp, vp, vp, vp, vp, vp, vp, vp, vp, vp, vp, vp, sz, vp]),
        ):
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, i
        self.handle = vp()
        self._check(lib.cublasLtCreate(ctypes.byref(self.handle)), "cublasLtCreate")
        self.workspace = torch.empty(_WORKSPACE, dtype=torch.uint8, device=device)
        self.pref = vp()
        self._check(lib.cublasLtMatmulPreferenceCreate(ctypes.byref(self.pref)), "preference")
        ws = ctypes.c_size_t(_WORKSPACE)
        self._check(lib.cublasLtMatmulPreferenceSetAttribute(
            self.pref, _PREF_MAX_WORKSPACE_BYTES, ctypes.byref(ws), ctypes.sizeof(ws)),
            "workspace size")
        self.plans = {}
        self.one = ctypes.c_float(1.0)

    @staticmethod
    def _check(status, what):
        if status != 0:
            raise RuntimeError(f"cuBLASLt {what} failed with status {status}")

    def _plan(self, M, N, K, dtype):
        key = (M, N, K, dtype)
        if key not in self.plans:
            lib, vp = self.lib, ctypes.c_void_p
            desc = vp()
            self._check(lib.cublasLtMatmulDescCreate(ctypes.byref(desc), _COMPUTE_32F, _R_32F),
                        "matmul desc")
            for attr, op in ((_TRANSA, _OP_T), (_TRANSB, _OP_N)):
                v = ctypes.c_int(op)
                self._check(lib.cublasLtMatmulDescSetAttribute(desc, attr, ctypes.byref(v),
                                                               ctypes.sizeof(v)), "transpose")
            # column-major: out^T [N, M] = W [K, N]^T y^T [K, M] + r^T [N, M]
            lay = []
            for rows, cols, ld in ((K, N, K), (K, M, K), (N, M, N)):
                h = vp()
                self._check(lib.cublasLtMatrixLayoutCreate(ctypes.byref(h), _DTYPE[dtype], rows,
                                                           cols, ld), "layout")
                lay.append(h)
            a, b, c = lay
            res, n = _Heuristic(), ctypes.c_int(0)
            self._check(lib.cublasLtMatmulAlgoGetHeuristic(self.handle, desc, a, b, c, c,
                                                           self.pref, 1, ctypes.byref(res),
                                                           ctypes.byref(n)), "heuristic")
            if n.value == 0:
                raise RuntimeError(f"cuBLASLt has no algorithm for {key}")
            self.plans[key] = (desc, a, b, c, res)
        return self.plans[key]

    def residual_linear(self, r, y, w, out=None):
        """out = r + y w^T: r [M, N], y [M, K], w [N, K], contiguous, bf16 or fp16, on this
        device; out a new [M, N] tensor unless given (it may be r: in place)."""
        M, K = y.shape
        N = w.shape[0]
        assert r.shape == (M, N) and w.shape == (N, K) and r.dtype == y.dtype == w.dtype
        assert r.is_contiguous() and y.is_contiguous() and w.is_contiguous()
        out = torch.empty_like(r) if out is None else out
        desc, a, b, c, res = self._plan(M, N, K, r.dtype)
        one = ctypes.byref(self.one)
        self._check(self.lib.cublasLtMatmul(
            self.handle, desc, one, w.data_ptr(), a, y.data_ptr(), b, one, r.data_ptr(), c,
            out.data_ptr(), c, ctypes.byref(res.algo), self.workspace.data_ptr(), _WORKSPACE,
            torch.cuda.current_stream(r.device).cuda_stream), "matmul")
        return out
