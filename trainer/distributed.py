"""Joining the process group: launched by deepspeed/torchrun, or a single plain process."""

from __future__ import annotations

import os
import socket

import deepspeed
import torch.distributed as dist
from deepspeed.accelerator import get_accelerator


def init_distributed() -> tuple[int, int]:
    """Join the group the launcher describes, or form a group of one; return (rank, world size).

    The deepspeed launcher and torchrun set RANK, WORLD_SIZE and MASTER_*; a plain
    `python -m iptkit.trainer` sets none, and DeepSpeed would then look for MPI.
    NCCL needs a GPU, so on the CPU accelerator the group uses gloo.
    """
    if "RANK" not in os.environ:
        os.environ.update(
            RANK="0",
            LOCAL_RANK="0",
            WORLD_SIZE="1",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(_free_port()),
        )
    accelerator = get_accelerator()
    if accelerator.device_name() == "cpu":
        backend = "gloo"
        _skip_shared_memory_allreduce()
    else:
        backend = accelerator.communication_backend_name()
        accelerator.set_device(int(os.environ["LOCAL_RANK"]))
    deepspeed.init_distributed(dist_backend=backend)
    return dist.get_rank(), dist.get_world_size()


def _skip_shared_memory_allreduce() -> None:
    """Keep DeepSpeed from JIT-compiling its CPU shared-memory all-reduce op at group start.

    The op only speeds up `inference_all_reduce`, which training never calls; gloo does the
    training collectives. Building it needs a C++ toolchain and minutes on a small machine,
    and torch guards the build with a lock file: a rank killed while holding it (Ctrl-C, a
    preempted worker, the OOM killer) leaves the lock behind and every later launch on the
    machine waits on it forever.
    """
    from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder

    deepspeed.ops.__compatible_ops__[ShareMemCommBuilder.NAME] = False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
