"""The hardware catalog beyond GPUs: CPU hosts, links, SSDs, MCUs, machines (hardware/<folder>/*.yaml)."""

from pathlib import Path

import pytest
import yaml

from memsim.catalog import (
    KINDS,
    catalog_table,
    component_names,
    hardware_dir,
    hardware_names,
    load_component,
    load_hardware,
    load_machine,
)
from memsim.errors import InputError
from memsim.hardware import CpuHostSpec, HardwareSpec, LinkSpec, Machine, McuSpec, SsdSpec

ROOT = Path(__file__).resolve().parent.parent
ENTRIES = [(k, n) for k in KINDS for n in component_names(k)]
GB = 1e9


def _yaml_path(kind: str, name: str) -> Path:
    folder = {"gpu": "", "cpu": "cpu", "link": "links", "ssd": "ssd", "mcu": "mcu", "machine": "machines"}[kind]
    return hardware_dir() / folder / f"{name}.yaml"


def _figures(node, path=""):
    """(path, figure) for every {value, source} mapping; (path, number) for any number outside one."""
    if isinstance(node, dict):
        if "value" in node:
            yield path, node
            return
        for k, v in node.items():
            yield from _figures(v, f"{path}.{k}" if path else k)
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield path, node


def test_every_kind_has_entries():
    for kind in KINDS:
        assert component_names(kind), kind
    assert len(component_names("cpu")) >= 3 and len(component_names("machine")) >= 2
    assert {"stm32f746", "stm32h743", "nrf52840", "esp32-s3"} <= set(component_names("mcu"))
    assert {"pcie-gen3-x16", "pcie-gen4-x16", "pcie-gen5-x16", "nvlink3-a100", "nvlink4-h100"} <= set(component_names("link"))


@pytest.mark.parametrize("kind,name", ENTRIES)
def test_every_profile_loads(kind, name):
    spec = load_component(kind, name)
    assert spec.name == name == _yaml_path(kind, name).stem
    assert spec.display_name, f"{kind}/{name}: no display_name"


@pytest.mark.parametrize("kind,name", ENTRIES)
def test_every_number_is_a_sourced_figure(kind, name):
    raw = yaml.safe_load(_yaml_path(kind, name).read_text())
    assert raw["kind"] == kind
    for path, fig in _figures(raw):
        if kind == "machine" and path == "gpu_count":  # a count in a composition, not a measured quantity
            continue
        assert isinstance(fig, dict), f"{kind}/{name}: {path} = {fig!r} is a bare number; give it a value and a source"
        assert isinstance(fig["value"], (int, float)) and fig["value"] > 0, (name, path)
        source = str(fig.get("source", "")).strip()
        # A source names a document (and its table/section) or a measurement: a few words at least.
        assert len(source) >= 30 and len(source.split()) >= 5, f"{kind}/{name}: {path} has a thin source: {source!r}"


def test_pcie_links_follow_the_spec():
    bw = {n: load_component("link", n).bandwidth_bytes_per_s.value for n in component_names("link")}
    assert bw["pcie-gen5-x16"] == pytest.approx(63.0 * GB, rel=0.01)  # 32 GT/s x 16 x 128/130 / 8
    assert bw["pcie-gen4-x16"] == pytest.approx(31.5 * GB, rel=0.01)
    assert bw["pcie-gen3-x16"] == pytest.approx(15.75 * GB, rel=0.01)
    for gen in (3, 4, 5):
        assert bw[f"pcie-gen{gen}-x4"] == pytest.approx(bw[f"pcie-gen{gen}-x16"] / 4, rel=0.01)
    assert bw["pcie-gen4-x8"] == pytest.approx(bw["pcie-gen4-x16"] / 2, rel=0.01)
    # Per direction: NVLink 4 is 900 GB/s both ways together, NVLink 3 600.
    assert bw["nvlink4-h100"] == pytest.approx(450 * GB) and bw["nvlink3-a100"] == pytest.approx(300 * GB)


