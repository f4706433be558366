"""The memsim command line: fit, predict, list, roofline here; trace, validate and calibrate (the
commands that run real code) in cli_measure.py. Bad input: one line on stderr, exit 2."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer
import typer.core
from rich.console import Console
from rich.text import Text

from .catalog import hardware_names, load_hardware
from .errors import InputError, output_file
from .fit import FIELDS, boundary
from .predict import predict
from .methods import METHODS, catalog
from .workload import Workload
from . import cli_views as views
from . import tables


class _OneLineUsage(typer.core.TyperGroup):
    """click's usage errors (an unknown option, a value of the wrong type, a missing argument) as
    memsim's other bad input: one line on stderr and exit code 2, not a framed panel."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except typer.TyperException as e:  # typer's click: UsageError, BadParameter, NoSuchOption, ...
            where = f" ({e.ctx.command_path} --help)" if getattr(e, "ctx", None) else ""
            err.print(f"error: {' '.join(e.format_message().split())}{where}", highlight=False, soft_wrap=True, markup=False)
            sys.exit(getattr(e, "exit_code", 2))
        except typer.Abort:
            err.print("aborted", highlight=False)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)  # typer returns a command's typer.Exit code


app = typer.Typer(cls=_OneLineUsage, add_completion=False, no_args_is_help=True, help="Will it fit? Memory of training and serving transformers, predicted.")
out = Console()
err = Console(stderr=True)

DEFAULT_MODEL = "tinyllama-1.1b"
DEFAULT_HARDWARE = "rtx-4090"


def _parse_method(text: str):
    """'NAME' or 'NAME:key=value,key=a+b' ('+' joins a list parameter's items), e.g.
    'lora:rank=16,targets=q_proj+v_proj' or 'activation-checkpointing:every=2'."""
    name, _, rest = text.partition(":")
    spec: dict = {"name": name.strip()}
    fields = METHODS[spec["name"]].model_fields if spec["name"] in METHODS else {}
    for part in filter(None, rest.split(",")):
        key, _, value = part.partition("=")
        key = key.strip()
        if not value:
            raise InputError(f"--method {text}: parameters are key=value, e.g. lora:rank=16")
        listed = key in fields and getattr(fields[key].annotation, "__origin__", None) in (tuple, list)
        spec[key] = [_scalar(v) for v in value.split("+")] if listed or "+" in value else _scalar(value)
    return spec


def _scalar(v: str):
    """A command-line value as the number or boolean it spells, else the string."""
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    for kind in (int, float):
        try:
            return kind(v)
        except ValueError:
            pass
    return v


def run_command(fn):
    """Run a command's body: bad input (memsim's InputError, a file it cannot use) is one line on stderr and exit 2."""
    try:
        return fn()
    except InputError as e:
        _refuse(str(e))
    except BrokenPipeError:
        raise
    except OSError as e:  # a file the command reads or writes (a folder given for a file, a full disk)
        _refuse(f"cannot use '{e.filename}': {e.strerror}" if e.filename else str(e))


def _refuse(message: str):
    err.print(f"error: {' '.join(message.split())}", highlight=False, soft_wrap=True, markup=False)
    raise typer.Exit(2)


