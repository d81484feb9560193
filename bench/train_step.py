"""Forward + backward tokens/s on the CPU: `warmup bench train-step` vs transformers (same torch
build, same thread count, same config, batch and sequence length). Peak RSS of each process."""
import argparse
import json
import resource
import subprocess
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup-bin", default="build/bin/warmup")
    a = ap.parse_args()

    ours = json.loads(subprocess.run(
        [a.warmup_bin, "bench", "train-step", "--config", a.config, "--batch", str(a.batch), "--seq", str(a.seq),
         "--steps", str(a.steps), "--threads", str(a.threads)], check=True, capture_output=True, text=True).stdout)

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = AutoConfig.from_pretrained(a.config)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").train()
    ids = torch.randint(0, cfg.vocab_size, (a.batch, a.seq))
    times = []
    for step in range(1 + a.steps):
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
        if step > 0:
            times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    peer = {"impl": "transformers", "threads": torch.get_num_threads(), "median_step_s": median,
            "tokens_per_s": a.batch * a.seq / median,
            "parameters": sum(p.numel() for p in model.parameters()),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(json.dumps({"bench": "train_step_fwd_bwd_cpu", "torch": torch.__version__, "batch": a.batch, "seq": a.seq,
                      "peer": peer, "ours": ours, "ratio": ours["tokens_per_s"] / peer["tokens_per_s"]}, indent=2))


if __name__ == "__main__":
    main()
