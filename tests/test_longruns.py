"""The published-schedule runs kept in the repository (results/longruns/): the plan matches
the paper profile, runs continue across segments and machines (other data paths), finish
into the paper profile's records, and refuse a changed method or other data."""
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from ir2net.cli import main
from ir2net.config import ConfigError, load_config
from ir2net.experiments import build_runs, role_label
from ir2net.longruns import continue_runs, load_plan
from ir2net.training import TrainingError, TrainingStopped, run

ROOT = Path(__file__).resolve().parents[1]
SPEED_ONLY = {"model.binary_dtype"}  # a plan-wide speed setting, not what makes a run that run


def paper_profile_runs():
    config = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    config["imagenet"].update(data_root="imagenet", image_size=224, resize_size=256)
    return build_runs(config)


def test_the_plan_holds_the_paper_profiles_runs_with_their_settings():
    plan = load_plan(ROOT / "results" / "longruns")
    runs = paper_profile_runs()
    assert [run.run_id for run in plan.runs if run.priority == 1 and not run.gpu_only] == [
        "cifar10-resnet20-calibration-s0", "cifar10-resnet20_bireal-bin-norec-nores-s0",
        "cifar10-resnet20_bireal-bin-cirec-lam0.15-s0", "cifar10-resnet20_bireal-fp-norec-nores-s0"]
    assert {run.run_id: run.settings.get("seed", 0) for run in plan.runs
            if run.priority == 3} == {
        f"cifar10-resnet20_bireal-bin-{method}-s{seed}": seed
        for seed in (1, 2) for method in ("norec-nores", "cirec-lam0.15")}
    for planned in plan.runs:
        spec = runs[planned.run_id]
        assert spec.recipe == planned.recipe
        identity = {k: v for k, v in spec.overrides.items() if not k.startswith("data.")}
        settings = {**plan.settings, **planned.settings}
        assert settings.pop("seed", 0) == spec.seed
        assert {k: v for k, v in settings.items() if k not in SPEED_ONLY} == identity
        for table, row in planned.rows.items():
            assert (table, row) in {(role["table"], role_label(role)) for role in spec.roles}
        config = load_config(planned.recipe, [*planned.overrides(plan.settings), "data.root=x"])
        assert config["seed"] == spec.seed
        if planned.recipe == "cifar10_calibration_resnet20":  # akamaster's recipe
            assert config["train"]["epochs"] == 200 and config["train"]["lr"] == 0.1
            assert config["train"]["lr_milestones"] == [100, 150]
            assert config["model"]["name"] == "resnet20" and not config["ires"]["enabled"]
            continue
        published_epochs = {"cifar10_vgg_small": 400, "cifar10_resnet18": 600}
        assert config["train"]["epochs"] == published_epochs.get(planned.recipe, 500)
        assert config["train"]["batch_size"] == 128
        # Table III's other backbones, and only they, are far beyond a CPU
        assert planned.gpu_only == (planned.recipe != "cifar10_resnet20_bireal")
        recipe = load_config(planned.recipe, ["data.root=x"])["train"]
        assert config["train"]["lr"] == recipe["lr"] and config["data"]["train_subset"] is None
        assert config["ires"]["variant"] == "authors"
        assert config["train"]["mixed_precision"] == "none"


def write_plan(folder: Path, **changes) -> Path:
    settings = {"data.dataset": "synthetic", "data.synthetic.train_size": 64,
                "data.synthetic.test_size": 32, "data.synthetic.image_size": 16,
                "train.epochs": 3, "train.batch_size": 16, "train.checkpoint_every_steps": 2,
                "eval.batch_size": 32}
    plan = {"records": "records", "data_root": "unused", "settings": settings,
            "runs": [{"id": "ir2net", "priority": 1, "rows": {"table1": "IRes+CIRec"},
                      "recipe": "cifar10_resnet20_bireal", "settings": {"ires.lam": 0.15}},
                     {"id": "later", "priority": 2, "rows": {"table1": "FP"},
                      "recipe": "cifar10_resnet20_bireal",
                      "settings": {"model.precision": "fp"}}]}
    plan["runs"][0]["settings"].update(changes)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    return folder


