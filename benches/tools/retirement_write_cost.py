"""CPU that kube-apiserver and etcd spend on the writes of whole retirements.

`apiserver_write_cost.py` prices one kind of request at a time, with small
bodies. This replays the writes one retirement makes, in order and with the
bodies the operator sends (a status of three conditions, a blocking
allocation, a replace with the version read), for N retirements 8 at a
time, and prices the sequence per retirement. Variants drop the writes the
remaining candidates of the halving target would drop (BENCHMARKS.md, issue
15 round), so their saving is measured rather than estimated:

- `today`: create, Event `Selected`, status `Cordoned`, `Draining`,
  `Terminating`, `Retired`, Event `Retired`, finalizer removal, delete;
- `no-selected-event`: without the `Selected` Event;
- `first-record-draining`: without the `Cordoned` status (the first record
  `Draining`, written before the drain);
- `both`;
- `floor`: the fewest writes a retirement could make and still be one
  object with a finalizer and a record before each side effect: create,
  `Draining` (before the drain), `Terminating`, finalizer removal, delete;
  no Events and no final phase (neither of which the issue allows to
  drop): a lower bound on what any variant of the model costs;
- `no-condition-messages`: `today`'s writes with the three conditions'
  messages empty (the status's own `message` still says it): what the
  size of a status costs, against its count.

`CONCURRENCY=N` writes N retirements at once (8 by default). `PACE=R`
starts R retirements a second instead of all at once: the scale-in bench
retires ~5 a second, and the CPU a write costs depends on the rate (the
environment's idle cost is in the figure then, as it is in the bench's).
`VARIANTS=a,b` picks variants (`today` first: the others are set against
it). `WATCHERS=N` keeps N watches of the retirements open meanwhile, as the
operator's (and the scale-in bench's) are during a run: what the watch
fan-out of these writes costs.

    tests/env/up.sh && . target/testenv/env && kubectl apply -k crds/
    kubectl create ns wcost
    $NPO_MOTO_PYTHON benches/tools/retirement_write_cost.py 300 2

(N retirements per variant, rounds alternating the variants.) The machine
should be otherwise idle.
"""

import concurrent.futures as cf
import copy
import os
import sys
import threading
import time

import requests
import urllib3

SERVER = os.environ["NPO_KUBE_SERVER"]
RUN = os.path.join(os.environ["NPO_TESTENV_DIR"], "run")
NS = "wcost"
N = int(sys.argv[1]) if len(sys.argv) > 1 else 300
# Retirements written at once (the operator's bursts run up to 16 writes).
CONCURRENCY = int(os.environ.get("CONCURRENCY", "8"))
# Retirements started per second; 0: all at once, CONCURRENCY at a time.
PACE = float(os.environ.get("PACE", "0"))
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 2
BASE = f"{SERVER}/apis/nomadpool.dev/v1alpha1/namespaces/{NS}/nomadclientretirements"
EVENTS = f"{SERVER}/apis/events.k8s.io/v1/namespaces/{NS}/events"
T0 = "2026-12-06T01:00:00Z"

urllib3.disable_warnings()
http = requests.Session()
http.cert = (os.environ["NPO_KUBE_CLIENT_CERT"], os.environ["NPO_KUBE_CLIENT_KEY"])
http.verify = False  # the client certificate is what matters here
http.trust_env = False
http.mount("https://", requests.adapters.HTTPAdapter(pool_maxsize=64))


def cpu_seconds():
    total = 0.0
    for proc in ("kube-apiserver", "etcd"):
        pid = open(f"{RUN}/{proc}.pid").read().strip()
        fields = open(f"/proc/{pid}/stat").read().split(")")[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def condition(type_, status, reason, message):
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "observedGeneration": 1, "lastTransitionTime": T0}


def status(i, phase):
    """The status the operator writes for `phase` (fields as `records::status_of`)."""
    finished = phase == "Retired"
    message = (f"node client-{i:05d} retired in 1m40s (drained in 1m30s)" if finished else
               f"waiting for 1 allocation(s) of ci-job-{i % 50} to finish (deadline in 59m)")
    st = {"observedGeneration": 1, "phase": phase, "phaseSince": T0,
          "nodeID": f"{i:08d}-aaaa-bbbb-cccc-dddddddddddd", "nodeName": f"client-{i:05d}",
          "instanceID": f"i-{i:017x}", "selectedAt": T0, "cordonedByPool": True,
          "allocationsLeft": 0 if finished else 1, "message": message,
          "conditions": [condition("Progressing", "False" if finished else "True", phase, message),
                         condition("Reconciling", "False" if finished else "True", phase, message),
                         condition("Stalled", "False", "AsExpected", "")]}
    if not CONDITION_MESSAGES:
        for c in st["conditions"]:
            c["message"] = ""
    if phase in ("Draining", "Terminating", "Retired"):
        st["drainStartedAt"] = T0
        st["drainDeadline"] = "2026-12-06T02:00:00Z"
    if phase == "Draining":
        st["blockingAllocations"] = [{"jobID": f"ci-job-{i % 50}", "taskGroup": "build",
                                      "allocationID": f"{i:08d}-1111-2222-3333-444444444444",
                                      "since": T0}]
    if phase in ("Terminating", "Retired"):
        st["terminatedAt"] = T0
    if finished:
        st["finishedAt"] = T0
    return st


