"""Helpers shared by the benchmarks in ``bench/``: flags, precision contexts, side-by-side timing, tables.

Every benchmark takes ``--device`` (default ``cuda`` when available, else ``cpu``), ``--threads``
(default: every core this process may use), ``--repeats``, ``--warmup`` and ``--quick`` (tiny sizes,
only to check that the script runs; its figures mean nothing). Mixed precision uses
``torch.autocast(device_type, dtype, cache_enabled=False)``, exactly as Lightning's
``MixedPrecision`` plugin does for ``--trainer.precision 16-mixed`` / ``bf16-mixed``.

Ratios are measured side by side: every repeat runs each variant once, in alternating order
(A B, then B A, ...), so that drift of the machine (clock, cache, other load) hits both alike;
the reported ratio is the median of the per-repeat ratios, the reported times are medians.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

PRECISIONS = ("32", "16-mixed", "bf16-mixed")
DTYPES = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}


# ----------------------------------------------------------------------------- flags
def all_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def add_common_args(parser: argparse.ArgumentParser, precision: bool = True, repeats: int = 5, warmup: int = 1) -> None:
    parser.add_argument("--device", default=default_device(), help="cuda, cuda:N or cpu (default: %(default)s)")
    if precision:
        parser.add_argument("--precision", default="32", choices=PRECISIONS,
                            help="32, or autocast with float16 / bfloat16 (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=all_cores(),
                        help="torch.set_num_threads (default: every core, %(default)s here)")
    parser.add_argument("--repeats", type=int, default=repeats, help="timed repeats per variant (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=warmup,
                        help="untimed runs of every variant first (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and 2 repeats: checks that the script runs; the figures mean nothing")


def setup(args: argparse.Namespace) -> torch.device:
    """Apply --threads and --seed; return the device (a one-line exit if it is not there)."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"--device {args.device}: CUDA is not available here")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


# ----------------------------------------------------------------------------- precision
def autocast(device: torch.device, precision: str):
    """The forward context of ``--precision``: nothing for 32, else autocast as Lightning sets it."""
    if precision == "32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision], cache_enabled=False)


def try_run(fn: Callable[[], Any]) -> tuple[Any, Optional[str]]:
    """``(fn(), None)``, or ``(None, "not supported: <reason>")`` if it raises (e.g. float16 autocast on a CPU)."""
    try:
        return fn(), None
    except (RuntimeError, NotImplementedError, TypeError, ValueError, AssertionError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return None, f"not supported: {reason[:120]}"


# ----------------------------------------------------------------------------- timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def side_by_side(variants: dict[str, Callable[[], Any]], device: torch.device, repeats: int,
                 warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each variant, ``repeats`` times, variants alternating (A B, B A, A B, ...)."""
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            times[name].append(timed(variants[name], device))
    return times


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median over repeats of numerator[r] / denominator[r]."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))


def spread(xs: Sequence[float]) -> str:
    """min-max of a list of ratios or times, for a sense of the noise."""
    return f"{min(xs):.3g}-{max(xs):.3g}"


# ----------------------------------------------------------------------------- models
def add_stylegan2_args(parser: argparse.ArgumentParser, size: int = 64) -> None:
    g = parser.add_argument_group("random-weight StyleGAN2 (rosinality port layout)")
    g.add_argument("--size", type=int, default=size, help="resolution (default: %(default)s)")
    g.add_argument("--style-dim", type=int, default=512, help="z/w size (default: %(default)s)")
    g.add_argument("--n-mlp", type=int, default=8, help="mapping layers (default: %(default)s)")
    g.add_argument("--channel-multiplier", type=int, default=2, help="the port's (default: %(default)s)")
    g.add_argument("--max-channels", type=int, default=None,
                   help="cap every resolution's channels (default: the port's table, 512 up to 32 px)")


def quick_stylegan2(args: argparse.Namespace) -> None:
    """The --quick StyleGAN2: 32 px, style 64, 2 mapping layers, 32 channels."""
    args.size, args.style_dim, args.n_mlp, args.channel_multiplier, args.max_channels = 32, 64, 2, 1, 32


def stylegan2_label(args: argparse.Namespace) -> str:
    cap = f", channels <= {args.max_channels}" if args.max_channels else f", port channels x{args.channel_multiplier}"
    return f"StyleGAN2 {args.size} px, style {args.style_dim}, {args.n_mlp} mlp{cap} (random)"


def small_stylegan2(args: argparse.Namespace, seed: int = 0):
    """A random-weight StyleGAN2 (rosinality port layout) behind the FrozenGenerator contract, on CPU.

    Noise strengths and biases, which the port initialises at 0, are randomised as in the tests,
    so that every part of the network does work. ``w_avg`` is the mean of 2,000 mapped samples."""
    from latentnav.generators.adapters import StyleGAN2Adapter
    from latentnav.generators.stylegan2 import StyleGAN2Config, StyleGAN2Generator

    torch.manual_seed(seed)
    config = StyleGAN2Config.port(args.size, style_dim=args.style_dim, n_mlp=args.n_mlp,
                                  channel_multiplier=args.channel_multiplier)
    if args.max_channels:
        config = StyleGAN2Config(config.size, config.style_dim, config.n_mlp,
                                 tuple(min(c, args.max_channels) for c in config.channels))
    net = StyleGAN2Generator(config)
    with torch.no_grad():
        for key, p in net.named_parameters():
            if key.endswith("noise.weight") or key.endswith("bias"):
                p.normal_(0, 0.1)
    return StyleGAN2Adapter(net, w_avg_samples=2000)


def save_port_checkpoint(adapter, path: Path) -> Path:
    """Write ``adapter`` as a rosinality-port checkpoint (``g_ema`` + ``latent_avg``) that ``load_generator`` reads."""
    torch.save({"g_ema": adapter.net.state_dict(), "latent_avg": adapter.w_avg.detach().cpu().clone()}, path)
    return path


# ----------------------------------------------------------------------------- output
def hardware(device: torch.device, threads: int) -> str:
    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
    else:
        what = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    what = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    return f"{what}, {threads} torch thread(s) of {all_cores()} core(s), torch {torch.__version__}"


def command() -> str:
    """The command line that reproduces this run (as typed)."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(ROOT)
    except ValueError:
        pass
    return shlex.join([".venv/bin/python", str(script), *sys.argv[1:]])


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def report(title: str, device: torch.device, args: argparse.Namespace, header: Sequence[str],
           rows: Sequence[Sequence[Any]], notes: Sequence[str] = ()) -> None:
    print(f"\n## {title}\n")
    print(f"hardware: {hardware(device, args.threads)}")
    if device.type == "cuda":
        print(f"cuda fp32: cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
              f"float32 matmul precision {torch.get_float32_matmul_precision()!r} (torch defaults unless changed)")
    if args.quick:
        print("QUICK RUN: tiny sizes, few repeats; the figures below only show that the script runs")
    print()
    print(table(header, rows))
    for note in notes:
        print(f"\n{note}")
    print(f"\ncommand: {command()}")
