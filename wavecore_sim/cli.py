"""Command-line interface. Every command is a thin layer over the Python API in ``api``."""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from . import __version__, api, cli_experiments
from .argtypes import add_progress_options, count_int, progress_from, schedule_list
from .argtypes import positive_int as _positive_int
from .compiler.tracefile import FILENAME
from .config import EXECUTION_ONLY_FIELDS
from .errors import WavecoreError
from .progress import process_seconds

EXIT_BAD_INPUT = 2


def _add_machine_options(
    p: argparse.ArgumentParser,
    preset_help: str = "hardware preset (default: wavecore)",
    set_help: str = "override one config field, e.g. --set gbuf_bytes=20MiB (repeatable)",
) -> None:
    p.add_argument("--preset", default="wavecore", help=preset_help)
    p.add_argument("--config", metavar="FILE", help="TOML file of hardware config fields")
    p.add_argument("--set", metavar="FIELD=VALUE", action="append", default=[], help=set_help)


def _add_program_options(p: argparse.ArgumentParser, out_required: bool = True) -> None:
    p.add_argument(
        "--network",
        default="resnet50",
        help="zoo network name or path to a network .json or .onnx file (default: resnet50)",
    )
    p.add_argument("--batch", type=_positive_int, default=32, help="mini-batch size (default 32)")
    p.add_argument(
        "--schedule",
        type=schedule_list,
        default=["mbs2"],
        metavar="S[,S2...]",
        help="baseline, il, mbs-fs, mbs1, mbs2, mbs2-time or mbs-opt, or a comma-separated "
        "list of them (each writes DIR/<schedule>/) (default: mbs2)",
    )
    p.add_argument(
        "--norm",
        choices=["bn", "gn"],
        default=None,
        help="normalization: bn or gn (default: bn for baseline/il, gn for mbs*)",
    )
    p.add_argument(
        "--recompute",
        choices=["none", "all", "auto"],
        default="none",
        help="activation recomputation per layer group (mbs2, mbs2-time, mbs-opt, mbs-fs): "
        "none saves the forward activations to DRAM, all recomputes every group's forward "
        "at the start of its backward where it fits, auto where the objective gains "
        "(default: none)",
    )
    p.add_argument(
        "--objective",
        choices=["time", "traffic", "energy"],
        default="time",
        help="what mbs-opt minimises, as estimated: time, DRAM traffic or energy (default: time)",
    )
    p.add_argument(
        "--referee",
        type=count_int,
        default=0,
        metavar="N",
        help="mbs-opt: compile and simulate its N best plans, its best plan under each other "
        "objective and with groups of one block, mbs2 and mbs2-time, and keep the best as "
        "simulated (up to N+5 compiles and simulations; default 0: off, the estimate's best)",
    )
    _add_machine_options(p)
    p.add_argument("--out", required=out_required, metavar="DIR", help="output directory")
    add_progress_options(p)


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print summary.json instead of a digest")
    p.add_argument(
        "--no-trace", action="store_true", help="do not write trace.json (the Perfetto trace)"
    )
    p.add_argument("--no-plots", action="store_true", help="do not draw timeline.png")


def _cmd_workloads_list(args: argparse.Namespace) -> int:
    from .workload import list_example_networks

    for name in api.list_networks():
        print(name)
    for name in list_example_networks():
        print(f"{name}  (example: a small network to try; workloads/{name}.json)")
    return 0


def _cmd_workloads_import(args: argparse.Namespace) -> int:
    spec = api.import_onnx(args.model, args.out, name=args.name)
    print(f"wrote {args.out}: {spec['name']}, {len(spec['layers'])} layers")
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
    from .config_docs import describe, unit_of

    if args.list:
        return _cmd_config_presets(args)
    cfg = api.make_config(args.preset, args.config, args.set)  # shown in full: no notes
    values = cfg.to_dict()
    if args.json:
        print(json.dumps(values, indent=1))
        return 0
    rows = [(key, str(value), unit_of(key), describe(key)) for key, value in values.items()]
    head = ("field", "value", "unit", "valid", "source", "meaning")
    table = [head] + [(k, v, u, d.valid, d.source, d.meaning) for k, v, u, d in rows]
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    print(
        f"preset {args.preset}"
        + (f", config file {args.config}" if args.config else "")
        + (f", --set {' '.join(args.set)}" if args.set else "")
    )
    for r in table:
        print("  ".join(r[i].ljust(widths[i]) if i < 5 else r[i] for i in range(6)).rstrip())
    return 0


