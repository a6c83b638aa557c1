"""Write cedar-agent's policies.json and data.json from a policies/ directory.

cedar-agent 0.2 runs Cedar 2.4, which has no `is` operator and takes no
templates: `principal is User` in a scope becomes `principal` (the
benchmark's request types make it equivalent), template policies are left
out. Users from users.jsonl become entities the way pdp-core builds them
(attributes plus username, email, state; parents = groups and roles).
"""
import json, re, sys

src, out = sys.argv[1], sys.argv[2]
text = open(f"{src}/policies.cedar").read()
text = "\n".join(l for l in text.splitlines() if not l.strip().startswith("//"))
policies = []
for n, stmt in enumerate(s.strip() for s in text.split(";")):
    if not stmt or "?principal" in stmt or "?resource" in stmt:
        continue
    m = re.search(r'@id\("([^"]+)"\)', stmt)
    pid = m.group(1) if m else f"policy{n}"
    stmt = re.sub(r'@\w+\("[^"]*"\)\s*', "", stmt)
    stmt = re.sub(r"\b(principal|resource)\s+is\s+[A-Za-z_:]+", r"\1", stmt)
    policies.append({"id": pid, "content": stmt + ";"})
entities = json.load(open(f"{src}/entities.json"))
for line in open(f"{src}/users.jsonl"):
    if not line.strip():
        continue
    u = json.loads(line)
    attrs = dict(u.get("attrs", {}))
    attrs.update(username=u["username"], email=u["email"], state=u["state"])
    parents = [{"type": "Group", "id": g} for g in u.get("groups", [])]
    parents += [{"type": "Role", "id": r} for r in u.get("roles", [])]
    entities.append({"uid": {"type": "User", "id": u["id"]}, "attrs": attrs, "parents": parents})
json.dump(policies, open(f"{out}/policies.json", "w"), indent=1)
json.dump(entities, open(f"{out}/data.json", "w"), indent=1)
print(len(policies), "policies,", len(entities), "entities")
