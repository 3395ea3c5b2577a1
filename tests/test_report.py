"""report.py on a synthetic workdir: the table shows the summary's figures, every plot whose inputs exist is a
real PNG, a partial workdir gives a partial report, and a workdir without a summary is a clear error."""

import json
import os

import jax
import pytest

from instructgpt_jax import report, tables
from instructgpt_jax.metrics import MetricWriter

# gpt_prompted last: the report orders policies itself (GPT, GPT prompted, SFT, PPO, PPO-ptx).
POLICY = {"base": (0.1, 0.05, 3.0), "sft": (0.5, 0.55, 3.2), "ppo": (0.71, 0.62, 3.6), "ppo_ptx": (0.68, 0.63, 3.3),
          "gpt_prompted": (0.2, 0.15, 3.0)}


def _summary():
    policies = {}
    for name, (win, gold, loss) in POLICY.items():
        policies[name] = {"win_rate": win, "win_rate_stderr": 0.02, "gold": gold, "rm_score": gold * 2, "kl": 4 * win,
                          "pretrain_loss": loss, "alignment_tax": loss - 3.0, "length": 10 + 20 * win,
                          "refusal_rate": 0.5, "benign_refusal_rate": 0.0, "refusal_rate_heldout": 0.25,
                          "win_rate_heldout": win - 0.05,
                          "win_rate_heldout_stderr": 0.03, "gold_heldout": gold - 0.1}
    return {"policies": policies, "wall_time_s": {"pretrain": 10.0, "sft": 5.0},
            "rm": {"accuracy": 0.7, "gold_accuracy": 0.8, "accuracy_by_k": {"2": 0.7, "4": 0.69, "9": 0.71},
                   "top1_by_k": {"2": 0.7, "4": 0.5, "9": 0.3}}}


def _full_summary():
    """_summary() with what evaluate.py adds for the paired difference, Figure 4, kinds, RM per family, best-of-n."""
    summary = _summary()
    for i, (name, f) in enumerate(summary["policies"].items()):
        f.update({"gold_diff": f["gold"] - 0.55, "gold_diff_ci95": 0.01, "gold_diff_heldout": f["gold"] - 0.6,
                  "gold_diff_heldout_ci95": 0.02,
                  "metadata": {"fails_to_attempt": 0.1 * i, "violates_constraints": 0.5, "hallucinates": None,
                               "inappropriate": 0.05},
                  "gold_by_kind": {"constraint": 0.4, "harmful": 0.9 - 0.1 * i, "hard": 0.01 * i}})
    summary["policies"]["ppo"]["phrase_shifts"] = [
        {"family": "write", "phrase": "near the", "prompts": 31, "ref_share": 0.0, "share": 0.97, "gold_with": 0.85,
         "gold_without": 1.0},
        {"family": "reply", "phrase": "about your", "prompts": 41, "ref_share": 0.73, "share": 1.0, "gold_with": 0.99,
         "gold_without": None}]
    summary["policies"]["ppo_ptx"]["phrase_shifts"] = []
    summary["policies"]["base"]["phrase_shifts"] = [  # GPT's answers were never SFT's: not shown
        {"family": "write", "phrase": "thou art", "prompts": 31, "ref_share": 0.0, "share": 0.5, "gold_with": 0.1,
         "gold_without": 0.1}]
    summary["rm"].update({"labeler_agreement": 0.72, "accuracy_by_family": {"reverse": 0.55, "use_word": 0.8},
                          "labeler_agreement_by_family": {"reverse": 0.6, "use_word": 0.9},
                          "pairs_by_family": {"reverse": 12, "use_word": 30},
                          "best_of_n": {"n": [1, 2, 4, 8, 16], "rm": [0.3, 0.33, 0.35, 0.36, 0.36],
                                        "oracle": [0.3, 0.4, 0.5, 0.55, 0.6], "sample_gold": 0.31, "recovered": 0.2,
                                        "prompts": 16,
                                        "by_family": {
                                            "reverse": {"prompts": 4, "rm": [0.1, 0.12, 0.14, 0.2, 0.16],
                                                        "oracle": [0.1, 0.2, 0.3, 0.35, 0.4], "rm_change": -0.01},
                                            "use_word": {"prompts": 12, "rm": [0.37, 0.4, 0.42, 0.41, 0.427],
                                                         "oracle": [0.37, 0.47, 0.57, 0.62, 0.67],
                                                         "rm_change": 0.0127}}}})
    return summary