def _cmd_config_presets(args: argparse.Namespace) -> int:
    from .config import PRESETS

    base = PRESETS["wavecore"].to_dict()
    for name, cfg in PRESETS.items():
        diff = {k: v for k, v in cfg.to_dict().items() if v != base[k]}
        what = ", ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in diff.items()
        )
        print(f"{name.ljust(16)}{what or 'the default machine (DESIGN section 3)'}")
    return 0


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line naming the option, exit status 2 (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _config_from(args: argparse.Namespace):
    """The config of ``--preset``, ``--config`` and ``--set``; a --set that changes the shape
    of the preset's machine is stated on stderr (``--preset wavecore-1core --set cores=2``
    runs two cores: say so)."""
    cfg = api.make_config(args.preset, args.config, args.set)
    note_overrides(args.preset, args.set, cfg)
    return cfg


#: The fields a preset is named for (its machine's shape): a --set that changes one is stated.
PRESET_SHAPE_FIELDS = ("cores", "array_rows", "array_cols")


def note_overrides(preset: str, set_options: list[str], cfg) -> None:
    from .config import PRESETS

    base = PRESETS[preset].to_dict()
    for key in api.parse_set_options(set_options):
        if key in PRESET_SHAPE_FIELDS and base[key] != getattr(cfg, key):
            print(
                f"wavecore-sim: note: --set {key}={getattr(cfg, key)} replaces preset "
                f"{preset}'s {key}={base[key]}",
                file=sys.stderr,
            )


def _per_schedule(args: argparse.Namespace, files: Sequence[str]) -> list[tuple[str, str]]:
    """``(schedule, out dir)`` for each ``--schedule``: DIR itself for one, DIR/<schedule>
    for several. Every out dir is checked (:func:`api.check_out_dir`, for ``files``) before
    the first schedule runs, so a bad one stops the command with nothing written."""
    several = len(args.schedule) > 1
    if getattr(args, "referee", 0) and "mbs-opt" not in args.schedule:
        api.check_referee(args.schedule[0], args.referee)  # refused in one line
    pairs = [
        (schedule, f"{args.out}/{schedule}" if several and args.out else args.out)
        for schedule in args.schedule
    ]
    for _, out_dir in pairs:
        if out_dir is not None:
            api.check_out_dir(out_dir, files)
    return pairs


def _plan_options(args: argparse.Namespace, schedule: str) -> dict[str, Any]:
    """``--recompute``, ``--objective`` and ``--referee`` for one of the listed schedules (the
    referee applies to mbs-opt only), as :func:`api.compile_network` takes them."""
    return {
        "recompute": args.recompute,
        "objective": args.objective,
        "referee": args.referee if schedule == "mbs-opt" else 0,
    }


def _cmd_compile(args: argparse.Namespace) -> int:
    from .report.plan_table import format_plan

    cfg, progress = _config_from(args), progress_from(args)
    for schedule, out_dir in _per_schedule(args, api.COMPILE_FILES):
        compiled = api.compile_to(
            out_dir,
            network=args.network,
            batch=args.batch,
            schedule=schedule,
            norm=args.norm,
            cfg=cfg,
            progress=progress,
            **_plan_options(args, schedule),
        )
        print(format_plan(api.plan_json(compiled)))
        print(f"wrote {out_dir}/plan.json and {out_dir}/{FILENAME}")
    return 0


def _print_run(out, args: argparse.Namespace) -> None:
    from .report.summary import format_summary

    if getattr(args, "json", False):
        print(json.dumps(out.summary, indent=1))
        return
    print(format_summary(out.summary, process_seconds=process_seconds()))
    if out.out_dir:
        files = ["summary.json", "layers.csv", "groups.csv"]
        files += ["timeline.png"] if not args.no_plots else []
        files += ["trace.json"] if not args.no_trace else []
        print(
            f"wrote {out.out_dir}/{', '.join(files)}"
            + ("" if args.no_trace else " (open trace.json in https://ui.perfetto.dev)")
        )


def _cmd_run(args: argparse.Namespace) -> int:
    cfg, progress = _config_from(args), progress_from(args)
    files = api.run_files(not args.no_plots, not args.no_trace)
    for schedule, out_dir in _per_schedule(args, files):
        out = api.run(
            args.network,
            args.batch,
            schedule,
            args.norm,
            cfg,
            out_dir,
            progress=progress,
            plots=not args.no_plots,
            trace_json=not args.no_trace,
            **_plan_options(args, schedule),
        )
        progress.close()
        _print_run(out, args)
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    progress = progress_from(args)
    out = api.simulate_trace(
        args.trace,
        None,
        args.out,
        progress=progress,
        plots=not args.no_plots,
        trace_json=not args.no_trace,
        preset=args.preset,
        config_file=args.config,
        set_options=args.set,
    )
    progress.close()
    _print_run(out, args)
    return 0


def _cmd_gemm(args: argparse.Namespace) -> int:
    from .compiler.microbench import gemm_program
    from .timing import gemm_timing

    overrides = api.parse_set_options(args.set)
    base = api.make_config(args.preset, args.config, overrides)
    if args.cores > base.cores:
        raise WavecoreError(
            f"--cores {args.cores}: preset {args.preset} has {base.cores} "
            f"core(s); use at most that, or --set cores={args.cores} for a "
            "bigger machine"
        )
    overrides["cores"] = str(args.cores)
    cfg = api.make_config(args.preset, args.config, overrides)
    program = gemm_program(args.m, args.k, args.n, cfg, ideal_memory=args.ideal_memory)
    result, summary = api.simulate_program(program, cfg, ideal_memory=args.ideal_memory)
    one = gemm_timing(args.m, args.k, args.n, cfg)
    report = {
        "m": args.m,
        "k": args.k,
        "n": args.n,
        "cores": cfg.cores,
        "ideal_memory": args.ideal_memory,
        "weight_double_buffer": cfg.weight_double_buffer,
        "cycles": result.cycles,
        "macs": result.macs,
        "folds_per_core": one.folds,
        "utilization": summary["utilization"],
        "core_stalls": summary["core_stalls"],
        "dram_bytes": summary["dram_bytes"],
    }
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(
            f"GEMM {args.m}x{args.k}x{args.n} on {cfg.cores} core(s) of "
            f"{cfg.array_rows}x{cfg.array_cols}: {result.cycles:,} cycles, "
            f"{summary['utilization']['overall']:.1%} of peak"
            f"{' (ideal memory)' if args.ideal_memory else ''}"
        )
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    cfg, progress = _config_from(args), progress_from(args)
    status = 0
    for schedule, out_dir in _per_schedule(args, api.VALIDATE_FILES):
        out = api.validate(
            args.network,
            args.batch,
            schedule,
            args.norm,
            cfg,
            out_dir,
            progress=progress,
            **_plan_options(args, schedule),
        )
        progress.close()
        status = max(status, _print_validation(out, out_dir))
    return status


def _print_validation(out, out_dir: str) -> int:
    st = out.stats
    print(
        f"analytical {out.analytical_cycles:,} cycles vs simulated {out.simulated_cycles:,} "
        f"({st['total_error_pct']:+.2f}%)"
    )
    print(
        f"per layer and phase ({st['layers']}): median |error| {st['median_abs_error_pct']}%, "
        f"p90 {st['p90_abs_error_pct']}%, max {st['max_abs_error_pct']}%, cycle-weighted "
        f"{st.get('weighted_abs_error_pct', 0)}%; {st['over_5pct']} over 5%"
    )
    if st["over_5pct_by_mechanism"]:
        print(
            "rows over 5% by the mechanism that contributes most (docs/validation.md): "
            + ", ".join(f"{k} {v}" for k, v in st["over_5pct_by_mechanism"].items())
        )
    print(f"DRAM bytes {'identical' if out.bytes_match else 'DIFFER'} between the two")
    print(f"wrote {out_dir}/validation.csv, validation.json, validation.png")
    if not out.bytes_match:
        print(
            "wavecore-sim: error: DRAM bytes differ between the analytical model and the simulator",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_dram(args: argparse.Namespace) -> int:
    from .sim.dram_patterns import load_pattern, run_pattern

    cfg = _config_from(args)
    result = run_pattern(load_pattern(args.pattern), cfg, args.mode, args.start_ns)
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    else:
        print(
            f"{args.pattern}: {result.transfers} transfers, {result.bytes:,} bytes, "
            f"{args.mode} ({cfg.hbm_model} HBM model, DRAM alone)"
        )
        print(
            f"  {result.gbps:.1f} GB/s over {result.elapsed_ns:,.1f} ns from "
            f"{result.start_ns:g} ns; mean transfer latency {result.latency_ns_mean:,.1f} ns"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="wavecore-sim",
        description="Cycle-level simulator of CNN training on a WaveCore-class accelerator "
        "with Mini-batch Serialization schedules (Lym et al., MLSys 2019).",
    )
    parser.add_argument("--version", action="version", version=f"wavecore-sim {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_OneLineParser
    )

    wl = sub.add_parser(
        "workloads",
        help="list and inspect networks",
        description="List the built-in networks or show one layer by layer.",
    )
    wl_sub = wl.add_subparsers(
        dest="workloads_command", metavar="ACTION", required=True, parser_class=_OneLineParser
    )
    p = wl_sub.add_parser(
        "list",
        help="names of the built-in networks and the example",
        description=(
            "Print the names of the built-in networks, then the example network "
            "(marked as the example). Each name works with --network and 'workloads show'."
        ),
    )
    p.set_defaults(func=_cmd_workloads_list)
    p = wl_sub.add_parser(
        "show",
        help="per-layer table and totals of a network",
        description="Per-layer table (shapes, parameters, MACs per pass, "
        "activation bytes) and totals of a network.",
    )
    p.add_argument("name", help="zoo network name or path to a network .json or .onnx file")
    p.add_argument("--batch", type=_positive_int, default=32, help="mini-batch size (default 32)")
    p.add_argument(
        "--norm", choices=["bn", "gn"], default="bn", help="batch norm or group norm (default bn)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_workloads_show)
    p = wl_sub.add_parser(
        "import",
        help="convert an ONNX model to a network .json file",
        description="Convert an ONNX model (graph only; the batch dimension "
        "is dropped) to the project's network JSON format, so "
        "it can be inspected and edited. Needs the onnx extra: "
        "pip install -e '.[onnx]'. Supported operators: "
        "docs/network-format.md.",
    )
    p.add_argument("model", help="path to an .onnx file")
    p.add_argument("--out", required=True, metavar="FILE", help="network .json file to write")
    p.add_argument("--name", default=None, help="network name (default: the file's stem)")
    p.set_defaults(func=_cmd_workloads_import)

    cf = sub.add_parser(
        "config",
        help="show the hardware configuration",
        description="Show the validated hardware configuration.",
    )
    cf_sub = cf.add_subparsers(
        dest="config_command", metavar="ACTION", required=True, parser_class=_OneLineParser
    )
    p = cf_sub.add_parser(
        "show",
        help="every config field: value, unit, meaning, range, source",
        description="Print every config field of a preset after --config "
        "and --set are applied, with its unit, meaning, valid "
        "range and source (paper or assumption).",
    )
    _add_machine_options(p)
    p.add_argument("--json", action="store_true", help="print the values as JSON")
    p.add_argument("--list", action="store_true", help="list the presets instead")
    p.set_defaults(func=_cmd_config_show)
    p = cf_sub.add_parser(
        "presets",
        help="list the hardware presets",
        description="List the presets --preset accepts and how each differs "
        "from the default machine.",
    )
    p.set_defaults(func=_cmd_config_presets)

    p = sub.add_parser(
        "compile",
        help="compile one training iteration to instruction streams",
        description="Schedule and compile one training iteration; write "
        "DIR/plan.json and the instruction trace DIR/program.wct "
        "(docs/trace-format.md), and print the groups, the planned "
        "DRAM traffic and the DRAM footprint.",
    )
    _add_program_options(p)
    p.set_defaults(func=_cmd_compile)

    p = sub.add_parser(
        "run",
        help="compile and simulate one training iteration",
        description="Compile and simulate one training iteration; write "
        "summary.json, layers.csv, groups.csv, timeline.png and "
        "trace.json (Perfetto) to DIR.",
    )
    _add_program_options(p)
    _add_output_options(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "simulate",
        help="simulate a trace written by compile",
        description="Simulate an instruction trace written by `compile` on the config it "
        "was compiled for (stored in the trace) and write the run outputs to DIR. --set may "
        "change only fields the compiled program does not depend on (listed under --set); "
        "--preset or --config must agree with the trace in every other field. Anything else "
        "is refused: recompile with `compile --set FIELD=VALUE`.",
    )
    p.add_argument("trace", help=f"directory written by `compile --out` (or its {FILENAME})")
    _add_machine_options(
        p,
        preset_help="run on this preset instead of the trace's config; it must agree with "
        "the trace in every field the program depends on (default: the trace's config)",
        set_help="override one execution-only field of the trace's config (repeatable): "
        + ", ".join(sorted(EXECUTION_ONLY_FIELDS))
        + "; hbm_gbps and clock_mhz only together, at the same ratio",
    )
    p.set_defaults(preset=None)
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    _add_output_options(p)
    add_progress_options(p)
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser(
        "gemm",
        help="simulate a single GEMM",
        description="Simulate one M x K x N GEMM on the machine (rows split over the cores).",
    )
    p.add_argument("--m", type=_positive_int, required=True, help="rows streamed (M)")
    p.add_argument("--k", type=_positive_int, required=True, help="reduction (K)")
    p.add_argument("--n", type=_positive_int, required=True, help="output columns (N)")
    p.add_argument(
        "--cores",
        type=_positive_int,
        default=1,
        help="cores to use, at most the preset's (default 1)",
    )
    p.add_argument(
        "--ideal-memory",
        action="store_true",
        help="operands already on chip, unlimited buffer ports",
    )
    _add_machine_options(p)
    p.add_argument("--json", action="store_true", help="print JSON (has 'cycles')")
    p.set_defaults(func=_cmd_gemm)

    p = sub.add_parser(
        "validate",
        help="compare the analytical model with the simulator",
        description="Run the analytical model and the simulator on the same "
        "compiled program; write validation.csv (per layer and "
        "phase), validation.json and validation.png to DIR. Exits 1 "
        "if DRAM bytes differ.",
    )
    _add_program_options(p)
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser(
        "dram",
        help="run a DMA pattern file through the HBM model",
        description="Run a DMA pattern (CSV: queue,op,addr,bytes,ready_ns; op "
        "read or write) through the machine's HBM model without "
        "on-chip latency, to compare with DRAM measurements such "
        "as the DRAMsim3 reference (docs/validation.md). Prints "
        "achieved GB/s, elapsed ns and mean transfer latency.",
    )
    p.add_argument("pattern", help="pattern .csv file")
    p.add_argument(
        "--mode",
        choices=["pipelined", "blocking"],
        required=True,
        help="pipelined: each transfer issues at its ready_ns; blocking: a queue's "
        "next transfer waits for its previous one",
    )
    p.add_argument(
        "--start-ns",
        type=float,
        default=0.0,
        metavar="T",
        help="start T ns after the memory was idle from time 0 (refresh runs from "
        "time 0; default 0)",
    )
    _add_machine_options(p)
    p.add_argument(
        "--json", action="store_true", help="print JSON (gbps, elapsed_ns, latency_ns_mean, ...)"
    )
    p.set_defaults(func=_cmd_dram)

    cli_experiments.register(sub)
    return parser


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so that every ``finally`` and ``except
    BaseException`` cleanup runs (staged outputs removed) before the process exits 143."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush cannot fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    api.use_fast_gc()
    parser = build_parser()
    args = parser.parse_args(argv)
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if on_main_thread else None
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a full device (`> /dev/full`) fails here, not at exit
        return code
    except WavecoreError as exc:
        print(f"wavecore-sim: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("wavecore-sim: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("wavecore-sim: terminated", file=sys.stderr)
        return 143
    except BrokenPipeError:  # e.g. `wavecore-sim ... | head`: stop quietly
        _silence_stdout()
        return 0
    except OSError as exc:  # a full disk or stdout on a full device: one line, exit 1
        where = exc.filename or "standard output"
        fix = {
            errno.ENOSPC: "; free some space or give --out on another disk",
            errno.EDQUOT: "; free some space or give --out on another disk",
            errno.EFBIG: "; raise the file size limit (ulimit -f)",
        }.get(exc.errno, "; check --out and its permissions")
        fix = fix if exc.filename else ""
        print(f"wavecore-sim: error: {where}: {exc.strerror or exc}{fix}", file=sys.stderr)
        if not exc.filename:
            _silence_stdout()
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
