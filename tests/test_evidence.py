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


def test_the_fp_rows_say_where_the_papers_figure_comes_from_and_are_not_split():
    progress = [calibration(88.73), entry("f-s0", {"table1": "FP", "table3": "ResNet-20|FP"}, 88.0),
                entry("b-s0", BASELINE, 81.0)]
    gap = gap_table(progress).set_index("method")
    for row in ("FP", "ResNet-20 FP"):
        fp = gap.loc[row]
        assert "IR-Net's ResNet-20 W/A 1/32 figure" in fp["split"]
        assert fp["split"].startswith("not split; the paper's 90.8 is IR-Net's")
        assert fp["gap"] == pytest.approx(90.8 - 88.0)             # the distance is still shown
        assert pd.isna(fp["data_share"]) and pd.isna(fp["remainder"])
    # a row whose paper figure is its own network is split beside it
    assert gap.loc["Baseline", "data_share"] == pytest.approx(3.0)
    text = gap_paragraph(calibration_table(progress), gap.reset_index())
    assert "The FP row is not split" in text and "-0.73 points from the calibration" in text
    unfinished = [calibration(88.73), entry("f-s0", {"table1": "FP"}, 86.0, "training", 438)]
    assert "The FP row" not in gap_paragraph(calibration_table(unfinished),
                                             gap_table(unfinished))


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


def _history(removed, onsets=None):
    return [{"epoch": e + 1, "steps": 10 * (e + 1), "ires_removed": value,
             **({} if onsets is None else {"ires_onset": onsets[e]})}
            for e, value in enumerate(removed)]


def test_ires_rows_say_whether_their_mask_removed_anything():
    from ir2net.reporting.ires_evidence import REMOVED_NOTHING, mask_label
    from ir2net.reporting.longrun_tables import published_table

    assert mask_label([[{"epoch": 1}]]) == ""                          # no IRes
    assert mask_label([_history([0.0, 0.0]), _history([0.0])]) == REMOVED_NOTHING
    assert mask_label([_history([0.0, 0.0]), _history([0.0, 0.0123])]) == \
        "removed up to 1.23% of pixels (epoch mean)"
    progress = [{**entry("ires-s0", {"table1": "IRes"}, 80.0), "history": _history([0.0] * 3)},
                {**entry("base-s0", {"table1": "Baseline"}, 79.0), "history": [{"epoch": 1}]}]
    frame = published_table(progress)
    assert frame["ires_mask"].tolist() == [REMOVED_NOTHING, ""]


def test_the_coverage_table_lists_every_rule_and_source_at_figure_7s_lambda():
    from ir2net.reporting.ires_evidence import coverage_table
    from ir2net.reporting.printing import printed, to_markdown

    result = {"weights": "model.pt", "variant": "authors", "source": "pre_activation",
              "images": 10, "onset": {"min": 0.634, "median": 0.8},
              "removed": {"0.15": 0.0, "0.9": 0.0612, "1.0": 0.4769}}     # as JSON keeps them
    progress = [{**entry("ir2net-s0", {"table1": "IRes+CIRec"}, 83.0), "ires_coverage": [result]},
                entry("base-s0", {"table1": "Baseline"}, 79.0)]
    frame = coverage_table(progress)
    assert len(frame) == 1 and frame.loc[0, "weights"] == "final (500 epochs)"
    assert frame.loc[0, "removed_0.9"] == pytest.approx(6.12)
    assert pd.isna(frame.loc[0, "removed_0.3"])                          # not measured: blank
    markdown = to_markdown(*printed("coverage", frame))
    assert "| pre_activation" in markdown and "6.12" in markdown and "0.634" in markdown


