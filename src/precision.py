"""Choosing the number format the networks compute in: `precision=auto|fp32|bf16|fp16`.

bf16 halves the bytes every convolution moves and, where the hardware multiplies bf16
natively, roughly doubles a ResNet's speed (BENCHMARKS.md). Where it does not, the CPU
emulates it and bf16 is several times *slower* than fp32, so `auto` goes by what the
hardware says, never by a guess:

  CUDA   bf16 where the GPU computes it natively (Ampere on), else fp16 with a gradient
         scaler (fp16 keeps its speed on older GPUs but needs scaled gradients)
  CPU    bf16 where /proc/cpuinfo lists avx512_bf16 (AMD Zen 4 on, Intel Cooper Lake) or
         amx_bf16 (Intel Sapphire Rapids on), else fp32
  MPS    fp32 (not measured here)

Autocast keeps weights, batch-norm statistics and the loss in fp32; only the matrix
products run in the chosen format. Features and logits leave it as float32.
"""

import logging
from pathlib import Path

import torch

from src.errors import UserError

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 flags of bf16 multiply units
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_warned: set[str] = set()  # the slow-bf16 warning is given once per process and device


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty where there is no /proc/cpuinfo)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def native_bf16(device_type: str, flags: frozenset[str], cuda_bf16: bool) -> bool:
    """Whether the device multiplies bf16 in hardware: `flags` are the CPU's, `cuda_bf16`
    the GPU's answer (torch.cuda.is_bf16_supported without emulation)."""
    if device_type == "cuda":
        return cuda_bf16
    if device_type == "cpu":
        return any(flag in flags for flag in NATIVE_BF16_CPU_FLAGS)
    return False


def choose_precision(requested: str, device_type: str, native: bool) -> str:
    """`requested` (one of PRECISIONS) as it will run on a `device_type` device whose bf16
    support is `native`: fp32, bf16 or fp16."""
    if requested not in PRECISIONS:
        raise UserError(f"precision={requested!r} is not one of {', '.join(PRECISIONS)}")
    if requested == "auto":
        if native:
            return "bf16"
        return "fp16" if device_type == "cuda" else "fp32"
    if requested == "fp16" and device_type == "cpu":
        raise UserError("precision=fp16 runs on GPUs only; on the CPU use bf16, fp32 or auto")
    if requested == "bf16" and not native and device_type not in _warned:
        _warned.add(device_type)
        log.warning(
            f"precision=bf16: this {device_type.upper()} does not compute bf16 natively "
            f"(no {' or '.join(NATIVE_BF16_CPU_FLAGS)}), so it is emulated and slower than "
            "fp32; precision=auto picks fp32 here"
            if device_type == "cpu"
            else f"precision=bf16: this {device_type} does not compute bf16 natively; "
            "expect it to be slow"
        )
    return requested


def detect_native_bf16(device: torch.device) -> bool:
    """The hardware's answer for `device` (reads /proc/cpuinfo or asks CUDA)."""
    cuda = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
    return native_bf16(device.type, cpu_flags() if device.type == "cpu" else frozenset(), cuda)


def resolve_precision(requested: str, device: torch.device) -> str:
    return choose_precision(requested, device.type, detect_native_bf16(device))


def autocast(device: torch.device, precision: str):
    """The context that runs a forward pass in `precision` (fp32: a no-op)."""
    dtype = DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def needs_grad_scaler(precision: str) -> bool:
    """fp16 gradients underflow unless the loss is scaled up; bf16 has fp32's range."""
    return precision == "fp16"
