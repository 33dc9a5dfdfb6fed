#!/usr/bin/python3
"""Controller benchmark: N TrainingJobs (default 1,000) whose single trial
finishes at once (a 60-row CSV served over loopback HTTP, 1 epoch, a goal
the first trial reaches, serving off) on kubelite with the real controller
and trainer. Measures:

  - time from the first create until every job is Succeeded;
  - apply-to-first-pod latency per job, on the API server's clock: from
    the job's create to its first pod's create, both from kubelite's
    request log (microsecond timestamps, the created object's name); and,
    as the client sees it, from the moment the job's POST returned here to
    the moment its first pod arrived on a pod watch opened before the
    creates (this one also counts the watch's delivery and this script's
    own lag under load);
  - API requests per trial from kubelite's requests.log, writes (POST, PUT,
    PATCH, DELETE) and reads, split by client (the controller's user agent
    vs this benchmark) and by resource;
  - the controller's peak RSS (VmHWM) and final RSS, and its CPU time
    (user + system) per job from the first create on;
  - where the controller's time went, from its own /metrics histograms:
    the work queue's wait, reconciles, POSTs and PUTs (p50 and p99).

  hack/bench/controller_bench.py [BUILD_DIR] [--jobs N] [--trials K] [--rate R]
                                 [--api-only] [--clients C] [--timeout S] [--keep DIR]
                                 [-- CONTROLLER FLAGS]

--trials K gives every job K trials (amortises the once-per-job writes),
--rate R paces the creates (latency of one job's path instead of the queue
behind a burst), --api-only turns kubelite's kubelet off (the controller
and API server alone). Flags after "--" restart the controller with them
added (e.g. --workers 16 --qps 2000 --burst 4000). Prints figures and the
goals; asserts nothing."""
import argparse, base64, datetime, http.client, json, os, shutil, ssl, subprocess, sys, tempfile
import threading, time
import http.server, socketserver

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UA = "kiln-controller-bench/1"
GOALS = {"writes": 4.0, "rss_mb": 32.0, "p99_ms": 100.0}


def parse_args():
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build", nargs="?", default=os.path.join(ROOT, "build"))
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=8, help="concurrent HTTP connections for the creates")
    ap.add_argument("--trials", type=int, default=1,
                    help="trials per job (default 1); above 1 the goal is out of reach, so every "
                         "job runs all its trials one after another and ends GoalNotReached")
    ap.add_argument("--rate", type=float, default=0,
                    help="create at most this many jobs per second (default 0: all at once); "
                         "paced, apply-to-first-pod shows one job's path rather than the queue "
                         "behind a burst")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--keep", help="leave the environment's files in this directory")
    ap.add_argument("--api-only", action="store_true",
                    help="kubelite without its kubelet: pods are created but never run, so "
                         "apply-to-first-pod is measured without trainer processes competing for "
                         "the cores (no job finishes; requests and RSS cover the first pass only)")
    a = ap.parse_args(argv)
    a.ctrl_flags = extra
    a.build = os.path.abspath(a.build)
    return a


# ------------------------------------------------------------ tiny data set

def tiny_csv():
    """60 rows, two features, two classes: training takes a few milliseconds."""
    rows = ["x1,x2,y"]
    s = 12345
    for i in range(60):
        s = (s * 1103515245 + 12345) % (1 << 31)
        a = (s % 1000) / 250.0
        s = (s * 1103515245 + 12345) % (1 << 31)
        b = (s % 1000) / 250.0
        y = i % 2
        rows.append(f"{a + 3 * y:.3f},{b - 2 * y:.3f},{y}")
    return ("\n".join(rows) + "\n").encode()


def serve_data(body):
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        request_queue_size = 512

    srv = S(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


# ------------------------------------------------------------ API access

class Api:
    """Minimal client from kubelite's kubeconfig: TLS with its CA, bearer token."""

    def __init__(self, kubeconfig, token_file):
        text = open(kubeconfig).read()
        server = ca = None
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("server:"):
                server = line.split(":", 1)[1].strip()
            elif line.startswith("certificate-authority-data:"):
                ca = base64.b64decode(line.split(":", 1)[1].strip()).decode()
        hostport = server.split("://", 1)[1]
        self.host, port = hostport.rsplit(":", 1)
        self.port = int(port)
        self.ctx = ssl.create_default_context(cadata=ca)
        self.ctx.check_hostname = False
        self.token = open(token_file).read().strip()

    def conn(self, timeout=60):
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)

    def headers(self):
        return {"Authorization": "Bearer " + self.token, "User-Agent": UA,
                "Content-Type": "application/json", "Accept": "application/json"}

    def request(self, c, method, path, body=None):
        c.request(method, path, body=json.dumps(body) if body is not None else None, headers=self.headers())
        r = c.getresponse()
        data = r.read()
        return r.status, data


