"""Per-recipe step benchmarks feed the cost plan; k concurrent runs are timed together.
Shapes and bookkeeping are asserted, never a speed."""
import json
import shutil
from pathlib import Path

import pytest

from ir2net.cli import main
from ir2net.config import load_config
from ir2net.plan import load_profile, plan_profile, step_signature
from ir2net.throughput import _profile_steps, measure_sharing, measure_step

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(warmup=1, repeats=1, steps=1)


def test_a_recipe_record_names_its_step_and_the_plan_prices_those_jobs_with_it(tmp_path):
    """`ir2net bench --recipe`: the record carries the step's signature; `ir2net plan` then
    prices exactly the jobs with that step from it and keeps estimating the others."""
    bench = tmp_path / "bench"
    bench.mkdir()
    shutil.copy(ROOT / "results/bench/cpu.json", bench)  # the ResNet-20 IR²Net step on a CPU
    before = {job.run: job for job in plan_profile(ROOT / "config/paper.yaml", "cpu", bench)}

    vgg = next(steps for steps in _profile_steps(ROOT / "config/paper.yaml")
               if steps[0] == "cifar10_vgg_small" and steps[1].get("model.precision") == "binary")
    recipe, settings, runs = vgg
    config = load_config(recipe, ["data.root=x"], settings)
    record = measure_step(config, recipe=recipe, device="cpu", batch_size=4, **TINY)
    assert record["step"] == step_signature(config) and record["step"]["model"] == "vgg_small"
    assert record["train_step"]["ours_img_s"] > 0 and record["train_step"]["batch_size"] == 4
    (bench / "vgg.json").write_text(json.dumps(record))

    after = {job.run: job for job in plan_profile(ROOT / "config/paper.yaml", "cpu", bench)}
    newly = {run for run, job in after.items() if job.measured and not before[run].measured}
    assert newly == set(runs)
    for run in runs:
        assert after[run].images_per_s == record["train_step"]["ours_img_s"]
        assert after[run].source == "measured (vgg.json)"
    unchanged = [run for run in after if run not in runs]
    assert unchanged and all(after[run].images_per_s == before[run].images_per_s
                             for run in unchanged)


def test_a_profile_is_benchmarked_once_per_distinct_step(tmp_path, capsys):
    steps = _profile_steps(ROOT / "config/smoke.yaml")
    runs = [run for _, _, ids in steps for run in ids]
    assert len(runs) == len(set(runs)) == 27  # every job of the smoke profile, once
    assert main(["bench", "--profile", str(ROOT / "config/smoke.yaml"), "--out",
                 str(tmp_path), "--device", "cpu", "--warmup", "1", "--repeats", "1",
                 "--steps", "1"]) == 0
    records = [json.loads(path.read_text()) for path in sorted(tmp_path.glob("*.json"))]
    assert len(records) == len(steps)
    signatures = {json.dumps(record["step"], sort_keys=True) for record in records}
    assert len(signatures) == len(steps)
    gpus = load_profile(ROOT / "config/smoke.yaml")["cluster"]["imagenet_gpus"]
    imagenet = [r for r in records if r["train_step"]["recipe"].startswith("imagenet")]
    for record in imagenet:  # timed at its batch per GPU of a data-parallel job
        config = load_config(record["train_step"]["recipe"], ["data.root=x"],
                             record["train_step"]["settings"])
        assert record["train_step"]["batch_size"] == config["train"]["batch_size"] // gpus
    assert imagenet
    jobs = plan_profile(ROOT / "config/smoke.yaml", "cpu", tmp_path)
    assert all(job.measured for job in jobs)


def test_k_concurrent_runs_are_timed_together(tmp_path):
    out = tmp_path / "sharing.json"
    assert main(["bench-sharing", "--runs", "1,2", "--device", "cpu", "--seconds", "1",
                 "--batch-size", "8", "--threads", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["sharing"]["complete"]
    rows = result["sharing"]["rows"]
    assert [(row["mode"], row["runs"]) for row in rows] == [("processes", 1), ("processes", 2)]
    assert [len(row["per_run_img_s"]) for row in rows] == [1, 2]
    assert all(rate > 0 for row in rows for rate in row["per_run_img_s"])
    assert rows[0]["vs_one_run"] == 1.0
    assert rows[1]["aggregate_img_s"] == pytest.approx(sum(rows[1]["per_run_img_s"]))
    assert result["sharing"]["step"]["ires"] and not result["sharing"]["mps_available"]


def test_bad_sharing_arguments_are_refused(capsys):
    assert main(["bench-sharing", "--runs", "0,2", "--device", "cpu"]) == 2
    assert "at least 1" in capsys.readouterr().err
    assert main(["bench-sharing", "--runs", "two", "--device", "cpu"]) == 2
    assert "separated by commas" in capsys.readouterr().err


def test_bench_by_backbone_names_its_recipe(capsys):
    assert main(["bench", "--model", "vgg_small", "--device", "cpu", "--batch-size", "2",
                 "--warmup", "1", "--repeats", "1", "--steps", "1", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["train_step"]["recipe"] == "cifar10_vgg_small"
    assert record["step"]["model"] == "vgg_small"
    assert main(["bench", "--model", "resnet_nope", "--device", "cpu"]) == 2
    assert "unknown model 'resnet_nope'" in capsys.readouterr().err


def test_a_missing_or_invalid_profile_is_refused_clearly(tmp_path, capsys):
    assert main(["plan", "--configfile", str(tmp_path / "absent.yaml")]) == 2
    assert "absent.yaml does not exist" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    import yaml

    wrong_seed = yaml.safe_load((ROOT / "config/smoke.yaml").read_text()) | {"seeds": ["a"]}
    for text, message in (("seeds: [\n", "is not valid YAML"), ("- a\n", "not a mapping"),
                          (yaml.safe_dump(wrong_seed), "config key 'seeds.0'")):
        broken.write_text(text)
        assert main(["bench", "--profile", str(broken), "--device", "cpu"]) == 2
        assert message in capsys.readouterr().err


def test_timed_steps_differentiate_both_ires_passes():
    """Benchmarks and prices do not depend on whether random weights' masks keep every pixel."""
    import torch

    from ir2net.throughput import _step_and_batch

    step, _, _ = _step_and_batch(load_config("cifar10_resnet20_bireal", ["data.root=x"]),
                                 torch.device("cpu"), 8)
    assert step.forward.restriction is not None and step.forward.skip_repeated_pass is False


def test_a_sharing_measurement_stopped_early_keeps_its_rows(tmp_path, monkeypatch):
    """The record is written after every row: when the third k fails (or the budget ends),
    the first two stay, marked incomplete, and nothing half-written is left."""
    import ir2net.throughput as throughput

    calls = []

    def fake_concurrent(k, argv, env, timeout):
        calls.append(k)
        if len(calls) == 3:
            raise KeyboardInterrupt  # what a SIGTERM at the step's cap amounts to
        return [{"images": 1000, "seconds": 1.0} for _ in range(k)]

    monkeypatch.setattr(throughput, "_concurrent", fake_concurrent)
    out = tmp_path / "sharing.json"
    assert main(["bench-sharing", "--runs", "1,2,4", "--device", "cpu", "--out", str(out)]) != 0
    record = json.loads(out.read_text())
    assert not record["sharing"]["complete"]
    assert [(row["runs"], row["vs_one_run"]) for row in record["sharing"]["rows"]] == \
        [(1, 1.0), (2, 2.0)]
    assert [path.name for path in tmp_path.iterdir()] == ["sharing.json"]
