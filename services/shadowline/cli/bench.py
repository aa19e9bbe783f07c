"""`shadowline bench append|replication|failover|watchdog|chaos|cli`: benchmarks that print figures.

The benchmarks are a package of their own, shadowline_bench, which the product never imports:
each command loads it by name when it runs, and says how to get it when it is missing.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Annotated

import typer

from shadowline.cli.common import examples, fail, load_settings, run, setup_logging

PACKAGE = "shadowline_bench"
INSTALL = "pip install 'shadowline[bench]' (or, in a source tree, pip install -e '.[bench]')"

app = typer.Typer(
    help="Benchmarks that print figures.",
    no_args_is_help=True,
    epilog=examples("shadowline bench append", "shadowline bench replication --quick"),
)


def _load(name: str) -> ModuleType:
    """shadowline_bench.NAME, or the command ends saying what is missing and how to install it."""
    try:
        return importlib.import_module(f"{PACKAGE}.{name}")
    except ModuleNotFoundError as error:
        missing = error.name or str(error)
        if missing == PACKAGE or missing.startswith(f"{PACKAGE}."):
            fail(f"the benchmarks ({PACKAGE}) are not installed: {INSTALL}")
        fail(f"the benchmarks need the module {missing}, which is not installed: {INSTALL}")


@app.command("append", epilog=examples("shadowline bench append --events 5000"))
def bench_append(
    events: Annotated[int, typer.Option(help="Events per store run.")] = 20000,
    http_requests: Annotated[int, typer.Option(help="Requests in the HTTP run.")] = 10000,
    skip_eventsourcing: Annotated[bool, typer.Option(help="Do not run the comparison.")] = False,
) -> None:
    """Acknowledged, durable appends: store with 1 and 32 writers, HTTP with 16 clients."""
    bench_main = _load("append").main
    setup_logging("WARNING")
    settings = load_settings()
    raise typer.Exit(run(bench_main(settings, events, http_requests, not skip_eventsourcing)))


@app.command("replication", epilog=examples("shadowline bench replication --quick --seconds 10"))
def bench_replication(
    quick: Annotated[
        bool, typer.Option(help="Small sizes, for a check on a busy machine.")
    ] = False,
    seconds: Annotated[
        float | None, typer.Option(help="Maximum-rate run length (default 30; 0 skips it).")
    ] = None,
    clients: Annotated[int, typer.Option(help="Clients in the maximum-rate run.")] = 16,
    paced_rate: Annotated[
        float | None, typer.Option(help="PUT/s of the open-loop run (default 1000).")
    ] = None,
    paced_seconds: Annotated[
        float | None, typer.Option(help="Open-loop run length (default 10; 0 skips it).")
    ] = None,
    items: Annotated[
        int | None, typer.Option(help="Items for the bootstrap (default 100000; 0 skips it).")
    ] = None,
) -> None:
    """A master and its shadow as processes: apply rate vs append rate, lag p50/p99, bootstrap."""
    bench = _load("replication")
    setup_logging("WARNING")
    settings = load_settings()
    base = bench.QUICK if quick else bench.FULL
    sizes = bench.Sizes(
        seconds=base.seconds if seconds is None else seconds,
        paced_rate=base.paced_rate if paced_rate is None else paced_rate,
        paced_seconds=base.paced_seconds if paced_seconds is None else paced_seconds,
        items=base.items if items is None else items,
        clients=clients,
    )
    raise typer.Exit(run(bench.main(settings, sizes)))


@app.command("failover", epilog=examples("shadowline bench failover --quick --keep-logs"))
def bench_failover(
    quick: Annotated[bool, typer.Option(help="3 trials of each, for a check.")] = False,
    trials: Annotated[
        int | None, typer.Option(help="Failovers after SIGKILL (default 20; 0 skips them).")
    ] = None,
    switches: Annotated[
        int | None, typer.Option(help="Switches of roles (default 10; 0 skips them).")
    ] = None,
    clients: Annotated[int, typer.Option(help="Clients writing through the trials.")] = 4,
    keep_logs: Annotated[
        bool, typer.Option(help="Keep the instances' and the watchdog's logs.")
    ] = False,
) -> None:
    """Master, shadow and watchdog as processes: failover time, switch-roles unavailability."""
    bench = _load("failover")
    setup_logging("WARNING")
    settings = load_settings()
    base = bench.QUICK if quick else bench.FULL
    sizes = bench.Sizes(
        trials=base.trials if trials is None else trials,
        switches=base.switches if switches is None else switches,
        clients=clients,
    )
    raise typer.Exit(run(bench.main(settings, sizes, keep_logs)))


@app.command("watchdog", epilog=examples("shadowline bench watchdog --clusters 200 --steady 10"))
def bench_watchdog(
    clusters: Annotated[int, typer.Option(help="Simulated clusters (master+shadow each).")] = 1000,
    steady: Annotated[float, typer.Option(help="Seconds of the steady CPU window.")] = 30.0,
    sample: Annotated[int, typer.Option(help="Clusters whose master stops.")] = 50,
    spread: Annotated[float, typer.Option(help="Seconds over which those masters stop.")] = 20.0,
) -> None:
    """One watchdog process, N simulated clusters at 2 Hz: its CPU and detection delays."""
    bench = _load("watchdog")
    setup_logging("WARNING")
    settings = load_settings()
    sizes = bench.Sizes(clusters=clusters, steady=steady, sample=sample, spread=spread)
    raise typer.Exit(run(bench.main(settings, sizes)))


@app.command("chaos", epilog=examples("shadowline bench chaos --minutes 2 --seed 7"))
def bench_chaos(
    minutes: Annotated[float, typer.Option(min=0.1, help="Minutes of faults under the load.")] = 2,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the faults and the load (default: a new one).")
    ] = None,
    clients: Annotated[int, typer.Option(min=1, help="Client processes of the workload.")] = 4,
    keep_logs: Annotated[
        bool, typer.Option(help="Keep the history, the faults and every log.")
    ] = False,
    refusals_unknown: Annotated[
        bool,
        typer.Option(
            help="Count a write's 503 naming the master as unknown (info), not as not applied: "
            "an instance also answers so for writes it committed but could not acknowledge."
        ),
    ] = False,
) -> None:
    """A recorded workload under random faults (kill -9, SIGSTOP of master, shadow, watchdog
    and RabbitMQ nodes), then heal and check the history: exit code 1 on a violation."""
    import secrets

    bench = _load("chaos.run")
    setup_logging("WARNING")
    settings = load_settings()
    chosen = secrets.randbelow(1_000_000) if seed is None else seed
    options = bench.Options(
        minutes=minutes,
        seed=chosen,
        clients=clients,
        keep_logs=keep_logs,
        refusals_unknown=refusals_unknown,
    )
    raise typer.Exit(run(bench.main(settings, options)))


@app.command("cli", epilog=examples("shadowline bench cli", "shadowline bench cli --runs 50"))
def bench_cli(
    runs: Annotated[int, typer.Option(min=1, help="Runs of each command.")] = 20,
    pyc: Annotated[
        bool,
        typer.Option(
            help="Cache bytecode in a temporary directory, as an installed program has it "
            "(--no-pyc: PYTHONDONTWRITEBYTECODE=1)."
        ),
    ] = True,
) -> None:
    """CLI start-up before the first request (--help, config get, ha status) vs python -c pass."""
    raise typer.Exit(_load("cli_startup").main(runs, pyc))
