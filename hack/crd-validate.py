#!/usr/bin/python3
"""Validates custom resources against a CRD's openAPIV3Schema, offline.

    hack/crd-validate.py CRD.yaml RESOURCE.yaml...

Implements the structural-schema subset Kiln's CRD uses, the way the API
server applies it: defaults first (so rules see defaulted values), then
type, required, enum, minimum/maximum (with the boolean exclusive forms),
minLength/maxLength, minItems/maxItems, pattern, format date-time, items,
properties, additionalProperties, x-kubernetes-int-or-string,
x-kubernetes-preserve-unknown-fields, and x-kubernetes-validations rules
written in a small CEL subset (self.a.b, literals, lists, !, &&, ||, in,
comparisons, parentheses). Unknown fields are errors, as with kubectl's
strict field validation, so typos in samples are caught. A schema keyword
outside this subset is reported rather than silently ignored.

Exit status: 0 when every resource is valid, 1 otherwise (one line per
problem on stdout), 2 on unusable input.
"""
import copy
import re
import sys

import yaml

KNOWN = {"type", "description", "required", "enum", "minimum", "maximum",
         "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
         "minItems", "maxItems", "pattern", "format", "items", "properties",
         "additionalProperties", "default", "nullable",
         "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields",
         "x-kubernetes-validations", "x-kubernetes-list-type",
         "x-kubernetes-list-map-keys", "x-kubernetes-map-type"}
DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


class SchemaError(Exception):
    """The schema itself uses something this validator does not implement."""


# ---- defaulting -------------------------------------------------------------

