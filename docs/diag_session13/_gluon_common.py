"""Session 13: what the Gluon prototypes share (TMA ring helpers, descriptors, the compile
report). Importing it needs no GPU; the kernels compile for sm_90 on a CPU through
scripts/compile_check.py's stand-in driver, which the scripts install before importing it."""
import itertools

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, tma
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor


@gluon.jit
def _load_tile(desc, bufs, bars, j, row0, pred, BC: gl.constexpr):
    """TMA: key block j (rows row0 + j BC ..) into ring stage j % stages, on its barrier."""
    st = j % bufs.type.shape[0]
    mbarrier.expect(bars.index(st), desc.block_type.nbytes, pred=pred)
    tma.async_copy_global_to_shared(desc, [row0 + j * BC, 0], bars.index(st), bufs.index(st),
                                    pred=pred)


@gluon.jit
def _wait_tile(bufs, bars, j):
    """Wait for key block j's tile; returns its stage."""
    n: gl.constexpr = bufs.type.shape[0]
    mbarrier.wait(bars.index(j % n), phase=(j // n) & 1)
    return bufs.index(j % n)


@gluon.jit
def _store_out(acc, l_o, m, o_t, o_d, m_t, m_td, i_b, i_h, i_bh, T, D, d, p_lse, p_y, p_proj,
               stride_pb, stride_pt, stride_pc, OFF_Z):
    """y = acc / l gated by sigmoid(z) into [B, T, D]; lse = m + log2 l into [B, H, T]."""
    y = acc / l_o[:, None]
    gl.store(p_lse + i_bh * T + o_t, m + gl.log2(l_o), mask=m_t)
    p_row = p_proj + i_b.to(gl.int64) * stride_pb + o_t[:, None] * stride_pt
    z = gl.load(p_row + (OFF_Z + i_h * d + o_d[None, :]) * stride_pc, mask=m_td,
                other=0.0).to(gl.float32)
    y = y / (1.0 + gl.exp2(z * -1.4426950408889634))
    gl.store(p_y + i_b.to(gl.int64) * T * D + o_t[:, None] * D + i_h * d + o_d[None, :],
             y.to(p_y.dtype.element_ty), mask=m_td)


def descriptor(t, rows):
    """A [rows, BD] TMA block descriptor over a 2-D bf16 tensor."""
    layout = gl.NVMMASharedLayout.get_default_for([rows, t.shape[1]], gl.bfloat16)
    return TensorDescriptor(t, list(t.shape), list(t.stride()), [rows, t.shape[1]], layout)


def compile_report(k, name):
    """Print a compiled kernel's wgmma / ex2 order in its PTX (runs counted), shared memory, and
    ptxas's registers, spills and C75xx (wgmma serialized: C7515, C7512 ...) lines."""
    from compile_check import ptxas_verbose  # scripts/: on the path in --compile mode
    ops = [line.split()[0] + (" " + line.split()[1] if "wait_group" in line else "")
           for line in map(str.strip, k.asm["ptx"].splitlines())
           if line.startswith(("wgmma.mma", "wgmma.wait", "wgmma.commit", "ex2"))]
    print(f"{name}, smem {k.metadata.shared} B: " + " ".join(
        f"{op.replace('.sync.aligned', '')} x{len(list(run))}"
        for op, run in itertools.groupby(ops)))
    print("  " + "\n  ".join(line for line in ptxas_verbose(k.asm["ptx"], 90)
                             if "(C75" in line or "registers" in line or "spill" in line))
