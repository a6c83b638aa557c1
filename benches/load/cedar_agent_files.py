"""Write cedar-agent's policies.json from policies/policies.cedar.

cedar-agent 0.2 runs Cedar 2.4, which has no `is` operator and takes no
templates: `principal is User` in a scope becomes `principal` (the
benchmark's request types make it equivalent), template policies are left
out. Its data (the realm's entities, users as pdp-core builds them) comes
from `raw_cedar_server --write-entities`.
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
json.dump(policies, open(out, "w"), indent=1)
