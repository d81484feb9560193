"""GRPO (plugins/algorithm/grpo): loss and advantages against TRL's GRPOTrainer (the oracle, run
here on the same tensors), learning on a small verifiable task, and resume after a kill."""
import itertools
import json
import subprocess
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from conftest import BUILD, REPO, query, spawn, wait_for, warmup, write

trl_grpo = pytest.importorskip("trl.trainer.grpo_trainer")
from trl.trainer.utils import nanstd  # noqa: E402

CASES_BIN = BUILD / "bin" / "test_grpo_loss"


def trl_loss(case, is_ratio=None):
    """TRL's own GRPOTrainer._compute_loss on fixed per-token log-probs (no model forward); with
    `is_ratio`, as with vllm_importance_sampling_correction (the ratio in the inputs)."""
    logps = torch.tensor(case["logps"], dtype=torch.float64, requires_grad=True)
    entropy = torch.tensor(case["entropy"], dtype=torch.float64)
    self = trl_grpo.GRPOTrainer.__new__(trl_grpo.GRPOTrainer)
    self._get_per_token_logps_and_entropies = lambda *a, **k: (logps, entropy, None)
    self.top_entropy_quantile = 1.0
    self.off_policy_mask_threshold = None
    self.importance_sampling_level = "token"
    self.loss_type = case["loss_type"]
    self.epsilon_low, self.epsilon_high = case["epsilon_low"], case["epsilon_high"]
    self.beta = case["beta"]
    self.use_vllm = is_ratio is not None
    self.vllm_importance_sampling_correction = is_ratio is not None
    self.max_completion_length = case["max_completion_length"]
    self.current_gradient_accumulation_steps = case["accumulation_steps"]
    self.args = SimpleNamespace(delta=None, use_bias_correction_kl=False, steps_per_generation=case["accumulation_steps"])
    self.model = SimpleNamespace(training=True)
    self.accelerator = SimpleNamespace(num_processes=1, reduce=lambda t, reduction: t, gather=lambda t: t,
                                       gather_for_metrics=lambda t: t)
    self._metrics = {"train": defaultdict(list)}
    self._entropy_bonus_enabled = False
    self.aux_loss_enabled = False
    B, T = logps.shape
    inputs = {"prompt_ids": torch.zeros(B, 0, dtype=torch.long), "prompt_mask": torch.zeros(B, 0, dtype=torch.long),
              "completion_ids": torch.zeros(B, T, dtype=torch.long),
              "completion_mask": torch.tensor(case["mask"], dtype=torch.float64),
              "advantages": torch.tensor(case["advantages"], dtype=torch.float64),
              "num_items_in_batch": torch.tensor(case["num_items_in_batch"], dtype=torch.float64)}
    if case["old"] is not None:
        inputs["old_per_token_logps"] = torch.tensor(case["old"], dtype=torch.float64)
    if case["ref"] is not None:
        inputs["ref_per_token_logps"] = torch.tensor(case["ref"], dtype=torch.float64)
    if is_ratio is not None:
        inputs["importance_sampling_ratio"] = is_ratio
    loss = self._compute_loss(None, inputs)
    loss.backward()
    m = self._metrics["train"]
    return {"loss": loss.item(), "grad": logps.grad.tolist(), "clip_low": m["clip_ratio/low_mean"][0],
            "clip_high": m["clip_ratio/high_mean"][0], "clip_region": m["clip_ratio/region_mean"][0],
            "kl": m["kl"][0] if "kl" in m else 0.0, "entropy": m["entropy"][0]}


def make_cases():
    g = torch.Generator().manual_seed(0)
    B, T = 6, 9
    cases = []
    for loss_type, beta, with_old, eps_high in itertools.product(["grpo", "bnpo", "dr_grpo", "dapo"], [0.0, 0.04],
                                                                 [False, True], [0.2, 0.28]):
        logps = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3
        old = logps + torch.randn(B, T, generator=g, dtype=torch.float64) * 0.3 if with_old else None
        ref = logps + torch.randn(B, T, generator=g, dtype=torch.float64) * 0.2
        mask = (torch.rand(B, T, generator=g) > 0.25).double()
        mask[0] = 0  # a sequence with no completion tokens (clamp(min=1))
        cases.append({"logps": logps.tolist(), "old": None if old is None else old.tolist(),
                      "ref": ref.tolist() if beta else None, "advantages": torch.randn(B, generator=g).tolist(),
                      "mask": mask.tolist(), "entropy": (torch.rand(B, T, generator=g) * 2).tolist(),
                      "loss_type": loss_type, "epsilon_low": 0.2, "epsilon_high": eps_high, "beta": beta,
                      "max_completion_length": 16, "accumulation_steps": 3, "num_items_in_batch": float(mask.sum() * 3)})
    return cases


