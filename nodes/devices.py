"""Which device and dtypes run the models.

``settings.device`` ``auto`` picks CUDA, then Apple's MPS, then the CPU. On GPUs the UNet and the
text encoders run in half precision (bf16 where the GPU supports it, else fp16); the VAE stays in
fp32 unless bf16 is available, because SD's VAEs overflow in fp16 (the well-known black images).
On the CPU everything is fp32, which is also what makes the parity tests with diffusers exact.

CPU threads (``thread_plan``): torch starts one OpenMP thread per core and, by default, threads that
finish a parallel region early spin for the others. When other processes hold some of the cores,
a descheduled thread makes the rest spin through whole time slices: the shipped text-to-image's
sampler took 65 s with torch's defaults on a busy 2-core machine, and 3.9 s with one thread. So
gouache uses the cores this process may run on (``os.sched_getaffinity``) minus the load others
already put on them (``os.getloadavg``), at least one, and asks OpenMP to wait passively
(``OMP_WAIT_POLICY=PASSIVE``, read when torch is first imported). ``gouache run`` and ``gouache serve``
apply this (``prepare_threads``); the Python API leaves the program's torch settings alone.
``OMP_NUM_THREADS`` or ``GOUACHE_THREADS=N`` choose the count; ``GOUACHE_THREADS=torch`` leaves
torch's defaults alone.

Waiting passively has a price when the work is small: each of a small model's many short operations then
wakes a sleeping thread. On the idle 2-core machine the embedded model's 20 steps at 128 px took 0.95 s
with two passive threads and 0.32 s with one (256 px: 0.34 against 0.17; 512 px, where each operation
has more to do: 0.51 against 0.61). Spinning instead (OpenMP's default) matched one thread when idle but
took 4.6-11 s under two CPU hogs. So where the policy chose more than one thread, a denoising loop whose
steps are small (``SMALL_STEP_WORK``) runs on one (``threads_for``); one thread is also immune to load.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

THREADS_VARIABLE = "GOUACHE_THREADS"
"""``auto`` (the default), a thread count, or ``torch`` (torch's own defaults, nothing changed)."""
_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
"""Variables through which a user already chose how OpenMP threads wait."""


@dataclass(frozen=True)
class ThreadPlan:
    """How many CPU threads torch computes with, and why (``gouache run --json`` prints it)."""

    threads: int | None
    """The intra-op thread count, or ``None`` where torch keeps its own default."""
    source: str
    """``policy`` (cores minus load), ``OMP_NUM_THREADS``, ``GOUACHE_THREADS`` or ``torch``."""
    cores: int
    """Cores this process may run on."""
    load: float | None
    """The 1-minute load average seen when the plan was made (``None`` where not asked or unknown)."""
    wait_policy: str | None
    """``OMP_WAIT_POLICY`` as torch's OpenMP will read it."""

    def to_json(self) -> dict[str, Any]:
        """The plan as plain JSON values."""
        return asdict(self)


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity where the OS has one, else every core."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _positive_int(text: str | None) -> int | None:
    try:
        value = int(text or "")
    except ValueError:
        return None
    return value if value > 0 else None


def thread_plan(environ: Mapping[str, str] | None = None, cores: int | None = None,
                load: float | None = None) -> ThreadPlan:
    """Decide the thread count by the rule in this module's docstring (reads, changes nothing).

    ``cores`` and ``load`` default to what the machine says now; tests pass their own.
    """
    environ = os.environ if environ is None else environ
    cores = available_cores() if cores is None else cores
    wait = environ.get("OMP_WAIT_POLICY")
    chosen = environ.get(THREADS_VARIABLE, "auto").strip().lower()
    if chosen == "torch":
        return ThreadPlan(None, "torch", cores, None, wait)
    if (count := _positive_int(chosen)) is not None:
        return ThreadPlan(count, THREADS_VARIABLE, cores, None, wait)
    if (count := _positive_int(environ.get("OMP_NUM_THREADS"))) is not None:
        return ThreadPlan(count, "OMP_NUM_THREADS", cores, None, wait)
    if load is None and hasattr(os, "getloadavg"):
        try:
            load = os.getloadavg()[0]
        except OSError:  # no load average on this system
            load = None
    busy = int(round(load)) if load is not None else 0
    return ThreadPlan(max(1, cores - busy), "policy", cores, load, wait)


def prepare_threads(environ: MutableMapping[str, str] | None = None) -> ThreadPlan:
    """Apply the thread plan to this process, best before torch is first imported; returns the plan.

    For the commands that own their process (``gouache run``, ``gouache serve``); a program using the
    Python API keeps its own torch settings. Sets ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose how
    OpenMP threads wait, and ``OMP_NUM_THREADS`` to the plan's count unless one is set: torch reads
    both when it loads. Where torch is already loaded, only the count can still change.
    """
    global _applied
    environ = os.environ if environ is None else environ
    plan = thread_plan(environ)
    if plan.source == "torch":
        return plan
    if "torch" in sys.modules:
        if plan.threads is not None and plan.source != "OMP_NUM_THREADS":
            sys.modules["torch"].set_num_threads(plan.threads)
        _applied = plan
        return plan
    if not any(name in environ for name in _WAIT_VARIABLES):
        environ["OMP_WAIT_POLICY"] = "PASSIVE"
    if plan.threads is not None and "OMP_NUM_THREADS" not in environ:
        environ["OMP_NUM_THREADS"] = str(plan.threads)
    _applied = ThreadPlan(plan.threads, plan.source, plan.cores, plan.load, environ.get("OMP_WAIT_POLICY"))
    return _applied


SMALL_STEP_WORK = 200_000
"""Latent cells a denoiser step computes (batch included) times its first block's width, below which one
thread is faster than several waiting passively (the module docstring's measurements: 98k ran 2x faster
on one thread, 393k 1.2x faster on two)."""

_applied: ThreadPlan | None = None
"""The plan ``prepare_threads`` applied to this process (``None``: the Python API's own settings)."""


@contextmanager
def threads_for(step_work: int | None) -> Iterator[None]:
    """Within the block, one intra-op thread when the steps are small and gouache's policy chose several
    (``None``: the steps do not run on the CPU; nothing changes).

    A count the user set (``GOUACHE_THREADS``, ``OMP_NUM_THREADS``) or a program's own torch settings are
    left alone. The count is the calling thread's own (OpenMP keeps it per thread), so a server's worker
    threads do not change each other's.
    """
    plan = _applied
    if step_work is None or plan is None or plan.source != "policy" or (plan.threads or 1) <= 1 \
            or step_work >= SMALL_STEP_WORK:
        yield
        return
    with one_thread():
        yield


@contextmanager
def one_thread() -> Iterator[None]:
    """Run a block on one torch intra-op thread (this thread's count), then restore the count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class DevicePlan:
    """The compute device and the dtype of each part."""

    device: Any
    """A ``torch.device``."""
    unet_dtype: Any
    text_dtype: Any
    vae_dtype: Any

    @property
    def is_gpu(self) -> bool:
        """Whether models live off the CPU (and so compete for memory)."""
        return self.device.type != "cpu"


def pick_device(setting: str) -> Any:
    """The ``torch.device`` for ``settings.device`` (``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    import torch

    if setting in ("", "auto", None):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(setting)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"settings.device is {setting!r} but this torch build sees no CUDA GPU; use 'auto' or 'cpu'")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"settings.device is {setting!r} but MPS is not available here; use 'auto' or 'cpu'")
    return device


def plan_for(setting: str) -> DevicePlan:
    """The device and dtypes for ``settings.device``."""
    import torch

    device = pick_device(setting)
    if device.type == "cuda":
        half = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        vae = torch.bfloat16 if half is torch.bfloat16 else torch.float32
        return DevicePlan(device, half, half, vae)
    if device.type == "mps":
        return DevicePlan(device, torch.float16, torch.float16, torch.float32)
    return DevicePlan(device, torch.float32, torch.float32, torch.float32)


def free_bytes(device: Any) -> int | None:
    """Free memory on ``device`` as the driver reports it, or ``None`` where unknown (CPU)."""
    import torch

    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return None
