"""python3-kubernetes against kubelite: paginated list, watch from a
resourceVersion with a forced 410 and relist, optimistic concurrency,
custom object status patches, leases with Python datetimes, 401."""
import datetime
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kl_env import Kubelite  # noqa: E402

from kubernetes import client, config, watch  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

kl = Kubelite()
api_client = config.new_client_from_config(config_file=kl.kubeconfig)
core = client.CoreV1Api(api_client)
custom = client.CustomObjectsApi(api_client)
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def faults(body):
    return api_client.call_api("/kubelite/faults", "POST", body=body, auth_settings=["BearerToken"],
                               response_type="object", _return_http_data_only=True)


# ---- list with limit/continue ----
for i in range(7):
    core.create_namespaced_config_map("default", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="page-%d" % i, labels={"app": "kiln"}), data={"i": str(i)}))
seen, rvs, token, pages = [], set(), None, 0
while True:
    lst = core.list_namespaced_config_map("default", label_selector="app=kiln", limit=3, _continue=token)
    pages += 1
    seen += [cm.metadata.name for cm in lst.items]
    rvs.add(lst.metadata.resource_version)
    token = lst.metadata._continue
    if not token:
        break
check(pages == 3, "three pages of 3, 3, 1")
check(sorted(seen) == ["page-%d" % i for i in range(7)], "every item once")
check(len(rvs) == 1, "one resourceVersion across pages")
lst = core.list_namespaced_config_map("default", label_selector="app in (kiln,other),!missing")
check(len(lst.items) == 7, "set-based label selector")
lst = core.list_namespaced_config_map("default", field_selector="metadata.name=page-3")
check([c.metadata.name for c in lst.items] == ["page-3"], "field selector metadata.name")
try:
    core.list_namespaced_config_map("default", label_selector="app in (")
    check(False, "bad selector gives 400")
except ApiException as e:
    check(e.status == 400, "bad selector gives 400")

# ---- watch from a resourceVersion ----
rv = core.list_namespaced_config_map("default").metadata.resource_version
core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="w1"), data={"a": "1"}))
core.patch_namespaced_config_map("w1", "default", {"data": {"a": "2"}})
core.delete_namespaced_config_map("w1", "default")
events = []
for ev in watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=2):
    events.append((ev["type"], ev["object"].metadata.name))
    if len(events) == 3:
        break
check(events == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")], "watch events in order: %s" % events)

# bookmarks when asked, as raw dicts
got_bookmark = False
for ev in watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=rv,
                               allow_watch_bookmarks=True, timeout_seconds=3):
    if ev["type"] == "BOOKMARK":
        got_bookmark = True
        break
check(got_bookmark, "bookmark before the watch timeout")

# ---- 410 after history expiry, then relist and re-watch ----
old_rv = rv
faults({"expireHistory": True})
try:
    for ev in watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=old_rv):
        pass
    check(False, "watch from an expired RV raises 410")
except ApiException as e:
    check(e.status == 410, "watch from an expired RV raises 410 (got %s)" % e.status)
relist = core.list_namespaced_config_map("default")
new_rv = relist.metadata.resource_version
core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="w2")))
names = []
for ev in watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=new_rv, timeout_seconds=2):
    names.append(ev["object"].metadata.name)
    break
check(names == ["w2"], "re-watch from the relist RV")

# ---- a resourceVersion from the future: 504 ResourceVersionTooLarge ----
try:
    core.list_namespaced_config_map("default", resource_version=str(int(new_rv) + 1000))
    check(False, "list at a future RV gives 504")
except ApiException as e:
    check(e.status == 504 and "ResourceVersionTooLarge" in e.body, "list at a future RV gives 504")

# ---- WebSocket watch (the Upgrade form a real server accepts) ----
import base64, socket, ssl  # noqa: E402
host = api_client.configuration.host.split("//")[1]
h, p = host.split(":")
ctx = ssl.create_default_context(cafile=api_client.configuration.ssl_ca_cert)
ws = ctx.wrap_socket(socket.create_connection((h, int(p)), timeout=5), server_hostname=h)
key = base64.b64encode(os.urandom(16)).decode()
rv_ws = core.list_namespaced_config_map("default").metadata.resource_version
ws.sendall(("GET /api/v1/namespaces/default/configmaps?watch=true&resourceVersion=%s HTTP/1.1\r\n"
            "Host: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
            "Sec-WebSocket-Version: 13\r\nOrigin: https://%s\r\nAuthorization: %s\r\n\r\n"
            % (rv_ws, host, key, host, api_client.configuration.api_key["authorization"])).encode())
head = b""
while b"\r\n\r\n" not in head:
    head += ws.recv(1)
check(head.startswith(b"HTTP/1.1 101"), "WebSocket upgrade answered 101")
core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="ws1")))
def recv_exact(n):
    b = b""
    while len(b) < n:
        b += ws.recv(n - len(b))
    return b
hdr = recv_exact(2)
ln = hdr[1] & 0x7F
if ln == 126:
    ln = int.from_bytes(recv_exact(2), "big")
