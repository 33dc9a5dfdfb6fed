#!/usr/bin/env bash
# The images' runtime stages install exactly what the binaries link: for
# kiln-trainer (and kiln-controller once it is built), the Debian packages
# owning the libraries the binary needs directly (readelf NEEDED, resolved
# by ldd, owner by dpkg -S) must equal the packages its Dockerfile's
# runtime stage installs, apart from
#   - packages every debian:bookworm-slim image already has (BASE), which
#     the Dockerfile may install or not, and
#   - declared non-library packages (EXTRAS: CA certificates, sample data).
# A library the binary loads itself with dlopen (DLOPENED, by soname: the
# trainer's libcurl, for http(s) data only) counts as a direct one; the
# binary must name it, so the list cannot go stale.
# Every library ldd loads indirectly must belong to a package that those
# installs pull in through their Depends (read from the local dpkg
# database), so nothing is missing at run time.
. "$(dirname "$0")/common.sh"
S=$KILN_SOURCE_DIR
BASE="libc6 libgcc-s1 libstdc++6 zlib1g libzstd1 liblzma5 libbz2-1.0 libselinux1 libpcre2-8-0 libmd0
  libgnutls30 libgmp10 libhogweed6 libnettle8 libidn2-0 libunistring2 libp11-kit0 libtasn1-6 libffi8
  libsystemd0 libcap2 libgcrypt20 libgpg-error0 liblz4-1 libseccomp2 libacl1 libattr1 libaudit1
  libcap-ng0 libcrypt1 libdb5.3 libtinfo6 libsemanage2 libsepol2 libxxhash0 libudev1"
check_image() { # NAME BINARY DOCKERFILE EXTRAS DLOPENED
  "$PY" - "$@" "$BASE" <<'PYEOF'
import os, re, subprocess, sys
name, binary, dockerfile, extras, dlopened, base = sys.argv[1:7]
extras, base = set(extras.split()), set(base.split())
def fail(msg):
    print(f"FAIL: {name}: {msg}", file=sys.stderr); sys.exit(1)

# Libraries: direct (NEEDED) and everything ldd loads, with their paths.
needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                    subprocess.run(["readelf", "-d", binary], capture_output=True, text=True, check=True).stdout)
ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
if "not found" in ldd:
    fail(f"unresolved libraries:\n{ldd}")
paths = dict(re.findall(r"^\s*(\S+) => (/\S+)", ldd, re.M))
for m in re.findall(r"^\s*(/\S+) \(0x", ldd, re.M):
    paths[os.path.basename(m)] = m
if len(needed) < 3 or len(paths) < len(needed):
    fail(f"implausible link map: NEEDED {needed}, ldd {sorted(paths)}")

# Libraries loaded with dlopen: named in the binary, found by the loader's
# cache, and taken with everything they load in turn.
cache = dict(re.findall(r"^\s*(\S+) \(libc6,x86-64[^)]*\) => (/\S+)",
                        subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout, re.M))
image = open(binary, "rb").read()
for so in dlopened.split():
    if so.encode() + b"\0" not in image:
        fail(f"{so} is declared as loaded at run time, but the binary does not name it")
    if so not in cache:
        fail(f"{so} (loaded at run time) is not installed here")
    needed.append(so)
    paths[so] = cache[so]
    more = subprocess.run(["ldd", cache[so]], capture_output=True, text=True, check=True).stdout
    if "not found" in more:
        fail(f"unresolved libraries of {so}:\n{more}")
    for n, pth in re.findall(r"^\s*(\S+) => (/\S+)", more, re.M):
        paths.setdefault(n, pth)

# One dpkg -S call for every library path and its /usr-merged and resolved
# variants (Debian records a file under the path its package shipped it).
def variants(path):
    out = [path, os.path.realpath(path)]
    for p in list(out):
        out.append(p[4:] if p.startswith("/usr/") else "/usr" + p)
    return out
r = subprocess.run(["dpkg", "-S"] + sorted({v for p in paths.values() for v in variants(p)}),
                   capture_output=True, text=True)
found = {}
for line in r.stdout.splitlines():
    pkg, _, files = line.partition(": ")
    for f in files.split(", "):
        found[f.strip()] = pkg.split(":")[0].split(",")[0].strip()