def test_continue_trains_in_segments_and_finishes_into_the_records(tmp_path, capsys):
    folder = write_plan(tmp_path / "longruns")
    plan = load_plan(folder)
    summaries = continue_runs(plan, stop_after="0.000001s")  # the budget is spent: one step, then stop
    assert [s["run"] for s in summaries] == ["ir2net"]  # priority 2 waits for priority 1
    assert summaries[0]["state"] == "training"
    progress = json.loads((folder / "ir2net" / "progress.json").read_text())
    assert progress["segments"][0]["ended_by"].startswith("stopped by its time budget")
    assert main(["longrun", "status", "--folder", str(folder)]) == 0
    status = capsys.readouterr().out
    assert "ir2net: training, epoch 0 of 3, 1 segment(s)" in status
    assert "; left at the recent pace: about " in status and " h on " in status

    assert main(["longrun", "continue", "--folder", str(folder)]) == 0
    run_folder = folder / "ir2net"
    assert not (run_folder / "checkpoint").exists()
    assert (run_folder / "model.pt").is_file()
    metrics = json.loads((run_folder / "metrics.json").read_text())
    assert [s["ended_by"] for s in metrics["segments"]][-1] == "complete"
    assert len(metrics["segments"]) == 2 and metrics["epochs_completed"] == 3
    assert all("ires_removed" in record for record in metrics["history"])
    record = folder / "records" / "ir2net"
    assert json.loads((record / "metrics.json").read_text()) == metrics
    assert (record / "config.yaml").is_file() and not (record / "model.pt").exists()
    assert json.loads((run_folder / "progress.json").read_text())["state"] == "complete"
    cpu_check = json.loads((run_folder / "cpu_evaluation.json").read_text())
    assert cpu_check["top1"] == metrics["final"]["top1"] and cpu_check["device"] == "cpu"

    capsys.readouterr()
    assert main(["longrun", "segments", "ir2net", "--folder", str(folder)]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert len(rows) == 2 and all("| eager " in row for row in rows)
    assert main(["longrun", "segments", str(run_folder), "--folder", str(folder)]) == 0
    assert capsys.readouterr().out.splitlines()[2:] == rows   # the folder names the run too
    assert main(["longrun", "segments", "no-such-run", "--folder", str(folder)]) == 2
    assert "has no run 'no-such-run'" in capsys.readouterr().err

    # the same run, trained without interruption, ends identical
    whole = run(load_config(str(run_folder / "config.yaml")), tmp_path / "whole")
    assert whole["history"] == metrics["history"] and whole["best"] == metrics["best"]
    # now priority 2 is the most urgent
    assert [s["run"] for s in continue_runs(load_plan(folder), stop_after="0.000001s")] == ["later"]


def test_gpu_only_runs_come_first_on_a_gpu_and_never_on_a_cpu(tmp_path, capsys):
    from ir2net.longruns import run_status, select

    folder = write_plan(tmp_path / "longruns")
    plan_file = folder / "plan.yaml"
    plan = yaml.safe_load(plan_file.read_text())
    plan["runs"].append({"id": "big", "priority": 3, "gpu_only": True, "rows": {"table1": "IRec"},
                         "recipe": "cifar10_resnet20_bireal", "settings": {"ires.enabled": False}})
    plan_file.write_text(yaml.safe_dump(plan, sort_keys=False))
    plan = load_plan(folder)
    assert [run.run_id for run in select(plan, [])] == ["ir2net"]
    assert [run.run_id for run in select(plan, [], on_gpu=True)] == ["big"]
    assert [run.run_id for run in select(plan, ["big"])] == ["big"]   # named: the user's call
    status = {row["run"]: row for row in run_status(plan, h200_hours={"big": 0.5})}
    assert status["big"]["gpu_only"] and status["big"]["h200_hours"] == 0.5
    assert not status["ir2net"]["gpu_only"] and status["ir2net"]["h200_hours"] is None
    # on a CPU, a plan of nothing but GPU-only runs left trains nothing
    for run_id in ("ir2net", "later"):
        plan.get(run_id).folder.mkdir()
        (plan.get(run_id).folder / "metrics.json").write_text("{}")
    assert select(plan, []) == []


def test_a_run_is_named_by_its_id_or_by_its_folder_and_nothing_else(tmp_path, monkeypatch):
    from ir2net.longruns import select

    folder = write_plan(tmp_path / "longruns")
    plan = load_plan(folder)
    monkeypatch.chdir(tmp_path)
    for name in ("later", "longruns/later", "longruns/later/", str(folder / "later")):
        assert [run.run_id for run in select(plan, [name])] == ["later"], name
    for wrong in ("elsewhere/later", "longruns/lat", "longruns"):
        with pytest.raises(ConfigError, match="has no run .*planned: ir2net, later"):
            plan.get(wrong)


def test_a_started_run_refuses_a_changed_plan(tmp_path):
    folder = write_plan(tmp_path / "longruns")
    assert continue_runs(load_plan(folder), ["ir2net"], stop_after="0.000001s")[0]["state"] == \
        "training"
    before = (folder / "ir2net" / "config.yaml").read_text()
    write_plan(folder, **{"ires.lam": 0.3})
    with pytest.raises(ConfigError, match="never changes"):
        continue_runs(load_plan(folder), ["ir2net"])
    assert (folder / "ir2net" / "config.yaml").read_text() == before


def image_folder(root: Path, seed: int) -> Path:
    gen = torch.Generator().manual_seed(seed)
    for split, count in (("train", 8), ("test", 4)):
        for label in range(2):
            target = root / split / f"class{label}"
            target.mkdir(parents=True)
            for index in range(count):
                pixels = torch.randint(0, 256, (8, 8, 3), generator=gen, dtype=torch.uint8)
                Image.fromarray(pixels.numpy()).save(target / f"{index}.png")
    return root


def test_resuming_reads_the_data_from_any_path_but_refuses_other_data(tmp_path):
    data = image_folder(tmp_path / "data", 0)
    overrides = ["data.image_size=8", "train.batch_size=4", "train.epochs=2",
                 "eval.batch_size=8", "progress=false", f"data.cache_dir={tmp_path / 'cache'}",
                 "train.stop_after=0.000001s"]
    with pytest.raises(TrainingStopped):
        run(load_config("cifar10_resnet20_bireal", [f"data.root={data}", *overrides]),
            tmp_path / "run")
    moved = shutil.copytree(data, tmp_path / "elsewhere" / "data")
    other = image_folder(tmp_path / "other", 1)
    with pytest.raises(TrainingError, match="trained on other data"):
        run(load_config("cifar10_resnet20_bireal", [f"data.root={other}", *overrides[:-1]]),
            tmp_path / "run")
    metrics = run(load_config("cifar10_resnet20_bireal", [f"data.root={moved}", *overrides[:-1]]),
                  tmp_path / "run")
    assert metrics["status"] == "complete" and len(metrics["segments"]) == 2


def test_a_checkpoint_of_another_config_leaves_the_run_folder_as_it_was(tmp_path):
    synthetic = ["data.dataset=synthetic", "data.synthetic.train_size=64",
                 "data.synthetic.test_size=16", "data.synthetic.image_size=16",
                 "train.batch_size=16", "eval.batch_size=16", "progress=false", "train.epochs=2"]
    folder = tmp_path / "run"
    with pytest.raises(TrainingStopped):
        run(load_config("cifar10_resnet20_bireal", synthetic + ["train.stop_after=0.000001s"]), folder)
    before = (folder / "config.yaml").read_text()
    with pytest.raises(TrainingError, match="different config"):
        run(load_config("cifar10_resnet20_bireal", synthetic + ["train.lr=0.2"]), folder)
    assert (folder / "config.yaml").read_text() == before


def started_longruns():
    return sorted(path.parents[1] for path in
                  (ROOT / "results" / "longruns").glob("*/checkpoint/last.pt"))


@pytest.mark.parametrize("folder", started_longruns() or [None],
                         ids=lambda folder: folder.name if folder else "none-started")
def test_a_committed_long_run_still_resumes_with_this_code(folder):
    """A schema change that alters the digest of a started run's config would orphan its
    checkpoint (days of training): its config must still resolve to the same digest, and its
    planned settings must still give that config."""
    if folder is None:
        pytest.skip("no published-schedule run is in progress")
    from ir2net.config import config_digest
    from ir2net.longruns import planned_config

    state = torch.load(folder / "checkpoint" / "last.pt", map_location="cpu", weights_only=True)
    started = load_config(str(folder / "config.yaml"))
    assert config_digest(started) == state["config_digest"]
    plan = load_plan(folder.parent)
    assert config_digest(planned_config(plan, plan.get(folder.name))) == state["config_digest"]


def test_segments_name_the_commit_a_copied_tree_was_sent_from(monkeypatch):
    """A working tree sent to a lent GPU machine arrived once with a stale .git (HEAD an older
    commit): IR2NET_COMMIT, when set, is what the records name; otherwise git's HEAD."""
    import subprocess

    from ir2net import provenance

    monkeypatch.setenv("IR2NET_COMMIT", "9a9337a9c6d9")
    assert provenance.git_commit() == {"commit": "9a9337a9c6d9", "dirty": None}
    monkeypatch.delenv("IR2NET_COMMIT")
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True)
    if head.returncode == 0:
        assert provenance.git_commit()["commit"] == head.stdout.strip()


