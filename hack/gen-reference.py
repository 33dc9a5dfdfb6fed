#!/usr/bin/python3
"""Generates docs/reference.md, the TrainingJob reference, from the CRD.

    hack/gen-reference.py [CRD.yaml] [OUT.md]

Defaults: crds/kiln.dev_trainingjobs.yaml and docs/reference.md. Every field
of spec and status gets a row: its path, type, default, allowed values
(enum, range, pattern, length and item limits) and description. Field
descriptions come from the CRD, or, where the CRD has none, from NOTES
below, so the schema stays the source of truth and the reference never
drifts: tests/ship/test_reference.sh regenerates the file and fails on
any difference.
"""
import json
import os
import sys

import yaml

# Descriptions for fields whose schema has none. Keyed by field path.
NOTES = {
    "spec": "What to train, how to search, and how to serve the result.",
    "spec.data": "The training data.",
    "spec.data.validationSplit": "Fraction of the training data held out for validation when the data has no separate test set.",
    "spec.data.folds": "k-fold cross-validation when greater than 1.",
    "spec.data.maxSamples": "Use only the first N training samples when greater than 0 (quick runs, tests).",
    "spec.data.preprocessing": "Cleaning and scaling, fitted on the training data and stored with the model.",
    "spec.data.preprocessing.impute": "How missing CSV values are filled (or their rows dropped).",
    "spec.data.preprocessing.scale": "Feature scaling.",
    "spec.data.preprocessing.dropColumns": "CSV columns (names) left out of the features.",
    "spec.data.preprocessing.varianceThreshold": "Features whose training variance is at or below this are dropped.",
    "spec.model": "The model family and its first architecture; tuning changes it from there.",
    "spec.model.family": "auto picks from the data: images give cnn, labelled tables mlp, no label kmeans.",
    "spec.model.mlp": "Multi-layer perceptron.",
    "spec.model.mlp.hiddenLayers": "Units of each hidden layer.",
    "spec.model.mlp.activation": "Activation of the hidden layers.",
    "spec.model.mlp.dropout": "Dropout rate after each hidden layer.",
    "spec.model.cnn": "Convolutional network for images.",
    "spec.model.cnn.convFilters": "Filters of each convolution block (3x3 convolution, ReLU, 2x2 max pooling).",
    "spec.model.cnn.denseLayers": "Units of the dense layers after the convolution blocks.",
    "spec.model.kmeans": "k-means clustering.",
    "spec.model.kmeans.maxClusters": "Largest k tried by the elbow search.",
    "spec.training": "Hyperparameters of each trial.",
    "spec.training.epochs": "Passes over the training data.",
    "spec.training.batchSize": "Samples per gradient step.",
    "spec.training.learningRate": "Step size of the optimizer.",
    "spec.training.optimizer": "Gradient-descent variant.",
    "spec.training.momentum": "Momentum of sgd.",
    "spec.training.seed": "Seed of weight initialisation, shuffling and splits.",
    "spec.training.threads": "Trainer threads; 0 uses the pod's CPUs: its CPU limit rounded up, or every CPU of the node when it has no limit.",
    "spec.objective": "The goal that ends the search.",
    "spec.objective.metric": "Metric the goal applies to; loss and wcss are minimised, the others maximised.",
    "spec.objective.goal": "Value of the metric that counts as success.",
    "spec.tuning": "How trials are chosen.",
    "spec.tuning.strategy": "adaptive diagnoses each trial (underfitting, overfitting, diverging); ladder follows a fixed sequence of tweaks; random and grid sample searchSpace.",
    "spec.tuning.maxTrials": "Trial budget of one search.",
    "spec.tuning.parallelism": "Trials running at the same time.",
    "spec.tuning.maxFailedTrials": "The search fails after this many failed trials.",
    "spec.tuning.onGoal": "stop ends the search at the first trial that meets the goal; finish spends the whole budget looking for a better one.",
    "spec.tuning.seed": "Seed of random and grid sampling, so a search can be repeated.",
    "spec.trainer": "The trial and serving pods.",
    "spec.trainer.image": "Image of the trainer (used for training and serving).",
    "spec.trainer.resources": "Container resources (requests, limits) of trial and serving pods.",
    "spec.trainer.activeDeadlineSeconds": "A trial pod running longer than this fails.",
    "spec.trainer.backoffLimit": "Retries of a trial whose pod failed before it is marked failed.",
    "spec.trainer.ttlSecondsAfterFinished": "Finished trial pods are deleted after this many seconds.",
    "spec.storage": "Where checkpoints are kept (mounted at /models in trial and serving pods).",
    "spec.storage.size": "Size of the PersistentVolumeClaim Kiln creates when volume is not given.",
    "spec.storage.retain": "Keep the created PersistentVolumeClaim when the TrainingJob is deleted.",
    "spec.serving": "Serving of the best model over HTTP.",
    "spec.serving.enabled": "Serve the best model.",
    "spec.serving.replicas": "Serving pods.",
    "spec.serving.port": "Port of the model server and of the job's Service.",
    "spec.notify": "Announcements of the best model.",
    "spec.notify.webhook": "POSTs a JSON summary to a URL.",
    "spec.notify.webhook.url": "The URL.",
    "spec.notify.email": "Sends an e-mail through an SMTP server.",
    "spec.notify.email.smtpUrl": "smtp:// or smtps:// URL of the server.",
    "spec.notify.email.from": "Sender address.",
    "spec.notify.email.to": "Recipient addresses.",
    "spec.notify.email.secretRef": "Secret (same namespace) with the SMTP username and password keys.",
    "spec.notify.email.secretRef.name": "Name of the Secret.",
    "status": "What the controller observed and did. A new job's first status waits while its trial pods are being started (at most 30 s from their creation) and through their trainers' first 3 s; a trial pod stuck on its image or scheduling ends the wait once the job is 3 s old. A job whose trials end by then gets one write, with its result.",
    "status.phase": "Summary of the search.",
    "status.observedGeneration": "metadata.generation the status describes.",
    "status.trialCount": "Trials started by the current search.",
    "status.failedTrials": "Trials of the current search that failed.",
    "status.message": "Human-readable state.",
    "status.startTime": "Start of the current search.",
    "status.completionTime": "End of the current search.",
    "status.trials": "The most recent trials.",
    "status.trials[].name": "Trial name (also its pod's name, <job>-t<index>).",
    "status.trials[].index": "Trial number within the job.",
    "status.trials[].phase": "Pending, Running (once its trainer has run 3 s: a shorter trial goes from Pending to its result), Succeeded or Failed.",
    "status.trials[].params": "The architecture and hyperparameters the trial used.",
    "status.trials[].metrics": "Test (or validation) metrics of the trial.",
    "status.trials[].trainMetrics": "Training-set metrics, used to diagnose over- and underfitting.",
    "status.trials[].pod": "The trial's pod.",
    "status.trials[].checkpoint": "In-pod path of the trial's model (under /models).",
    "status.trials[].attempts": "Pods started for this trial (retries after failures).",
    "status.trials[].startTime": "When the trial started.",
    "status.trials[].completionTime": "When the trial finished.",
    "status.trials[].message": "Why the trial failed, or a note.",
    "status.olderTrials.count": "Trials summarised here.",
    "status.olderTrials.succeeded": "Of which succeeded.",
    "status.olderTrials.failed": "Of which failed.",
    "status.bestTrial": "The best trial so far (the one served).",
    "status.bestTrial.name": "Trial name.",
    "status.bestTrial.index": "Trial number.",
    "status.bestTrial.value": "Its value of the objective metric.",
    "status.bestTrial.metrics": "All its metrics.",
    "status.bestTrial.params": "Its architecture and hyperparameters.",
    "status.bestTrial.checkpoint": "In-pod path of its model.",
    "status.serving": "The model server.",
    "status.serving.pod": "The serving pod.",
    "status.serving.pods": "All serving pods.",
    "status.serving.ready": "The serving pods are ready.",
    "status.serving.restarts": "Times the serving pod was brought back.",
    "status.serving.checkpoint": "Model being served.",
    "status.serving.lastGoodCheckpoint": "Last model that served successfully; a failing pod is brought back with it.",
    "status.serving.badCheckpoints": "Models that failed to serve and are not used again.",
    "status.serving.lastReplacementTime": "When a serving pod was last replaced.",
    "status.conditions": "Ready, Reconciling, Stalled, GoalReached and Serving, following the kstatus conventions.",
    "status.conditions[].type": "Condition type.",
    "status.conditions[].status": "True, False or Unknown.",
    "status.conditions[].reason": "One-word reason in CamelCase.",
    "status.conditions[].message": "Human-readable detail.",
    "status.conditions[].observedGeneration": "metadata.generation the condition describes.",
    "status.conditions[].lastTransitionTime": "When status last changed.",
}


