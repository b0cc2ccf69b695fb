"""The `lexlip` console script. Errors the library raises on purpose print as one line, without a stack trace."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lexlip_es import __version__
from lexlip_es.errors import LexlipError
from lexlip_es.settings import Settings


def _cmd_engines_start(args: argparse.Namespace, settings: Settings) -> int:
    from lexlip_es.local.engines import URL_VARIABLES, start_engines

    names = args.only.split(",") if args.only else ["opensearch", "elasticsearch", "redis"]
    engines = start_engines(settings, names, nodes=args.nodes, heap_mb=args.heap_mb)
    for name in names:
        engine = engines[name]
        print(f"{name:14} {engine.url}   log: {engine.log_path}")
    print("\nPoint the library, the workers and the tests at them with:")
    for name in names:
        print(f"  export {URL_VARIABLES[name]}={engines[name].url}")
    return 0


def _cmd_engines_stop(args: argparse.Namespace, settings: Settings) -> int:
    from lexlip_es.local.engines import SERVERS, stop_engines

    stopped = stop_engines(settings, args.only.split(",") if args.only else SERVERS)
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def _cmd_engines_status(args: argparse.Namespace, settings: Settings) -> int:
    from lexlip_es.local.engines import engine_status

    for row in engine_status(settings):
        state = "running" if row["running"] else "stopped"
        print(f"{row['engine']:14} {state:8} {row['url'] or '-':28} {row['health']}")
    return 0


def _cmd_engines_fetch(args: argparse.Namespace, settings: Settings) -> int:
    from lexlip_es.local.engines import fetch_engines

    for name, what in fetch_engines(settings).items():
        print(f"{name:14} {what}")
    return 0


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from lexlip_es.demo import run_smoke_demo

    return 1 if run_smoke_demo(settings) else 0


def _cmd_version(args: argparse.Namespace, settings: Settings) -> int:
    print(f"lexlip-es {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lexlip",
        description="Image search by learned sparse lexicons (LexLIP) on Elasticsearch and OpenSearch.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    engines = commands.add_parser(
        "engines",
        help="start, stop or inspect local engines (OpenSearch, Elasticsearch, Redis)",
        description="Real local engines from Maven Central and Debian packages, on free loopback ports.",
    )
    engine_cmds = engines.add_subparsers(dest="engines_command", metavar="ACTION", required=True)
    only_help = "comma-separated subset of opensearch,elasticsearch,redis (default: all)"
    start = engine_cmds.add_parser(
        "start",
        help="start the engines and print their URLs",
        description="Start engines in the background; data and logs stay in the cache.",
    )
    start.add_argument("--only", help=only_help)
    start.add_argument("--nodes", type=int, default=1, help="OpenSearch nodes in the cluster (default 1)")
    start.add_argument("--heap-mb", type=int, default=None, help="heap per node in MB (default LEXLIP_ENGINE_HEAP_MB)")
    start.set_defaults(func=_cmd_engines_start)
    stop = engine_cmds.add_parser(
        "stop",
        help="stop engines started by `lexlip engines start`",
        description="Stop engines started by `lexlip engines start`.",
    )
    stop.add_argument("--only", help=only_help)
    stop.set_defaults(func=_cmd_engines_stop)
    status = engine_cmds.add_parser(
        "status",
        help="show which engines run and their health",
        description="Show which engines run, their URLs and health.",
    )
    status.set_defaults(func=_cmd_engines_status)
    fetch = engine_cmds.add_parser(
        "fetch",
        help="download engine artifacts with Maven and compile the launchers",
        description="Download every engine artifact so later starts need no network.",
    )
    fetch.set_defaults(func=_cmd_engines_fetch)

    demo = commands.add_parser(
        "demo",
        help="run the end-to-end demo on embedded defaults",
        description="Start engines, index the smoke corpus, query it, print every score "
        "beside the exact integer dot product.",
    )
    demo.set_defaults(func=_cmd_demo)

    version = commands.add_parser("version", help="print the version", description="Print the version.")
    version.set_defaults(func=_cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        return int(args.func(args, settings))
    except LexlipError as exc:
        print(f"lexlip: error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"lexlip: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lexlip: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
