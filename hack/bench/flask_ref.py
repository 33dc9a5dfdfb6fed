#!/usr/bin/python3
"""Reference model server for hack/bench/serve_bench.sh: what a small seed
project typically ships. A scikit-learn MLPClassifier((128,)) trained on
Fashion-MNIST, pickled to a file, loaded by a Flask app that answers the
same KServe v1 route as kiln-trainer serve.

  flask_ref.py train MODEL.pkl [--max-iter N] [--samples N]
  flask_ref.py serve MODEL.pkl --port P
"""
import argparse
import gzip
import pickle
import sys
import warnings

import numpy as np

DATA = "/usr/share/datasets/fashion-mnist"


def load(name, offset):
    with gzip.open(f"{DATA}/{name}") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def train(path, max_iter, samples):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x = load("train-images-idx3-ubyte.gz", 16).reshape(-1, 784)[:samples] / 255.0
    y = load("train-labels-idx1-ubyte.gz", 8)[:samples]
    clf = MLPClassifier((128,), batch_size=64, max_iter=max_iter, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    with open(path, "wb") as f:
        pickle.dump(clf, f)


def serve(path, port):
    from flask import Flask, jsonify, request

    with open(path, "rb") as f:
        clf = pickle.load(f)
    app = Flask(__name__)

    @app.route("/v1/models/<name>:predict", methods=["POST"])
    def predict(name):
        x = np.asarray(request.get_json()["instances"], dtype=np.float64) / 255.0
        return jsonify({"predictions": clf.predict(x.reshape(len(x), -1)).tolist()})

    @app.route("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    app.run(host="127.0.0.1", port=port, threaded=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["train", "serve"])
    ap.add_argument("model")
    ap.add_argument("--port", type=int, default=8081)
    ap.add_argument("--max-iter", type=int, default=3)
    ap.add_argument("--samples", type=int, default=60000)
    a = ap.parse_args()
    if a.cmd == "train":
        train(a.model, a.max_iter, a.samples)
    else:
        serve(a.model, a.port)


if __name__ == "__main__":
    sys.exit(main())
