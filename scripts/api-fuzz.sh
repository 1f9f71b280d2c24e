#!/usr/bin/env bash
# Usage: scripts/api-fuzz.sh [--help]
#
# Fuzzes the HTTP API with schemathesis against the service's own
# /openapi.json, as the operator and as a tenant, and fails on any 5xx,
# any response whose status code is not documented, and any response whose
# body or content type does not match its documented schema.
#
# What it does:
#   1. creates target/api-fuzz-venv and installs the pinned schemathesis
#      from scripts/api-fuzz-requirements.txt (again only when that file
#      changes);
#   2. builds the host (cargo build -p flowgate-cli) and, when missing, the
#      plugin components (cargo xtask build-guests);
#   3. starts target/debug/flowgate serve --dev on a free loopback port with
#      a temporary data directory, a generated operator token and raised
#      rate limits (a TOML config);
#   4. as the operator: creates a tenant (keeping its admin API key), gives
#      it a WhatsApp channel and uploads the demo's plugins; as
#      the tenant: enables a plugin, and sends one signed webhook so there
#      is a contact, a consent record and a data-subject request to list,
#      and lists have entries whose schema can be checked;
#   5. runs schemathesis with the tenant key against the tenant, DSR and
#      webhook routes, then (alone, since the fuzzer would revoke its own
#      key and erase what the other routes need) against revoking keys,
#      erasing contacts and deleting installations, then with the operator
#      token against the operator and public routes; real channel, contact,
#      installation and request ids are offered for half of the path
#      parameters of that name;
#   6. stops the server however the script ends.
#
# Exits 0 when every run passes, non-zero otherwise; either way it prints
# where the reports (JUnit XML, HAR of every request, server log) are.
#
# Environment:
#   API_FUZZ_SECONDS       total fuzzing time, split between the runs
#                          (default 150)
#   API_FUZZ_MAX_EXAMPLES  test cases per operation and round (default 30)
#   API_FUZZ_WORKERS       concurrent schemathesis workers (default 2)
#   API_FUZZ_SEED          a seed, to replay a run (default: random)
#   API_FUZZ_REPORT_DIR    where reports go (default target/api-fuzz/report)
#
# Only loopback traffic: the server listens on 127.0.0.1 and its Cloud API
# base URL points at a closed loopback port, so nothing leaves the machine.

set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    # The comment block above is the help text.
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"
    exit 0
fi
if [[ $# -gt 0 ]]; then
    echo "api-fuzz: unknown argument $1 (see --help)" >&2
    exit 2
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SECONDS_TOTAL="${API_FUZZ_SECONDS:-150}"
MAX_EXAMPLES="${API_FUZZ_MAX_EXAMPLES:-30}"
WORKERS="${API_FUZZ_WORKERS:-2}"
SEED="${API_FUZZ_SEED:-}"
REPORT="${API_FUZZ_REPORT_DIR:-$ROOT/target/api-fuzz/report}"
VENV="$ROOT/target/api-fuzz-venv"
REQUIREMENTS="$ROOT/scripts/api-fuzz-requirements.txt"

log() { printf 'api-fuzz: %s\n' "$*" >&2; }

# ------------------------------------------------------------ the tools

stamp="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/schemathesis" || "$(cat "$VENV/.requirements" 2>/dev/null)" != "$stamp" ]]; then
    log "installing schemathesis into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    echo "$stamp" >"$VENV/.requirements"
fi
PY="$VENV/bin/python"
ST="$VENV/bin/schemathesis"
log "$("$ST" --version)"