def event(name, reason, note):
    return http.post(EVENTS, json={
        "metadata": {"generateName": f"{name}-"}, "eventTime": "2026-12-06T01:00:00.000000Z",
        "reportingController": "nomadpool.dev/operator", "reportingInstance": "wcost",
        "action": "Retire", "reason": reason, "type": "Normal", "note": note,
        "regarding": {"apiVersion": "nomadpool.dev/v1alpha1", "kind": "NomadClientRetirement",
                      "namespace": NS, "name": name}})


def ok(r):
    assert r.ok, r.text
    return r.json()


CONDITION_MESSAGES = True


def retirement(variant, prefix):
    global CONDITION_MESSAGES
    CONDITION_MESSAGES = variant != "no-condition-messages"
    if variant == "no-condition-messages":
        variant = "today"

    def run(i):
        name = f"{prefix}-{i}"
        obj = ok(http.post(BASE, json={
            "apiVersion": "nomadpool.dev/v1alpha1", "kind": "NomadClientRetirement",
            "metadata": {"name": name, "labels": {"nomadpool.dev/pool": "ci"},
                         "annotations": {"nomadpool.dev/created-by": "pool"},
                         "finalizers": ["nomadpool.dev/retirement"]},
            "spec": {"pool": "ci", "target": {"nodeID": f"{i:08d}-aaaa-bbbb-cccc-dddddddddddd"},
                     "reason": "ScaleIn", "capacity": "Shrink"}}))
        if variant in ("today", "first-record-draining"):
            ok(event(name, "Selected", f"node client-{i:05d} selected for retirement (ScaleIn)"))
        phases = ["Cordoned", "Draining", "Terminating", "Retired"]
        if variant in ("first-record-draining", "both", "floor"):
            phases.remove("Cordoned")
        if variant == "floor":
            phases.remove("Retired")
        for phase in phases:
            body = copy.deepcopy(obj)
            # The operator's watch drops managedFields; its replaces carry none.
            body["metadata"].pop("managedFields", None)
            body["status"] = status(i, phase)
            obj = ok(http.put(f"{BASE}/{name}/status", json=body))
        if variant != "floor":
            ok(event(name, "Retired", status(i, "Retired")["message"]))
        body = copy.deepcopy(obj)
        body["metadata"].pop("managedFields", None)
        body["metadata"]["finalizers"] = []
        ok(http.put(f"{BASE}/{name}", json=body))
        ok(http.delete(f"{BASE}/{name}"))
    return run


def measure(variant, prefix):
    before, started = cpu_seconds(), time.monotonic()
    run = retirement(variant, prefix)
    with cf.ThreadPoolExecutor(CONCURRENCY) as pool:
        if PACE > 0:
            # One retirement started every 1/PACE s, as a scale-in's
            # retirements arrive, not all at once.
            futures = []
            for i in range(N):
                futures.append(pool.submit(run, i))
                time.sleep(1.0 / PACE)
            for f in futures:
                f.result()
        else:
            list(pool.map(run, range(N)))
    elapsed = time.monotonic() - started
    time.sleep(1.0)  # the watch fan-out of the last writes
    print(f"  {variant}: {N} retirements in {elapsed:.1f} s", flush=True)
    return 1000 * (cpu_seconds() - before) / N


def watch():
    """One watch of the retirements, read to the end, opened again if it
    closes (the API server ends a watch after its timeout)."""
    while True:
        try:
            with http.get(f"{BASE}?watch=1&allowWatchBookmarks=true", stream=True,
                          timeout=3600) as r:
                for _ in r.iter_lines():
                    pass
        except requests.RequestException as e:
            print(f"watch: {e}", flush=True)
        time.sleep(1.0)  # a refused watch is not retried in a tight loop


for _ in range(int(os.environ.get("WATCHERS", "0"))):
    threading.Thread(target=watch, daemon=True).start()
time.sleep(1.0)
VARIANTS = os.environ.get(
    "VARIANTS", "today,no-selected-event,first-record-draining,both").split(",")
spent = {v: [] for v in VARIANTS}
RUN_ID = f"{int(time.time()) % 100000}"
for rnd in range(ROUNDS):
    for v in VARIANTS:
        ms = measure(v, f"{v}-{RUN_ID}-{rnd}")
        spent[v].append(ms)
        print(f"round {rnd} {v:24s} {ms:6.2f} ms per retirement", flush=True)
today = sum(spent["today"]) / ROUNDS
for v in VARIANTS:
    mean = sum(spent[v]) / ROUNDS
    print(f"{v:24s} mean {mean:6.2f} ms per retirement, {mean / today:5.3f} x today")
