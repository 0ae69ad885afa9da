"""CPU that kube-apiserver and etcd spend per request, by kind of request.

What one retirement costs the API server is a sum of writes (BENCHMARKS.md,
issue 15 round); this measures each kind on the test environment's own
kube-apiserver and etcd: N requests of a kind, 8 at a time, and the two
processes' utime+stime (/proc/<pid>/stat) before and after.

    tests/env/up.sh && . target/testenv/env && kubectl apply -k crds/
    kubectl create ns wcost
    $NPO_MOTO_PYTHON benches/tools/apiserver_write_cost.py 400

(moto's Python has `requests`.) The machine should be otherwise idle.
"""

import concurrent.futures as cf
import json
import os
import sys
import time

import requests
import urllib3

SERVER = os.environ["NPO_KUBE_SERVER"]
RUN = os.path.join(os.environ["NPO_TESTENV_DIR"], "run")
NS = "wcost"
N = int(sys.argv[1]) if len(sys.argv) > 1 else 400
BASE = f"{SERVER}/apis/nomadpool.dev/v1alpha1/namespaces/{NS}/nomadclientretirements"
MERGE = {"Content-Type": "application/merge-patch+json"}

urllib3.disable_warnings()
http = requests.Session()
http.cert = (os.environ["NPO_KUBE_CLIENT_CERT"], os.environ["NPO_KUBE_CLIENT_KEY"])
# The environment's serving certificate is not for 127.0.0.1 under every CA
# bundle the machine sets; the client certificate is what matters here.
http.verify = False
http.trust_env = False
http.mount("https://", requests.adapters.HTTPAdapter(pool_maxsize=16))


def cpu_seconds():
    total = 0.0
    for proc in ("kube-apiserver", "etcd"):
        pid = open(f"{RUN}/{proc}.pid").read().strip()
        fields = open(f"/proc/{pid}/stat").read().split(")")[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def measure(name, request):
    before = cpu_seconds()
    with cf.ThreadPoolExecutor(8) as pool:
        for r in pool.map(request, range(N)):
            assert r.ok, r.text
    time.sleep(1.0)  # the watch fan-out of the last writes
    spent = cpu_seconds() - before
    print(f"{name:32s} {1000 * spent / N:6.2f} ms per request ({N})", flush=True)


def event(i):
    return http.post(f"{SERVER}/apis/events.k8s.io/v1/namespaces/{NS}/events", json={
        "metadata": {"generateName": "wcost-"}, "eventTime": "2026-12-01T00:00:00.000000Z",
        "reportingController": "nomadpool.dev/operator", "reportingInstance": "wcost",
        "action": "Reconcile", "reason": "Selected", "type": "Normal", "note": "node selected",
        "regarding": {"apiVersion": "nomadpool.dev/v1alpha1", "kind": "NomadClientRetirement",
                      "namespace": NS, "name": f"r-{i}"}})


def create(i):
    return http.post(BASE, json={
        "apiVersion": "nomadpool.dev/v1alpha1", "kind": "NomadClientRetirement",
        "metadata": {"name": f"r-{i}", "labels": {"nomadpool.dev/pool": "ci"},
                     "finalizers": ["nomadpool.dev/retirement"]},
        "spec": {"pool": "ci", "target": {"nodeID": f"{i:08d}-aaaa-bbbb-cccc-dddddddddddd"},
                 "reason": "ScaleIn", "capacity": "Shrink"}})


def status(phase):
    def write(i):
        return http.patch(f"{BASE}/r-{i}/status", headers=MERGE, data=json.dumps({"status": {
            "phase": phase, "phaseSince": "2026-12-01T00:00:00Z", "nodeName": f"client-{i}",
            "nodeID": f"{i:08d}-aaaa-bbbb-cccc-dddddddddddd", "message": f"in {phase}"}}))
    return write


def unfinalize(i):
    return http.patch(f"{BASE}/r-{i}", headers=MERGE,
                      data=json.dumps({"metadata": {"finalizers": None}}))


measure("event create", event)
measure("retirement create", create)
measure("retirement status write", status("Selected"))
measure("retirement status write (again)", status("Draining"))
measure("retirement read", lambda i: http.get(f"{BASE}/r-{i}"))
measure("retirement finalizer removal", unfinalize)
measure("retirement delete", lambda i: http.delete(f"{BASE}/r-{i}"))