def apply_defaults(value, schema):
    """Fills absent properties that have a default, recursively, in place."""
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name, sub in props.items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
        for name, sub in props.items():
            if name in value:
                apply_defaults(value[name], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in value:
                if name not in props:
                    apply_defaults(value[name], extra)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(item, schema["items"])


# ---- the CEL subset ---------------------------------------------------------

TOKEN = re.compile(r"\s*(?:(?P<num>-?\d+(?:\.\d+)?)|(?P<str>'[^']*'|\"[^\"]*\")|"
                   r"(?P<op>\|\||&&|==|!=|<=|>=|[<>!()\[\],.])|(?P<id>[A-Za-z_][A-Za-z_0-9]*))")


def cel_tokens(src):
    pos, out = 0, []
    src = src.strip()
    while pos < len(src):
        m = TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise SchemaError(f"CEL rule {src!r}: cannot read at offset {pos}")
        pos = m.end()
        kind = m.lastgroup
        text = m.group(kind)
        if kind == "num":
            out.append(("lit", float(text) if "." in text else int(text)))
        elif kind == "str":
            out.append(("lit", text[1:-1]))
        elif kind == "id" and text in ("true", "false"):
            out.append(("lit", text == "true"))
        else:
            out.append((kind, text))
    return out


class Cel:
    """Recursive-descent evaluator: or > and > not > comparison/in > primary."""

    def __init__(self, src, self_value):
        self.src, self.toks, self.i, self.self = src, cel_tokens(src), 0, self_value

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else (None, None)

    def take(self, text=None):
        tok = self.peek()
        if tok[0] is None or (text is not None and tok[1] != text):
            raise SchemaError(f"CEL rule {self.src!r}: expected {text or 'more'}")
        self.i += 1
        return tok

    def run(self):
        v = self.or_()
        if self.i != len(self.toks):
            raise SchemaError(f"CEL rule {self.src!r}: trailing input")
        return v

    def or_(self):
        v = self.and_()
        while self.peek()[1] == "||":
            self.take()
            rhs = self.and_()
            v = bool(v) or bool(rhs)
        return v

    def and_(self):
        v = self.not_()
        while self.peek()[1] == "&&":
            self.take()
            rhs = self.not_()
            v = bool(v) and bool(rhs)
        return v

    def not_(self):
        if self.peek()[1] == "!":
            self.take()
            return not self.not_()
        return self.rel()

    def rel(self):
        v = self.primary()
        op = self.peek()[1]
        if op in ("==", "!=", "<", "<=", ">", ">=", "in"):
            self.take()
            rhs = self.primary()
            return {"==": lambda a, b: a == b, "!=": lambda a, b: a != b,
                    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
                    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
                    "in": lambda a, b: a in b}[op](v, rhs)
        return v

    def primary(self):
        kind, text = self.take()
        if kind == "lit":
            return text
        if text == "(":
            v = self.or_()
            self.take(")")
            return v
        if text == "[":
            items = []
            while self.peek()[1] != "]":
                items.append(self.or_())
                if self.peek()[1] == ",":
                    self.take()
            self.take("]")
            return items
        if kind == "id" and text == "self":
            v = self.self
            while self.peek()[1] == ".":
                self.take()
                _, field = self.take()
                if not isinstance(v, dict) or field not in v:
                    raise SchemaError(f"CEL rule {self.src!r}: no field {field!r} (a default missing?)")
                v = v[field]
            return v
        raise SchemaError(f"CEL rule {self.src!r}: unsupported token {text!r}")


# ---- validation -------------------------------------------------------------

def type_ok(value, t):
    if t == "object":
        return isinstance(value, dict)
    if t == "array":
        return isinstance(value, list)
    if t == "string":
        return isinstance(value, str)
    if t == "boolean":
        return isinstance(value, bool)
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    raise SchemaError(f"unknown type {t!r}")


def validate(value, schema, path, errs):
    before = len(errs)
    unknown = set(schema) - KNOWN
    if unknown:
        raise SchemaError(f"{path}: schema keyword(s) not implemented: {sorted(unknown)}")
    if value is None and schema.get("nullable"):
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or type_ok(value, "integer")):
            errs.append(f"{path}: must be an integer or a string")
            return
    elif "type" in schema:
        if not type_ok(value, schema["type"]):
            errs.append(f"{path}: must be of type {schema['type']}, not {type(value).__name__}")
            return
    if "enum" in schema and value not in schema["enum"]:
        errs.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema:
            lo = schema["minimum"]
            if value < lo or (schema.get("exclusiveMinimum") is True and value == lo):
                errs.append(f"{path}: {value} is below the minimum {lo}"
                            + (" (exclusive)" if schema.get("exclusiveMinimum") else ""))
        if "maximum" in schema:
            hi = schema["maximum"]
            if value > hi or (schema.get("exclusiveMaximum") is True and value == hi):
                errs.append(f"{path}: {value} is above the maximum {hi}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errs.append(f"{path}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errs.append(f"{path}: longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errs.append(f"{path}: {value!r} does not match {schema['pattern']!r}")
        if schema.get("format") == "date-time" and not DATE_TIME.match(value):
            errs.append(f"{path}: {value!r} is not an RFC 3339 date-time")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errs.append(f"{path}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errs.append(f"{path}: more than {schema['maxItems']} items")
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                validate(item, schema["items"], f"{path}[{i}]", errs)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errs.append(f"{path}.{name}: required")
        extra = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields")
        for name, v in value.items():
            if name in props:
                validate(v, props[name], f"{path}.{name}", errs)
            elif isinstance(extra, dict):
                validate(v, extra, f"{path}.{name}", errs)
            elif not (preserve or extra is True):
                errs.append(f"{path}.{name}: unknown field")
    for rule in schema.get("x-kubernetes-validations", []):
        if len(errs) > before:
            break  # rules over a value already found invalid would only add noise
        if not Cel(rule["rule"], value).run():
            errs.append(f"{path}: {rule.get('message', 'failed rule ' + rule['rule'])}")


def load_crd(path):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    crds = [d for d in docs if d.get("kind") == "CustomResourceDefinition"]
    if len(crds) != 1:
        raise SchemaError(f"{path}: expected one CustomResourceDefinition")
    return crds[0]


def check_resource(crd, doc):
    """Returns the problems with one resource (a dict), [] when valid."""
    spec = crd["spec"]
    group, kind = spec["group"], spec["names"]["kind"]
    if doc.get("kind") != kind:
        return [f"kind is {doc.get('kind')!r}, not {kind!r}"]
    api = doc.get("apiVersion", "")
    versions = {f"{group}/{v['name']}": v for v in spec["versions"] if v.get("served")}
    if api not in versions:
        return [f"apiVersion {api!r} is not served (served: {sorted(versions)})"]
    meta = doc.get("metadata") or {}
    errs = []
    if not meta.get("name") and not meta.get("generateName"):
        errs.append("metadata.name: required")
    schema = versions[api]["schema"]["openAPIV3Schema"]
    obj = copy.deepcopy(doc)
    # ObjectMeta is validated by the API server itself, not by the CRD schema.
    obj.pop("metadata", None)
    apply_defaults(obj, schema)
    validate(obj, schema, "", errs)
    return [e.lstrip(".") for e in errs]


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    try:
        crd = load_crd(argv[1])
        bad = 0
        for path in argv[2:]:
            for n, doc in enumerate(d for d in yaml.safe_load_all(open(path)) if d):
                errs = check_resource(crd, doc)
                name = (doc.get("metadata") or {}).get("name", f"#{n}")
                for e in errs:
                    print(f"{path}: {name}: {e}")
                if errs:
                    bad += 1
                else:
                    print(f"{path}: {name}: valid")
        return 1 if bad else 0
    except (SchemaError, OSError, yaml.YAMLError, KeyError) as e:
        print(f"crd-validate: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