def job_manifest(name, data_url, trials):
    return {
        "apiVersion": "kiln.dev/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "data": {"uri": data_url, "format": "csv", "label": "y", "maxSamples": 60},
            "model": {"family": "logistic"},
            "training": {"epochs": 1, "threads": 1},
            "objective": {"metric": "accuracy", "goal": 0.01 if trials == 1 else 0.999},
            "tuning": {"strategy": "adaptive", "maxTrials": trials, "parallelism": 1,
                       "maxFailedTrials": trials},
            "serving": {"enabled": False},
        },
    }


class Watch(threading.Thread):
    """Watches a collection and calls fn(event, arrival time) per event."""

    def __init__(self, api, path, fn):
        super().__init__(daemon=True)
        self.api, self.path, self.fn = api, path, fn
        self.stop = False
        self.ready = threading.Event()

    def run(self):
        rv = ""
        while not self.stop:
            c = self.api.conn(timeout=None)
            try:
                if not rv:
                    st, data = self.api.request(c, "GET", self.path)
                    lst = json.loads(data)
                    rv = lst["metadata"]["resourceVersion"]
                    now = time.time()
                    for o in lst.get("items", []):
                        self.fn({"type": "ADDED", "object": o}, now)
                sep = "&" if "?" in self.path else "?"
                c.request("GET", f"{self.path}{sep}watch=1&allowWatchBookmarks=true&resourceVersion={rv}"
                          f"&timeoutSeconds=3600", headers=self.api.headers())
                r = c.getresponse()
                if r.status != 200:
                    rv = ""
                    r.read()
                    continue
                self.ready.set()
                while not self.stop:
                    line = r.readline()
                    if not line:
                        break
                    now = time.time()
                    ev = json.loads(line)
                    rv = ev["object"].get("metadata", {}).get("resourceVersion", rv)
                    if ev["type"] == "ERROR":
                        rv = ""
                        break
                    if ev["type"] != "BOOKMARK":
                        self.fn(ev, now)
            except (OSError, http.client.HTTPException, ValueError):
                time.sleep(0.2)
            finally:
                c.close()


# ------------------------------------------------------------ environment

