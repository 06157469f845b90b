"""Running ddp_spawn work in tests, robust to one known teardown flake.

torch's gloo backend now and then aborted a spawned worker while its interpreter exited, after
the worker's work was done ("terminate called without an active exception", SIGABRT; 1 in 30
two-process fits here, and twice in a row in one CI run). The tests' Trainers carry
``latentnav.callbacks.process_group_exit.ProcessGroupExit``, which destroys the process group before
exit (0 aborts in 80 fits). As a second guard, ``run`` repeats the whole body once on
that signal: a real failure inside the workers repeats, and any other error is raised at once.
"""

import warnings

from torch.multiprocessing import ProcessExitedException


def run(body):
    try:
        return body()
    except ProcessExitedException as e:
        if "SIGABRT" not in str(e):
            raise
        warnings.warn(f"a ddp_spawn worker aborted at exit ({e}); running the body once more")
        return body()
