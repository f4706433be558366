"""What the command line prints: a report, the catalogs, a calibration and a validation, each on
the console it is given (readable at 80 columns: memsim.tables)."""

from __future__ import annotations

import json

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from . import tables
from .catalog import model_names, models_dir
from .errors import InputError
from .fit import Boundary
from .methods import catalog
from .report import Report
from .tape import CATEGORIES


def gib(n: int) -> str:
    return f"{n / 2**30:,.2f} GiB" if abs(n) >= 2**30 else f"{n / 2**20:,.1f} MiB"


def fit_report(out: Console, report: Report, largest: dict[str, Boundary] | None = None) -> None:
    verdict = "[bold green]fits[/]" if report.fits else "[bold red]does not fit[/]"
    if report.fragmented():
        verdict += " (its tensors fit; the allocator runs out of memory by fragmentation)"
    out.print(f"{escape(report.model)} · {report.task} · batch {report.batch} × seq {report.seq} on {escape(report.hardware)}: {verdict}")
    tiers = Table(title="Peak memory per tier")
    for col in ("tier", "allocated", "reserved", "device (est.)", "capacity", "headroom"):
        tiers.add_column(col, justify="right" if col != "tier" else "left")
    for tier, p in report.peak.items():
        capacity, headroom = report.capacity_bytes.get(tier), report.headroom_bytes.get(tier)  # a host not given: unknown
        tiers.add_row(tier, gib(p.allocated_bytes), gib(p.reserved_bytes), gib(p.device_bytes),
                      "-" if capacity is None else gib(capacity), "-" if headroom is None else gib(headroom))
    out.print(tiers)
    total = sum(report.breakdown_bytes.values()) or 1
    bd = Table(title=f"Breakdown at the peak ({report.phase_at_peak})")
    bd.add_column("category")
    bd.add_column("GiB", justify="right")
    bd.add_column("share", justify="right")
    for c in CATEGORIES:
        n = report.breakdown_bytes.get(c, 0)
        if n:
            bd.add_row(c, f"{n / 2**30:,.3f}", f"{n / total:.1%}")
    out.print(bd)
    for field, b in (largest or {}).items():  # every value up to it fits; over it, the replay's other verdicts
        out.print(f"largest {field} that fits: [bold]{b.largest}[/]" + (f" ({b.sentence()})" if b.sentence() else ""))
    for note in report.notes:  # defaults filled for keys a config left out, and the like
        out.print(Text.assemble(("note: ", "yellow"), note))


def models(out: Console) -> None:
    from .catalog import load_model

    rows = []
    for name in model_names():
        try:
            m = load_model(name)
        except InputError:  # in the catalog, not modeled yet: listed as such
            kind = json.loads((models_dir() / f"{name}.json").read_text()).get("model_type", "?")
            rows.append(dict(name=name, type=str(kind), params="not modeled yet"))
            continue
        kind = m.model_type + (f" (MoE {m.experts_per_token}/{m.num_experts})" if m.is_moe else "")
        rows.append(dict(name=name, type=kind, params=f"{m.param_count() / 1e9:.2f}B", layers=str(m.num_layers),
                         hidden=str(m.hidden_size), heads=f"{m.num_heads}/{m.num_kv_heads}", vocab=str(m.vocab_size)))
    columns = [("name", "name", tables.NAME), ("type", "type", tables.TEXT), ("params", "params", tables.NUM),
               ("layers", "layers", tables.NUM), ("hidden", "hidden", tables.NUM), ("heads", "heads\nq/kv", tables.NUM),
               ("vocab", "vocab", tables.NUM)]
    tables.show(out, "Models (data/models)", columns, rows, drop=("vocab", "hidden", "layers"))


def methods(out: Console) -> None:
    rows = [dict(name=d["name"], kind=d["kind"], summary=d["summary"], citation=d["citation"],
                 params=", ".join(f"{k}={tables.cell(v['default'])}" for k, v in d["parameters"].items())) for d in catalog()]
    columns = [("name", "name", tables.NAME), ("kind", "kind", tables.NAME), ("params", "parameters", tables.TEXT),
               ("summary", "what it does", tables.TEXT), ("citation", "source", tables.TEXT)]
    tables.show(out, "Methods (methods: [...]) and optimizers (optimizer: {name: ...})", columns, rows,
                drop=("citation",), more="a wider terminal or memsim list methods --json shows them")


def calibration(out: Console, profile) -> None:
    from .calibration import link_fit

    best = {}
    for p in profile.matmul:
        best[p.dtype] = max(best.get(p.dtype, 0), p.flops_per_s)
    t = Table(title=f"{profile.name} ({profile.provenance.device}, {profile.provenance.date})")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for dtype, f in best.items():
        t.add_row(f"matmul {dtype}, best shape", f"{f / 1e12:,.0f} TFLOP/s")
    if profile.device_copy:
        t.add_row("device copy, largest", f"{profile.device_copy[-1].bytes_per_s / 1e9:,.0f} GB/s")
    for direction in ("host_to_device", "device_to_host"):
        for pinned in (True, False):
            pts = [(p.bytes, p.seconds) for p in profile.transfer if p.direction == direction and p.pinned == pinned]
            if len(pts) > 1:
                lat, bw = link_fit(pts)
                t.add_row(f"{direction.replace('_', ' ')}, {'pinned' if pinned else 'pageable'}",
                          f"{bw / 1e9:,.1f} GB/s + {lat * 1e6:,.0f} µs")
    for op in ("write", "read"):
        pts = [p for p in profile.disk if p.op == op]
        if pts:
            t.add_row(f"disk {op}, largest", f"{pts[-1].bytes_per_s / 1e9:,.2f} GB/s")
    out.print(t)


def pct(error: float) -> str:
    return f"{error:+.2%}" if error == error else "-"  # NaN: the case did not run to the end


def validation(out: Console, df, summary, path, more: str) -> None:
    columns = [("case", "case", tables.NAME), ("fits", "fits", tables.NAME), ("alloc_pred", "alloc\npred", tables.NUM),
               ("alloc_meas", "alloc\nmeas", tables.NUM), ("alloc_err", "alloc\nerror", tables.NUM),
               ("resv_err", "resv\nerror", tables.NUM), ("dev_err", "device\nerror", tables.NUM),
               ("step_ms", "step\nms", tables.NUM), ("step_err", "step\nerror", tables.NUM)]
    rows = [dict(case=r.case, fits=f"{'yes' if r.predicted_fits else 'no'}/{'yes' if r.measured_fits else 'no'}",
                 alloc_pred=gib(r.predicted_allocated), alloc_meas=gib(r.measured_allocated), alloc_err=pct(r.error_allocated),
                 resv_err=pct(r.error_reserved), dev_err=pct(r.error_device), step_err=pct(r.error_step),
                 step_ms=f"{r.step_time_s * 1e3:,.1f}" if r.step_time_s else "-") for r in df.itertuples()]
    tables.show(out, f"predicted vs measured ({path})", columns, rows, more=more,
                drop=("dev_err", "alloc_meas", "alloc_pred", "step_ms", "resv_err"),
                caption="fits: predicted/measured; error: (predicted - measured) / measured")
    for k, s in summary.items():
        if s["cases"]:
            out.print(f"{k}: median |error| {s['median']:.2%}, max {s['max']:.2%} over {s['cases']} cases", markup=False)