def test_a_segment_is_dirty_only_when_the_code_changed(tmp_path, monkeypatch):
    """Two long runs train side by side and each writes its checkpoint under results/: that
    must not mark the other's segments as run from uncommitted code; a changed code or config
    file must."""
    import subprocess

    from ir2net import provenance

    monkeypatch.delenv("IR2NET_COMMIT", raising=False)

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)
    git("init", "-q")
    for name in ("ir2net/training.py", "results/longruns/run/checkpoint.pt", "report/report.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("one\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "state")
    assert provenance.git_commit(tmp_path)["dirty"] is False
    (tmp_path / "results/longruns/run/checkpoint.pt").write_text("two\n")
    (tmp_path / "report/report.md").write_text("two\n")
    assert provenance.git_commit(tmp_path)["dirty"] is False
    (tmp_path / "ir2net/training.py").write_text("two\n")
    assert provenance.git_commit(tmp_path)["dirty"] is True


def test_the_published_rows_name_binary_convolutions_only_for_binary_models():
    """The report says which machine and precision trained each published-schedule row; a
    full-precision run has no binary convolutions, so their dtype must not be named for it."""
    from ir2net.longruns import read_progress
    from ir2net.reporting.evidence import seed_of
    from ir2net.reporting.longrun_tables import published_table

    progress = read_progress(ROOT / "results" / "longruns")
    table = published_table(progress)
    precision = {entry["run"]: entry.get("model_precision") for entry in progress}
    assert set(precision[entry["run"]] for entry in progress if entry["state"] != "not started") \
        <= {"binary", "fp"}
    for entry in progress:
        if entry["state"] == "not started":
            continue
        methods = [row.replace("|", " ") for table_name, row in entry["rows"].items()
                   if table_name in ("table1", "table3")]
        if not methods:  # the data calibration has a table of its own
            continue
        labels = table.loc[table["method"].isin(methods) & (table["seed"] == seed_of(entry["run"])),
                           "hardware"]
        named = labels.str.contains("binary convs").all()
        assert named == (precision[entry["run"]] == "binary"), (entry["run"], list(labels))


