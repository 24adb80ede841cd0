"""`ir2net latency` (ir2net.latency, issue 25): a record that names the machine, the versions
and the kernel of every binary convolution, times every engine side by side, and renders into
Table VI's measured columns, the latency tables, the figure and the report's paragraph.  The
numbers themselves are not asserted (speed is measured, not tested); their bookkeeping is."""
import json

import pytest

pytest.importorskip("openvino", reason="OpenVINO is the optional extra .[deploy]")

from ir2net.cli import main  # noqa: E402
from ir2net.latency import LATENCY_MODELS, REFERENCE_MODEL, measure_latency  # noqa: E402
from ir2net.reporting.figures import latency_figure  # noqa: E402
from ir2net.reporting.latency_tables import (deployed_latency, latency_layers_table,  # noqa: E402
                                             latency_paragraph, latency_table)
from ir2net.reporting.paper_tables import complexity_tables  # noqa: E402
from ir2net.reporting.printing import printed, to_markdown  # noqa: E402

MODELS = ["ResNet-20* IR²Net", "ResNet-20* FP"]


@pytest.fixture(scope="module")
def record():
    return measure_latency(MODELS, threads=[1], warmup=1, repeats=3, breakdown_runs=2)


def test_the_record_names_machine_versions_and_kernels(record):
    machine = record["machine"]
    assert machine["openvino"] and machine["torch"] and machine["threads"] == [1]
    assert isinstance(machine["avx512"], bool) and machine["cpus_usable"] >= 1
    rows = {(row["model"], row["engine"]): row for row in record["latency"]}
    assert set(rows) == {("ResNet-20* IR²Net", "openvino-xnor"),
                         ("ResNet-20* IR²Net", "openvino-f32"), ("ResNet-20* IR²Net", "pytorch"),
                         ("ResNet-20* FP", "openvino-f32"), ("ResNet-20* FP", "pytorch")}
    for (model, engine), row in rows.items():
        assert row["runs"] == 3 and 0 < row["p10_ms"] <= row["median_ms"] <= row["p90_ms"]
        assert bool(row["binary_primitives"]) == (engine == "openvino-xnor")
    assert all(kind.endswith("_u1")
               for kind in rows[("ResNet-20* IR²Net", "openvino-xnor")]["binary_primitives"])
    assert record["models"]["ResNet-20* IR²Net"]["bops"] > 0
    assert record["models"]["ResNet-20* FP"]["bops"] == 0


def test_the_breakdown_splits_the_binary_graph_by_part(record):
    binary = record["breakdown"]["ResNet-20* IR²Net"]["openvino-xnor"]
    assert binary["ms"]["binary convolutions"] > 0 and binary["ms"]["recovery"] > 0
    assert abs(sum(binary["share"].values()) - 1) < 1e-9
    layers = binary["layers"]
    assert sum(layer["type"] == "BinaryConvolution" for layer in layers.values()) == 18
    float_graph = record["breakdown"]["ResNet-20* IR²Net"]["openvino-f32"]
    assert "binary convolutions" not in float_graph["ms"]
    frame = latency_layers_table(record)
    assert list(frame["model"]) == ["ResNet-20* IR²Net", "ResNet-20* IR²Net", "ResNet-20* FP"]


def test_tables_and_figure_render_from_the_record(record, tmp_path):
    frame = latency_table(record)
    assert len(frame) == 5 and frame["speedup_vs_resnet18"].isna().all()  # no reference timed
    text, _ = printed("latency", frame)
    assert "openvino-xnor" in to_markdown(text)
    assert [path.name for path in latency_figure(record, tmp_path)] == ["latency_vs_ops.png",
                                                                       "latency_vs_ops.pdf"]
    assert latency_figure(None, tmp_path) == []


def test_table6_gains_latency_and_speedup_against_the_reference():
    """Table VI's measured columns from a record with the reference: the speed-up is the
    reference's latency over the model's, on the deploying engine, at one thread."""
    record = {"models": {REFERENCE_MODEL: {"bops": 0, "ops": 1.8e9, "table": "VI"},
                         "IR²Net-A": {"bops": 1.68e9, "ops": 1.97e8, "table": "VI"}},
              "latency": [{"model": REFERENCE_MODEL, "engine": "openvino-f32", "threads": 1,
                           "median_ms": 30.0},
                          {"model": "IR²Net-A", "engine": "openvino-xnor", "threads": 1,
                           "median_ms": 6.0},
                          {"model": "IR²Net-A", "engine": "openvino-f32", "threads": 1,
                           "median_ms": 31.0}]}
    assert set(deployed_latency(record)) == {REFERENCE_MODEL, "IR²Net-A"}
    table6 = complexity_tables(record)["table6"].set_index("method")
    assert table6.loc["IR²Net-A", "latency_ms"] == 6.0
    assert table6.loc["IR²Net-A", "speedup_vs_resnet18"] == 5.0
    assert table6[["latency_ms"]].drop(index="IR²Net-A").isna().all().all()
    assert complexity_tables()["table6"]["latency_ms"].isna().all()


def test_the_paragraph_names_machine_and_speedups(record):
    paragraph = latency_paragraph(record)
    assert record["machine"]["cpu"] in paragraph and "median of 3 inferences" in paragraph


def test_command_line_writes_the_record_and_refuses_an_unknown_model(tmp_path, capsys):
    out = tmp_path / "latency.json"
    assert main(["latency", "--model", "ResNet-20* Baseline", "--threads", "1", "--warmup", "0",
                 "--repeats", "2", "--breakdown-runs", "1", "--out", str(out)]) == 0
    printed_text = capsys.readouterr().out
    assert "ResNet-20* Baseline" in printed_text and "openvino-xnor" in printed_text
    assert json.loads(out.read_text())["repeats"] == 2
    assert main(["latency", "--model", "ResNet-50"]) == 2
    error = capsys.readouterr().err
    assert "unknown latency model(s) ResNet-50" in error
    assert all(entry.label in error for entry in LATENCY_MODELS)
