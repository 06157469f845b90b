"""Give each training process only its share of the CPU cores.

Measured on a 2-core machine: torch with 2 intra-op threads while another process also
computes ran a GAN step 17-28x slower (0.09 s -> 2.7 s), because the threads spin and
wait for each other. So each process gets ``cores // processes_on_this_node`` threads,
and a warning is printed when the machine already looks busy.
"""

from __future__ import annotations

import os
from typing import Optional

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_process(processes: int, cores: Optional[int] = None) -> int:
    """Intra-op threads for one of ``processes`` processes sharing ``cores`` cores (at least 1)."""
    cores = available_cores() if cores is None else cores
    return max(1, cores // max(1, processes))


class ThreadBudget(pl.Callback):
    """Sets ``torch.set_num_threads`` in every rank at setup.

    Args:
        num_threads: threads per process; None = available cores / processes on this node.
        warn_load: warn when the 1-minute load average, less this job's processes, is at
            least this fraction of the cores at start-up (another job is computing);
            0 disables the warning.
    """

    def __init__(self, num_threads: Optional[int] = None, warn_load: float = 0.75) -> None:
        self.num_threads = num_threads
        self.warn_load = warn_load

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        cores = available_cores()
        # Every device of this node is one process, on CPU and GPU alike (DDP, ddp_spawn).
        processes = trainer.num_devices
        threads = self.num_threads or threads_per_process(processes, cores)
        torch.set_num_threads(threads)
        if self.warn_load and hasattr(os, "getloadavg"):
            # The load average counts this job's own recent work too: discount one per process.
            load = os.getloadavg()[0]
            if load - processes >= self.warn_load * cores and trainer.global_rank == 0:
                rank_zero_warn(
                    f"load average {load:.1f} on {cores} cores before training: another process is computing; "
                    f"torch runs many times slower when processes compete for cores ({threads} thread(s) each here)"
                )