def wait_ready(port, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def restart_controller(env, build, flags):
    """Replaces the controller local-up.sh started with one given extra flags."""
    pid = int(open(os.path.join(env, "controller.pid")).read())
    if pid > 0:
        os.kill(pid, 15)
    for _ in range(100 if pid > 0 else 0):
        if not os.path.exists(f"/proc/{pid}"):
            break
        time.sleep(0.1)
    log = open(os.path.join(env, "controller.log"), "a")
    # A process group of its own in this session, as local-up.sh starts it
    # (a session of its own would be a scheduling group of its own).
    p = subprocess.Popen([os.path.join(build, "controller/src/kiln-controller"), "--kubeconfig",
                          os.path.join(env, "kubeconfig"), "--metrics-bind-address", "127.0.0.1:0",
                          "--health-probe-bind-address", "127.0.0.1:0", *flags],
                         stdout=log, stderr=log, stdin=subprocess.DEVNULL, process_group=0)
    open(os.path.join(env, "controller.pid"), "w").write(str(p.pid))
    # The new health port is the last one logged.
    end = time.time() + 30
    while time.time() < end:
        ports = [json.loads(l).get("healthPort") for l in open(os.path.join(env, "controller.log"))
                 if '"healthPort"' in l]
        if ports and ports[-1] and wait_ready(ports[-1], 1):
            return p.pid
        time.sleep(0.1)
    sys.exit("controller_bench: the restarted controller did not become ready")


def api_only_up(env, build):
    """What local-up.sh does, with kubelite's kubelet off; the controller is
    started by restart_controller (the pid file names nothing yet)."""
    os.makedirs(os.path.join(env, "kubelite"), exist_ok=True)
    log = open(os.path.join(env, "kubelite.log"), "w")
    p = subprocess.Popen([os.path.join(build, "hack/kubelite/kubelite"), "--data-dir",
                          os.path.join(env, "kubelite"), "--listen", "127.0.0.1:0", "--no-kubelet"],
                         stdout=log, stderr=log, stdin=subprocess.DEVNULL, process_group=0)
    open(os.path.join(env, "kubelite.pid"), "w").write(str(p.pid))
    kc = os.path.join(env, "kubelite", "kubeconfig")
    for _ in range(300):
        if os.path.exists(kc) and os.path.getsize(kc) > 0:
            break
        time.sleep(0.1)
    shutil.copy(kc, os.path.join(env, "kubeconfig"))
    e = dict(os.environ, KUBECONFIG=os.path.join(env, "kubeconfig"))
    subprocess.run(["kubectl", "apply", "-f", os.path.join(ROOT, "crds")], env=e, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["kubectl", "wait", "--for", "condition=Established", "crd/trainingjobs.kiln.dev",
                    "--timeout=60s"], env=e, check=True, stdout=subprocess.DEVNULL)
    open(os.path.join(env, "controller.pid"), "w").write("0")


def histogram_quantiles(text, name, labels="", qs=(50, 99)):
    """Quantiles of a Prometheus histogram in /metrics text, interpolated
    within buckets as histogram_quantile() does; None when it is empty."""
    prefix = name + "_bucket{" + (labels + "," if labels else "") + 'le="'
    buckets = []
    for line in text.splitlines():
        if line.startswith(prefix):
            le, _, n = line[len(prefix):].partition('"} ')
            buckets.append((float("inf") if le == "+Inf" else float(le), float(n)))
    if not buckets or buckets[-1][1] == 0:
        return None
    total, out = buckets[-1][1], []
    for q in qs:
        rank, lo, below = total * q / 100, 0.0, 0.0
        for le, n in buckets:
            if n >= rank:
                out.append(lo if le == float("inf") else lo + (le - lo) * (rank - below) / max(n - below, 1e-9))
                break
            lo, below = le, n
    return out, int(total)


def controller_metrics(env):
    """The controller's /metrics page (its port is the last one it logged)."""
    ports = [json.loads(l).get("metricsPort") for l in open(os.path.join(env, "controller.log"))
             if '"metricsPort"' in l]
    if not ports or not ports[-1]:
        return ""
    try:
        c = http.client.HTTPConnection("127.0.0.1", ports[-1], timeout=10)
        c.request("GET", "/metrics")
        return c.getresponse().read().decode()
    except OSError:
        return ""


def proc_kb(pid, field):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_cpu_s(pid):
    """User plus system CPU seconds the process has used so far."""
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def log_time(ts):
    """Seconds since the epoch from a request log timestamp (RFC 3339, UTC, microseconds)."""
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(q / 100.0 * len(xs) + 0.5)) - 1))
    return xs[k]


# ------------------------------------------------------------ main