def test_the_committed_segments_account_for_every_epoch_and_hour():
    """The segments table is the record of which machine trained which epochs: for each
    committed run its segments follow one another without a gap or an overlap from epoch 0
    to where the run stands, and their wall times add up to the run's."""
    from ir2net.longruns import read_progress
    from ir2net.reporting.run_tables import segments_table

    progress = read_progress(ROOT / "results" / "longruns")
    table = segments_table(progress)
    for entry in progress:
        segments = table[table["run"] == entry["run"]]
        if entry["state"] == "not started":
            assert segments.empty
            continue
        assert list(segments["segment"]) == list(range(1, len(entry["segments"]) + 1))
        assert segments["start_epoch"].iloc[0] == 0
        assert (segments["start_epoch"].iloc[1:].to_numpy()
                == segments["end_epoch"].iloc[:-1].to_numpy()).all(), entry["run"]
        # epochs_done counts whole epochs; a segment can stop inside one
        assert 0 <= segments["end_epoch"].iloc[-1] - entry["epochs_done"] < 1
        assert segments["wall_seconds"].sum() / 3600 == pytest.approx(entry["wall_hours"],
                                                                       abs=1e-3)


def test_matched_epochs_compare_a_run_with_its_references_over_the_same_epochs():
    """A run that has trained 75 epochs is compared with the Baseline of its seed over epochs
    1-50 and 51-75 (not the Baseline's 51-100); IRes+CIRec also with CIRec (IRes the only
    difference), over the epochs both have; another seed's Baseline is never used, and without
    a reference there is nothing to match."""
    from ir2net.reporting.longrun_tables import matched_epochs_table

    def history(epochs, test, train):
        return [{"epoch": e, "train_top1": train(e), "test": {"top1": test(e)}}
                for e in range(1, epochs + 1)]

    baseline = {"run": "base-s0", "rows": {"table1": "Baseline"},
                "history": history(120, lambda e: float(e), lambda e: 2.0 * e)}
    other_seed = {"run": "base-s1", "rows": {"table1": "Baseline"},
                  "history": history(120, lambda e: 1000.0, lambda e: 1000.0)}
    ir2net = {"run": "ir2net-s0", "rows": {"table1": "IRes+CIRec", "table3": "ResNet-20|IR²Net*"},
              "history": history(75, lambda e: e + 3.0, lambda e: 2.0 * e + 1)}
    cirec = {"run": "cirec-s0", "rows": {"table1": "CIRec"},
             "history": history(60, lambda e: e + 1.0, lambda e: 2.0 * e)}
    table = matched_epochs_table([other_seed, baseline, ir2net, cirec,
                                  {"run": "idle-s0", "state": "not started",
                                   "rows": {"table1": "IRes"}}])
    against_baseline = table[(table["method"] == "IRes+CIRec") & (table["reference"] == "Baseline")]
    assert list(against_baseline["epochs"]) == ["1-50", "51-75"]
    assert list(against_baseline["epoch_count"]) == [50, 25]
    assert list(against_baseline["reference_test_top1"]) == [25.5, 63.0]  # 51..75, not 51..100
    assert list(against_baseline["test_top1_difference"]) == [3.0, 3.0]
    assert list(against_baseline["reference_train_top1"]) == [51.0, 126.0]
    assert against_baseline["paper_difference"].tolist() == pytest.approx([2.0, 2.0])  # 87.2-85.2
    against_cirec = table[(table["method"] == "IRes+CIRec") & (table["reference"] == "CIRec")]
    assert list(against_cirec["epochs"]) == ["1-50", "51-60"]  # CIRec has trained 60
    assert list(against_cirec["test_top1_difference"]) == [2.0, 2.0]
    assert against_cirec["paper_difference"].tolist() == pytest.approx([0.3, 0.3])  # 87.2-86.9
    assert set(table["seed"]) == {0} and set(table["method"]) == {"IRes+CIRec", "CIRec"}
    assert matched_epochs_table([ir2net]).empty


