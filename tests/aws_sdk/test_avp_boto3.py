"""A real AWS SDK client (boto3) talks to the edge host's Verified
Permissions endpoint unchanged, and gets the same decisions as /v1.

The edge host is started by scripts/test on the reference realm whose
identity settings trust the test keys (pdp-core/tests/keys/identity.json,
served with --bundle DIR --dev); GATEHOUSE_URL names it.
"""
import glob
import json
import os
import urllib.request

import boto3
import pytest

URL = os.environ["GATEHOUSE_URL"]
ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def client():
    return boto3.client(
        "verifiedpermissions",
        endpoint_url=URL,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def v1(request):
    req = urllib.request.Request(
        URL + "/v1/is_authorized",
        data=json.dumps(request).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def attribute(value):
    """A Cedar JSON value as an AVP AttributeValue."""
    if isinstance(value, bool):
        return {"boolean": value}
    if isinstance(value, int):
        return {"long": value}
    if isinstance(value, str):
        return {"string": value}
    if isinstance(value, list):
        return {"set": [attribute(v) for v in value]}
    if "__entity" in value:
        return {"entityIdentifier": {"entityType": value["__entity"]["type"], "entityId": value["__entity"]["id"]}}
    if "__extn" in value and value["__extn"]["fn"] == "ip":
        return {"ipaddr": value["__extn"]["arg"]}
    return {"record": {k: attribute(v) for k, v in value.items()}}


def entity_id(ref):
    return {"entityType": ref["type"], "entityId": ref["id"]}


def avp_request(r):
    out = {
        "policyStoreId": "default",
        "principal": entity_id(r["principal"]),
        "action": {"actionType": r["action"]["type"], "actionId": r["action"]["id"]},
        "resource": entity_id(r["resource"]),
    }
    if r.get("context"):
        out["context"] = {"contextMap": {k: attribute(v) for k, v in r["context"].items()}}
    if r.get("entities"):
        out["entities"] = {"entityList": [
            {
                "identifier": entity_id(e["uid"]),
                "attributes": {k: attribute(v) for k, v in e.get("attrs", {}).items()},
                "parents": [entity_id(p) for p in e.get("parents", [])],
            }
            for e in e_list
        ] for e_list in [r["entities"]]}
    return out


def corpus_cases():
    cases = []
    for path in sorted(glob.glob(os.path.join(ROOT, "policies", "corpus", "*.json"))):
        with open(path) as f:
            for case in json.load(f)["cases"]:
                if "failure" in case:
                    continue
                ctx = case["request"].get("context", {})
                # AVP types context values itself; a string that the schema
                # reads as an address has no AVP form other than ipaddr.
                if any(isinstance(v, str) and k == "source_ip" for k, v in ctx.items()):
                    continue
                cases.append(pytest.param(case["request"], id=case["name"][:60]))
    return cases


@pytest.mark.parametrize("request_", corpus_cases())
def test_is_authorized_matches_v1(request_):
    expected = v1(request_)
    got = client().is_authorized(**avp_request(request_))
    assert got["decision"] == expected["decision"].upper()
    assert sorted(p["policyId"] for p in got["determiningPolicies"]) == expected["determining_policies"]


def test_batch_is_authorized():
    c = client()
    requests = [
        {"principal": {"entityType": "User", "entityId": "alice"},
         "action": {"actionType": "Action", "actionId": "readDocument"},
         "resource": {"entityType": "Document", "entityId": d}}
        for d in ["design-doc", "salaries", "incident-report"]
    ]
    got = c.batch_is_authorized(policyStoreId="default", requests=requests)
    assert [r["decision"] for r in got["results"]] == ["ALLOW", "DENY", "ALLOW"]


def test_unknown_policy_store_is_a_client_error():
    c = client()
    with pytest.raises(c.exceptions.ResourceNotFoundException):
        c.is_authorized(
            policyStoreId="nope",
            principal={"entityType": "User", "entityId": "alice"},
            action={"actionType": "Action", "actionId": "readDocument"},
            resource={"entityType": "Document", "entityId": "design-doc"},
        )


def token(sub, key_file="rs256.key.pem", **claims):
    """An ID token of the default realm, signed with a test key."""
    import time

    import jwt

    with open(os.path.join(ROOT, "pdp-core", "tests", "keys", key_file), "rb") as f:
        key = f.read()
    now = int(time.time())
    body = {"sub": sub, "iss": "https://gatehouse.local/realms/default", "aud": "gatehouse-demo-client",
            "token_use": "id", "iat": now - 5, "exp": now + 300}
    body.update(claims)
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": "test-rs256"})


@pytest.mark.parametrize("sub,key_file,decision,principal", [
    ("alice", "rs256.key.pem", "ALLOW", "alice"),
    ("judy", "rs256.key.pem", "DENY", "judy"),
    ("dave", "rs256.key.pem", "DENY", "dave"),  # suspended: the token no longer works
    ("alice", "attacker-rs256.key.pem", "DENY", None),  # forged
])
def test_is_authorized_with_token(sub, key_file, decision, principal):
    got = client().is_authorized_with_token(
        policyStoreId="default",
        identityToken=token(sub, key_file),
        action={"actionType": "Action", "actionId": "readDocument"},
        resource={"entityType": "Document", "entityId": "design-doc"},
    )
    assert got["decision"] == decision
    if principal is None:
        assert "principal" not in got
    else:
        assert got["principal"] == {"entityType": "User", "entityId": principal}


def test_an_expired_token_is_denied():
    got = client().is_authorized_with_token(
        policyStoreId="default",
        identityToken=token("alice", exp=1_000_000_000, iat=999_999_000),
        action={"actionType": "Action", "actionId": "readDocument"},
        resource={"entityType": "Document", "entityId": "design-doc"},
    )
    assert got["decision"] == "DENY"


def test_batch_is_authorized_with_token():
    # One token, several actions on resources: each answered as its own
    # IsAuthorizedWithToken would be, with the principal named once.
    c = client()
    requests = [
        {"action": {"actionType": "Action", "actionId": "readDocument"},
         "resource": {"entityType": "Document", "entityId": doc}}
        for doc in ["design-doc", "salaries", "incident-report"]
    ]
    got = c.batch_is_authorized_with_token(
        policyStoreId="default", identityToken=token("alice"), requests=requests)
    assert got["principal"] == {"entityType": "User", "entityId": "alice"}
    decisions = [r["decision"] for r in got["results"]]
    singles = [
        c.is_authorized_with_token(policyStoreId="default", identityToken=token("alice"), **r)["decision"]
        for r in requests
    ]
    assert decisions == singles
    assert "ALLOW" in decisions and "DENY" in decisions
    assert [r["request"]["resource"]["entityId"] for r in got["results"]] == [
        "design-doc", "salaries", "incident-report"]
    # A forged token: every request denied, no principal.
    got = c.batch_is_authorized_with_token(
        policyStoreId="default", identityToken=token("alice", "attacker-rs256.key.pem"), requests=requests)
    assert [r["decision"] for r in got["results"]] == ["DENY"] * 3
    assert "principal" not in got
    # More than 30 requests: a validation error, as AVP gives.
    with pytest.raises(c.exceptions.ValidationException):
        c.batch_is_authorized_with_token(
            policyStoreId="default", identityToken=token("alice"), requests=requests * 11)