def test_gpu_host_links_agree_with_the_link_catalog():
    links = set(component_names("link"))
    for name in hardware_names():
        h = load_hardware(name)
        if h.host_link:
            assert h.host_link.name in links, name
            assert h.host_link.bandwidth_bytes_per_s.value == load_component("link", h.host_link.name).bandwidth_bytes_per_s.value


@pytest.mark.parametrize("name", component_names("mcu"))
def test_mcu_ranges(name):
    m = load_component("mcu", name)
    assert isinstance(m, McuSpec)
    assert 16 * 2**10 <= m.sram_bytes.value < 2 * 2**20
    assert m.flash_bytes is None or m.flash_bytes.value <= 16 * 2**20
    assert 1e6 <= m.clock_hz.value <= 1e9
    assert 1 <= m.macs_per_cycle.value <= 64
    assert m.peak_macs_per_s == (m.cores.value if m.cores else 1) * m.clock_hz.value * m.macs_per_cycle.value


@pytest.mark.parametrize("name", component_names("ssd"))
def test_ssd_ranges(name):
    s = load_component("ssd", name)
    assert isinstance(s, SsdSpec)
    link = load_component("link", s.interface)  # the interface is a link in the catalog
    assert 1e11 <= s.capacity_bytes.value <= 1e14
    # No drive reads or writes faster than its link carries in one direction.
    assert 0 < s.seq_write_bytes_per_s.value <= s.seq_read_bytes_per_s.value <= link.bandwidth_bytes_per_s.value


def test_one_ssd_per_pcie_generation():
    gens = {load_component("ssd", n).interface.split("-x")[0] for n in component_names("ssd")}
    assert {"pcie-gen3", "pcie-gen4", "pcie-gen5"} <= gens


@pytest.mark.parametrize("name", component_names("cpu"))
def test_cpu_host_ranges(name):
    c = load_component("cpu", name)
    assert isinstance(c, CpuHostSpec)
    assert 8 * 2**30 <= c.dram_capacity_bytes.value <= 16 * 2**40
    assert 10 * GB <= c.dram_bandwidth_bytes_per_s.value <= 2000 * GB
    assert 1 <= c.cores.value <= 512
    fp32 = c.vector_flops["fp32"].value
    # cores x clock (1-6 GHz) x FP32 FLOP/cycle (8-64)
    assert c.cores.value * 1e9 * 8 <= fp32 <= c.cores.value * 6e9 * 64


def test_apple_unified_memory_profiles_are_gpus():
    apple = [n for n in hardware_names() if load_hardware(n).vendor == "apple"]
    assert len(apple) >= 2
    for name in apple:
        h = load_hardware(name)
        assert isinstance(h, HardwareSpec) and h.kind == "gpu"
        assert h.host_link is None  # unified: no host link to offload across
        assert h.usable_bytes == h.capacity_bytes >= 64 * 2**30
        assert 100 * GB <= h.memory_bandwidth_bytes_per_s.value <= 1000 * GB


def test_existing_gpu_loading_is_unchanged():
    h = load_hardware("h100-sxm-80gb")
    assert h.usable_bytes == 85017493504 and h.capacity_bytes == 85520809984
    assert load_hardware("rtx-4090").usable_bytes == 25757220864
    names = hardware_names()
    assert "mi300x" in names and not set(names) & set(component_names("cpu") + component_names("machine"))
    assert component_names("gpu") == names


def test_machines_resolve():
    for name in component_names("machine"):
        m = load_machine(name)
        assert isinstance(m, Machine) and m.name == name
        assert isinstance(m.gpu, HardwareSpec) and isinstance(m.host, CpuHostSpec) and isinstance(m.link, LinkSpec)
        assert (m.ssd is None) == (m.ssd_link is None)
        # The host holds at least what the GPUs do: offload has somewhere to go.
        assert m.host.dram_capacity_bytes.value >= m.gpu.capacity_bytes
    dgx = load_machine("dgx-h100-like")
    assert (dgx.gpu.name, dgx.gpu_count, dgx.link.name, dgx.gpu_link.name) == ("h100-sxm-80gb", 8, "pcie-gen5-x16", "nvlink4-h100")
    assert dgx.ssd.interface.startswith("pcie-gen5")
    ws = load_machine("workstation-rtx-4090")
    assert (ws.gpu.name, ws.gpu_count, ws.link.name, ws.ssd_link.name) == ("rtx-4090", 1, "pcie-gen4-x16", "pcie-gen4-x4")


