#!/usr/bin/python3
"""Strategy benchmark: from the same too-small starting model and goal on
Fashion-MNIST, how many trials and how many trainer CPU-seconds each tuning
strategy (adaptive, ladder, random) needs to reach the goal, over several
seeds. Runs the real controller, kubelite and trainer (hack/local-up.sh).

  hack/bench/strategy_bench.py [BUILD_DIR] [SEEDS]

Trials run one at a time with one trainer thread, so a trial's wall time
(its report's "seconds") is its CPU time."""
import json, os, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build"))
SEEDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
STRATEGIES = ("adaptive", "ladder", "random")
GOAL, MAX_TRIALS = 0.84, 12

JOB = """apiVersion: kiln.dev/v1alpha1
kind: TrainingJob
metadata: {{name: {name}}}
spec:
  data: {{uri: "file:///usr/share/datasets/fashion-mnist", maxSamples: 10000}}
  model: {{family: mlp, mlp: {{hiddenLayers: [8]}}}}
  training: {{epochs: 1, threads: 1, seed: {seed}}}
  objective: {{metric: accuracy, goal: {goal}}}
  tuning: {{strategy: {strategy}, maxTrials: {max_trials}, parallelism: 1, seed: {seed}}}
  serving: {{enabled: false}}
"""


def kubectl(*args, inp=None):
    return subprocess.run(["kubectl", *args], input=inp, capture_output=True, text=True)


def trial_seconds(name):
    """The trainer's own 'seconds' from the report on the pod's last log line."""
    out = kubectl("logs", name).stdout.strip().splitlines()
    for line in reversed(out):
        if line.startswith('{"metrics"'):
            return json.loads(line)["seconds"]
    return None


def run(strategy, seed):
    name = f"{strategy}-s{seed}"
    kubectl("apply", "-f", "-", inp=JOB.format(name=name, seed=seed, goal=GOAL, strategy=strategy,
                                                max_trials=MAX_TRIALS))
    deadline = time.time() + 900
    st = {}
    while time.time() < deadline:
        st = json.loads(kubectl("get", "tj", name, "-o", "json").stdout or "{}").get("status", {})
        if st.get("phase") in ("Succeeded", "Failed"):
            break
        time.sleep(1)
    trials = st.get("trials", [])
    secs = [trial_seconds(t["name"]) for t in trials]
    cpu = sum(s for s in secs if s)
    reached = st.get("phase") == "Succeeded"
    best = st.get("bestTrial", {}).get("metrics", {}).get("accuracy")
    return {"strategy": strategy, "seed": seed, "reached": reached, "trials": len(trials),
            "cpu_s": cpu, "best": best}


def main():
    env = tempfile.mkdtemp(prefix="kiln-strategy-bench-")
    subprocess.run([os.path.join(ROOT, "hack", "local-up.sh"), env, BUILD], check=True,
                   stdout=subprocess.DEVNULL)
    os.environ["KUBECONFIG"] = os.path.join(env, "kubeconfig")
    rows = []
    try:
        for seed in range(1, SEEDS + 1):
            for s in STRATEGIES:
                r = run(s, seed)
                rows.append(r)
                print(f"{s:9} seed {seed}: {'goal reached' if r['reached'] else 'goal missed '} "
                      f"after {r['trials']:2} trials, {r['cpu_s']:6.2f} CPU-s, best {r['best']}", flush=True)
    finally:
        subprocess.run([os.path.join(ROOT, "hack", "local-down.sh"), env], stdout=subprocess.DEVNULL)
    print()
    print(f"goal: accuracy {GOAL} from an MLP [8], 1 epoch, 10k samples; at most {MAX_TRIALS} trials")
    print(f"{'strategy':9} {'reached':>8} {'median trials':>14} {'median CPU-s':>13} {'mean CPU-s':>11}")
    med = {}
    for s in STRATEGIES:
        rs = [r for r in rows if r["strategy"] == s]
        # A search that missed the goal counts with all the CPU it spent.
        med[s] = statistics.median(r["cpu_s"] for r in rs)
        print(f"{s:9} {sum(r['reached'] for r in rs):>5}/{len(rs)} {statistics.median(r['trials'] for r in rs):>14} "
              f"{med[s]:>13.2f} {statistics.mean(r['cpu_s'] for r in rs):>11.2f}")
    if med["random"] > 0:
        print(f"adaptive / random CPU-seconds: {med['adaptive'] / med['random']:.2f} (goal <= 0.5)")


if __name__ == "__main__":
    main()
