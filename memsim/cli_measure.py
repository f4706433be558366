"""The commands that run real code: trace (the transformers model on fake tensors), validate (each
case of a suite in a fresh process, predicted beside measured) and calibrate (this GPU's measured
profile). Registered on memsim.cli's app."""

from __future__ import annotations

from typing import Optional

import typer
from rich.markup import escape

from . import cli_views as views
from . import tables
from .catalog import load_hardware
from .cli import PLOT_FORMATS, app, err, out, run_command
from .errors import InputError, existing_folder, output_file
from .predict import predict
from .workload import Workload


@app.command()
def trace(
    workload: str = typer.Argument(..., help="a workload YAML or JSON file"),
):
    """Run the real transformers model on fake tensors (CPU, no GPU) and put its exact peak beside the prediction."""

    def go():
        w = Workload.from_file(workload)
        report = predict(w)
        try:
            from .executors.trace import trace_workload
        except ImportError as e:
            raise InputError(f"trace needs the torch extra (pip install 'memsim[torch]'): {e}") from None
        with out.status("tracing on fake tensors..."):
            result = trace_workload(w)
        from .simulator import simulate
        from .predict import step_config
        from .runtimes.hf_steps import build_program

        tensors_only = simulate(build_program(step_config(w)), exclude=("workspace",)).bytes
        row = dict(analytic=views.gib(tensors_only), traced=views.gib(result.peak_bytes), seconds=f"{result.seconds:.1f} s",
                   error=f"{(tensors_only - result.peak_bytes) / result.peak_bytes:+.2%}")
        tables.show(out, f"{report.model} {report.task}: analytic vs traced (tensor bytes, no kernel workspaces)",
                    [(k, h, tables.NUM) for k, h in (("analytic", "analytic"), ("traced", "traced"), ("error", "error"),
                                                     ("seconds", "traced in"))], [row])

    run_command(go)

@app.command()
def validate(
    suite: str = typer.Argument(..., help="a suite YAML (data/suites/)"),
    results: Optional[str] = typer.Option(None, "--out", "-o", help="results JSONL; default data/validation/<suite name>.jsonl"),
    device: str = typer.Option("auto", help="auto | cuda | cpu (the CPU tracker measures live tensor bytes)"),
    only: Optional[list[str]] = typer.Option(None, "--only", help="run only these case ids"),
    plot_path: Optional[str] = typer.Option(None, "--plot", help="the plot's PNG; default beside the results"),
    no_run: bool = typer.Option(False, "--no-run", help="run nothing: compare the results already in --out with today's predictions "
                                "(the CSV and plot are written only beside --out, the plot also at --plot)"),
    hardware: Optional[str] = typer.Option(None, "--hardware", "-H", help="run the suite on this device instead of the suite's "
                                           "(its name names the results: data/validation/<hardware>.jsonl)"),
):
    """Run each case for real in a fresh process, append results as they land (a rerun resumes), then
    print predicted against measured and plot it."""
    from pathlib import Path

    from . import validate as v

    def go():
        if device not in ("auto", "cuda", "cpu"):
            raise InputError(f"--device: '{device}' is not one of auto, cuda, cpu")
        if plot_path:  # before any work
            output_file("--plot", plot_path, PLOT_FORMATS)
        if results and existing_folder(results):
            raise InputError(f"--out: '{results}' is a folder; give the results file in it, e.g. {Path(results) / 'results.jsonl'}")
        spec, cases = v.load_suite(suite, hardware)
        if only:
            unknown = sorted(set(only) - {c.id for c in cases})
            if unknown:
                raise InputError(f"--only: unknown case id(s) {', '.join(unknown)}")
            cases = [c for c in cases if c.id in only]
        path = Path(results or f"data/validation/{spec.name}.jsonl")
        failed = []
        if no_run:
            done = v.read_results(path)
            cases = [c for c in cases if c.id in done]
            if not cases:
                raise InputError(f"--no-run: no results of this suite's cases in {path}; run without --no-run to measure them, "
                                 "or give --out the results file")
        else:
            v.check_device(spec, suite, device)
            done = _run_stoppable(v, spec, cases, path, device, failed)
        df = v.comparison(cases, done)
        write = not no_run or results is not None  # --no-run writes beside --out only (and the plot where --plot says)
        table = path.with_name(f"{path.stem}-compare.csv")
        views.validation(out, df, v.summary(df), path, f"{table} has every column" if write else "a wider terminal shows them")
        if len(df) and write:
            df.to_csv(table, index=False)
            out.print(escape(f"table: {table}"))
        if len(df) and (write or plot_path):
            out.print(escape(f"plot: {v.plot(df, Path(plot_path or path.with_suffix('.png')), title=spec.name)}"))
        if failed:
            raise typer.Exit(1)

    run_command(go)