def _machine_yaml(tmp_path, **over):
    raw = {"name": "mine", "kind": "machine", "gpu": "rtx-4090", "host": "ryzen-9-7950x-64gb", "link": "pcie-gen4-x16"} | over
    p = tmp_path / "mine.yaml"
    p.write_text(yaml.safe_dump(raw))
    return str(p)


@pytest.mark.parametrize(
    "over,expect",
    [
        ({"gpu": "h100-sxm-90gb"}, ["gpu 'h100-sxm-90gb'", "did you mean 'h100-sxm-80gb'", "valid:", "rtx-4090"]),
        ({"host": "epyc-9654"}, ["host 'epyc-9654'", "valid:", "dgx-h100-host"]),
        ({"link": "pcie-gen6-x16"}, ["link 'pcie-gen6-x16'", "valid:", "pcie-gen5-x16"]),
        ({"ssd": "samsung-990-evo"}, ["ssd 'samsung-990-evo'", "samsung-990-pro-2tb"]),
    ],
)
def test_a_machine_naming_a_missing_part_fails_in_one_line(tmp_path, over, expect):
    path = _machine_yaml(tmp_path, **over)
    with pytest.raises(InputError) as e:
        load_machine(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("machine 'mine'")
    for part in expect:
        assert part in msg, (part, msg)
    assert isinstance(e.value, ValueError)  # InputError: the CLI prints it alone and exits 2


def test_a_custom_machine_file_resolves(tmp_path):
    m = load_machine(_machine_yaml(tmp_path, gpu_count=2, ssd="crucial-t705-2tb"))
    assert m.gpu_count == 2 and m.ssd.name == "crucial-t705-2tb"


def test_bad_component_input_is_one_line(tmp_path):
    with pytest.raises(InputError, match=r"did you mean 'stm32h743'"):
        load_component("mcu", "stm32h742")
    with pytest.raises(InputError, match="hardware kind 'tpu' is not one of"):
        component_names("tpu")
    # A host profile loaded as an SSD names the field that is wrong.
    with pytest.raises(InputError, match=r"ssd profile .*: kind"):
        load_component("ssd", str(_yaml_path("cpu", "dgx-h100-host")))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "bad", "kind": "link", "bandwidth_bytes_per_s": {"value": -1, "source": "nowhere at all"}}))
    with pytest.raises(InputError) as e:
        load_component("link", str(bad))
    assert "\n" not in str(e.value) and "bandwidth_bytes_per_s.value" in str(e.value)
    with pytest.raises(InputError, match=r"machine profile .*gpu_count"):
        load_machine(_machine_yaml(tmp_path, gpu_count=0))


@pytest.mark.parametrize("kind", KINDS)
def test_catalog_table_rows(kind):
    rows = catalog_table(kind)
    assert [r["name"] for r in rows] == component_names(kind)
    assert all(r["display_name"] for r in rows)


def test_subfolders_ship_in_the_wheel():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["memsim.hardware_profiles"]
    for folder in (p for p in (ROOT / "hardware").iterdir() if p.is_dir() and any(p.glob("*.yaml"))):
        assert f"{folder.name}/*.yaml" in data, f"hardware/{folder.name}/ is not in pyproject's package-data"


def test_readme_lists_every_entry():
    readme = (ROOT / "hardware" / "README.md").read_text()
    missing = [f"{k}/{n}" for k, n in ENTRIES if f"`{n}`" not in readme]
    assert not missing, f"hardware/README.md does not list {missing}"