elif ln == 127:
    ln = int.from_bytes(recv_exact(8), "big")
msg = recv_exact(ln).decode()
check(hdr[0] == 0x81 and '"type":"ADDED"' in msg and '"name":"ws1"' in msg,
      "WebSocket watch: one text message per event")
ws.close()

# ---- optimistic concurrency ----
cm = core.read_namespaced_config_map("page-0", "default")
stale = cm.metadata.resource_version
cm.data = {"i": "changed"}
core.replace_namespaced_config_map("page-0", "default", cm)
cm.metadata.resource_version = stale
try:
    core.replace_namespaced_config_map("page-0", "default", cm)
    check(False, "stale replace gives 409")
except ApiException as e:
    check(e.status == 409 and "Conflict" in e.body, "stale replace gives 409 Conflict")
try:
    core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="page-1")))
    check(False, "duplicate create gives 409")
except ApiException as e:
    check(e.status == 409 and "AlreadyExists" in e.body, "duplicate create gives 409 AlreadyExists")
try:
    core.read_namespaced_config_map("nope", "default")
except ApiException as e:
    check(e.status == 404 and "NotFound" in e.body, "missing object gives 404 NotFound")

# ---- custom objects ----
ext = client.ApiextensionsV1Api(api_client)
crd = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.test.kiln.dev"},
    "spec": {"group": "test.kiln.dev", "scope": "Namespaced",
             "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
             "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}
api_client.call_api("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", "POST", body=crd,
                    auth_settings=["BearerToken"], response_type="object")
for _ in range(100):
    c = ext.read_custom_resource_definition("gadgets.test.kiln.dev")
    if any(x.type == "Established" and x.status == "True" for x in (c.status.conditions or [])):
        break
    time.sleep(0.05)
g = custom.create_namespaced_custom_object("test.kiln.dev", "v1", "default", "gadgets",
                                           {"apiVersion": "test.kiln.dev/v1", "kind": "Gadget",
                                            "metadata": {"name": "g1"}, "spec": {"size": 1}})
check(g["metadata"]["generation"] == 1, "custom object created with generation 1")
g = custom.patch_namespaced_custom_object_status("test.kiln.dev", "v1", "default", "gadgets", "g1",
                                                 {"status": {"phase": "Ready"}})
check(g["status"]["phase"] == "Ready" and g["metadata"]["generation"] == 1, "status patch leaves generation")
g = custom.patch_namespaced_custom_object("test.kiln.dev", "v1", "default", "gadgets", "g1",
                                          {"spec": {"size": 2}, "status": {"phase": "Ignored"}})
check(g["metadata"]["generation"] == 2 and g["status"]["phase"] == "Ready",
      "spec patch bumps generation, main resource ignores status")
try:
    custom.patch_namespaced_custom_object("test.kiln.dev", "v1", "default", "gadgets", "g1",
                                          [{"op": "replace", "path": "/spec/size", "value": 3}])
    check(False, "list body as merge patch gives 400")
except ApiException as e:
    check(e.status == 400, "list body as merge patch gives 400")

# ---- lease with Python datetimes ----
coord = client.CoordinationV1Api(api_client)
now = datetime.datetime.now(datetime.timezone.utc)
lease = coord.create_namespaced_lease("default", client.V1Lease(
    metadata=client.V1ObjectMeta(name="leader"),
    spec=client.V1LeaseSpec(holder_identity="me", lease_duration_seconds=15, acquire_time=now, renew_time=now)))
raw = api_client.call_api("/apis/coordination.k8s.io/v1/namespaces/default/leases/leader", "GET",
                          auth_settings=["BearerToken"], response_type="object", _return_http_data_only=True)
check(raw["spec"]["acquireTime"].endswith("Z") and len(raw["spec"]["acquireTime"]) == 27,
      "lease MicroTime written back in Z form: %s" % raw["spec"]["acquireTime"])

# ---- 401 without the token ----
cfg = client.Configuration()
cfg.host = api_client.configuration.host
cfg.ssl_ca_cert = api_client.configuration.ssl_ca_cert
try:
    client.CoreV1Api(client.ApiClient(cfg)).list_namespace()
    check(False, "no token gives 401")
except ApiException as e:
    check(e.status == 401, "no token gives 401")

# ---- persistence across SIGKILL ----
core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="durable"), data={"k": "v"}))
kl.kill()
kl.start()
api_client = config.new_client_from_config(config_file=kl.kubeconfig)
core = client.CoreV1Api(api_client)
check(core.read_namespaced_config_map("durable", "default").data == {"k": "v"}, "object survives SIGKILL")
rv2 = int(core.list_namespaced_config_map("default").metadata.resource_version)
check(rv2 >= int(new_rv), "resourceVersion keeps growing after restart")

kl.kill(signal.SIGTERM)
report = kl.sanitizer_report()
check(not report, "no sanitizer report from kubelite")
if report:
    print(report[-4000:])
print("%d failure(s)" % len(failures))
sys.exit(1 if failures else 0)