def test_the_bn_momentum_table_sets_each_state_against_the_runs_own_statistics():
    from ir2net.reporting.ires_evidence import bn_momentum_table
    from ir2net.reporting.printing import printed, to_markdown

    def record(epoch, trained, points):  # points: (own, 0.19, lag-free) top-1 at each point
        measured = [{"scores": {"0.1": {"top1": own}, "0.19": {"top1": ires},
                                "frozen": {"top1": frozen}}} for own, ires, frozen in points]
        means = {key: {"top1": sum(m["scores"][key]["top1"] for m in measured) / len(points)}
                 for key in ("0.1", "0.19", "frozen")}
        return {"weights": "w", "epoch": epoch, "epochs": 500, "step": None, "steps": 200,
                "points": len(points), "interval": 100, "trained": trained,
                "lr": 0.1 if trained else 0.0, "frozen_batches": 100, "own_momentum": 0.1,
                "own_statistics_agreement": 2e-6, "bn_updates_per_step": 1.0,
                "scores": means, "measurements": measured}
    progress = [{**entry("cirec-s0", {"table1": "CIRec"}, 70.0),
                 "bn_momentum": [record(94, True, [(70.0, 73.0, 75.0), (71.0, 72.0, 75.0)])]},
                {**entry("base-s0", {"table1": "Baseline"}, 81.0),
                 "bn_momentum": [record(500, False, [(81.15, 81.2, 81.3)])]},
                entry("fp-s0", {"table1": "FP"}, 83.0)]
    frame = bn_momentum_table(progress)
    assert frame["weights"].tolist() == ["epoch 94 of 500, trained on", "final (500 epochs), frozen"]
    assert frame["own_top1"].tolist() == pytest.approx([70.5, 81.15])
    assert frame["ires_difference"].tolist() == pytest.approx([2.0, 0.05])  # mean of 3 and 1
    assert frame.loc[0, "ires_difference_std"] == pytest.approx(2 ** 0.5)
    assert pd.isna(frame.loc[1, "ires_difference_std"])  # one point: no spread
    assert frame["frozen_difference"].tolist() == pytest.approx([4.5, 0.15])
    markdown = to_markdown(*printed("bn_momentum", frame))
    assert "+2.00 ± 1.41 |" in markdown and " +0.05 |" in markdown and "2.0e-06" in markdown


def test_shared_trajectory_counts_the_epochs_both_runs_trained_the_same_bits():
    from ir2net.reporting.ires_evidence import shared_trajectory_table
    from ir2net.reporting.printing import printed, to_markdown

    def epochs(losses, tests):
        return [{"epoch": n, "steps": 390 * n, "train_loss": loss, "train_top1": 50.0 + n,
                 "test": {"top1": test}} for n, (loss, test) in enumerate(zip(losses, tests), 1)]

    def segments(*spans):  # (start epoch, end epoch, gpu or None)
        return [{"start_epoch": start, "end_epoch": end,
                 "hardware": {"gpu": gpu} if gpu else {"cpu": "EPYC", "torch_threads": 1}}
                for start, end, gpu in spans]
    with_ires = {**entry("ires-cirec-s0", {"table1": "IRes+CIRec"}, 70.0, "training", 4),
                 "history": epochs([1.9, 1.7, 1.5, 1.4], [30.0, 40.0, 45.0, 50.0]),
                 "segments": segments((0, 4, None))}
    without = {**entry("cirec-s0", {"table1": "CIRec"}, 70.0, "training", 5),
               "history": epochs([1.9, 1.7, 1.6, 1.3, 1.2], [29.0, 37.0, 44.0, 51.0, 52.0]),
               "segments": segments((0, 2.5, None), (2.5, 5, "H200"))}
    other_seed = {**with_ires, "run": "ires-cirec-s1"}     # no CIRec of seed 1: no row
    frame = shared_trajectory_table([with_ires, without, other_seed,
                                     entry("base-s0", {"table1": "Baseline"}, 60.0)])
    assert len(frame) == 1
    row = frame.iloc[0]
    assert (row["method"], row["reference"], row["seed"]) == ("IRes+CIRec", "CIRec", 0)
    assert (row["shared_epochs"], row["compared_epochs"], row["parted_epoch"]) == (2, 4, 3)
    assert row["machines"] == "EPYC (1 thread) / EPYC (1 thread), H200 from epoch 2.5"
    assert row["shared_difference"] == pytest.approx(2.0)          # +1 and +3
    assert (row["shared_min"], row["shared_max"], row["shared_higher"]) == (1.0, 3.0, 2)
    assert row["after_difference"] == pytest.approx(0.0)           # +1 and -1
    markdown = to_markdown(*printed("shared_trajectory", frame))
    assert "+2.00 ± 1.41 |" in markdown

    # equal losses with a step of difference are not the same bits; nor is a gap in epochs
    without["history"][0]["steps"] = 391
    assert shared_trajectory_table([with_ires, without]).iloc[0]["shared_epochs"] == 0
    without["history"] = without["history"][1:]
    assert shared_trajectory_table([with_ires, without]).iloc[0]["shared_epochs"] == 0


