"""Command-line interface. Every command is a thin layer over the Python API in ``api``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from . import api
from .errors import WavecoreError

EXIT_BAD_INPUT = 2


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _add_machine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="wavecore", help="hardware preset (default: wavecore)")
    p.add_argument("--config", metavar="FILE", help="TOML file of hardware config fields")
    p.add_argument("--set", metavar="FIELD=VALUE", action="append", default=[],
                   help="override one config field, e.g. --set gbuf_bytes=20MiB (repeatable)")


def _add_program_options(p: argparse.ArgumentParser, out_required: bool = True) -> None:
    p.add_argument("--network", default="resnet50",
                   help="zoo network name or path to a network .json file (default: resnet50)")
    p.add_argument("--batch", type=_positive_int, default=32, help="mini-batch size (default 32)")
    p.add_argument("--schedule", default="mbs2", help="baseline, il, mbs-fs, mbs1 or mbs2 "
                   "(default: mbs2)")
    p.add_argument("--norm", choices=["bn", "gn"], default=None,
                   help="normalization: bn or gn (default: bn for baseline/il, gn for mbs*)")
    _add_machine_options(p)
    p.add_argument("--out", required=out_required, metavar="DIR", help="output directory")


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

    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


# Later stages register their commands here (compile, run, simulate, gemm, validate, ...).
_EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