log "building the host"
cargo build --quiet -p flowgate-cli
# The demo's plugins: small, built from this repository, and compiled by
# the debug build in seconds. (target/guests/ may also hold fixtures that
# are broken on purpose, and componentize-py/js builds larger than the
# default upload limit.)
PLUGINS=(labeller lead-score auto-reply greeter)
plugin_files() {
    plugins=()
    for name in "${PLUGINS[@]}"; do
        [[ -f "target/guests/$name.wasm" ]] && plugins+=("target/guests/$name.wasm")
    done
    return 0
}
plugin_files
if [[ ${#plugins[@]} -lt ${#PLUGINS[@]} ]]; then
    log "building the plugin components"
    cargo xtask build-guests
    plugin_files
fi
[[ ${#plugins[@]} -gt 0 ]] || { log "no plugin components in target/guests/"; exit 1; }

# ------------------------------------------------------------ the server

WORK="$(mktemp -d "${TMPDIR:-/tmp}/flowgate-api-fuzz.XXXXXX")"
SERVER_PID=""
cleanup() {
    local status=$?
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        # The service drains for up to shutdown_grace_secs; don't wait longer.
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    cp "$WORK/server.log" "$REPORT/server.log" 2>/dev/null || true
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rm -rf "$REPORT"
mkdir -p "$REPORT" "$ROOT/target/api-fuzz"

OPERATOR_TOKEN="$(openssl rand -hex 32)"
cat >"$WORK/flowgate.toml" <<EOF
listen = "127.0.0.1:0"
data_dir = "$WORK/data"
backup_dir = "$WORK/backups"
workers = 1
max_instances = 16
store_cache_mb = 64
shutdown_grace_secs = 2

[whatsapp]
# Port 9 on loopback: nothing listens, so a reply a plugin queues fails at
# once instead of reaching anything.
base_url = "http://127.0.0.1:9"

[http]
# The fuzzer sends far more than a tenant would; rate limiting (429) is
# covered by the end-to-end tests (service.rs), not here.
requests_per_second = 100000
burst = 100000
webhook_requests_per_second = 100000
EOF

log "starting the service"
FLOWGATE_OPERATOR_TOKEN="$OPERATOR_TOKEN" FLOWGATE_LOG="${FLOWGATE_LOG:-warn,flowgate::server=info}" \
    target/debug/flowgate serve --dev --config "$WORK/flowgate.toml" 2>"$WORK/server.log" &
SERVER_PID=$!

# Port 0 lets the kernel pick a free port; the service logs the one it got.
ADDRESS=""
for _ in $(seq 300); do
    ADDRESS="$(grep -o '"address":"127\.0\.0\.1:[0-9]*"' "$WORK/server.log" | head -1 | cut -d'"' -f4 || true)"
    [[ -n "$ADDRESS" ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { log "the service exited:"; cat "$WORK/server.log" >&2; exit 1; }
    sleep 0.1
done
[[ -n "$ADDRESS" ]] || { log "the service did not start in 30 s"; cat "$WORK/server.log" >&2; exit 1; }
BASE="http://$ADDRESS"
log "serving at $BASE"

# ------------------------------------------------------------- fixtures

# The setup prints the tenant's key, then the ids of what it made.
mapfile -t fixtures < <(BASE="$BASE" OPERATOR_TOKEN="$OPERATOR_TOKEN" "$PY" - "${plugins[@]}" <<'PY' || echo FAILED
import hashlib, hmac, json, os, sys, time

import requests

base, operator = os.environ["BASE"], os.environ["OPERATOR_TOKEN"]


def call(method, path, token, expect, headers=None, **kwargs):
    headers = {"Authorization": f"Bearer {token}", **(headers or {})}
    response = requests.request(method, base + path, headers=headers, timeout=120, **kwargs)
    if response.status_code not in expect:
        sys.exit(f"setup: {method} {path}: {response.status_code} {response.text}")
    return response.json() if response.content else None


created = call("POST", "/v1/operator/tenants", operator, {201}, json={"name": "Fuzz Shop"})
tenant, key = created["tenant"]["id"], created["admin_api_key"]
secret = "fuzz-app-secret"
channel = call(
    "POST", f"/v1/operator/tenants/{tenant}/channels", operator, {201},
    json={"phone_number_id": "106540352242922", "app_secret": secret,
          "verify_token": "fuzz-verify-token", "access_token": "fuzz-access-token"},
)
for path in sys.argv[1:]:
    with open(path, "rb") as component:
        call("POST", "/v1/operator/plugins", operator, {200, 201},
             data=component.read(), headers={"Content-Type": "application/wasm"})

plugins = {record["manifest"]["id"]: record for record in call("GET", "/v1/plugins", key, {200})}
if "labeller" not in plugins:
    sys.exit("setup: the labeller plugin is missing")
# The labeller replies to no one: processing the message below sends nothing.
installation = call("POST", "/v1/installations", key, {201},
     json={"plugin": "labeller", "grants": plugins["labeller"]["manifest"]["fields"],
           "config": {"rules": '[{"label": "stock", "keywords": ["stock"]}]'}})

# A signed delivery makes a contact, so contact, consent and DSR lists have
# entries whose schema the fuzzer can check.
body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
    "field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": "Ana"}, "wa_id": "16505551234"}],
        "messages": [{"from": "16505551234", "id": "wamid.fuzz-1", "timestamp": str(int(time.time())),
                      "type": "text", "text": {"body": "is it in stock?"}}]}}]}]}).encode()
signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
response = requests.post(base + channel["webhook_path"], data=body, timeout=30,
                         headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature})
if response.status_code != 200:
    sys.exit(f"setup: webhook: {response.status_code} {response.text}")
for _ in range(100):
    found = requests.post(base + "/v1/contacts/lookup", json={"wa_id": "16505551234"}, timeout=30,
                          headers={"Authorization": f"Bearer {key}"})
    if found.status_code == 200:
        break
    time.sleep(0.1)