def test_figure_7_draws_complete_and_derived_points_and_skips_the_rest(tmp_path):
    from ir2net.reporting.figures import figure7
    from ir2net.reporting.ires_evidence import figure7_points

    reference = {**entry("ires-lam0.15", {"figure7": "IRes|0.15"}, 80.0),
                 "history": _history([0.0, 0.0], onsets=[0.7, 0.65])}
    progress = [
        {**entry("base", {"figure7": "IRes|0"}, 79.0), "history": []},
        reference,
        {"run": "lam0.3", "state": "not started", "rows": {"figure7": "IRes|0.3"},
         "same_as": "ires-lam0.15"},
        {"run": "lam0.9", "state": "not started", "rows": {"figure7": "IRes|0.9"},
         "same_as": "ires-lam0.15"},                                   # acts: to be trained
        {**entry("irec-lam0.15", {"figure7": "IRes+IRec|0.15"}, 84.0, state="training",
                 epochs_done=10)},                                    # in progress: not drawn
    ]
    points, onsets = figure7_points(progress)
    assert points[["run", "lambda", "kind", "top1"]].values.tolist() == [
        ["base", 0.0, "trained", 79.0], ["ires-lam0.15", 0.15, "trained", 80.0],
        ["lam0.3", 0.3, "derived", 80.0]]
    assert onsets == {"IRes": ("ires-lam0.15", 0.65)}
    plan = {"profile": "test", "runs": []}
    assert [path.name for path in figure7(plan, {}, tmp_path, progress)] == ["fig7.png",
                                                                             "fig7.pdf"]


def test_the_figure_7_sweep_says_how_each_point_is_obtained():
    from ir2net.reporting.ires_evidence import figure7_sweep_table
    from ir2net.reporting.printing import printed, to_markdown

    def point(run, label, same_as):
        return {"run": run, "state": "not started", "rows": {"figure7": label},
                "same_as": same_as}
    reference = {**entry("ires-lam0.15", {"figure7": "IRes|0.15"}, 40.0, "training", 3),
                 "history": _history([0.0, 0.0, 0.0], onsets=[0.57, 0.56, 0.59])}
    no_record = {**entry("irec-lam0.15", {"figure7": "IRes+IRec|0.15"}, 70.0, "training", 2),
                 "history": _history([0.0, 0.0], onsets=None)}
    progress = [
        point("ires-lam0.6", "IRes|0.6", "ires-lam0.15"),      # plan order is not λ order
        {**entry("base", {"figure7": "IRes|0", "table1": "Baseline"}, 81.0), "history": []},
        reference,
        point("ires-lam0.45", "IRes|0.45", "ires-lam0.15"),
        point("ires-lam0.56", "IRes|0.56", "ires-lam0.15"),   # λ = the onset: not below it
        no_record, point("irec-lam0.3", "IRes+IRec|0.3", "irec-lam0.15"),
        point("waiting", "Other|0.3", "other-lam0.15"),
        point("other-lam0.15", "Other|0.15", None),
        entry("not-figure-7", {"table1": "CIRec"}, 75.0),
    ]
    frame = figure7_sweep_table(progress)
    assert frame[["series", "lambda"]].values.tolist() == [
        ["IRes", 0.0], ["IRes", 0.15], ["IRes", 0.45], ["IRes", 0.56], ["IRes", 0.6],
        ["IRes+IRec", 0.15], ["IRes+IRec", 0.3], ["Other", 0.15], ["Other", 0.3]]
    rows = frame.set_index("run")
    assert rows.loc["base", "point"] == "trained: the run without IRes"
    assert pd.isna(rows.loc["base", "onset"]) and rows.loc["base", "best_top1"] == 81.0
    assert (rows.loc["ires-lam0.15", "point"], rows.loc["ires-lam0.15", "onset"],
            rows.loc["ires-lam0.15", "onset_steps"]) == ("trained", 0.56, 30)
    derived = rows.loc["ires-lam0.45"]                      # scored and stated as its reference
    assert derived["point"].startswith("derived: = its λ = 0.15 run")
    assert (derived["state"], derived["onset"], derived["best_top1"]) == ("epoch 3 of 500",
                                                                            0.56, 40.0)
    for acting in ("ires-lam0.56", "ires-lam0.6"):
        assert rows.loc[acting, "point"] == "to train: λ not below its λ = 0.15 run's onset"
        assert rows.loc[acting, "state"] == "not started"
        assert pd.isna(rows.loc[acting, "best_top1"])
    assert rows.loc["irec-lam0.3", "point"] == \
        "to train: its λ = 0.15 run has epochs without an onset record"
    assert pd.isna(rows.loc["irec-lam0.3", "onset"])
    assert rows.loc["other-lam0.15", "point"] == "to train"
    assert rows.loc["waiting", "point"] == "waits for its λ = 0.15 run to record an onset"
    assert frame["kind"].tolist() == ["trained", "trained", "derived", "to train", "to train",
                                      "trained", "to train", "to train", "waits"]
    markdown = to_markdown(*printed("figure7_sweep", frame))
    assert "| 0.45 |" in markdown and " 0.560 |" in markdown and " 40.00 |" in markdown


