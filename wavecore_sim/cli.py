"""Command-line interface. Every command is a thin layer over the Python API in ``api``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from . import api
from .argtypes import positive_int as _positive_int
from .compiler.tracefile import FILENAME
from .errors import WavecoreError

EXIT_BAD_INPUT = 2


def _add_machine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="wavecore", help="hardware preset (default: wavecore)")
    p.add_argument("--config", metavar="FILE", help="TOML file of hardware config fields")
    p.add_argument("--set", metavar="FIELD=VALUE", action="append", default=[],
                   help="override one config field, e.g. --set gbuf_bytes=20MiB (repeatable)")


def _add_program_options(p: argparse.ArgumentParser, out_required: bool = True) -> None:
    p.add_argument("--network", default="resnet50",
                   help="zoo network name or path to a network .json file (default: resnet50)")
    p.add_argument("--batch", type=_positive_int, default=32, help="mini-batch size (default 32)")
    p.add_argument("--schedule", default="mbs2", help="baseline, il, mbs-fs, mbs1, mbs2 or "
                   "mbs2-time (default: mbs2)")
    p.add_argument("--norm", choices=["bn", "gn"], default=None,
                   help="normalization: bn or gn (default: bn for baseline/il, gn for mbs*)")
    _add_machine_options(p)
    p.add_argument("--out", required=out_required, metavar="DIR", help="output directory")


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print summary.json instead of a digest")
    p.add_argument("--no-trace", action="store_true",
                   help="do not write trace.json (the Perfetto trace)")
    p.add_argument("--no-plots", action="store_true", help="do not draw timeline.png")


def _cmd_workloads_list(args: argparse.Namespace) -> int:
    for name in api.list_networks():
        print(name)
    return 0


def _cmd_workloads_show(args: argparse.Namespace) -> int:
    summary = api.describe_network(args.name, batch=args.batch, norm=args.norm)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        from .report.workload_table import format_network_table
        print(format_network_table(summary))
    return 0


def _cmd_config_show(args: argparse.Namespace) -> int:
    cfg = api.make_config(args.preset, args.config, args.set)
    if args.json:
        print(json.dumps(cfg.to_dict(), indent=1))
    else:
        width = max(len(k) for k in cfg.to_dict())
        for key, value in cfg.to_dict().items():
            print(f"{key.ljust(width)}  {value}")
    return 0


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line naming the option, exit status 2 (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _config_from(args: argparse.Namespace):
    return api.make_config(args.preset, args.config, args.set)


def _cmd_compile(args: argparse.Namespace) -> int:
    cfg = _config_from(args)
    compiled = api.compile_to(args.out, network=args.network, batch=args.batch,
                              schedule=args.schedule, norm=args.norm, cfg=cfg)
    from .report.plan_table import format_plan
    print(format_plan(api.plan_json(compiled)))
    print(f"wrote {args.out}/plan.json and {args.out}/{FILENAME}")
    return 0


def _print_run(out, args: argparse.Namespace) -> None:
    from .report.summary import format_summary
    if getattr(args, "json", False):
        print(json.dumps(out.summary, indent=1))
        return
    print(format_summary(out.summary))
    if out.out_dir:
        files = ["summary.json", "layers.csv", "groups.csv"]
        files += ["timeline.png"] if not args.no_plots else []
        files += ["trace.json"] if not args.no_trace else []
        print(f"wrote {out.out_dir}/{', '.join(files)}"
              + ("" if args.no_trace else " (open trace.json in https://ui.perfetto.dev)"))


def _cmd_run(args: argparse.Namespace) -> int:
    from .progress import ProgressBar
    cfg = _config_from(args)
    with ProgressBar(f"simulating {args.network} {args.schedule}") as bar:
        out = api.run(args.network, args.batch, args.schedule, args.norm, cfg, args.out,
                      progress=bar, plots=not args.no_plots, trace_json=not args.no_trace)
    _print_run(out, args)
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .progress import ProgressBar
    cfg = _config_from(args) if (args.config or args.set or args.preset != "wavecore") else None
    with ProgressBar(f"simulating {args.trace}") as bar:
        out = api.simulate_trace(args.trace, cfg, args.out, progress=bar,
                                 plots=not args.no_plots, trace_json=not args.no_trace)
    _print_run(out, args)
    return 0


def _cmd_gemm(args: argparse.Namespace) -> int:
    from .compiler.microbench import gemm_program
    from .timing import gemm_timing
    overrides = api.parse_set_options(args.set)
    overrides.setdefault("cores", str(args.cores))
    cfg = api.make_config(args.preset, args.config, overrides)
    program = gemm_program(args.m, args.k, args.n, cfg, ideal_memory=args.ideal_memory)
    result, summary = api.simulate_program(program, cfg, ideal_memory=args.ideal_memory)
    one = gemm_timing(args.m, args.k, args.n, cfg)
    report = {"m": args.m, "k": args.k, "n": args.n, "cores": cfg.cores,
              "ideal_memory": args.ideal_memory,
              "weight_double_buffer": cfg.weight_double_buffer, "cycles": result.cycles,
              "macs": result.macs, "folds_per_core": one.folds,
              "utilization": summary["utilization"], "core_stalls": summary["core_stalls"],
              "dram_bytes": summary["dram_bytes"]}
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"GEMM {args.m}x{args.k}x{args.n} on {cfg.cores} core(s) of "
              f"{cfg.array_rows}x{cfg.array_cols}: {result.cycles:,} cycles, "
              f"{summary['utilization']['overall']:.1%} of peak"
              f"{' (ideal memory)' if args.ideal_memory else ''}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from .progress import ProgressBar
    cfg = _config_from(args)
    with ProgressBar(f"validating {args.network} {args.schedule}") as bar:
        out = api.validate(args.network, args.batch, args.schedule, args.norm, cfg, args.out,
                           progress=bar)
    st = out.stats
    print(f"analytical {out.analytical_cycles:,} cycles vs simulated {out.simulated_cycles:,} "
          f"({st['total_error_pct']:+.2f}%)")
    print(f"per layer and phase ({st['layers']}): median |error| {st['median_abs_error_pct']}%, "
          f"p90 {st['p90_abs_error_pct']}%, max {st['max_abs_error_pct']}%, cycle-weighted "
          f"{st.get('weighted_abs_error_pct', 0)}%; {st['over_5pct']} over 5%")
    if st["over_5pct_by_mechanism"]:
        print("rows over 5% by the mechanism that contributes most (docs/validation.md): "
              + ", ".join(f"{k} {v}" for k, v in st["over_5pct_by_mechanism"].items()))
    print(f"DRAM bytes {'identical' if out.bytes_match else 'DIFFER'} between the two")
    print(f"wrote {args.out}/validation.csv, validation.json, validation.png")
    if not out.bytes_match:
        print("wavecore-sim: error: DRAM bytes differ between the analytical model and the "
              "simulator", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="wavecore-sim",
        description="Cycle-level simulator of CNN training on a WaveCore-class accelerator "
                    "with Mini-batch Serialization schedules (Lym et al., MLSys 2019).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=_OneLineParser)

    wl = sub.add_parser("workloads", help="list and inspect networks",
                        description="List the built-in networks or show one layer by layer.")
    wl_sub = wl.add_subparsers(dest="workloads_command", metavar="ACTION", required=True,
                               parser_class=_OneLineParser)
    p = wl_sub.add_parser("list", help="names of the built-in networks",
                          description="Print the names of the built-in networks.")
    p.set_defaults(func=_cmd_workloads_list)
    p = wl_sub.add_parser("show", help="per-layer table and totals of a network",
                          description="Per-layer table (shapes, parameters, MACs per pass, "
                                      "activation bytes) and totals of a network.")
    p.add_argument("name", help="zoo network name or path to a network .json file")
    p.add_argument("--batch", type=_positive_int, default=32, help="mini-batch size (default 32)")
    p.add_argument("--norm", choices=["bn", "gn"], default="bn",
                   help="batch norm or group norm (default bn)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_workloads_show)

    cf = sub.add_parser("config", help="show the hardware configuration",
                        description="Show the validated hardware configuration.")
    cf_sub = cf.add_subparsers(dest="config_command", metavar="ACTION", required=True,
                               parser_class=_OneLineParser)
    p = cf_sub.add_parser("show", help="print every config field and its value",
                          description="Print every config field of a preset after --config "
                                      "and --set are applied.")
    _add_machine_options(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_config_show)

    p = sub.add_parser("compile", help="compile one training iteration to instruction streams",
                       description="Schedule and compile one training iteration; write "
                                   "DIR/plan.json and the instruction trace DIR/program.wct "
                                   "(docs/trace-format.md), and print the groups, the planned "
                                   "DRAM traffic and the DRAM footprint.")
    _add_program_options(p)
    p.set_defaults(func=_cmd_compile)

    p = sub.add_parser("run", help="compile and simulate one training iteration",
                       description="Compile and simulate one training iteration; write "
                                   "summary.json, layers.csv, groups.csv, timeline.png and "
                                   "trace.json (Perfetto) to DIR.")
    _add_program_options(p)
    _add_output_options(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("simulate", help="simulate a trace written by compile",
                       description="Simulate an instruction trace written by `compile` (with "
                                   "the config it was compiled for, unless --config/--set/"
                                   "--preset are given) and write the run outputs to DIR.")
    p.add_argument("trace", help=f"directory written by `compile --out` (or its {FILENAME})")
    _add_machine_options(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    _add_output_options(p)
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("gemm", help="simulate a single GEMM",
                       description="Simulate one M x K x N GEMM on the machine (rows split over "
                                   "the cores).")
    p.add_argument("--m", type=_positive_int, required=True, help="rows streamed (M)")
    p.add_argument("--k", type=_positive_int, required=True, help="reduction (K)")
    p.add_argument("--n", type=_positive_int, required=True, help="output columns (N)")
    p.add_argument("--cores", type=_positive_int, default=1, help="cores to use (default 1)")
    p.add_argument("--ideal-memory", action="store_true",
                   help="operands already on chip, unlimited buffer ports")
    _add_machine_options(p)
    p.add_argument("--json", action="store_true", help="print JSON (has 'cycles')")
    p.set_defaults(func=_cmd_gemm)

    p = sub.add_parser("validate", help="compare the analytical model with the simulator",
                       description="Run the analytical model and the simulator on the same "
                                   "compiled program; write validation.csv (per layer and "
                                   "phase), validation.json and validation.png to DIR. Exits 1 "
                                   "if DRAM bytes differ.")
    _add_program_options(p)
    p.set_defaults(func=_cmd_validate)

    for register in _EXTRA_COMMANDS:
        register(sub, _OneLineParser)
    return parser


# Later stages register their commands here (validate, reproduce, sweep).
_EXTRA_COMMANDS: list[Callable[..., None]] = []
from . import cli_experiments  # noqa: E402, F401  (registers reproduce and sweep)


def main(argv: Sequence[str] | None = None) -> int:
    api.use_fast_gc()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except WavecoreError as exc:
        print(f"wavecore-sim: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("wavecore-sim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `wavecore-sim ... | head`: stop quietly
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
