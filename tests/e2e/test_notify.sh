#!/usr/bin/env bash
# Announcements through the running controller: when a job reaches its
# goal, a loopback webhook receiver gets the JSON summary and a loopback
# SMTP server gets the e-mail, sent with the credentials of the referenced
# Secret, which never show up in the controller's log.
. "$(dirname "$0")/../lib.sh"
rx_pid=
on_exit() { if [ -n "$rx_pid" ]; then kill "$rx_pid" 2>/dev/null; fi; }

# One process, two loopback servers: HTTP on the first port, SMTP on the
# second; each writes what it received into the test directory.
"$PY" - "$TEST_TMP" <<'PYEOF' &
import base64, http.server, socket, socketserver, sys, threading
out = sys.argv[1]
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        open(f"{out}/webhook.json", "wb").write(body)
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
class Smtp(socketserver.StreamRequestHandler):
    def handle(self):
        say = lambda s: self.wfile.write(s.encode() + b"\r\n")
        say("220 test ESMTP")
        data, lines = False, []
        while True:
            l = self.rfile.readline()
            if not l:
                break
            t = l.decode(errors="replace").rstrip("\r\n")
            if data:
                if t == ".":
                    data = False
                    open(f"{out}/mail.txt", "w").write("\n".join(lines))
                    say("250 queued")
                else:
                    lines.append(t)
                continue
            u = t.upper()
            if u.startswith("EHLO"):
                self.wfile.write(b"250-test\r\n250 AUTH PLAIN\r\n")
            elif u.startswith("AUTH PLAIN"):
                cred = t[11:] if len(t) > 11 else None
                if not cred:
                    say("334 ")
                    cred = self.rfile.readline().decode().strip()
                open(f"{out}/auth.txt", "w").write(base64.b64decode(cred).decode(errors="replace"))
                say("235 ok")
            elif u.startswith(("MAIL", "RCPT")):
                lines.append(t); say("250 ok")
            elif u.startswith("DATA"):
                data = True; say("354 go on")
            elif u.startswith("QUIT"):
                say("221 bye"); break
            else:
                say("500 what")
h = http.server.HTTPServer(("127.0.0.1", 0), Hook)
s = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Smtp)
open(f"{out}/ports", "w").write(f"{h.server_address[1]} {s.server_address[1]}\n")
threading.Thread(target=s.serve_forever, daemon=True).start()
h.serve_forever()
PYEOF
rx_pid=$!
env_up
for _ in $(seq 100); do [ -s "$TEST_TMP/ports" ] && break; sleep 0.05; done
read -r hook_port smtp_port < "$TEST_TMP/ports" || fail "receivers did not start"

kubectl create secret generic mailer --from-literal=username=kiln --from-literal=password=s3cret-pa55 >/dev/null
cat > "$TEST_TMP/tj.yaml" <<YAML
apiVersion: kiln.dev/v1alpha1
kind: TrainingJob
metadata: {name: notified}
spec:
  data: {uri: "file://$FMNIST", maxSamples: 1000}
  model: {family: logistic}
  training: {epochs: 1, threads: 1}
  objective: {metric: accuracy, goal: 0.5}
  tuning: {maxTrials: 2}
  serving: {enabled: false}
  notify:
    webhook: {url: "http://127.0.0.1:$hook_port/hooks/T0KEN"}
    email: {smtpUrl: "smtp://127.0.0.1:$smtp_port", from: "kiln@example.com", to: ["ml@example.com"], secretRef: {name: mailer}}
YAML
kubectl apply -f "$TEST_TMP/tj.yaml" >/dev/null
kubectl wait --for=condition=GoalReached tj/notified --timeout=120s >/dev/null || fail "goal not reached"
for _ in $(seq 100); do [ -s "$TEST_TMP/webhook.json" ] && [ -s "$TEST_TMP/mail.txt" ] && break; sleep 0.1; done
[ -s "$TEST_TMP/webhook.json" ] || fail "no webhook received"
[ "$(json "$TEST_TMP/webhook.json" 'j["outcome"]')" = GoalReached ] || fail "webhook outcome"
[ "$(json "$TEST_TMP/webhook.json" 'j["bestTrial"]["name"]')" = notified-t0 ] || fail "webhook best trial"
json "$TEST_TMP/webhook.json" 'j["bestTrial"]["metrics"]["accuracy"]' >/dev/null || fail "webhook metrics"
pass "webhook: $(head -c 160 "$TEST_TMP/webhook.json")..."
[ -s "$TEST_TMP/mail.txt" ] || fail "no e-mail received"
grep -q 'Subject: \[kiln\] TrainingJob default/notified GoalReached' "$TEST_TMP/mail.txt" || fail "e-mail subject"
grep -q 'RCPT TO:<ml@example.com>' "$TEST_TMP/mail.txt" || fail "e-mail recipient"
[ "$(tr '\0' ' ' < "$TEST_TMP/auth.txt")" = " kiln s3cret-pa55" ] || fail "SMTP credentials from the Secret"
pass "e-mail sent with the Secret's credentials"
if grep -q 's3cret-pa55\|T0KEN' "$env_dir/controller.log"; then
  fail "a secret reached the controller log"
fi
pass "no secret in the controller log"
