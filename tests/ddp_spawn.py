"""Running ddp_spawn work in tests, robust to one known teardown flake.

torch's gloo backend now and then aborts a spawned worker while its interpreter exits, after
the worker's work is done ("terminate called without an active exception", SIGABRT; seen once
in about ten suite runs here). ``run`` repeats the whole body once in that case: a real failure
inside the workers repeats, and any other error is raised at once.
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