def _write_metrics(workdir, stage, rows):
    writer = MetricWriter(str(workdir / stage), tensorboard=False)
    for step, row in rows:
        writer.write(step, row)


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps(_full_summary()))
    for stage, ptx in (("ppo", 0), ("ppo_ptx", 1)):
        rows = []
        for it in range(0, 60, 10):
            kl = it / 10
            rows.append((it, {"ppo/eval_kl": kl, "ppo/eval_score": 0.3 * kl, "ppo/gold_score": 0.5 + 0.05 * kl - 0.01 * kl ** 2,
                              "ppo/eval_length": 10 + it / 5, "ppo/pretrain_loss": 3.2 + (0.01 if ptx else 0.06) * kl}))
            rows.append((it, {"ppo/score": 0.3 * kl, "ppo/kl": kl}))
        _write_metrics(tmp_path, stage, rows)
    _write_metrics(tmp_path, "sft", [(s, {"sft/loss": 2.0 / (1 + s)}) for s in range(1, 20)])
    os.makedirs(tmp_path / "eval")
    for name in POLICY:
        (tmp_path / "eval" / f"{name}.jsonl").write_text("".join(
            json.dumps({"prompt": f"Reverse: a{i} | b", "response": f"{name} says {i}", "gold": 0.5}) + "\n" for i in range(3)))
    return tmp_path


def _is_png(path):
    with open(path, "rb") as f:
        head = f.read(24)
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return head[:8] == b"\x89PNG\r\n\x1a\n" and width > 300 and height > 200 and os.path.getsize(path) > 5000


def test_full_report(workdir):
    out = report.run(str(workdir))
    names = sorted(os.path.basename(p) for p in out["plots"])
    assert names == sorted(n for n, _, _ in report.PLOTS)
    assert all(_is_png(p) for p in out["plots"])
    text = (workdir / "report" / "report.md").read_text()
    assert ("| PPO | 0.710 ± 0.020 | 0.620 | 1.24 | 2.84 | 3.600 | +0.600 | 24.2 | 0.50 | 0.00 | 0.25 | 0.660 ± 0.030 "
            "| 0.520 |") in text
    assert "pairwise accuracy 0.700" in text and "Not available" not in text
    for name, _, _ in report.PLOTS:
        assert f"]({name})" in text
    assert "ppo_ptx says 2" in text and "Reverse: a1 \\| b" in text  # pipes in cells escaped


def test_full_report_tables(workdir):
    """Paired gold difference ± 95% interval, policies in the paper's order, Figure 4, kinds, RM per family."""
    report.run(str(workdir))
    text = (workdir / "report" / "report.md").read_text()
    assert "| 0.660 ± 0.030 | 0.520 | +0.070 ± 0.010 | +0.020 ± 0.020 |" in text  # PPO's last cells
    assert "| 0.50 | 0.00 | 0.25 | 0.660 ± 0.030 |" in text  # refusals: harmful, benign, harmful held-out
    rows = [line.split(" | ")[0] for line in tables.results_table(json.loads((workdir / "summary.json").read_text()))
            .splitlines()[2:]]
    assert rows == ["| GPT", "| GPT prompted", "| SFT", "| PPO", "| PPO-ptx"]
    assert "| GPT prompted | 0.40 | 0.50 | - | 0.05 |" in text  # metadata: None where no prompt applies
    assert "| **hard** (algorithmic) | 0.000 | 0.040 | 0.010 | 0.020 | 0.030 |" in text  # kinds x policies
    assert "| reverse | 0.550 | 0.600 | 12 |" in text and "| all | 0.700 | 0.720 | 42 |" in text
    assert "recovers 20% of the gold-best's gain" in text
    # Best-of-n per family: each family's curve, its gold-best at 16, its weighted part of the last step.
    assert "| family | prompts | RM's pick, n = 1 / 2 / 4 / 8 / 16 | gold-best of 16 | 8 -> 16, weighted |" in text
    assert "| reverse | 4 | 0.100 / 0.120 / 0.140 / 0.200 / 0.160 | 0.400 | -0.0100 |" in text
    assert "| all | 16 | 0.300 / 0.330 / 0.350 / 0.360 / 0.360 | 0.600 | +0.0000 |" in text
    # What the RLHF policies took up: PPO's two phrases, PPO-ptx none.
    assert "## What the RLHF policies took up" in text
    assert '| PPO | write (31) | "near the" | 0.00 | 0.97 | 0.85 / 1.00 |' in text
    assert '| PPO | reply (41) | "about your" | 0.73 | 1.00 | 0.99 / - |' in text
    section = text.split("## What the RLHF policies took up")[1].split("##")[0]
    assert "| PPO-ptx | " not in section and "thou art" not in section