def owner(path):
    for v in variants(path):
        if v in found:
            return found[v]
    fail(f"dpkg -S knows no package owning {path}")
direct = {owner(paths[n]) for n in needed}
loaded = {owner(p) for p in paths.values()}

# The runtime stage: everything after the last FROM; its apt-get install list.
text = open(dockerfile).read().replace("\\\n", " ")
stage = re.split(r"^FROM\s", text, flags=re.M)[-1]
installs = re.findall(r"apt-get install ((?:\s*\S+)+?)\s*(?:&&|$)", stage, re.M)
pkgs = {w for line in installs for w in line.split() if not w.startswith("-")}
if not pkgs:
    fail(f"no apt-get install in the runtime stage of {dockerfile}")
if not stage.lstrip().startswith("debian:bookworm-slim"):
    fail("the runtime stage is not debian:bookworm-slim")
undeclared = extras - pkgs
if undeclared:
    fail(f"declared extras {sorted(undeclared)} are not installed")

want = direct - base
have = pkgs - base - extras
if want != have:
    fail(f"runtime stage installs {sorted(have)}; the binary links {sorted(want)} "
         f"(missing {sorted(want - have)}, unneeded {sorted(have - want)})")

# Indirect libraries come through Depends of what is installed.
db = subprocess.run(["dpkg-query", "-W", "-f=${Package}\t${Depends}, ${Pre-Depends}\n"],
                    capture_output=True, text=True, check=True).stdout
deps = {}
for line in db.splitlines():
    pkg, _, rest = line.partition("\t")
    deps[pkg] = [[re.split(r"[\s(:]", a.strip())[0] for a in alt.split("|")] for alt in rest.split(",") if alt.strip()]
closure, todo = set(), list(pkgs | base)
while todo:
    p = todo.pop()
    if p in closure:
        continue
    closure.add(p)
    for alts in deps.get(p, []):
        got = [a for a in alts if a in deps]
        todo.extend(got[:1] if got else [])
stray = loaded - closure
if stray:
    fail(f"libraries of {sorted(stray)} are loaded but nothing installed depends on them")
print(f"ok   {name}: {len(needed)} direct libraries -> {sorted(want)} (+ base {sorted(direct & base)}), "
      f"{len(paths)} loaded libraries from {len(loaded)} packages, all pulled in by the runtime stage")
PYEOF
}

BIN=$KILN_BUILD_DIR
trainer=$BIN/trainer/kiln-trainer
[ -x "$trainer" ] || fail "$trainer is not built: this test checks the trainer image and needs it"
check_image kiln-trainer "$trainer" "$S/trainer/Dockerfile" "ca-certificates dataset-fashion-mnist" \
  libcurl.so.4

controller=""
for c in "$BIN/controller/kiln-controller" "$BIN/controller/src/kiln-controller"; do
  [ -x "$c" ] && { controller=$c; break; }
done
if [ -n "$controller" ]; then
  check_image kiln-controller "$controller" "$S/controller/Dockerfile" "ca-certificates" ""
else
  echo "note kiln-controller is not built in $BIN: checked the trainer image only"
fi

# The check can fail: a trainer Dockerfile missing libopenblas0-pthread, and
# one installing an unneeded library, are both refused.
sed 's/ libopenblas0-pthread / /' "$S/trainer/Dockerfile" >"$SHIP_TMP/missing.Dockerfile"
sed 's/ libcjson1 / libcjson1 libyaml-0-2 /' "$S/trainer/Dockerfile" >"$SHIP_TMP/extra.Dockerfile"
for d in missing extra; do
  cmp -s "$S/trainer/Dockerfile" "$SHIP_TMP/$d.Dockerfile" && fail "could not make the $d Dockerfile"
  if check_image kiln-trainer "$trainer" "$SHIP_TMP/$d.Dockerfile" "ca-certificates dataset-fashion-mnist" \
      libcurl.so.4 >/dev/null 2>"$SHIP_TMP/err"; then
    fail "a Dockerfile with a $d library passed"
  fi
  grep -q "$([ $d = missing ] && echo "missing \['libopenblas0-pthread'\]" || echo "unneeded \['libyaml-0-2'\]")" "$SHIP_TMP/err" ||
    fail "wrong complaint about the $d Dockerfile: $(cat "$SHIP_TMP/err")"
done
pass "a missing or an unneeded runtime package is refused"
