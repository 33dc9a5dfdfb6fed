#!/usr/bin/python3
"""Training benchmark: kiln-trainer against PyTorch and scikit-learn on the
full Fashion-MNIST (60k/10k), same models, batch sizes, optimisers and
epochs. Prints seconds per epoch, accuracy, achieved GFLOP/s beside the
SGEMM peak measured in this run, peak memory, and the ratios.

  hack/bench/train_bench.py [BUILD_DIR]   (make bench runs it)

Each peer runs in its fastest configuration on this machine: Debian's torch
computes through OpenBLAS, whose threads fight torch's, so the MLP runs with
torch.set_num_threads(1) and OpenBLAS's 2 threads, the CNN with
torch.set_num_threads(2) and OPENBLAS_NUM_THREADS=1."""
import json, os, resource, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build"))
TRAINER = os.path.join(BUILD, "trainer", "kiln-trainer")
DATA = "/usr/share/datasets/fashion-mnist"
MLP_FLOP = 60000 * 3 * 2 * (784 * 128 + 128 * 10)
CNN_FLOP = 60000 * 3 * 2 * (28 * 28 * 8 * 9 + 14 * 14 * 16 * 72 + 784 * 64 + 64 * 10)


def child_maxrss_mb():
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def run_kiln(args, env=None):
    out = tempfile.mkdtemp(prefix="kiln-bench-")
    rss0 = child_maxrss_mb()
    p = subprocess.run([TRAINER, "train", "--data", DATA, "--output", out + "/m",
                        "--report", out + "/r.json"] + args, capture_output=True, text=True,
                       env=dict(os.environ, **(env or {})))
    if p.returncode != 0:
        sys.exit("kiln-trainer failed: " + p.stderr)
    lines = [json.loads(l) for l in p.stdout.splitlines() if '"epoch"' in l]
    report = json.load(open(out + "/r.json"))
    rss = child_maxrss_mb()
    return {"epoch_s": statistics.median(l["seconds"] for l in lines) if lines else None,
            "accuracy": report["metrics"].get("accuracy"), "report": report,
            "rss_mb": rss if rss > rss0 else None}


PEER = r'''
import gzip, json, sys, time, numpy as np
kind, epochs, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
D = "/usr/share/datasets/fashion-mnist"
def load(p, off): return np.frombuffer(gzip.open(f"{D}/{p}").read(), np.uint8, offset=off)
xtr = load("train-images-idx3-ubyte.gz", 16).reshape(-1, 784).astype(np.float32)
ytr = load("train-labels-idx1-ubyte.gz", 8).astype(np.int64)
xte = load("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784).astype(np.float32)
yte = load("t10k-labels-idx1-ubyte.gz", 8).astype(np.int64)
mu, sd = xtr.mean(), xtr.std()
xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
res = {}
if kind in ("mlp", "cnn"):
    import torch
    torch.set_num_threads(threads); torch.manual_seed(1)
    nn = torch.nn
    if kind == "mlp":
        model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10)); shape = (-1, 784)
    else:
        model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                              nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10)); shape = (-1, 1, 28, 28)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3); lossf = nn.CrossEntropyLoss()
    X, Y = torch.from_numpy(xtr).reshape(shape), torch.from_numpy(ytr)
    times = []
    for e in range(epochs):
        t0 = time.perf_counter(); perm = torch.randperm(len(X))
        for i in range(0, len(X), 64):
            idx = perm[i:i + 64]; opt.zero_grad(); l = lossf(model(X[idx]), Y[idx]); l.backward(); opt.step()
        times.append(time.perf_counter() - t0)
    with torch.no_grad():
        acc = (model(torch.from_numpy(xte).reshape(shape)).argmax(1) == torch.from_numpy(yte)).float().mean().item()
    res = {"epoch_s": float(np.median(times)), "accuracy": acc}
elif kind == "sk_mlp":
    from sklearn.neural_network import MLPClassifier
    import warnings; warnings.filterwarnings("ignore")
    m = MLPClassifier((128,), solver="adam", batch_size=200, max_iter=epochs, random_state=1)
    t0 = time.perf_counter(); m.fit(xtr, ytr); t = time.perf_counter() - t0
    res = {"epoch_s": t / epochs, "accuracy": float(m.score(xte, yte))}
elif kind == "sk_kmeans":
    from sklearn.cluster import KMeans
    x = xtr * sd + mu; x /= 255.0
    t0 = time.perf_counter(); m = KMeans(10, n_init=1, random_state=1).fit(x); t = time.perf_counter() - t0
    res = {"seconds": t, "iterations": int(m.n_iter_), "ms_per_iter": 1000 * t / max(1, m.n_iter_)}
elif kind == "sk_logistic":
    from sklearn.linear_model import LogisticRegression
    import warnings; warnings.filterwarnings("ignore")
    t0 = time.perf_counter(); m = LogisticRegression(max_iter=100).fit(xtr, ytr)
    res = {"seconds": time.perf_counter() - t0, "accuracy": float(m.score(xte, yte))}
print(json.dumps(res))
'''