@app.command()
def fit(
    model: str = typer.Argument(DEFAULT_MODEL, help="catalog name (memsim list models) or a config.json path"),
    hardware: str = typer.Option(DEFAULT_HARDWARE, "--hardware", "-H", help="catalog name or a capacity like 24GiB"),
    task: str = typer.Option("train", help="train | prefill | decode | generate"),
    batch: int = typer.Option(1, "--batch", "-b"),
    seq: int = typer.Option(1024, "--seq", "-s"),
    generate: int = typer.Option(0, help="new tokens (task generate)"),
    dtype: str = typer.Option("bf16", help="fp32 | bf16 | fp16 (weights, and compute unless --compute)"),
    compute: Optional[str] = typer.Option(None, help="bf16 | fp16 with --dtype fp32: autocast mixed precision"),
    optimizer: str = typer.Option("adamw", help="adamw | adam | sgd | sgd-momentum | adafactor"),
    impl: str = typer.Option("foreach", help="optimizer implementation: foreach | fused | for-loop"),
    attention: str = typer.Option("sdpa", help="sdpa | eager | flash"),
    method: Optional[list[str]] = typer.Option(None, "--method", "-m", help="e.g. lora:rank=16 or activation-checkpointing"),
    json: bool = typer.Option(False, "--json", help="print the Report as JSON"),
    solve: bool = typer.Option(True, help="also solve the largest batch and sequence that fit"),
):
    """Will it fit? The peak per tier, where the memory goes, and the largest batch and sequence."""

    def go():
        w = Workload.parse(dict(
            model=model, hardware=hardware, task=task, batch=batch, seq=seq, generate=generate,
            precision={"weights": dtype, "compute": compute or dtype}, optimizer={"name": optimizer, "impl": impl},
            attention=attention, methods=[_parse_method(m) for m in method or []],
        ))
        report = predict(w)
        # The workload's own verdict is part of each answer: the two never contradict each other.
        largest = {f: boundary(w, f, known={getattr(w, f): report}) for f in FIELDS} if solve else None
        if json:
            data = report.model_dump()
            if largest:
                data["largest"] = {f: b.largest for f, b in largest.items()}
                data["fits_above_largest"] = {f: list(b.fits_above) for f, b in largest.items()}
                data["fails_above_largest"] = {f: list(b.fails) for f, b in largest.items()}
            import json as _json

            out.print_json(_json.dumps(data))
        else:
            views.fit_report(out, report, largest)
        return report

    run_command(go)


@app.command("predict")
def predict_cmd(
    workload: str = typer.Argument(..., help="a workload YAML or JSON file"),
    json: bool = typer.Option(False, "--json", help="print the Report as JSON"),
):
    """Predict one workload file."""

    def go():
        report = predict(Workload.from_file(workload))
        if json:
            sys.stdout.write(report.to_json() + "\n")
        else:
            views.fit_report(out, report)

    run_command(go)


PARTS = {"cpu": "cpu", "links": "link", "ssd": "ssd", "mcu": "mcu", "machines": "machine"}


# The columns `memsim list PART` leaves out first where the terminal is narrow (derived or secondary figures).
_PART_DROP = {"cpu": ("fp32_flops",), "link": ("latency_s",), "ssd": ("interface",), "mcu": ("core", "flash_bytes"),
              "machine": ("gpu_memory_bytes", "dram_bytes", "display_name")}


@app.command("list")
def list_cmd(what: str = typer.Argument(..., help="models | hardware | methods | cpu | links | ssd | mcu | machines"),
             as_json: bool = typer.Option(False, "--json", help="methods: name, kind, parameters, citation, tasks as JSON")):
    """List the built-in models, hardware profiles (GPUs, and the parts of a machine) or methods."""

    def go():
        if what == "models":
            views.models(out)
        elif what == "hardware":
            rows = [dict(name=name, device=h.display_name, memory=views.gib(h.capacity_bytes), profile=h.profile)
                    for name, h in ((n, load_hardware(n)) for n in hardware_names())]
            tables.show(out, "Hardware (hardware/)", [("name", "name", tables.NAME), ("device", "device", tables.TEXT),
                        ("memory", "memory", tables.NUM), ("profile", "profile", tables.NAME)], rows, drop=("profile",))
        elif what == "methods" and as_json:
            print(json.dumps(catalog(), indent=2, default=list))
        elif what == "methods":
            views.methods(out)
        elif what in PARTS:
            from .catalog import catalog_table

            raw = catalog_table(PARTS[what])
            if PARTS[what] == "machine":  # the GPUs in one column: '8x a100-40gb'
                raw = [{k: (f"{r['gpu_count']}x {v}" if k == "gpu" else v) for k, v in r.items() if k != "gpu_count"} for r in raw]
            rows = [{k: tables.cell(v) for k, v in r.items()} for r in raw]
            numeric = {k for k in raw[0] if all(isinstance(r[k], (int, float, type(None))) for r in raw)}
            named = {k for k in raw[0] if k not in numeric and all(" " not in r[k] for r in rows)}  # other parts' names
            columns = [(k, "name" if k == "name" else tables.header(k, [r[k] for r in rows]),
                        tables.NAME if k in named else tables.NUM if k in numeric else tables.TEXT) for k in raw[0]]
            tables.show(out, f"{what} (hardware/{what})", columns, rows, drop=_PART_DROP.get(PARTS[what], ()))
        else:
            raise InputError(f"list: '{what}' is not one of models, hardware, methods, {', '.join(PARTS)}")

    run_command(go)