def test_mcnemar_exact_p_is_the_doubled_binomial_tail():
    from ir2net.reporting.paired import mcnemar_exact_p

    assert mcnemar_exact_p(0, 6) == pytest.approx(2 / 64)          # 2 * (1/2)^6
    assert mcnemar_exact_p(6, 0) == mcnemar_exact_p(0, 6)
    assert mcnemar_exact_p(1, 4) == pytest.approx(2 * (1 + 5) / 32)  # 2 * P(X <= 1), X ~ B(5, 1/2)
    assert mcnemar_exact_p(3, 3) == 1.0 and mcnemar_exact_p(0, 0) == 1.0
    assert 0 < mcnemar_exact_p(814, 596) < 1e-8                      # no float underflow at 1,410


def test_a_paired_comparison_counts_the_images_only_one_model_gets_right():
    from ir2net.reporting.paired import paired_comparison

    labels = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    first = [0, 1, 2, 3, 4, 5, 0, 0, 0, 0]      # right on 6
    second = [0, 1, 2, 0, 0, 0, 6, 0, 0, 0]     # right on 4: 3 both, 3 only first, 1 only second
    result = paired_comparison(first, second, labels)
    assert (result["both_right"], result["only_first"], result["only_second"],
            result["neither"]) == (3, 3, 1, 3)
    assert result["difference"] == pytest.approx(result["first_top1"] - result["second_top1"])
    assert result["difference"] == pytest.approx(20.0)
    # per-image differences: three +1, one -1, six 0: mean 0.2, variance 0.4 - 0.04
    half_width = 1.959963984540054 * (0.36 / 10) ** 0.5 * 100
    assert result["ci_low"] == pytest.approx(20.0 - half_width)
    assert result["ci_high"] == pytest.approx(20.0 + half_width)
    assert result["p_value"] == pytest.approx(2 * (1 + 4) / 16)
    with pytest.raises(ValueError, match="same images"):
        paired_comparison(first, second[:-1], labels)


def predictions_entry(run, rows, predictions, labels, state="complete", weights="model.pt"):
    return {**entry(run, rows, 80.0, state),
            "test_predictions": {"predictions": predictions, "labels": labels,
                                 "weights": f"results/longruns/{run}/{weights}"}}


def test_the_paired_table_pairs_each_complete_run_with_its_seeds_baseline():
    from ir2net.reporting.paired import paired_paragraph, paired_table

    labels = [0, 1, 2, 3]
    progress = [predictions_entry("b-s0", BASELINE, [0, 1, 0, 0], labels),
                predictions_entry("i-s0", IR2NET, [0, 1, 2, 3], labels),
                predictions_entry("i-s1", IR2NET, [0, 1, 2, 3], labels),          # no Baseline s1
                predictions_entry("f-s0", {"table1": "FP"}, [0, 0, 0, 0], labels, "training"),
                predictions_entry("c-s0", {"table1": "CIRec"}, [0, 0, 0, 0], labels,
                                  weights="checkpoint/last.pt")]                 # not final
    table = paired_table(progress)
    assert list(table["run"]) == ["i-s0"]                   # one row although IR²Net fills two
    row = table.iloc[0]
    assert (row["only_first"], row["only_second"], row["difference"]) == (2, 0, 50.0)
    assert row["paper_difference"] == pytest.approx(paper("IRes+CIRec") - paper("Baseline"))
    assert "2 of the 4 test images right that the Baseline misses" in paired_paragraph(table)
    progress[1]["test_predictions"]["labels"] = [0, 1, 2, 4]
    with pytest.raises(ValueError, match="different test images"):
        paired_table(progress)
    assert "No two complete runs" in paired_paragraph(paired_table(progress[2:]))
