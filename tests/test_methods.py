"""The methods seam: every registered method and optimizer holds to the contract, and the core
(memsim/ outside memsim/methods/) reaches them only through their hooks."""

import io
import json
import re
import tokenize
from pathlib import Path

import pytest
from typer.testing import CliRunner

import memsim
from memsim.cli import app
from memsim.executors.matrix import CASES, METHOD_CASES, UNTRACEABLE
from memsim.methods import METHODS, OPTIMIZERS, catalog

ROOT = Path(__file__).parent.parent
REGISTERED = {**METHODS, **OPTIMIZERS}
TINY = dict(model_type="llama", hidden_size=64, intermediate_size=172, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=512)


# Parameters a method's defaults would not fit into TINY's 32-wide projections with.
FOR_TINY = {"galore": {"rank": 8}, "apollo": {"rank": 8}}
OPTIMIZER_FOR = {"mezo": "sgd"}  # a method that keeps no optimizer state takes SGD's update


def _workload(name: str) -> dict:
    if name in OPTIMIZERS:
        return dict(model=TINY, hardware="80GiB", batch=2, seq=32, optimizer={"name": name})
    return dict(model=TINY, hardware="80GiB", batch=2, seq=32, methods=[{"name": name, **FOR_TINY.get(name, {})}],
                optimizer=OPTIMIZER_FOR.get(name, "adamw"))


@pytest.mark.parametrize("name", REGISTERED)
def test_each_has_a_citation_and_a_summary(name):
    cls = REGISTERED[name]
    assert cls.citation and cls.summary and cls.tasks


@pytest.mark.parametrize("name", REGISTERED)
def test_each_round_trips_through_the_workload_json(name):
    w = memsim.Workload.parse(_workload(name))
    again = memsim.Workload.parse(json.loads(w.model_dump_json()))
    assert again == w and again.model_dump() == w.model_dump()


@pytest.mark.parametrize("name", REGISTERED)
def test_each_predicts_on_a_tiny_model(name):
    plain = memsim.predict(dict(model=TINY, hardware="80GiB", batch=2, seq=32))
    r = memsim.predict(_workload(name))
    assert r.fits and r.peak["gpu"].allocated_bytes > 0
    assert sum(r.breakdown_bytes.values()) == r.peak["gpu"].allocated_bytes
    if name in METHODS:  # a method changes what the step holds
        assert r.peak["gpu"].allocated_bytes != plain.peak["gpu"].allocated_bytes


def _matrix_names() -> set[str]:
    names = set()
    for case in CASES + METHOD_CASES:
        names.add(case[3])
        names |= {m if isinstance(m, str) else m["name"] for m in case[5]}
    return names


@pytest.mark.parametrize("name", REGISTERED)
def test_each_is_in_the_traced_matrix(name):
    assert (name in _matrix_names()) != (name in UNTRACEABLE)  # traced, or said why not


def test_list_methods_json_describes_every_one():
    r = CliRunner().invoke(app, ["list", "methods", "--json"])
    assert r.exit_code == 0, r.output
    listed = {d["name"]: d for d in json.loads(r.output)}
    assert set(listed) == set(REGISTERED)
    assert listed["lora"]["parameters"]["rank"] == {"default": 8, "type": "int", "ge": 1}
    assert listed == {d["name"]: json.loads(json.dumps(d, default=list)) for d in catalog()}


# What a core module must not name: a method's or optimizer's registered name (or its words).
NAMED = re.compile(r"(?i)(^|[^a-z])(q?lora|galore|apollo|mezo|lisa|checkpoint(ing|ed)?|adafactor|"
                   + "|".join(re.escape(n) for n in METHODS) + r")([^a-z]|$)")


def _names_in(path: Path) -> list[str]:
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return sorted({t.string for t in tokens if t.type == tokenize.NAME or (t.type == tokenize.STRING and len(t.string) < 40)
                   if NAMED.search(t.string)})


def test_no_core_module_names_a_method():
    core = [p for p in (ROOT / "memsim").rglob("*.py") if "methods" not in p.relative_to(ROOT / "memsim").parts]
    found = {str(p.relative_to(ROOT)): names for p in core if (names := _names_in(p))}
    assert not found, f"name methods outside memsim/methods/: {found}"


def test_the_check_finds_a_method_named_in_code(tmp_path):
    planted = tmp_path / "core.py"
    planted.write_text('rank = cfg.lora_rank\nstep = "ckpt"\nif name == "activation-checkpointing": pass\n')
    assert _names_in(planted) == ['"activation-checkpointing"', "lora_rank"]


@pytest.mark.parametrize("spec, message", [
    ({"methods": [{"name": "lora", "rank": True}]}, "methods.lora.rank: True is not a whole number"),
    ({"methods": [{"name": "lora", "rank": "8"}]}, "methods.lora.rank: '8' is not a whole number"),
    ({"methods": [{"name": "lora", "rank": 8.0}]}, "methods.lora.rank: 8.0 is not a whole number"),
    ({"methods": [{"name": "qlora", "double_quant": "no"}]}, "methods.qlora.double_quant: 'no' is not true or false"),
    ({"methods": [{"name": "galore", "scale": "0.5"}]}, "methods.galore.scale: '0.5' is not a number"),
    ({"optimizer": {"name": "adamw8bit", "paged": 1}}, "optimizer.paged: 1 is not true or false"),
])
def test_a_parameter_of_the_wrong_type_is_refused_not_read(spec, message):
    """pydantic alone would read true as rank 1 and "no" as false: answers to another question."""
    with pytest.raises(memsim.InputError, match=re.escape(message)):
        memsim.Workload.parse(dict(model="smollm2-135m", **spec))