# Chart formats savefig writes by the file's extension (matplotlib's Agg, SVG and PDF backends).
PLOT_FORMATS = (".png", ".svg", ".pdf")


@app.command()
def roofline(
    workload: str = typer.Argument(..., help="a workload YAML/JSON (the fields of `memsim predict`)"),
    plot_path: Optional[str] = typer.Option(None, "--plot", help="write the roofline chart (PNG) here"),
    top: int = typer.Option(12, help="how many of the slowest kernels to list"),
):
    """Step time on the roofline: the slowest kernels, what bounds the step, tokens per second."""

    def go():
        from .catalog import check_roofline, load_measured, load_model
        from .predict import predict_time
        from .roofline import Rates
        from .roofline import plot as draw

        if top < 1:
            raise InputError(f"--top: {top} kernels; give at least 1")
        plot = output_file("--plot", plot_path, PLOT_FORMATS) if plot_path else None  # before any work
        w = Workload.from_file(workload)
        check_roofline(w.hardware, w.precision.compute)
        seconds, tokens, st = predict_time(w)
        title = f"{load_model(w.model).name} · {w.task} · batch {w.batch} × seq {w.seq} on {w.hardware}: the slowest kernels"
        total = sum(k.seconds for k in st.kernels) or 1.0
        rows = [dict(kernel=k.name, phase=k.phase, launches=f"{k.count:,}", ms=f"{k.seconds * 1e3:,.2f}",
                     share=f"{k.seconds / total:.1%}", bound=k.bound,
                     tflops=f"{k.flops / k.seconds / 1e12:,.0f}" if k.flops else "-", gbs=f"{k.bytes / k.seconds / 1e9:,.0f}")
                for k in st.kernels[:top]]
        columns = [("kernel", "kernel", tables.NAME), ("phase", "phase", tables.NAME), ("launches", "launches", tables.NUM),
                   ("ms", "ms", tables.NUM), ("share", "share", tables.NUM), ("bound", "bound", tables.NAME),
                   ("tflops", "TFLOP/s", tables.NUM), ("gbs", "GB/s", tables.NUM)]
        tables.show(out, title, columns, rows, drop=("launches", "tflops", "gbs", "phase"))
        if w.task == "generate":  # its phases follow, each with what bounds it
            out.print(f"generate: {seconds * 1e3:,.1f} ms for {w.generate} new tokens · {tokens / seconds:,.0f} tokens/s")
        else:
            out.print(f"step: {seconds * 1e3:,.1f} ms ({st.bound}-bound; GPU {st.gpu_seconds * 1e3:,.1f} ms, host "
                      f"{st.host_seconds * 1e3:,.1f} ms) · {tokens / seconds:,.0f} tokens/s")
        if w.task in ("prefill", "generate", "decode"):
            from .predict import phase_times

            phases = phase_times(w)
            if "prefill" in phases:
                p = phases["prefill"]
                out.print(f"time to first token: {p.seconds * 1e3:,.1f} ms ({p.bound}-bound) · prefill "
                          f"{w.batch * w.seq / p.seconds:,.0f} tokens/s")
            if "decode" in phases:
                d = phases["decode"]
                out.print(f"decode: {d.seconds * 1e3:,.2f} ms a step ({d.bound}-bound) · {w.batch / d.seconds:,.0f} tokens/s")
        for a in st.assumptions:
            out.print(Text.assemble(("note: ", "yellow"), a))
        if plot:
            r = Rates(load_hardware(w.hardware), load_measured(w.hardware), w.precision.compute,
                      {"train": "train", "prefill": "prefill"}.get(w.task, "decode"))
            title = f"{load_model(w.model).name} {w.task} on {w.hardware}"
            out.print(f"plot: {draw(st, r.peak, r.bandwidth, str(plot), title=title)}", markup=False, highlight=False)

    run_command(go)


from . import cli_measure  # noqa: E402,F401  registers trace, validate and calibrate on the app


def main():
    app()


if __name__ == "__main__":  # python -m memsim.cli: the package's module is the one cli_measure registers on
    from memsim.cli import main as package_main

    package_main()
