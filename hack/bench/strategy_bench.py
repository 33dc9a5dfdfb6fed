#!/usr/bin/python3
"""Strategy benchmark: from the same too-small starting model and goal on
Fashion-MNIST, how many trials and how many trainer CPU-seconds each tuning
strategy (adaptive, ladder, random) needs to reach the goal, over several
seeds. Runs the real controller, kubelite and trainer (hack/local-up.sh).

  hack/bench/strategy_bench.py [BUILD_DIR] [--seeds N] [--strategies a,b,...]

CPU-seconds are measured, not inferred from wall time, so that they hold
on a busy machine. bwrap does not pass its sandboxed children's CPU time up
to kubelite (their cutime stays 0), so a sampler thread reads, every 10 ms,
the user+system time of every process of this environment's pod sandboxes
(/proc/PID/stat; a sandbox's bwrap names the environment's directory on its
command line, the trainer is its descendant) and keeps each process's last
value. A trial's CPU after the last sample (writing its report, exiting) is
missed: at most 10 ms of CPU per trial. Data loading, and warm-started
trials with all the epochs they ran, are counted. Jobs run one after the
other with parallelism 1 and one trainer thread. The trainers' own
"seconds" (wall time, from each report) are printed beside it: on a loaded
machine they are larger than the CPU time."""
import argparse, json, os, signal, statistics, subprocess, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STRATEGIES = ("adaptive", "ladder", "random")
GOAL, MAX_TRIALS = 0.84, 12
CLK_TCK = os.sysconf("SC_CLK_TCK")

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


class CpuMeter:
    """User+system CPU-seconds of the pod sandboxes whose bwrap command line
    names env, sampled every interval seconds (see the module comment)."""

    def __init__(self, env, interval=0.01):
        self.env, self.interval = env, interval
        self.ours = {}  # (pid, starttime) -> True / False
        self.cpu = {}  # (pid, starttime) of ours -> last utime+stime (ticks)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    @staticmethod
    def _stat(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                # The command name may hold spaces: count fields after ')'.
                x = f.read().rsplit(")", 1)[1].split()
            return int(x[1]), int(x[19]), int(x[11]) + int(x[12])  # ppid, starttime, ticks
        except (OSError, IndexError, ValueError):
            return None

    def _is_ours(self, pid, st, depth=0):
        key = (pid, st[1])
        if key not in self.ours:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
                # kubelite and the controller name env too: only sandboxes count.
                mine = os.path.basename(argv[0]) == b"bwrap" and any(self.env.encode() in x for x in argv)
            except OSError:
                mine = False
            if not mine and depth < 4 and st[0] > 1:
                pst = self._stat(st[0])
                mine = bool(pst) and self._is_ours(st[0], pst, depth + 1)
            self.ours[key] = mine
        return self.ours[key]

    def _loop(self):
        while not self.stop.wait(self.interval):
            for name in os.listdir("/proc"):
                if not name.isdigit():
                    continue
                pid = int(name)
                st = self._stat(pid)
                if st and self._is_ours(pid, st):
                    with self.lock:
                        self.cpu[(pid, st[1])] = st[2]

    def seconds(self):
        with self.lock:
            return sum(self.cpu.values()) / CLK_TCK

    def close(self):
        self.stop.set()
        self.thread.join()


def trial_seconds(name):
    """The trainer's own 'seconds' from the report on the pod's last log line."""
    out = kubectl("logs", name).stdout.strip().splitlines()
    for line in reversed(out):
        if line.startswith('{"metrics"'):
            return json.loads(line)["seconds"]
    return None


def run(strategy, seed, meter):
    name = f"{strategy}-s{seed}"
    cpu0 = meter.seconds()
    kubectl("apply", "-f", "-", inp=JOB.format(name=name, seed=seed, goal=GOAL, strategy=strategy,
                                                max_trials=MAX_TRIALS))
    deadline = time.time() + 900
    st = {}
    while time.time() < deadline:
        st = json.loads(kubectl("get", "tj", name, "-o", "json").stdout or "{}").get("status", {})
        if st.get("phase") in ("Succeeded", "Failed"):
            break
        time.sleep(1)
    # The phase is written after the last trial's pod has ended.
    cpu = meter.seconds() - cpu0
    trials = st.get("trials", [])
    secs = [trial_seconds(t["name"]) for t in trials]
    reached = st.get("phase") == "Succeeded"
    best = st.get("bestTrial", {}).get("metrics", {}).get("accuracy")
    return {"strategy": strategy, "seed": seed, "reached": reached, "trials": len(trials),
            "cpu_s": cpu, "reported_s": sum(s for s in secs if s),
            "missing_reports": sum(1 for s in secs if s is None), "best": best}


def interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build", nargs="?", default=os.path.join(ROOT, "build"))
    ap.add_argument("--seeds", type=int, default=5, help="seeds per strategy (default 5)")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    a = ap.parse_args()
    strategies = [s for s in a.strategies.split(",") if s]
    env = tempfile.mkdtemp(prefix="kiln-strategy-bench-")
    # SIGTERM (a stopped CI job) still tears the environment down.
    signal.signal(signal.SIGTERM, interrupted)
    subprocess.run([os.path.join(ROOT, "hack", "local-up.sh"), env, os.path.abspath(a.build)],
                   check=True, stdout=subprocess.DEVNULL)
    os.environ["KUBECONFIG"] = os.path.join(env, "kubeconfig")
    meter = CpuMeter(env)
    rows = []
    t0 = time.time()
    try:
        for seed in range(1, a.seeds + 1):
            for s in strategies:
                r = run(s, seed, meter)
                rows.append(r)
                miss = f" ({r['missing_reports']} reports missing)" if r["missing_reports"] else ""
                print(f"{s:9} seed {seed}: {'goal reached' if r['reached'] else 'goal missed '} "
                      f"after {r['trials']:2} trials, {r['cpu_s']:6.2f} CPU-s "
                      f"(trainers report {r['reported_s']:6.2f} s{miss}), best {r['best']}", flush=True)
    finally:
        meter.close()
        subprocess.run([os.path.join(ROOT, "hack", "local-down.sh"), env], stdout=subprocess.DEVNULL)
    print()
    print(f"goal: accuracy {GOAL} from an MLP [8], 1 epoch, 10k samples; at most {MAX_TRIALS} trials; "
          f"{a.seeds} seeds; {time.time() - t0:.0f} s wall")
    print(f"{'strategy':9} {'reached':>8} {'median trials':>14} {'median CPU-s':>13} {'mean CPU-s':>11}")
    med = {}
    for s in strategies:
        rs = [r for r in rows if r["strategy"] == s]
        # A search that missed the goal counts with all the CPU it spent.
        med[s] = statistics.median(r["cpu_s"] for r in rs)
        print(f"{s:9} {sum(r['reached'] for r in rs):>5}/{len(rs)} {statistics.median(r['trials'] for r in rs):>14} "
              f"{med[s]:>13.2f} {statistics.mean(r['cpu_s'] for r in rs):>11.2f}")
    if med.get("random", 0) > 0 and "adaptive" in med:
        print(f"adaptive / random median CPU-seconds: {med['adaptive'] / med['random']:.2f} (goal <= 0.5)")


if __name__ == "__main__":
    main()