def run_peer(kind, epochs, threads, blas_threads):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(blas_threads), OMP_NUM_THREADS=str(threads))
    p = subprocess.run(["/usr/bin/python3", "-c", PEER, kind, str(epochs), str(threads)],
                       capture_output=True, text=True, env=env)
    if p.returncode != 0:
        print(f"  {kind}: peer failed: {p.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(p.stdout.strip().splitlines()[-1])


def fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def main():
    peak = json.loads(subprocess.run([os.path.join(BUILD, "trainer", "bench_sgemm")],
                                     capture_output=True, text=True, check=True).stdout)["sgemm_gflops"]
    print(f"SGEMM peak measured in this run: {peak:.1f} GFLOP/s\n")
    rows = []

    k = run_kiln(["--family", "mlp", "--hidden", "128", "--epochs", "5", "--batch-size", "64"])
    t = run_peer("mlp", 5, 1, 2)
    s = run_peer("sk_mlp", 5, 2, 2)
    rows.append(("MLP 784-128-10, Adam, batch 64, 5 ep", k, t, MLP_FLOP))
    print(f"MLP: kiln peak RSS {fmt(k['rss_mb'], '.0f')} MB (goal < 300 MB)")
    if s:
        print(f"MLP: scikit-learn MLPClassifier((128,)) batch 200: {s['epoch_s']:.3f} s/epoch, "
              f"accuracy {s['accuracy']:.4f}; kiln is {s['epoch_s'] / k['epoch_s']:.2f}x faster")

    k2 = run_kiln(["--family", "cnn", "--conv", "8,16", "--dense", "64", "--epochs", "3", "--batch-size", "64"])
    t2 = run_peer("cnn", 3, 2, 1)
    rows.append(("CNN [8,16]+[64], Adam, batch 64, 3 ep", k2, t2, CNN_FLOP))

    k3 = run_kiln(["--family", "logistic", "--epochs", "5", "--batch-size", "64"])
    s3 = run_peer("sk_logistic", 0, 2, 2)
    print(f"logistic: kiln accuracy {fmt(k3['accuracy'], '.4f')} (goal >= 0.83), "
          f"scikit-learn LogisticRegression {fmt(s3 and s3['accuracy'], '.4f')}")

    print()
    print(f"{'model':40} {'kiln s/ep':>9} {'torch s/ep':>10} {'torch/kiln':>10} {'kiln acc':>8} "
          f"{'torch acc':>9} {'GFLOP/s':>8} {'% peak':>7}")
    for name, k, t, flop in rows:
        gf = flop / k["epoch_s"] / 1e9 if k["epoch_s"] else None
        ratio = t["epoch_s"] / k["epoch_s"] if t and k["epoch_s"] else None
        print(f"{name:40} {fmt(k['epoch_s'], '9.3f')} {fmt(t and t['epoch_s'], '10.3f')} "
              f"{fmt(ratio, '10.2f')} {fmt(k['accuracy'], '8.4f')} {fmt(t and t['accuracy'], '9.4f')} "
              f"{fmt(gf, '8.1f')} {fmt(gf and 100 * gf / peak, '7.1f')}")

    km = subprocess.run([os.path.join(BUILD, "trainer", "bench_kmeans")], capture_output=True, text=True)
    sk = run_peer("sk_kmeans", 0, 2, 2)
    print()
    print("k-means k=10 on 60,000 x 784 images:")
    print("  kiln:         " + (km.stdout.strip().splitlines()[-1] if km.returncode == 0 and km.stdout.strip() else "bench_kmeans failed"))
    if sk:
        print(f"  scikit-learn: {sk['seconds']:.2f} s, {sk['iterations']} iterations, {sk['ms_per_iter']:.1f} ms/iteration")


if __name__ == "__main__":
    main()