def test_finished_long_runs_render_as_the_paper_profiles_tables(tmp_path):
    """A finished published-schedule run joins the paper profile's records with the profile's
    run table, so `ir2net render --records results/records/paper` fills its Table I row."""
    plan = load_plan(ROOT / "results" / "longruns")
    finished = [run for run in plan.runs if run.state == "complete"]
    if not finished:
        pytest.skip("no published-schedule run has finished yet")
    assert plan.profile is not None and plan.profile.resolve() == ROOT / "config" / "paper.yaml"
    assert main(["render", "--records", str(plan.records), "--tables", str(tmp_path / "t"),
                 "--figures", str(tmp_path / "f"), "--report", str(tmp_path / "r"),
                 "--longruns", "", "--plan-device", ""]) == 0
    table1 = (tmp_path / "t" / "table1.csv").read_text()
    rows = pd.read_csv(tmp_path / "t" / "table1.csv").set_index("method")
    in_table1 = [run for run in finished if "table1" in run.rows]  # not the calibration
    assert in_table1
    for run in in_table1:
        metrics = json.loads((run.folder / "metrics.json").read_text())
        row = rows.loc[run.rows["table1"]]
        assert row["final_top1"] == pytest.approx(metrics["final"]["top1"]), table1
        assert row["best_top1"] == pytest.approx(metrics["best"]["top1"]), table1


def _epochs(onsets, removed=0.0):
    return [{"epoch": e + 1, "steps": 391 * (e + 1), "ires_removed": removed,
             **({} if onset is None else {"ires_onset": onset})} for e, onset in enumerate(onsets)]