else:
    sys.exit("setup: the delivered message never made a contact")
contact = found.json()["id"]
call("POST", f"/v1/contacts/{contact}/consent", key, {201},
     json={"purpose": "personalize.profiling", "decision": "granted", "evidence": "form-1"})
access = call("POST", "/v1/dsr/access", key, {200}, json={"wa_id": "16505551234"})
print(key, channel["id"], contact, installation["id"], access["request"]["id"], sep="\n")
PY
)
[[ ${#fixtures[@]} -eq 5 && "${fixtures[-1]}" != FAILED ]] || { log "setting up the tenant failed"; exit 1; }
TENANT_KEY="${fixtures[0]}"
log "tenant created, ${#plugins[@]} plugin(s) uploaded"

# Ids the fuzzer cannot guess, offered for half the values of their path
# parameter: without them a signed webhook route or a contact's routes
# answer only "no such channel/contact", and the schemas of the answers
# about real resources go unchecked.
cat >"$WORK/schemathesis.toml" <<EOF
[dictionaries]
channels = { values = ["${fixtures[1]}"] }
contacts = { values = ["${fixtures[2]}"] }
installations = { values = ["${fixtures[3]}"] }
requests = { values = ["${fixtures[4]}"] }

[parameters]
"path.channel_id" = { dictionary = "channels", probability = 0.5 }
"path.contact_id" = { dictionary = "contacts", probability = 0.5 }
"path.installation_id" = { dictionary = "installations", probability = 0.5 }
"path.request_id" = { dictionary = "requests", probability = 0.5 }
EOF

# ------------------------------------------------------------- fuzzing

# The budget: half to each identity; the tenant's last few seconds go to
# the operations that destroy what the others need (see below).
DESTRUCTIVE_SECONDS=10
operator_time=$((SECONDS_TOTAL / 2))
tenant_time=$((SECONDS_TOTAL - operator_time - DESTRUCTIVE_SECONDS))
((operator_time >= 1)) || operator_time=1
((tenant_time >= 1)) || tenant_time=1
common=(
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
    --max-examples "$MAX_EXAMPLES"
    --workers "$WORKERS"
    --request-timeout 30
    --generation-database none
    --report junit,har
)
[[ -n "$SEED" ]] && common+=(--seed "$SEED")

# The operator's routes and the public ones; the tenant gets the rest.
# (Both as include filters: schemathesis only excludes what matches every
# exclude filter given.)
OPERATOR_ROUTES='^/(v1/operator/|healthz$|readyz$|metrics$|openapi\.json$)'
TENANT_ROUTES='^/(v1/(?!operator/)|webhooks/)'

failed=0
run() {
    local name=$1 seconds=$2
    shift 2
    log "fuzzing $name for up to ${seconds}s"
    # From target/api-fuzz/: schemathesis keeps its cache of failing cases
    # (replayed first next time) in .schemathesis/ of the working directory.
    if ! (cd "$ROOT/target/api-fuzz" &&
        "$ST" --config-file "$WORK/schemathesis.toml" run "$BASE/openapi.json" "${common[@]}" --max-time "$seconds" \
            --report-dir "$REPORT/$name" "$@"); then
        failed=1
    fi
}

started=$(date +%s)
# Each identity is aimed at the routes it may use; the other identity's
# routes would only answer 401.
#
# The tenant goes first: the operator run lists tenants and deletes or
# offboards the ones it finds. Within the tenant's run, the operations that
# destroy come last and alone: schemathesis learns ids from the answers
# and soon revokes the very key it fuzzes with (after which every request
# is a 401), erases the contact and deletes the installation (after which
# their routes answer only 404, and their answers' schemas go unchecked).
DESTRUCTIVE='^(revoke_api_key|erasure|delete_installation)$'
tenant=(-H "Authorization: Bearer $TENANT_KEY" --include-path-regex "$TENANT_ROUTES")
run tenant "$tenant_time" "${tenant[@]}" --exclude-operation-id-regex "$DESTRUCTIVE"
run tenant-destructive "$DESTRUCTIVE_SECONDS" "${tenant[@]}" \
    --include-operation-id-regex "$DESTRUCTIVE"
run operator "$operator_time" -H "Authorization: Bearer $OPERATOR_TOKEN" \
    --include-path-regex "$OPERATOR_ROUTES"
log "fuzzing took $(($(date +%s) - started))s"

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    log "the service died during the run"
    failed=1
fi
if [[ $failed -ne 0 ]]; then
    log "FAILED: reports in $REPORT (tenant/, tenant-destructive/, operator/, server.log)"
    exit 1
fi
log "passed: reports in $REPORT"