def main():
    a = parse_args()
    env = a.keep or tempfile.mkdtemp(prefix="kiln-controller-bench-")
    os.makedirs(env, exist_ok=True)
    if a.api_only:
        api_only_up(env, a.build)
    else:
        up = subprocess.run([os.path.join(ROOT, "hack", "local-up.sh"), env, a.build],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if up.returncode != 0:
            sys.exit("controller_bench: local-up failed:\n" + up.stderr)
    srv = serve_data(tiny_csv())
    try:
        run(a, env, srv)
    finally:
        srv.shutdown()
        subprocess.run([os.path.join(ROOT, "hack", "local-down.sh"), env], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        if not a.keep:
            shutil.rmtree(env, ignore_errors=True)


def run(a, env, srv):
    ctrl_pid = int(open(os.path.join(env, "controller.pid")).read())
    if a.ctrl_flags or a.api_only:
        ctrl_pid = restart_controller(env, a.build, a.ctrl_flags)
    api = Api(os.path.join(env, "kubeconfig"), os.path.join(env, "kubelite", "token"))
    data_url = f"http://127.0.0.1:{srv.server_address[1]}/tiny.csv"
    names = [f"b{i:05d}" for i in range(a.jobs)]
    lock = threading.Lock()
    posted, first_pod, succeeded, failed, ntrials = {}, {}, {}, {}, {}

    def on_pod(ev, now):
        job = ev["object"].get("metadata", {}).get("labels", {}).get("kiln.dev/job")
        if job and ev["type"] == "ADDED":
            with lock:
                first_pod.setdefault(job, now)

    def on_job(ev, now):
        o = ev["object"]
        ph = o.get("status", {}).get("phase")
        n = o.get("metadata", {}).get("name")
        with lock:
            ntrials[n] = max(ntrials.get(n, 0), len(o.get("status", {}).get("trials", [])))
            if ph == "Succeeded":
                succeeded.setdefault(n, now)
            elif ph == "Failed":
                failed.setdefault(n, now)

    wp = Watch(api, "/api/v1/namespaces/default/pods?labelSelector=kiln.dev%2Fjob", on_pod)
    wj = Watch(api, "/apis/kiln.dev/v1alpha1/namespaces/default/trainingjobs", on_job)
    wp.start()
    wj.start()
    wp.ready.wait(30)
    wj.ready.wait(30)

    reqlog = os.path.join(env, "kubelite", "requests.log")
    log_start = os.path.getsize(reqlog)
    hwm0 = proc_kb(ctrl_pid, "VmHWM")
    cpu0 = proc_cpu_s(ctrl_pid)

    # Creates from a few pooled connections at once.
    todo = list(names)
    errors = []

    start = time.time()

    def creator():
        c = api.conn()
        while True:
            with lock:
                if not todo:
                    break
                n = todo.pop()
                k = len(names) - len(todo) - 1
            if a.rate > 0:
                time.sleep(max(0.0, start + k / a.rate - time.time()))
            st, body = api.request(c, "POST", "/apis/kiln.dev/v1alpha1/namespaces/default/trainingjobs",
                                   job_manifest(n, data_url, a.trials))
            now = time.time()
            with lock:
                if st == 201:
                    posted[n] = now
                else:
                    errors.append((n, st, body[:200]))
        c.close()

    t0 = time.time()
    ts = [threading.Thread(target=creator) for _ in range(a.clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    t_created = time.time() - t0
    if errors:
        print(f"controller_bench: {len(errors)} creates failed, e.g. {errors[0]}", file=sys.stderr)

    end = t0 + a.timeout
    while time.time() < end:
        with lock:
            done = len(first_pod) if a.api_only else len(succeeded) + len(failed)
        if done >= len(posted):
            break
        time.sleep(0.2)
    t_all = (max(list(succeeded.values()) + list(failed.values())) - t0) if succeeded or failed else float("nan")
    time.sleep(1.0)  # writes that trail the last Succeeded (events) land in the log
    hwm = proc_kb(ctrl_pid, "VmHWM")
    rss = proc_kb(ctrl_pid, "VmRSS")
    cpu = proc_cpu_s(ctrl_pid) - cpu0
    metrics = controller_metrics(env)
    wp.stop = wj.stop = True

    # Requests from the log, from the first create on.
    by = {}
    job_at, pod_at = {}, {}  # server-clock creates: job name -> time, job name -> first pod time
    with open(reqlog) as f:
        f.seek(log_start)
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            who = "controller" if r.get("userAgent", "").startswith("kiln-controller/") else \
                "bench" if r.get("userAgent", "").startswith(UA) else "other"
            m = r.get("method", "")
            kind = "write" if m in ("POST", "PUT", "PATCH", "DELETE") else "read"
            res = r.get("resource", "?") + ("/" + r["subresource"] if r.get("subresource") else "")
            key = (who, kind, m, res, r.get("code"))
            by[key] = by.get(key, 0) + 1
            if m == "POST" and r.get("code") == 201 and r.get("name") and not r.get("subresource"):
                if who == "bench" and res == "trainingjobs":
                    job_at[r["name"]] = log_time(r["ts"])
                elif who == "controller" and res == "pods" and r["name"].endswith("-t0"):
                    pod_at.setdefault(r["name"][:-3], log_time(r["ts"]))

    lat = [(pod_at[n] - job_at[n]) * 1000 for n in job_at if n in pod_at]
    lat_watch = [(first_pod[n] - posted[n]) * 1000 for n in posted if n in first_pod]
    # trials run, from the jobs' statuses (each finished job with K trials records K)
    trials = sum(ntrials.get(n, 0) for n in posted) if not a.api_only else len(posted)
    ctrl_w = sum(v for k, v in by.items() if k[0] == "controller" and k[1] == "write")
    ctrl_r = sum(v for k, v in by.items() if k[0] == "controller" and k[1] == "read")
    ev_w = sum(v for k, v in by.items() if k[0] == "controller" and k[1] == "write" and k[3] == "events")
    load = os.getloadavg()

    print(f"jobs: {len(posted)} with up to {a.trials} trial(s) each ({trials} trials recorded), created ({len(errors)} failed) in {t_created:.2f} s from {a.clients} connections; "
          f"{len(succeeded)} Succeeded, {len(failed)} Failed, {len(posted) - len(succeeded) - len(failed)} unfinished")
    print(f"controller flags: {' '.join(a.ctrl_flags) or '(local-up defaults)'}; "
          f"{'paced at %g jobs/s' % a.rate if a.rate > 0 else 'created at once'}"
          f"{'; kubelet off' if a.api_only else ''}; load average {load[0]:.1f}")
    print()
    print("controller requests (from kubelite's requests.log):")
    print(f"  {'kind':5} {'method':6} {'resource':30} {'code':>4} {'count':>7} {'per trial':>9}")
    for k in sorted(by):
        if k[0] == "controller":
            print(f"  {k[1]:5} {k[2]:6} {k[3]:30} {k[4]!s:>4} {by[k]:7} {by[k] / max(trials, 1):9.2f}")
    bench = sum(v for k, v in by.items() if k[0] == "bench")
    other = sum(v for k, v in by.items() if k[0] == "other")
    print(f"  (benchmark's own requests: {bench}; other clients: {other})")
    print()
    rows = [
        ("time to all finished", f"{t_all:.1f} s", "-", ""),
        ("apply-to-first-pod p50", f"{pct(lat, 50):.0f} ms", "-", ""),
        ("apply-to-first-pod p99", f"{pct(lat, 99):.0f} ms", f"<= {GOALS['p99_ms']:.0f} ms",
         "met" if pct(lat, 99) <= GOALS["p99_ms"] else "MISSED"),
        ("apply-to-first-pod max", f"{max(lat) if lat else float('nan'):.0f} ms", "-", ""),
        ("  seen by a client: p50", f"{pct(lat_watch, 50):.0f} ms", "-", ""),
        ("  seen by a client: p99", f"{pct(lat_watch, 99):.0f} ms", "-", ""),
        ("API writes per trial", f"{ctrl_w / max(trials, 1):.2f}", f"<= {GOALS['writes']:.0f}",
         "met" if ctrl_w / max(trials, 1) <= GOALS["writes"] else "MISSED"),
        ("  of which Events", f"{ev_w / max(trials, 1):.2f}", "-", ""),
        ("API reads per trial", f"{ctrl_r / max(trials, 1):.2f}", "-", ""),
        ("controller peak RSS (VmHWM)", f"{hwm / 1024:.1f} MB", f"< {GOALS['rss_mb']:.0f} MB",
         "met" if hwm / 1024 < GOALS["rss_mb"] else "MISSED"),
        ("controller RSS at the end", f"{rss / 1024:.1f} MB", "-", ""),
        ("controller RSS before creates", f"{hwm0 / 1024:.1f} MB", "-", ""),
        ("controller CPU per job", f"{cpu * 1000 / max(len(posted), 1):.2f} ms", "-", ""),
    ]
    print(f"{'figure':32} {'measured':>12} {'goal':>10} {'':6}")
    for r in rows:
        print(f"{r[0]:32} {r[1]:>12} {r[2]:>10} {r[3]:6}")
    print(f"({len(lat)} latencies on the API server's clock, {len(lat_watch)} seen by a client "
          f"(POST returned -> pod on a watch); wall-clock figures depend on the machine's load)")
    print()
    print("where the controller's time went (its /metrics histograms over the whole run, "
          "every reconcile and request, not only first pods):")
    print(f"  {'step':40} {'count':>7} {'p50':>9} {'p99':>9}")
    for label, name, labels in (
            ("waiting in the work queue for a worker", "kiln_workqueue_queue_duration_seconds", ""),
            ("reconcile", "kiln_reconcile_duration_seconds", ""),
            ("API POST (pods, claims, events)", "kiln_api_request_duration_seconds", 'verb="POST"'),
            ("API PUT (statuses)", "kiln_api_request_duration_seconds", 'verb="PUT"')):
        r = histogram_quantiles(metrics, name, labels)
        if r:
            (p50, p99), n = r
            print(f"  {label:40} {n:7d} {p50 * 1000:7.1f}ms {p99 * 1000:7.1f}ms")
        else:
            print(f"  {label:40} {'-':>7}")


if __name__ == "__main__":
    main()