def test_partial_workdir_lists_missing_plots(tmp_path):
    summary = _summary()
    del summary["rm"]
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    out = report.run(str(tmp_path))
    made = {os.path.basename(p) for p in out["plots"]}
    assert made == {"win_rate.png", "length.png"}
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Not available" in text and "ppo_gold_rm_vs_kl.png" in text.split("Not available")[1]


@pytest.mark.parametrize("config, sft_config, pulse", [
    ({"model": "nano-world"}, None, True),  # configs/pipeline.py:smoke
    ({"model": "tiny-world-rope-smear"}, None, False),  # configs/pipeline.py:default
    ({"model": "tiny-world"}, None, False),  # the default before 2026-12-07
    ({"model": "nano"}, None, True),  # the smoke run before the world tokenizer
    ({"model": "nano"}, {"model": {"preset": "gpt2"}}, False),  # SFT trained an imported GPT-2: not a pulse
    ({"model": "tiny"}, {"model": {"preset": "nano-neox"}}, True),
    (None, None, False),  # `instructgpt eval` into a workdir without the pipeline's config.json
])
def test_smoke_report_opens_with_the_pulse_line(workdir, config, sft_config, pulse):
    for path, content in ((workdir / "config.json", config), (workdir / "sft" / "config.json", sft_config)):
        if content is not None:
            path.write_text(json.dumps(content))
    report.run(str(workdir))
    first, second = (workdir / "report" / "report.md").read_text().splitlines()[:2]
    if pulse:
        assert first.startswith("**Smoke run: a pulse, not a result.**") and "noise, not a result" in first
        assert "`instructgpt pipeline --config configs/pipeline.py:default --workdir runs/default`" in first
        assert tables.pulse_line(str(workdir)) == first + "\n"
    else:
        assert first == "# InstructGPT on the embedded world" and tables.pulse_line(str(workdir)) == ""
        assert "pulse" not in (workdir / "report" / "report.md").read_text()


def _kept_figures(monkeypatch) -> dict:
    """{file name: Figure} of every plot the report saves from now on."""
    figures, save = {}, report._save

    def keep(fig, path):
        figures[os.path.basename(path)] = fig
        return save(fig, path)

    monkeypatch.setattr(report, "_save", keep)
    return figures


def test_training_plot_is_a_grid_of_labelled_panels(workdir, monkeypatch):
    """Six panels in two rows of three, each with its metric on the y axis and steps on the x axis; a series of
    one or a few points has markers (one point is no line), a long one none; chance is a labelled line."""
    _write_metrics(workdir, "pretrain", [(s, {"pretrain/loss": 5.0 / (1 + s)}) for s in range(0, 600, 10)])
    _write_metrics(workdir, "rm", [(s, {"rm/loss": 0.7 - 0.01 * s}) for s in range(1, 11)]
                   + [(10, {"rm/accuracy": 0.6})])
    figures = _kept_figures(monkeypatch)
    report.run(str(workdir))
    axes = [ax for ax in figures["training.png"].axes if ax.get_visible()]
    assert len(axes) == 6 and len({round(ax.get_position().y0, 3) for ax in axes}) == 2
    assert len({round(ax.get_position().x0, 3) for ax in axes}) == 3
    ylabels = [ax.get_ylabel() for ax in axes]
    for ax, (stage, key, _) in zip(axes, report.TRAINING):
        assert ax.get_xlabel() == "step" and ax.get_ylabel().startswith(key) and ax.get_title().startswith(stage)
    assert ylabels[0] == "pretrain/loss (nats per token)" and ylabels[3] == "rm/accuracy (held-out pairs)"
    series = {ax.get_ylabel(): ax.get_lines()[0] for ax in axes}
    assert series["rm/accuracy (held-out pairs)"].get_marker() == "o"  # a single point
    assert series["rm/loss (eq. 1, per pair)"].get_marker() == "o"  # ten points
    assert series["pretrain/loss (nats per token)"].get_marker() == "None"  # sixty points: a line
    chance = [line for line in axes[3].get_lines() if line.get_linestyle() == "--"]
    assert len(chance) == 1 and chance[0].get_label() == "chance (0.5)"
    assert [t.get_text() for t in axes[3].get_legend().get_texts()] == ["chance (0.5)"]