def test_a_lambda_point_is_derived_only_below_the_onset_of_every_recorded_epoch():
    from ir2net.longruns import derive

    def reference(onsets, state="training"):
        return {"run": "ref", "state": state, "epochs": 500, "epochs_done": len(onsets),
                "history": _epochs(onsets)}

    derived = derive(0.6, reference([0.82, 0.79, 0.81]))
    assert derived["state"] == "derived" and derived["onset_min"] == 0.79
    assert derived["note"] == ("identical to ref, onset ≥ 0.790 over all 1,173 steps so far "
                               "(epoch 3 of 500)")
    assert derive(0.6, reference([0.8], "complete"))["note"].endswith("over all 391 steps")
    assert derive(0.79, reference([0.82, 0.79]))["state"] == "acts"   # at the onset: not proven
    assert derive(0.8, reference([0.82, 0.79]))["state"] == "acts"
    assert derive(0.3, {"run": "ref", "state": "not started"})["state"] == "pending"
    unprovable = derive(0.3, reference([None, None, 0.9]))
    assert unprovable["state"] == "unprovable" and "epochs 1-2" in unprovable["note"]


def test_derived_and_pending_points_are_not_trained_and_acting_ones_are(tmp_path, monkeypatch):
    from ir2net import longruns

    folder = write_plan(tmp_path / "longruns")
    plan_file = folder / "plan.yaml"
    plan = yaml.safe_load(plan_file.read_text())
    for lam in (0.3, 0.9):
        plan["runs"].append({"id": f"lam{lam}", "priority": 1, "same_as": "ir2net",
                             "rows": {"figure7": f"IRes|{lam}"}, "recipe": "cifar10_resnet20_bireal",
                             "settings": {"ires.lam": lam}})
    plan_file.write_text(yaml.safe_dump(plan, sort_keys=False))
    plan = load_plan(folder)
    picked = lambda: [run.run_id for run in longruns.select(plan, [])]  # noqa: E731
    assert picked() == ["ir2net"]                                       # both wait for it
    summary = {"run": "ir2net", "state": "training", "epochs": 3, "history": _epochs([0.5])}
    monkeypatch.setattr(longruns, "progress_summary",
                        lambda run: summary if run.run_id == "ir2net" else {"run": run.run_id})
    assert picked() == ["ir2net", "lam0.9"]                            # 0.3 is derived
    status = {row["run"]: row["derivation"] for row in longruns.run_status(plan, {})}
    assert status["lam0.3"]["state"] == "derived" and status["lam0.9"]["state"] == "acts"
    assert status["ir2net"] is None

    changed = yaml.safe_load(plan_file.read_text())
    changed["runs"][-1]["settings"]["model.recovery.r"] = 2
    plan_file.write_text(yaml.safe_dump(changed, sort_keys=False))
    with pytest.raises(ConfigError, match="differs from it in more than ires.lam"):
        longruns.select(load_plan(folder), [])
    changed["runs"][-1]["same_as"] = "nobody"
    plan_file.write_text(yaml.safe_dump(changed, sort_keys=False))
    with pytest.raises(ConfigError, match="same_as 'nobody'"):
        load_plan(folder)


def test_time_left_is_read_off_the_recent_epochs_of_each_machine():
    """A segment just restarted is mostly start-up: each machine's pace pools its latest
    segments back to PACE_EPOCHS epochs; another machine's segments do not count towards it.
    The machine that trained last comes first."""
    from ir2net.longruns import _hours_left

    cpu = {"hardware": {"cpu": "AMD EPYC", "torch_threads": 1}}
    gpu = {"hardware": {"gpu": "NVIDIA H200"}}
    summary = {"state": "training", "epochs": 500, "segments": [
        {**gpu, "start_epoch": 0.0, "end_epoch": 40.0, "wall_seconds": 100.0},
        {**cpu, "start_epoch": 40.0, "end_epoch": 100.0, "wall_seconds": 9000.0},
        {**cpu, "start_epoch": 100.0, "end_epoch": 100.2, "wall_seconds": 300.0}]}
    cpu_pace, gpu_pace = _hours_left(summary)
    assert cpu_pace == {"hours": round(399.8 * 9300.0 / 60.2 / 3600, 1),  # not 399.8 * 1500 s
                        "on": "AMD EPYC, 1 thread(s)"}
    assert gpu_pace == {"hours": round(399.8 * 2.5 / 3600, 1), "on": "NVIDIA H200"}
    summary["segments"].append({**gpu, "start_epoch": 100.2, "end_epoch": 110.2,
                                "wall_seconds": 5.0})
    assert [pace["on"] for pace in _hours_left(summary)] == ["NVIDIA H200",
                                                             "AMD EPYC, 1 thread(s)"]
    assert _hours_left(summary)[0]["hours"] == round(389.8 * 0.5 / 3600, 1)
    assert _hours_left({**summary, "state": "complete"}) == []