def fmt(v):
    return json.dumps(v, separators=(", ", ": "))


def type_of(s):
    if s.get("x-kubernetes-int-or-string"):
        return "integer or string"
    t = s.get("type", "any")
    if t == "array" and isinstance(s.get("items"), dict):
        return f"array of {type_of(s['items'])}"
    if t == "object" and isinstance(s.get("additionalProperties"), dict):
        return f"map of {type_of(s['additionalProperties'])}"
    if t == "object" and s.get("x-kubernetes-preserve-unknown-fields") and "properties" not in s:
        return "object (free-form)"
    if s.get("format"):
        return f"{t} ({s['format']})"
    return t


def limits(s):
    out = []
    if "enum" in s:
        out.append(", ".join(f"`{e}`" for e in s["enum"]))
    lo, hi = s.get("minimum"), s.get("maximum")
    if lo is not None or hi is not None:
        lb = "(" if s.get("exclusiveMinimum") else "["
        rb = ")" if s.get("exclusiveMaximum") else "]"
        if hi is None:
            out.append(f"{'>' if s.get('exclusiveMinimum') else '≥'} {lo}")
        elif lo is None:
            out.append(f"{'<' if s.get('exclusiveMaximum') else '≤'} {hi}")
        else:
            out.append(f"{lb}{lo}, {hi}{rb}")
    if "pattern" in s:
        out.append(f"pattern `{s['pattern']}`")
    if "minLength" in s:
        out.append(f"length ≥ {s['minLength']}")
    if "maxLength" in s:
        out.append(f"length ≤ {s['maxLength']}")
    items = s.get("items") if isinstance(s.get("items"), dict) else None
    if "minItems" in s:
        out.append(f"≥ {s['minItems']} items")
    if "maxItems" in s:
        out.append(f"≤ {s['maxItems']} items")
    if items:
        inner = limits(items)
        if inner:
            out.append(f"each {inner}")
    return "; ".join(x for x in out if x)


def cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def walk(schema, path, rows, required=False):
    desc = schema.get("description") or NOTES.get(path, "")
    default = fmt(schema["default"]) if "default" in schema else ""
    flags = "required" if required else ""
    rows.append((path, type_of(schema), f"`{default}`" if default else "", limits(schema), desc, flags))
    req = set(schema.get("required", []))
    for name, sub in schema.get("properties", {}).items():
        walk(sub, f"{path}.{name}", rows, name in req)
    items = schema.get("items")
    if isinstance(items, dict) and "properties" in items:
        req = set(items.get("required", []))
        for name, sub in items["properties"].items():
            walk(sub, f"{path}[].{name}", rows, name in req)


def table(rows):
    out = ["| Field | Type | Default | Allowed | Description |", "|---|---|---|---|---|"]
    for path, t, default, allowed, desc, flags in rows:
        name = f"`{path}`" + (" (required)" if flags else "")
        out.append(f"| {name} | {cell(t)} | {cell(default)} | {cell(allowed)} | {cell(desc)} |")
    return "\n".join(out)


def render(crd):
    spec = crd["spec"]
    version = next(v for v in spec["versions"] if v.get("storage"))
    root = version["schema"]["openAPIV3Schema"]
    api = f"{spec['group']}/{version['name']}"
    names = spec["names"]
    lines = [
        "<!-- Generated by hack/gen-reference.py from crds/kiln.dev_trainingjobs.yaml. Do not edit:",
        "     change the CRD (or the notes in the script) and rerun hack/gen-reference.py. -->",
        f"# {names['kind']} reference",
        "",
        f"`apiVersion: {api}`, `kind: {names['kind']}`, {spec['scope'].lower()}; "
        f"plural `{names['plural']}`, short name{'s' if len(names.get('shortNames', [])) > 1 else ''} "
        + ", ".join(f"`{n}`" for n in names.get("shortNames", [])) + ".",
        "",
        root.get("description", ""),
        "",
        "Defaults are filled in by the API server, so `kubectl get "
        f"{names['shortNames'][0] if names.get('shortNames') else names['plural']} NAME -o yaml` shows the effective spec. "
        "A default applies when the field is absent and its parent object is present (or has a default itself). "
        "Ranges are inclusive unless written with a parenthesis.",
        "",
        "## spec",
        "",
    ]
    rows = []
    walk(root["properties"]["spec"], "spec", rows, "spec" in root.get("required", []))
    missing = [r[0] for r in rows if not r[4]]
    lines += [table(rows), ""]
    rules = root["properties"]["spec"].get("x-kubernetes-validations", [])
    if rules:
        lines += ["### Cross-field rules", "", "The API server rejects a spec that breaks one of these:", ""]
        lines += [f"- {r.get('message', r['rule'])} (`{r['rule']}`)" for r in rules]
        lines.append("")
    lines += ["## status", "", "Written by the controller only (status subresource).", ""]
    rows = []
    walk(root["properties"]["status"], "status", rows)
    missing += [r[0] for r in rows if not r[4]]
    lines += [table(rows), ""]
    cols = version.get("additionalPrinterColumns", [])
    if cols:
        lines += ["## kubectl get columns", "", "| Column | Type | From |", "|---|---|---|"]
        lines += [f"| {c['name'].upper()} | {c['type']} | `{c['jsonPath']}`"
                  + (f" ({cell(c['description'])})" if c.get("description") else "") + " |" for c in cols]
        lines.append("")
    return "\n".join(lines), missing


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    crd_path = argv[1] if len(argv) > 1 else os.path.join(here, "..", "crds", "kiln.dev_trainingjobs.yaml")
    out_path = argv[2] if len(argv) > 2 else os.path.join(here, "..", "docs", "reference.md")
    crd = yaml.safe_load(open(crd_path))
    text, missing = render(crd)
    if missing:
        # A field without a description is a hole in the reference: fail so
        # the CRD or NOTES gets one.
        print("gen-reference: no description for " + ", ".join(missing), file=sys.stderr)
        return 1
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