@app.command()
def calibrate(
    name: str = typer.Option("", help="the profile's name; default: the device's, lowercased"),
    base: str = typer.Option("", help="the datasheet profile it measures (memsim list hardware)"),
    out_path: Optional[str] = typer.Option(None, "--out", "-o", help="the YAML to write; default hardware/measured/<name>.yaml"),
    quick: bool = typer.Option(False, help="bf16 products only, no disk"),
    disk_folder: Optional[str] = typer.Option(None, "--disk-folder", help="where the disk benchmark writes its file"),
    update_path: Optional[str] = typer.Option(None, "--update", help="a profile of this device to measure again, in part (--only)"),
    only: Optional[list[str]] = typer.Option(None, "--only", help="with --update: the sections to measure again"),
):
    """Microbenchmark this machine's GPU (matrix products by shape and dtype, attention, memory
    kernels, copy bandwidth, host-device transfers pinned and pageable, disk, launch costs) and
    write a measured profile."""
    from pathlib import Path

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    def go():
        from .executors.calibrate import SECTIONS
        from .executors.calibrate import calibrate as run

        if only and not update_path:
            raise InputError("--only: measures sections again in a profile given with --update PROFILE.yaml")
        if update_path:
            from .calibration import MeasuredProfile
            from .executors.calibrate import update

            bad = sorted(set(only or ()) - set(SECTIONS))
            if not only or bad:
                raise InputError(f"--only: give sections to measure again from {', '.join(SECTIONS)}" + (f" (not {', '.join(bad)})" if bad else ""))
            profile = update(MeasuredProfile.from_path(update_path), only, disk_folder)
            Path(out_path or update_path).write_text(profile.to_yaml())
            views.calibration(out, profile)
            out.print(f"profile: {out_path or update_path} ({', '.join(only)} measured again)", markup=False)
            return
        if base:
            load_hardware(base)  # a one-line error before minutes of benchmarks
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, transient=True) as bar:
            job = bar.add_task("calibrating")
            profile = run(name or "", base, quick, disk_folder, progress=lambda msg: bar.update(job, description=msg))
        if not profile.name:
            profile.name = profile.provenance.device.lower().replace(" ", "-")
        path = Path(out_path or f"hardware/measured/{profile.name}.yaml")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(profile.to_yaml())
        views.calibration(out, profile)
        out.print(f"profile: {path}", markup=False)

    run_command(go)

def _run_cases(v, spec, cases, path, device, failed):
    """Run the cases not yet in `path` under a progress bar; failures are listed in `failed`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err) as bar:
        job = bar.add_task(f"{spec.name}", total=len(cases))

        def on_result(case, result, resumed):
            if isinstance(result, str):
                failed.append((case.id, result))
                err.print(f"[red]{escape(case.id)}: {escape(result)}[/]", highlight=False)
            bar.update(job, advance=1, description=escape(f"{case.id}{' (resumed)' if resumed else ''}"))

        return v.run_suite(spec, cases, path, device, on_result, on_note=lambda note: err.print(note, markup=False, highlight=False))

def _run_stoppable(v, spec, cases, path, device, failed):
    """_run_cases, stopped cleanly by Ctrl-C or SIGTERM: the worker killed, what landed kept, exit 130 or 143."""
    from .worker_process import stop_on_signals

    try:
        with stop_on_signals():
            return _run_cases(v, spec, cases, path, device, failed)
    except KeyboardInterrupt as e:
        by = str(e) or "SIGINT"
        err.print(f"validate: stopped by {by}; the results that landed are in {path}, and the same command resumes",
                  markup=False, highlight=False)
        raise typer.Exit(143 if by == "SIGTERM" else 130)