def run_ours(cases, tmp_path):
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases))
    out = subprocess.run([str(CASES_BIN), str(path)], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def test_loss_matches_trl_for_every_loss_type(tmp_path):
    cases = make_cases()
    ours = run_ours(cases, tmp_path)
    assert len(ours) == len(cases) == 32
    for case, o in zip(cases, ours):
        ref = trl_loss(case)
        what = f"{case['loss_type']} beta={case['beta']} old={case['old'] is not None} eps_high={case['epsilon_high']}"
        assert o["loss"] == pytest.approx(ref["loss"], abs=1e-6), what
        assert torch.allclose(torch.tensor(o["grad"], dtype=torch.float64), torch.tensor(ref["grad"], dtype=torch.float64), atol=1e-6), what
        for k in ("clip_low", "clip_high", "clip_region", "kl", "entropy"):
            assert o[k] == pytest.approx(ref[k], abs=1e-6), (what, k)
    # The cases exercise clipping at all (else the clip metrics would compare zeros).
    assert any(o["clip_low"] > 0 for o in ours) and any(o["clip_high"] > 0 for o in ours)


def trl_block(method, first_line, end_line):
    """The lines of a TRL GRPOTrainer method from `first_line` up to `end_line`, dedented: TRL's
    own code, run below on fixed tensors."""
    import inspect
    import textwrap
    src = inspect.getsource(method)
    start = src.rindex("\n", 0, src.index(first_line)) + 1  # from the start of its line
    end = src.rindex("\n", 0, src.index(end_line, start)) + 1
    return textwrap.dedent(src[start:end])


def trl_importance_sampling(old, sampling, mask, mode, clip_min, clip_max):
    """TRL 1.16's vLLM importance sampling ratio and its sampling/* metrics (the blocks of
    _generate_and_score_completions, executed as they are)."""
    import math
    from trl.trainer.utils import nanmax, nanmin
    gen = trl_grpo.GRPOTrainer._generate_and_score_completions
    ratio_code = trl_block(gen, "if self.use_vllm and self.vllm_importance_sampling_correction:\n                mask = ",
                           "# Compute the per-token log probabilities for the reference model")
    metric_code = trl_block(gen, "if self.use_vllm and self.vllm_importance_sampling_correction:\n            delta = ",
                            "output = {")
    self = SimpleNamespace(use_vllm=True, vllm_importance_sampling_correction=True, vllm_importance_sampling_mode=mode,
                           vllm_importance_sampling_clip_min=clip_min, vllm_importance_sampling_clip_max=clip_max,
                           _metrics={"train": defaultdict(list)},
                           accelerator=SimpleNamespace(gather=lambda t: t))
    ns = {"self": self, "old_per_token_logps": old, "sampling_per_token_logps": sampling, "completion_mask": mask,
          "tool_mask": None, "torch": torch, "math": math, "nanmin": nanmin, "nanmax": nanmax, "mode": "train",
          "device": old.device}
    exec(ratio_code, ns)
    exec(metric_code, ns)
    return ns["vllm_importance_sampling_ratio"], {k: v[0] for k, v in self._metrics["train"].items()}


def test_importance_sampling_matches_trl(tmp_path):
    """Train/inference mismatch correction (issue 21 item 2): for every mode and bound, our weights,
    loss, gradients and sampling/* metrics equal TRL's own code on the same tensors."""
    g = torch.Generator().manual_seed(7)
    B, T = 6, 9
    cases = []
    for mode, (cmin, cmax), loss_type, beta in itertools.product(
            ["token_truncate", "token_mask", "sequence_truncate", "sequence_mask"],
            [(None, 3.0), (0.8, 1.25), (0.5, None)], ["bnpo", "dapo", "grpo"], [0.0, 0.04]):
        logps = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3
        old = logps + torch.randn(B, T, generator=g, dtype=torch.float64) * 0.1
        sampling = old + torch.randn(B, T, generator=g, dtype=torch.float64) * 0.3
        sampling[1, 2] = float("nan")  # a token the sampler could not score: ratio 1
        mask = (torch.rand(B, T, generator=g) > 0.25).double()
        mask[0] = 0
        samp = [[None if v != v else v for v in row] for row in sampling.tolist()]
        cases.append({"logps": logps.tolist(), "old": old.tolist(), "ref": (logps + 0.1).tolist() if beta else None,
                      "advantages": torch.randn(B, generator=g).tolist(), "mask": mask.tolist(),
                      "entropy": (torch.rand(B, T, generator=g) * 2).tolist(), "loss_type": loss_type,
                      "epsilon_low": 0.2, "epsilon_high": 0.28, "beta": beta, "max_completion_length": 16,
                      "accumulation_steps": 2, "num_items_in_batch": float(mask.sum() * 2),
                      "is": {"mode": mode, "clip_min": cmin, "clip_max": cmax, "sampling": samp}})
    ours = run_ours(cases, tmp_path)
    assert len(ours) == len(cases) == 72
    changed = defaultdict(int)
    for case, o in zip(cases, ours):
        is_ = case["is"]
        what = f"{is_['mode']} [{is_['clip_min']}, {is_['clip_max']}] {case['loss_type']} beta={case['beta']}"
        sampling = torch.tensor([[float("nan") if v is None else v for v in row] for row in is_["sampling"]],
                                dtype=torch.float64)
        ratio, metrics = trl_importance_sampling(torch.tensor(case["old"], dtype=torch.float64), sampling,
                                                 torch.tensor(case["mask"], dtype=torch.float64), is_["mode"],
                                                 is_["clip_min"], is_["clip_max"])
        assert torch.allclose(torch.tensor(o["is_ratio"], dtype=torch.float64), ratio, atol=1e-12, rtol=1e-12), what
        ref = trl_loss(case, ratio)
        assert o["loss"] == pytest.approx(ref["loss"], abs=1e-6), what
        assert torch.allclose(torch.tensor(o["grad"], dtype=torch.float64), torch.tensor(ref["grad"], dtype=torch.float64),
                              atol=1e-6), what
        for ours_key, trl_key in (("is_min", "min"), ("is_mean", "mean"), ("is_max", "max")):
            assert o[ours_key] == pytest.approx(metrics[f"sampling/importance_sampling_ratio/{trl_key}"], abs=1e-9), what
        assert o["logp_diff_mean"] == pytest.approx(metrics["sampling/sampling_logp_difference/mean"], abs=1e-9), what
        assert o["logp_diff_max"] == pytest.approx(metrics["sampling/sampling_logp_difference/max"], abs=1e-9), what
        diff = torch.nan_to_num((torch.tensor(case["old"], dtype=torch.float64) - sampling)
                                * torch.tensor(case["mask"], dtype=torch.float64), nan=0.0)
        unclipped = torch.exp(diff.sum(-1, keepdim=True) if is_["mode"].startswith("sequence") else diff)
        changed[is_["mode"]] += int((~torch.isclose(ratio, unclipped)).sum())
        # ours only: the share of ratios the bounds changed, and KL(sampler || trainer) = E_q[log q - log p]
        m = torch.tensor(case["mask"], dtype=torch.float64).bool()
        apart = ~torch.isclose(ratio, unclipped, rtol=1e-12, atol=0)
        moved = apart.flatten() if is_["mode"].startswith("sequence") else apart[m]
        assert o["is_frac_capped"] == pytest.approx(float(moved.double().mean()), abs=1e-9), what
        d = (sampling - torch.tensor(case["old"], dtype=torch.float64))[m & ~torch.isnan(sampling)]
        assert o["is_kl"] == pytest.approx(float(d.mean()), abs=1e-9), what
    # every mode's bounds really bite somewhere (else a wrong clip would pass)
    assert all(changed[m] > 0 for m in ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")), changed


def test_sampler_logprobs_line_up_with_the_tokens_they_scored(tmp_path):
    """Each completion token's sampler log-prob sits where the loss scores that token (the target
    of position t is token t + 1), padded and packed (padding_free), with ragged prompts."""
    rolls = []
    for r in range(7):
        prompt = list(range(100 * r, 100 * r + 1 + r % 3))        # prompts of 1-3 tokens
        ids = [1000 * (r + 1) + i for i in range(2 + (r * 5) % 7)]  # completions of 2-8 tokens
        rolls.append({"prompt_ids": prompt, "ids": ids, "sampling": [-(t + 0.5) / 1000 for t in ids]})
    for packed in (False, True):
        out = run_ours([{"batch": {"rolls": rolls, "size": 3, "packed": packed}}], tmp_path)[0]["batches"]
        assert len(out) == 3
        seen = 0
        for mb in out:
            for tg, mask, sp in zip(mb["targets"], mb["mask"], mb["sampling"]):
                for t, m, v in zip(tg, mask, sp):
                    if m:  # a completion token: its own sampler log-prob
                        assert v == pytest.approx(-(t + 0.5) / 1000, abs=1e-6), (packed, t, v)
                        seen += 1
                    elif v is not None:  # never a value where the loss does not score a completion token
                        raise AssertionError((packed, t, v))
        assert seen == sum(len(r["ids"]) for r in rolls), packed


def trl_advantages(rewards, G, scale):
    # trl 1.16 GRPOTrainer._generate_and_score_completions, "sum_then_normalize" branch.
    mean = torch.nanmean(rewards.view(-1, G), dim=1).repeat_interleave(G, dim=0)
    if scale in ("group", "none"):
        std = nanstd(rewards.view(-1, G), dim=1).repeat_interleave(G, dim=0)
    else:
        std = nanstd(rewards).expand_as(rewards)
    adv = rewards - mean
    if scale != "none":
        adv = adv / (std + 1e-4)
    return adv, torch.isclose(std, torch.zeros_like(std))


def test_advantages_match_trl(tmp_path):
    g = torch.Generator().manual_seed(1)
    rewards = [torch.randn(12, generator=g, dtype=torch.float64), torch.tensor([2.0, 2, 2, 2, -0.5, 2, -2, -1, 0, 0, 0, 0])]
    cases = [{"rewards": r.tolist(), "G": G, "scale": s} for r in rewards for G in (4, 6) for s in ("group", "batch", "none")]
    for case, o in zip(cases, run_ours(cases, tmp_path)):
        adv, zero = trl_advantages(torch.tensor(case["rewards"], dtype=torch.float64), case["G"], case["scale"])
        assert torch.allclose(torch.tensor(o["advantages"], dtype=torch.float64), adv, atol=1e-9), case
        assert o["zero_std"] == zero.double().tolist(), case


def test_errored_completions_leave_their_group_as_trl_nan_rewards_do(tmp_path):
    """A completion the rewards could not judge (Score::errored, issue 14) is out of its group's
    mean and std: the advantages of the others equal TRL's with that reward NaN (nanmean/nanstd),
    and its own advantage is 0 (TRL's would be NaN; ours also masks it from the loss)."""
    g = torch.Generator().manual_seed(2)
    rewards = torch.randn(12, generator=g, dtype=torch.float64)
    valid = [1, 0, 1, 1, 1, 1, 0, 1, 1, 0, 0, 1]
    cases = [{"rewards": rewards.tolist(), "valid": valid, "G": G, "scale": s} for G in (4, 6) for s in ("group", "batch", "none")]
    for case, o in zip(cases, run_ours(cases, tmp_path)):
        nan = torch.tensor([r if v else float("nan") for r, v in zip(case["rewards"], valid)], dtype=torch.float64)
        adv, zero = trl_advantages(nan, case["G"], case["scale"])
        ours = torch.tensor(o["advantages"], dtype=torch.float64)
        keep = torch.tensor(valid, dtype=torch.bool)
        assert torch.allclose(ours[keep], adv[keep], atol=1e-9), case
        assert (ours[~keep] == 0).all(), case
        assert [z for z, v in zip(o["zero_std"], valid) if v] == [z for z, v in zip(zero.double().tolist(), valid) if v], case
    # Without errors the path is TRL's exactly (test_advantages_match_trl); with all of a group
    # errored but one, that one has advantage 0 (nothing to compare it with).
    one = run_ours([{"rewards": [1.0, 2.0, 3.0, 4.0], "valid": [0, 0, 0, 1], "G": 4, "scale": "group"}], tmp_path)[0]
    assert one["advantages"] == [0.0, 0.0, 0.0, 0.0] and one["zero_std"] == [1.0] * 4


def test_overlong_penalty_matches_trl_soft_overlong_punishment(tmp_path):
    """DAPO's soft overlong punishment: ours (factor 1) equals TRL's get_soft_overlong_punishment
    for every length around the buffer, and scales with overlong_penalty_factor as verl's does."""
    from trl.rewards import get_soft_overlong_punishment
    lengths = list(range(0, 70))
    cases = [{"overlong": {"lengths": lengths, "max_len": L, "buffer": B, "factor": f}}
             for L, B in ((64, 16), (64, 1), (64, 64), (10, 3)) for f in (1.0, 0.5)]
    for case, o in zip(cases, run_ours(cases, tmp_path)):
        c = case["overlong"]
        trl = get_soft_overlong_punishment(c["max_len"], c["buffer"])([[1] * n for n in lengths])
        assert o["penalties"] == pytest.approx([c["factor"] * t for t in trl], abs=1e-12), c


TINY = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 1024, "hidden_size": 64,
        "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
        "max_position_embeddings": 256, "tie_word_embeddings": True, "eos_token_id": 0, "torch_dtype": "float32"}


def experiment(tmp_path, steps, save_steps=0):
    """A from-scratch model (K&K tokenizer, where " knight" is one token) rewarded for writing
    "knight": a verifiable task a random model solves now and then, so GRPO has a signal."""
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    return write(tmp_path / "grpo.toml", f"""[experiment]
name = "grpo-test"
seed = 3
[model]
init = {{ config = "{tmp_path / 'tiny.json'}", seed = 0, tokenizer = "{REPO / 'experiments/quickstart/tokenizer'}" }}
[tasks.arithmetic]
train_size = 64
[rewards.regex]
pattern = "knight"
mode = "count"
max = 4
[[stages]]
name = "rl"
algorithm = "grpo"
tasks = ["arithmetic"]
rewards = ["regex"]
  [stages.grpo]
  num_examples = 40
  prompts_per_step = 8
  num_generations = 8
  per_device_train_batch_size = 32
  max_completion_length = 8
  temperature = 1.0
  top_p = 1.0
  learning_rate = 3e-3
  lr_scheduler_type = "constant"
  weight_decay = 0.0
  max_grad_norm = 1.0
  scale_rewards = "group"
  max_steps = {steps}
  save_steps = {save_steps}
  log_completions_groups = 2
""")


def series(store, key, run=1):
    return query(store, "SELECT step, value FROM metrics WHERE run_id = ? AND key = ? ORDER BY step", run, key)


def test_grpo_raises_the_mean_reward(tmp_path, store):
    r = warmup("run", experiment(tmp_path, steps=40), "--store", store, timeout=900)
    assert r.returncode == 0, r.stderr
    reward = [v for _, v in series(store, "train/reward")]
    assert len(reward) == 40
    first, last = sum(reward[:5]) / 5, sum(reward[-5:]) / 5
    assert last > first + 1.0, reward  # max is 4 ("knight" up to 4 times in 8 tokens)
    for key in ("train/entropy", "train/clip_ratio/region_mean", "train/frac_reward_zero_std", "train/time/generate",
                "train/completions/mean_length", "train/rewards/regex/mean", "train/advantages/std", "train/grad_norm"):
        assert len(series(store, key)) == 40, key
    # Samples: 2 groups of 8 per step, with rewards and group-relative advantages summing to ~0.
    assert query(store, "SELECT count(*) FROM samples WHERE stage = 'rl'") == [(40 * 16,)]
    sums = query(store, "SELECT step, example_id, sum(advantage) FROM samples GROUP BY step, example_id")
    assert all(abs(s) < 1e-4 for _, _, s in sums)


def test_overlong_shaping_is_added_to_each_reward(tmp_path, store):
    """overlong_buffer_length = 4 of max_completion_length = 8: each sample's reward is the regex
    reward plus the penalty for its length, recorded as the reward part overlong_penalty."""
    exp = experiment(tmp_path, steps=2)
    exp.write_text(exp.read_text().replace("  max_steps = 2\n", "  max_steps = 2\n  overlong_buffer_length = 4\n  overlong_penalty_factor = 0.5\n"))
    r = warmup("run", exp, "--store", store, timeout=900)
    assert r.returncode == 0, r.stderr
    rows = query(store, "SELECT completion_tokens, reward, rewards FROM samples WHERE stage = 'rl'")
    assert len(rows) == 2 * 16
    for n, reward, parts in rows:
        parts = json.loads(parts)
        want = 0.0 if n <= 4 else (4 - n) / 4 * 0.5
        assert parts["overlong_penalty"] == pytest.approx(want), (n, parts)
        assert reward == pytest.approx(parts["regex"] + want), (n, reward, parts)
    assert len(series(store, "train/rewards/overlong_penalty/mean")) == 2
    bad = experiment(tmp_path, steps=2)
    bad.write_text(bad.read_text().replace("  max_steps = 2\n", "  max_steps = 2\n  overlong_buffer_length = 9\n"))
    r = warmup("run", bad, "--store", tmp_path / "bad.sqlite", "--dry-run")
    assert r.returncode == 2 and "overlong_buffer_length" in r.stderr and "max_completion_length (8)" in r.stderr, r.stderr


def test_importance_sampling_weights_the_sampler_mismatch(tmp_path, store):
    """The engine's sampling log-probs against the trainer's, in real runs: with top_p = 1 they
    agree to float rounding (ratio 1, KL 0); with top_p = 0.5 the sampler draws from the trainer's
    distribution cut to the nucleus and renormalised, so each token's ratio is the nucleus mass."""
    # temperature 0.7 on both sides; run 1 packed (padding_free), run 3 with a floor that lifts them all
    for top_p, extra in (("1.0", "  padding_free = true\n"), ("0.5", ""), ("0.5", "  importance_sampling_clip_min = 0.9\n")):
        exp = experiment(tmp_path, steps=2)
        exp.write_text(exp.read_text().replace("  temperature = 1.0\n", "  temperature = 0.7\n").replace(
            "  top_p = 1.0\n", f"  top_p = {top_p}\n  bf16 = false\n  importance_sampling_correction = true\n"
            '  importance_sampling_mode = "token_truncate"\n  importance_sampling_clip_max = inf\n' + extra))
        r = warmup("run", exp, "--store", store, timeout=900)
        assert r.returncode == 0, r.stderr

    def s(key, run):
        return [v for _, v in series(store, "train/sampling/" + key, run)]
    assert len(s("importance_sampling_ratio/mean", 1)) == len(s("importance_sampling_ratio/mean", 2)) == 2
    assert max(s("sampling_logp_difference/max", 1)) < 1e-3, s("sampling_logp_difference/max", 1)
    assert max(s("kl_sampler_trainer", 1)) < 1e-6
    for key in ("min", "mean", "max"):
        assert all(abs(v - 1) < 1e-3 for v in s(f"importance_sampling_ratio/{key}", 1)), key
    assert max(s("importance_sampling_ratio/max", 2)) <= 1 + 1e-3  # a kept token gains mass, never loses
    assert max(s("importance_sampling_ratio/mean", 2)) < 0.9
    assert min(s("kl_sampler_trainer", 2)) > 1e-3
    # a floor of 0.9 over ratios that are the nucleus mass (~0.5): nearly all lifted to it
    assert all(v > 0.9 for v in s("importance_sampling_ratio/frac_capped", 3)), s("importance_sampling_ratio/frac_capped", 3)
    assert min(s("importance_sampling_ratio/min", 3)) >= 0.9 - 1e-6
    bad = experiment(tmp_path, steps=2)
    bad.write_text(bad.read_text().replace("  top_p = 1.0\n", '  top_p = 1.0\n  importance_sampling_mode = "token"\n'))
    r = warmup("run", bad, "--store", tmp_path / "bad.sqlite", "--dry-run")
    assert r.returncode == 2 and "importance_sampling_mode" in r.stderr and "token_truncate" in r.stderr, r.stderr


def test_killed_grpo_resumes_with_the_same_steps(tmp_path, store):
    exp = experiment(tmp_path, steps=16, save_steps=4)
    ref_store = tmp_path / "ref.sqlite"
    assert warmup("run", exp, "--store", ref_store, timeout=900).returncode == 0
    ref = series(ref_store, "train/reward")
    p = spawn("run", exp, "--store", store)

    def latest():  # the checkpoint a resume starts from, once the run directory exists
        dirs = query(store, "SELECT run_dir FROM runs")
        f = REPO / dirs[0][0] / "checkpoints/rl/latest" if dirs and dirs[0][0] else None
        return f.read_text().strip() if f and f.exists() else ""

    # Killed just after the step-8 checkpoint: steps 1-8 are not re-run, so their samples (buffered
    # for up to 2 s) must already be in the store.
    assert wait_for(lambda: latest() == "step-8", timeout=300, interval=0.01)
    p.kill()  # SIGKILL: no chance to checkpoint; steps after the last checkpoint are re-run
    p.communicate(timeout=60)
    r = warmup("run", "--resume", "1", "--store", store, timeout=900)
    assert r.returncode == 0, r.stderr
    got = series(store, "train/reward")
    assert [s for s, _ in got] == list(range(1, 17))  # every step once
    assert max(abs(a - b) for (_, a), (_, b) in zip(got, ref)) < 1e-6, (got, ref)
    per_step = query(store, "SELECT step, count(*) FROM samples GROUP BY step ORDER BY step")
    assert per_step == [(s, 16) for s in range(1, 17)]


@pytest.mark.parametrize("extra", ["", "  beta = 0.04\n"], ids=["fused", "with_reference"])
def test_padding_free_gives_the_padded_loss_and_gradients(tmp_path, extra):
    """padding_free packs each micro-batch's sequences into rows (segment ids, positions restarting)
    instead of padding them: the same loss and gradient norm as padded rows (within 1e-5), through
    the fused head (beta 0) and through log-probs with a KL reference. One step: after an AdamW
    update float noise in near-zero gradients is amplified, so later steps are not compared."""
    got = {}
    for free in (False, True):
        d = tmp_path / ("packed" if free else "padded")
        d.mkdir()
        exp = experiment(d, steps=1)
        # Completions of many lengths (a stop word ends some early), so rows hold several.
        exp.write_text(exp.read_text().replace("  max_steps = 1\n", f"  max_steps = 1\n  padding_free = {str(free).lower()}\n"
                                               "  per_device_train_batch_size = 16\n  stop = [\"knave\"]\n" + extra)
                       .replace("  per_device_train_batch_size = 32\n", "").replace("max_completion_length = 8", "max_completion_length = 64"))
        store = d / "s.sqlite"
        r = warmup("run", exp, "--store", store, timeout=900)
        assert r.returncode == 0, r.stderr
        got[free] = {k: series(store, k)[0][1] for k in ("train/loss", "train/grad_norm", "train/reward", "train/padding_frac")}
        lengths = {n for (n,) in query(store, "SELECT completion_tokens FROM samples")}
        assert len(lengths) > 3, lengths
    for k in ("train/loss", "train/grad_norm"):
        assert got[False][k] == pytest.approx(got[True][k], rel=1e-5, abs=1e-6), (k, got)
    assert got[False]["train/reward"] == got[True]["train/reward"]
    assert got[True]["train/padding_frac"] < 0.6 * got[False]["train/padding_frac"], got


def dynamic(tmp_path, steps, save_steps=0):
    exp = experiment(tmp_path, steps=steps, save_steps=save_steps)
    exp.write_text(exp.read_text().replace("  log_completions_groups = 2\n", "  log_completions_groups = -1\n"
                                           "  dynamic_sampling = true\n  max_num_gen_batches = 0\n")
                   .replace("  learning_rate = 3e-3\n", "  learning_rate = 1e-3\n"))
    return exp


def informative_groups(store, step):
    rows = query(store, "SELECT example_id, count(DISTINCT reward) FROM samples WHERE step = ? GROUP BY example_id", step)
    return sum(1 for _, n in rows if n > 1), len(rows)


def test_dynamic_sampling_trains_on_groups_with_reward_variance_and_resumes_exactly(tmp_path, store):
    """DAPO's dynamic sampling: the "knight" reward of a random model is the same for every
    completion of many prompts; each trained step still has prompts_per_step (8) groups whose
    rewards differ, after as many rounds as it took, and a run killed after a checkpoint resumes
    with the same data order and sampling seeds (the same rewards, step by step)."""
    exp = dynamic(tmp_path, steps=6, save_steps=3)
    ref_store = tmp_path / "ref.sqlite"
    r = warmup("run", exp, "--store", ref_store, timeout=900)
    assert r.returncode == 0, r.stderr
    for step in range(1, 7):
        assert informative_groups(ref_store, step) == (8, 8), step
    rounds = [v for _, v in series(ref_store, "train/dynamic_sampling/rounds")]
    dropped = [v for _, v in series(ref_store, "train/dynamic_sampling/groups_dropped")]
    assert len(rounds) == 6 and sum(dropped) > 0 and max(rounds) > 1, (rounds, dropped)
    assert all(v == 0 for _, v in series(ref_store, "train/frac_reward_zero_std"))
    ref = series(ref_store, "train/reward")

    p = spawn("run", exp, "--store", store)

    def latest():
        dirs = query(store, "SELECT run_dir FROM runs")
        f = REPO / dirs[0][0] / "checkpoints/rl/latest" if dirs and dirs[0][0] else None
        return f.read_text().strip() if f and f.exists() else ""

    assert wait_for(lambda: latest() == "step-3", timeout=300, interval=0.01)
    p.kill()
    p.communicate(timeout=60)
    r = warmup("run", "--resume", "1", "--store", store, timeout=900)
    assert r.returncode == 0, r.stderr
    got = series(store, "train/reward")
    assert [s for s, _ in got] == list(range(1, 7))
    assert max(abs(a - b) for (_, a), (_, b) in zip(got, ref)) < 1e-6, (got, ref)
    assert series(store, "train/dynamic_sampling/rounds") == series(ref_store, "train/dynamic_sampling/rounds")


def test_dynamic_sampling_fills_the_step_after_max_num_gen_batches(tmp_path, store):
    """A reward no completion can change (the pattern never occurs): after max_num_gen_batches
    rounds the step trains on uninformative groups (zero advantages) and says so."""
    exp = dynamic(tmp_path, steps=2)
    exp.write_text(exp.read_text().replace('pattern = "knight"', 'pattern = "zzzz-never"')
                   .replace("max_num_gen_batches = 0", "max_num_gen_batches = 3"))
    r = warmup("run", exp, "--store", store, timeout=900)
    assert r.returncode == 0, r.stderr
    assert [v for _, v in series(store, "train/dynamic_sampling/rounds")] == [3, 3]
    assert [v for _, v in series(store, "train/dynamic_sampling/groups_filled")] == [8, 8]
    assert [v for _, v in series(store, "train/dynamic_sampling/groups_dropped")] == [24, 24]
    assert "have no reward variance after 3 rounds" in r.stderr


@pytest.mark.parametrize("name", ["math", "humaneval", "mmlu_physics", "mmlu_history"])
def test_paper_rlvr_configs_resolve(name):
    import tomllib
    r = warmup("run", REPO / f"experiments/paper/rlvr_{name}_qwen2.5-3b.toml", "--dry-run")
    # The resolved config is printed; the paper's machine paths and GPU are not here, and --dry-run
    # names each (issue 19).
    assert r.returncode == 2 and "path /models/Qwen2.5-3B does not exist" in r.stderr, r.stderr
    assert "device: device 'cuda': CUDA is not usable here" in r.stderr
    assert "/data/" in r.stderr
    stages = {s["name"]: s for s in tomllib.loads(r.stdout)["stages"]}
    g = stages["rlvr"]["grpo"]
    want = {"num_generations": 10, "prompts_per_step": 10, "num_train_epochs": 25.0, "loss_type": "bnpo",
            "scale_rewards": "none", "beta": 0.0, "epsilon": 0.2, "learning_rate": 1e-6, "warmup_steps": 25,
            "adam_beta2": 0.99, "weight_decay": 0.1, "max_grad_norm": 0.1, "max_prompt_length": 256,
            "temperature": 0.7, "top_p": 0.95, "top_k": 50, "save_steps": 50, "data_seed": 42,
            "num_examples": 50 if name == "humaneval" else 100}
    assert {k: g[k] for k in want} == want, g
    e = stages["eval"]
    assert e["eval"]["num_samples"] == 4 and e["evaluate"]["max_model_len"] == 4096


def test_trl_step_size_names_set_prompts_per_step(tmp_path, store):
    """TRL's generation_batch_size and gradient_accumulation_steps (issue 19 item 4): completions
    per optimizer step = per_device_train_batch_size x gradient_accumulation_steps, so
    prompts_per_step = that / num_generations; inconsistent or indivisible values are refused."""
    import tomllib
    base = experiment(tmp_path, 2).read_text().replace("  prompts_per_step = 8\n", "")
    exp = write(tmp_path / "trl.toml", base)

    def resolved(*sets):
        r = warmup("run", exp, "--store", store, "--dry-run", *[a for s in sets for a in ("--set", f"stages.rl.grpo.{s}")])
        return r, (tomllib.loads(r.stdout)["stages"][0]["grpo"] if r.returncode == 0 else None)
    r, g = resolved("generation_batch_size=24")
    assert r.returncode == 0, r.stderr
    assert g["prompts_per_step"] == 3 and g["generation_batch_size"] == 24
    r, g = resolved("per_device_train_batch_size=4", "gradient_accumulation_steps=6")
    assert r.returncode == 0 and g["prompts_per_step"] == 3, r.stderr
    r, _ = resolved("generation_batch_size=20")
    assert r.returncode == 2 and "not a multiple of num_generations = 8" in r.stderr, r.stderr
    r, _ = resolved("per_device_train_batch_size=4", "gradient_accumulation_steps=6", "generation_batch_size=32")
    assert r.returncode == 2 and "must equal per_device_train_batch_size x gradient_accumulation_steps = 24" in r.stderr
    r, _ = resolved("generation_batch_size=24", "prompts_per_step=4")
    assert r.returncode == 2 and "must equal generation_batch_size" in r.stderr
    # the resolved config (both names) resumes: a run with the TRL name trains
    r = warmup("run", exp, "--store", store, "--set", "stages.rl.grpo.generation_batch_size=24",
               "--set", "stages.rl.grpo.log_completions_groups=-1")
    assert r.returncode == 0, r.stderr
    assert query(store, "SELECT count(*) FROM samples WHERE step = 1") == [(24,)]  # 3 prompts x 8
