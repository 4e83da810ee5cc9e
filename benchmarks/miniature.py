"""The learnable CPU miniature: do the trainers make a policy rank better, and how do the reward
designs compare? (issue "Evidence that the trainers learn")

    python benchmarks/miniature.py [--out benchmarks/out/miniature] [--seeds 3] [--steps 150]
    python benchmarks/miniature.py --part table8 [--seeds 3] [--steps 150]

1. writes the `toy` build (flexrec_bench/datasets/toy.py: the query's user type decides the gains of
   three of the 8 presented candidates), 2,000 train / 128 val / 400 test instances;
2. builds a random-init 2-layer Qwen2 (hidden 128) with a tokenizer trained on the toy's prompts;
3. teaches it the answer format only: SFT on *random* permutations (1,000 steps), after which every
   answer names every item once (so item-level credit reaches every item's tokens);
4. runs Figure 3's grid from that model, `flexrec-bench reproduce --figure 3 --preset miniature`:
   Rec-R1 (sequence-level GRPO), Rank-GRPO (rank-level), FlexRec with independent, non-causal swap
   and causal swap item rewards, each for --seeds seeds, through the project's own trainer (the
   ranking environment, the advantages, TRL's GRPOTrainer); every run is scored on the 400 test
   instances and tested against the warm-up model (its step 0) with a paired Wilcoxon test.

Writes <out>/figure3/figure3.{md,json,png} (the curves in Figure 3's layout) and prints the table.

``--part table8``: Table 8 (and Figure 4's curves) in miniature, from the same warm-up model. The
sparse toy build (<out>/table8/data: the same prompts, each training candidate observed with
probability 0.25, validation and test fully labelled) and a critic with known noise
(``write_toy_critic``: the true gain plus Gaussian noise, s.d. 0.05 for half the unobserved pairs
and 0.5 for the other half, the variance reported exactly); then `reproduce --figure 4` and
`--table 8` over its cells: observed labels only, the raw critic, and the uncertainty-aware critic
(the KNN rows say why they cannot run: the toy has no interactions), every run causal swap.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/out/miniature")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None, help="RL steps per run (default: the miniature preset's)")
    ap.add_argument("--warmup-steps", type=int, default=1000)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--part", choices=("figure3", "table8"), default="figure3")
    ap.add_argument("--observed-fraction", type=float, default=0.25,
                    help="table8: share of training candidates observed (ours)")
    ap.add_argument("--critic-noise", choices=("gaussian", "uniform"), default="gaussian",
                    help="table8: the unreliable estimates: the truth plus N(0, 0.5^2), or uniform draws that "
                         "ignore the truth (written to <out>/table8 or <out>/table8-uniform)")
    a = ap.parse_args()
    from flexrec_bench.building.splits import load_split
    from flexrec_bench.datasets.toy import ToyCriticNoise, write_toy_build, write_toy_critic
    from flexrec_bench.ranking.prompts import PromptConfig, split_messages
    from flexrec_bench.ranking.tiny import build_tiny_model
    from training.sft import SFTSettings, sft_train

    out = Path(a.out)
    data = out / "data"
    t0 = time.time()
    if not (data / "toy" / "manifest.json").exists():
        write_toy_build(data)
    train = load_split(data, "toy", "toy", "train")
    warm = out / "warmup" / "final"
    if not (warm / "config.json").exists():
        texts = [split_messages(train, i, PromptConfig())[1]["content"] for i in range(64)]
        base = build_tiny_model(out / "tiny", hidden_size=a.hidden, layers=2, extra_texts=texts)
        sft_train(str(base), [train], out / "warmup", SFTSettings(max_steps=a.warmup_steps, learning_rate=1e-3,
                                                                   lora=False, use_cpu=True, targets="random",
                                                                   per_device_train_batch_size=16))
        print(f"format warm-up done in {time.time() - t0:.0f} s", flush=True)
    common = ["--dataset", "toy", "--need", "toy", "--model", str(warm), "--preset", "miniature",
              "--seeds", str(a.seeds), "--quiet"] + (["--steps", str(a.steps)] if a.steps else [])
    if a.part == "figure3":
        run(["--figure", "3", "--data", str(data), "--out", str(out), *common])
        print((out / "figure3" / "figure3.md").read_text())
    else:
        here = out / ("table8" if a.critic_noise == "gaussian" else f"table8-{a.critic_noise}")
        sparse = here / "data"
        if not (sparse / "toy" / "manifest.json").exists():
            write_toy_build(sparse, observed_fraction=a.observed_fraction)
        critic = sparse / "critics" / "toy"
        if not (critic / "imputations.parquet").exists():
            write_toy_critic(sparse, ToyCriticNoise(unreliable=a.critic_noise))
        for grid in (["--figure", "4"], ["--table", "8"]):  # Table 8 reuses Figure 4's trained cells
            run([*grid, "--data", str(sparse), "--out", str(here), "--critic", str(critic), *common])
        print((here / "figure4" / "figure4.md").read_text())
        print((here / "table8" / "table8.md").read_text())
    print(f"total {time.time() - t0:.0f} s")


def run(args: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "flexrec_bench.cli", "reproduce", *args], check=True)


if __name__ == "__main__":
    main()
