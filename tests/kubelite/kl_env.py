"""Starts a private kubelite for one client test and stops it at exit.

Used by the tests/kubelite/test_*.py scripts: a fresh data dir, a free port
picked by kubelite itself, and the kubeconfig it writes once it listens."""
import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import time


class Kubelite:
    def __init__(self, extra_args=(), kubelet=False):
        build = os.environ.get("KILN_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
        self.binary = os.path.join(build, "hack/kubelite/kubelite")
        self.dir = tempfile.mkdtemp(prefix="kubelite-test-")
        self.proc = None
        self.args = list(extra_args)
        if not kubelet:
            self.args.append("--no-kubelet")
        atexit.register(self.stop)
        self.start()

    @property
    def kubeconfig(self):
        return os.path.join(self.dir, "kubeconfig")

    def start(self):
        if os.path.exists(self.kubeconfig):
            os.unlink(self.kubeconfig)
        self.log = open(os.path.join(self.dir, "stderr.log"), "ab")
        self.proc = subprocess.Popen([self.binary, "--data-dir", self.dir] + self.args,
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + 30
        while not os.path.exists(self.kubeconfig):
            if self.proc.poll() is not None:
                raise RuntimeError("kubelite exited: " + open(os.path.join(self.dir, "stderr.log")).read())
            if time.time() > deadline:
                raise RuntimeError("kubelite did not write its kubeconfig")
            time.sleep(0.05)

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)

    def sanitizer_report(self):
        """Sanitizer findings in kubelite's stderr (empty when clean)."""
        try:
            text = open(os.path.join(self.dir, "stderr.log"), errors="replace").read()
        except OSError:
            return ""
        marks = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
        return text if any(m in text for m in marks) else ""

    def stop(self):
        self.kill(signal.SIGTERM)
        shutil.rmtree(self.dir, ignore_errors=True)