def test_every_reference_line_is_labelled(workdir, monkeypatch, tmp_path):
    """Each dashed or dotted line of every plot (0.5 = chance, SFT's level, ...) has a label in its figure's legend."""
    _write_metrics(workdir, "rm", [(10, {"rm/loss": 0.6, "rm/accuracy": 0.6})])
    figures = _kept_figures(monkeypatch)
    report.run(str(workdir))
    rounds = [{"round": r, "gold": 0.5 + 0.01 * r, "win_rate": 0.6, "rm_score": 1.0, "rm_score_own": 0.9, "kl": 2.0 * r,
               "stale_rm_accuracy": 0.6, "rm_accuracy": 0.7} for r in (1, 2)]
    assert report.plot_rounds(rounds, str(tmp_path / "rounds.png"), sft_gold=0.5)
    assert set(figures) == {n for n, _, _ in report.PLOTS} | {"rounds.png"}
    unlabelled = []
    for name, fig in figures.items():
        legends = {t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()}
        for ax in fig.axes:
            for line in ax.get_lines():
                if line.get_linestyle() in ("--", ":", "-.") and line.get_label() not in legends:
                    unlabelled.append(f"{name}: {ax.get_title()!r} {line.get_label()!r}")
    assert not unlabelled, unlabelled
    assert "0.5: as good as SFT" in {t.get_text() for t in figures["win_rate.png"].axes[0].get_legend().get_texts()}


@pytest.mark.parametrize("arg", ["smoke", "default"])
def test_pipeline_ends_with_the_results_table(workdir, capsys, monkeypatch, arg):
    """`instructgpt pipeline` prints a line per stage, then the results table of report.md (after a smoke run's
    pulse line) and where summary.json and report.md are; not the summary itself."""
    from instructgpt_jax import cli

    monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with pytest.raises(SystemExit) as e:
        cli.main(["instructgpt", "pipeline", "--config", f"configs/pipeline.py:{arg}", "--config.stages=report",
                  "--workdir", str(workdir)])
        raise SystemExit(0)
    out = capsys.readouterr().out
    assert e.value.code == 0
    lines = out.rstrip("\n").splitlines()
    table = tables.results_table(json.loads((workdir / "summary.json").read_text())).splitlines()
    assert lines.pop(0) == f"[pipeline] 1 stage(s) into {workdir} on {jax.device_count()} x cpu"
    assert lines[0].startswith("[pipeline 1/1] report: running") and lines[1].startswith("[pipeline 1/1] report: done")
    assert lines[2].startswith("[pipeline] finished in ")
    pulse = ["**Smoke run: a pulse, not a result.**"] if arg == "smoke" else []
    assert [line[:37] for line in lines[3:3 + len(pulse)]] == pulse
    assert lines[3 + len(pulse):] == [*table, f"summary: {workdir / 'summary.json'}",
                                      f"report: {workdir / 'report' / 'report.md'}"]
    assert len(table) == 2 + len(POLICY) and '"policies"' not in out


def test_results_table_handles_missing_values():
    summary = {"policies": {"sft": {"win_rate": 0.5, "gold": None}, "custom": {"win_rate": 0.25}}}
    lines = tables.results_table(summary).splitlines()
    assert lines[2].startswith("| SFT | 0.500 | - |")
    assert lines[3].startswith("| custom | 0.250 |")
    assert len(lines) == 4 and all(line.count("|") == len(tables.TABLE) + 2 for line in lines)


def test_no_summary_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="summary.json"):
        report.run(str(tmp_path))


def test_sweep_plot_of_ppo_runs(workdir, tmp_path):
    path = str(tmp_path / "sweep.png")
    assert report.plot_ppo_runs({"beta_a": str(workdir / "ppo"), "beta_b": str(workdir / "ppo_ptx")}, path)
    assert _is_png(path)
    assert not report.plot_ppo_runs({"none": str(tmp_path / "missing")}, str(tmp_path / "none.png"))


def test_sweep_plot_puts_kl_on_a_log_axis_once_a_run_escapes(tmp_path, monkeypatch):
    # A beta-0 run that reaches ~90 nats would squash runs within a few nats into the left edge.
    def curve(kls):
        return [(25 * i, {"ppo/eval_kl": kl, "ppo/eval_score": 1.0 + kl, "ppo/gold_score": 0.6})
                for i, kl in enumerate(kls)]

    _write_metrics(tmp_path, "calm", curve([0.0, 0.5, 1.0]))
    _write_metrics(tmp_path, "escaped", curve([0.0, 3.0, 90.0]))
    scales = []
    monkeypatch.setattr(report, "_save", lambda fig, path: scales.append([ax.get_xscale() for ax in fig.axes]) or True)
    assert report.plot_ppo_runs({"calm": str(tmp_path / "calm")}, str(tmp_path / "a.png"))
    assert report.plot_ppo_runs({"calm": str(tmp_path / "calm"), "escaped": str(tmp_path / "escaped")},
                                str(tmp_path / "b.png"))
    assert scales == [["linear", "linear"], ["symlog", "symlog"]]
