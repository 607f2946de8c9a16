"""Which mixed-precision policy a run uses, and why (decided once, logged in one line)."""

from __future__ import annotations

AUTO = "auto"
OFF = "off"
BFLOAT16 = "bfloat16"
FLOAT16 = "float16"
POLICIES = (AUTO, OFF, BFLOAT16, FLOAT16)


def choose_policy(requested: str, *, builtin_model: bool, gpu: bool, native_bfloat16: bool
           ) -> tuple[str, str]:
  """Returns (policy, reason). `auto` turns bfloat16 on only where it is fast and safe:
  tfdist's own models (their logits stay float32) on a CPU that computes bfloat16
  natively; everything else keeps float32 unless asked.
  """
  if requested != AUTO:
    return requested, f"--mixed_precision={requested}"
  if not builtin_model:
    return OFF, "auto: your own model keeps float32 (opt in with --mixed_precision=bfloat16)"
  if gpu:
    return OFF, "auto: on GPUs float16 is opt-in (--mixed_precision=float16)"
  if not native_bfloat16:
    return OFF, "auto: this CPU has no native bfloat16 (AVX512_BF16/AMX)"
  return BFLOAT16, ("auto: a built-in model on a CPU with native bfloat16; "
                    "--mixed_precision=off for float32")


def cpu_has_native_bfloat16(cpuinfo_path: str = "/proc/cpuinfo") -> bool:
  try:
    with open(cpuinfo_path, encoding="utf-8") as f:
      flags = f.read()
  except OSError:
    return False
  return "avx512_bf16" in flags or "amx_bf16" in flags
