"""Per-call latency of this package next to cedarpy (PyPI), in one process,
on the same realm (policies/) and the corpus requests that decide.

cedarpy gets its fastest use: the policy set (templates linked), the schema
and every entity of the realm (users included, as Gatehouse's directory
makes them) parsed once into handles; per call it is handed a request.
Gatehouse gets the bundle built from policies/ and a request dict. Both
answers are checked to agree before anything is timed. A measurement, not
a test:

    PDP_BIN=path/to/pdp python bench/compare_cedarpy.py
"""
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import cedarpy

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(HERE.parent))
from gatehouse_pdp import Pdp  # noqa: E402

POL = ROOT / "policies"


def bundle_bytes():
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "bundle.tar.gz"
        subprocess.run([os.environ.get("PDP_BIN", "pdp"), "bundle", "build", "--dir", str(POL), "-o", str(out)],
                       check=True, capture_output=True)
        return out.read_bytes()


def cedar_realm():
    ps = cedarpy.PolicySet.from_str((POL / "policies.cedar").read_text())
    for link in json.loads((POL / "links.json").read_text()):
        values = {slot: f'{v["type"]}::"{v["id"]}"' for slot, v in link["values"].items()}
        ps = ps.with_linked(link["template_id"], link["new_id"], values)
    users = []
    for line in (POL / "users.jsonl").read_text().splitlines():
        if line.strip():
            u = json.loads(line)
            users.append({
                "uid": {"type": "User", "id": u["id"]},
                "attrs": {**u["attrs"], "state": u["state"], "email": u["email"], "realm": "default"},
                "parents": [{"type": "Group", "id": g} for g in u["groups"]]
                + [{"type": "Role", "id": r} for r in u["roles"]],
            })
    schema = cedarpy.Schema.from_str((POL / "schema.cedarschema").read_text())
    entities = json.loads((POL / "entities.json").read_text()) + users
    # With the schema, Cedar also adds the action entities (action groups).
    return ps, cedarpy.Entities.from_json_str(json.dumps(entities), schema), schema


def cedar_request(r):
    uid = lambda e: f'{e["type"]}::"{e["id"]}"'  # noqa: E731
    return {"principal": uid(r["principal"]), "action": uid(r["action"]),
            "resource": uid(r["resource"]), "context": r.get("context", {})}


def timed(f, n):
    samples = []
    for i in range(n):
        t = time.perf_counter_ns()
        f(i)
        samples.append(time.perf_counter_ns() - t)
    samples.sort()
    return samples[len(samples) // 2] / 1000, samples[len(samples) * 99 // 100] / 1000


def main():
    pdp = Pdp.load(bundle_bytes(), {"dev": True})
    ps, entities, schema = cedar_realm()
    requests = []
    for f in sorted((POL / "corpus").glob("*.json")):
        for c in json.loads(f.read_text())["cases"]:
            r = c["request"]
            # Comparable: decided, no request-supplied entities.
            if not c.get("failure") and not r.get("entities"):
                requests.append(r)
    comparable, same = [], 0
    for r in requests:
        g = pdp.is_authorized(r)
        try:
            c = cedarpy.is_authorized(cedar_request(r), ps, entities, schema)
        except Exception:  # noqa: BLE001 - a request cedarpy cannot take is not comparable
            continue
        if g.get("type") != "success" or c.decision not in (cedarpy.Decision.Allow, cedarpy.Decision.Deny):
            continue
        # A principal missing from the directory is denied by Gatehouse
        # before Cedar runs (unknown_user); plain Cedar has no such rule.
        if g.get("reason") == "unknown_user":
            continue
        # Gatehouse gates non-Active users before Cedar; Cedar's forbid gives
        # the same Deny, so decisions must agree on every request.
        comparable.append(r)
        agree = (g["decision"] == "Allow") == (c.decision == cedarpy.Decision.Allow)
        same += agree
        if not agree and os.environ.get("SHOW_DIFF"):  # for investigating a disagreement
            print("differs:", g["decision"], g.get("reason"), c.decision, json.dumps(r)[:300])
    if same != len(comparable):
        sys.exit(f"decisions differ: {len(comparable) - same} of {len(comparable)}")
    cedar_reqs = [cedar_request(r) for r in comparable]
    json_reqs = [json.dumps(r) for r in comparable]
    n = 20000
    rounds = []
    for _ in range(3):
        rounds.append((
            timed(lambda i: pdp.is_authorized(comparable[i % len(comparable)]), n),
            timed(lambda i: pdp.is_authorized_json(json_reqs[i % len(json_reqs)]), n),
            timed(lambda i: cedarpy.is_authorized(cedar_reqs[i % len(cedar_reqs)], ps, entities, schema), n),
        ))
    print(f"python {sys.version.split()[0]}, cedarpy {getattr(cedarpy, '__version__', '?')}, "
          f"{len(comparable)} comparable corpus requests (all decisions agree), {n} calls x 3 rounds")
    for name, k in (("gatehouse_pdp is_authorized(dict)", 0), ("gatehouse_pdp is_authorized_json(str)", 1),
                    ("cedarpy is_authorized (parsed handles)", 2)):
        p50 = statistics.median(r[k][0] for r in rounds)
        p99 = statistics.median(r[k][1] for r in rounds)
        print(f"  {name:42s} p50 {p50:8.1f} us   p99 {p99:8.1f} us")


if __name__ == "__main__":
    main()
