"""The gap decomposition and the calibration table, from made-up run states."""
import pandas as pd
import pytest

from ir2net.paper import paper_values
from ir2net.reporting.evidence import calibration_table, gap_paragraph, gap_table, seed_of

BASELINE = {"table1": "Baseline"}
IR2NET = {"table1": "IRes+CIRec", "table3": "ResNet-20|IR²Net*"}


def entry(run, rows, best, state="complete", epochs_done=500, epochs=500):
    return {"run": run, "rows": rows, "state": state, "epochs_done": epochs_done,
            "epochs": epochs, "best": {"top1": best, "epoch": 400}, "final": {"top1": best - 1},
            "wall_hours": 1.0}


def calibration(best, state="complete"):
    return entry("cifar10-resnet20-calibration-s0", {"calibration": "ResNet-20 (He et al.)"},
                 best, state, 200 if state == "complete" else 45, 200)


def paper(method):
    return next(row["top1"] for row in paper_values()["table1"] if row["method"] == method)


def test_seed_of_reads_the_run_id():
    assert seed_of("cifar10-resnet20_bireal-bin-norec-nores-s2") == 2
    assert seed_of("no-seed-here") == 0


def test_the_gap_splits_only_complete_rows_once_the_calibration_is():
    progress = [calibration(88.73),
                entry("b-s0", BASELINE, 81.0), entry("b-s1", BASELINE, 82.0),
                entry("b-s2", BASELINE, 0.0, "training", 100),
                entry("i-s0", IR2NET, 83.5), entry("i-s1", IR2NET, 84.5)]
    gap = gap_table(progress).set_index("method")
    base = gap.loc["Baseline"]
    assert base["ours_top1"] == pytest.approx(81.5)
    assert base["ours_top1_std"] == pytest.approx(0.5 ** 0.5)     # sample std of 81, 82
    assert (base["seeds"], base["seeds_planned"]) == (2, 3)
    assert base["per_seed"] == "s0 81.00, s1 82.00"
    assert base["gap"] == pytest.approx(paper("Baseline") - 81.5)
    assert base["data_share"] == pytest.approx(3.0)                 # 91.73 - 88.73
    assert base["remainder"] == pytest.approx(base["gap"] - 3.0)
    difference = gap.loc["IR²Net − Baseline"]
    assert difference["ours_top1"] == pytest.approx(2.5) and difference["ours_top1_std"] == 0
    assert difference["paper_top1"] == pytest.approx(paper("IRes+CIRec") - paper("Baseline"))
    assert difference["data_share"] is None or pd.isna(difference["data_share"])
    # both of IR²Net's tables get a row
    assert set(gap[gap.index == "ResNet-20 IR²Net*"]["table"]) == {"Table III"}


def test_an_incomplete_calibration_leaves_every_row_unsplit():
    progress = [calibration(80.0, "training"), entry("b-s0", BASELINE, 81.0),
                entry("f-s0", {"table1": "FP"}, 70.0, "training", 80)]
    gap = gap_table(progress).set_index("method")
    assert pd.isna(gap.loc["Baseline", "data_share"]) and pd.isna(gap.loc["Baseline", "remainder"])
    assert gap.loc["Baseline", "split"] == "calibration not complete: unsplit"
    fp = gap.loc["FP"]                                  # in progress: best so far, no gap
    assert fp["basis"] == "best so far, in progress" and pd.isna(fp["gap"])
    assert fp["ours_top1"] == 70.0
    table = calibration_table(progress)
    assert table["state"].tolist() == ["epoch 45 of 200"] and pd.isna(table["shortfall"][0])
    text = gap_paragraph(table, gap.reset_index())
    assert "not complete (epoch 45 of 200)" in text and "No row has two completed seeds" in text


def test_a_complete_calibration_reports_its_shortfall():
    table = calibration_table([calibration(89.0)])
    assert table["shortfall"].tolist() == [pytest.approx(2.73)]
    assert table["canonical_top1"].tolist() == [91.73]
    text = gap_paragraph(table, gap_table([calibration(89.0)]))
    assert "costs a real-valued ResNet-20 2.73 points" in text


def test_the_fp_rows_say_where_the_papers_figure_comes_from():
    gap = gap_table([entry("f-s0", {"table1": "FP", "table3": "ResNet-20|FP"}, 88.0)])
    notes = gap.set_index("method")["split"]
    assert "IR-Net's ResNet-20 W/A 1/32 figure" in notes["FP"]
    assert "IR-Net's ResNet-20 W/A 1/32 figure" in notes["ResNet-20 FP"]
    assert "calibration not complete" in notes["FP"]


def test_the_coverage_figure_draws_the_onset_where_it_was_recorded(tmp_path):
    from ir2net.reporting.figures import _coverage_frame, coverage_figure

    history = [{"epoch": 1, "ires_removed": 0.0},                          # before it was recorded
               {"epoch": 2, "ires_removed": 0.0, "ires_onset": 0.8, "ires_onset_min": 0.8},
               {"epoch": 3, "ires_removed": 0.0, "ires_onset": 0.7, "ires_onset_min": 0.7}]
    longruns = [{"run": "i-s0", "rows": IR2NET, "history": history}]
    plan = {"profile": "default", "runs": []}
    frame = _coverage_frame(plan, {}, longruns)
    assert frame["removed"].tolist() == [0.0, 0.0, 0.0]
    assert pd.isna(frame["onset"][0]) and frame["onset"].tolist()[1:] == [0.8, 0.7]
    paths = coverage_figure(plan, {}, tmp_path, longruns)
    assert {path.suffix for path in paths} == {".png", ".pdf"}
    assert all(path.stat().st_size > 0 for path in paths)
