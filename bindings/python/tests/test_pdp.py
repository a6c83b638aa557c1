"""The Python package (wasmtime-py over the C ABI) against native pdp-core:
the expected answers come from the ``pdp decide`` CLI over the same signed
bundle, and every answer must be byte-identical; so must every page of
every search in policies/search-corpus.json, against ``pdp search``. Bad
input gives tagged failures and leaves the module answering correctly.

PDP_BIN names the pdp CLI and GATEHOUSE_PDP_WASM the module
(scripts/test-wasm sets both).
"""

import json
import subprocess

import pytest

from conftest import ROOT, eddsa_token, pdp_bin, realm_with_test_keys
from gatehouse_pdp import LoadError, Pdp

NOW = 1_800_000_000
ISS = "https://gatehouse.local/realms/default"
AUD = "gatehouse-demo-client"


#: The Pdp method of each search kind (``pdp search KIND``).
SEARCH = {"resource": "search_resources", "subject": "search_subjects", "action": "search_actions"}


def search_line(query, token=None) -> str:
    """A corpus query as the line sent, with ``token`` as its page token (a
    string query is sent as it is). Compact, as the package writes a dict:
    a failure's message names a column, so the dict must be the same bytes."""
    if isinstance(query, str):
        return query
    if token is not None:
        query = {**query, "page": {**query.get("page", {}), "token": token}}
    return json.dumps(query, separators=(",", ":"))


def next_token(answer: str):
    return json.loads(answer).get("next_token")


def search_reference(pdp: str, args: list) -> list:
    """Every search of policies/search-corpus.json followed page by page
    through ``pdp search``: each round asks every unfinished search its next
    page, with the next_token its previous page gave (or, first, the token
    of the case its ``token_from`` names)."""
    cases = json.loads((ROOT / "policies/search-corpus.json").read_text())["cases"]
    chains = [{**c, "lines": [], "answers": []} for c in cases]
    by_name = {c["name"]: c for c in chains}
    for _ in range(100):
        pending = []
        for c in chains:
            token = None
            if c["answers"]:
                token = next_token(c["answers"][-1])
                if token is None:
                    continue
            elif "token_from" in c:
                first = by_name[c["token_from"]]["answers"]
                if not first:
                    continue
                token = next_token(first[0])
                assert token, f"{c['name']}: {c['token_from']} has one page only"
            pending.append((c, search_line(c["query"], token)))
        if not pending:
            return chains
        for kind in SEARCH:
            asked = [(c, line) for c, line in pending if c["kind"] == kind]
            if not asked:
                continue
            out = subprocess.run(
                [pdp, "search", kind, *args],
                input="\n".join(line for _, line in asked),
                capture_output=True,
                text=True,
                check=True,
            ).stdout.rstrip("\n").split("\n")
            assert len(out) == len(asked)
            for (c, line), answer in zip(asked, out):
                c["lines"].append(line)
                c["answers"].append(answer)
    raise AssertionError("a search did not end within 100 pages")


def corpus():
    out = []
    for f in sorted((ROOT / "policies/corpus").glob("*.json")):
        for c in json.loads(f.read_text())["cases"]:
            out.append((f"{f.name} / {c['name']}", c["request"]))
    assert len(out) >= 40
    return out


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    pdp = pdp_bin()
    tmp = tmp_path_factory.mktemp("gatehouse-py")
    subprocess.run([pdp, "keygen", "-o", str(tmp / "k")], check=True, capture_output=True)
    realm = realm_with_test_keys(tmp / "realm")
    for rev in (1, 2):
        subprocess.run(
            [pdp, "bundle", "build", "--dir", str(realm), "--sign-key", str(tmp / "k.key.pem"),
             "--revision", str(rev), "--created-at", "1764000000", "-o", str(tmp / f"bundle{rev}.tar.gz")],
            check=True,
            capture_output=True,
        )
    cases = []  # (kind, name, line for the CLI)
    requests = corpus()
    for name, r in requests:
        cases.append(("single", name, json.dumps(r)))
    for name, r in requests:
        if r.get("principal", {}).get("type") != "User":
            continue
        body = {k: v for k, v in r.items() if k != "principal"}
        sub = r["principal"]["id"]
        for claims in (
            {"sub": sub, "iss": ISS, "aud": AUD, "token_use": "id", "iat": NOW - 60, "exp": NOW + 3600},
            {"sub": sub, "iss": ISS, "aud": AUD, "token_use": "id", "iat": NOW - 7200, "exp": NOW - 3600},
        ):
            cases.append(("token", name, json.dumps({"token": eddsa_token(claims), **body})))
    groups = {}
    for _, r in requests:
        groups.setdefault(json.dumps(r["principal"]), []).append(r)
    for k, rs in groups.items():
        cases.append(("batch", k, json.dumps({"requests": rs})))
    out = subprocess.run(
        [pdp, "decide", "--bundle", str(tmp / "bundle1.tar.gz"), "--trust-key", str(tmp / "k.pub.pem"),
         "--now", str(NOW)],
        input="\n".join(c[2] for c in cases),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.rstrip("\n").split("\n")
    assert len(out) == len(cases)
    (tmp / "expected.json").write_text(json.dumps({"cases": cases, "expected": out}, indent=1))
    searches = search_reference(
        pdp, ["--bundle", str(tmp / "bundle1.tar.gz"), "--trust-key", str(tmp / "k.pub.pem")]
    )
    return {
        "bundle": (tmp / "bundle1.tar.gz").read_bytes(),
        "bundle2": (tmp / "bundle2.tar.gz").read_bytes(),
        "pub": (tmp / "k.pub.pem").read_text(),
        "cases": cases,
        "expected": out,
        "searches": searches,
    }


def loaded(fx) -> Pdp:
    return Pdp.load(fx["bundle"], {"trust_keys": [fx["pub"]]})


def check_all(pdp: Pdp, fx) -> dict:
    allowed = {"single": 0, "token": 0, "batch": 0}
    for (kind, name, line), want in zip(fx["cases"], fx["expected"]):
        if kind == "single":
            got = pdp.is_authorized_json(line)
            assert pdp.is_authorized_json(json.loads(line)) == got, name
        elif kind == "token":
            got = pdp.token_request_json(line, NOW)
            req = json.loads(line)
            token = req.pop("token")
            assert pdp.is_authorized_with_token_json(token, req, NOW) == got, name
        else:
            got = pdp.batch_is_authorized_json(line)
        assert got == want, f"{kind} {name}"
        allowed[kind] += '"decision":"Allow"' in got
    assert all(allowed.values()), allowed
    return allowed


def check_searches(pdp: Pdp, fx) -> None:
    """Every search, following the module's own next_token from page to
    page: each page byte-identical to ``pdp search``'s line, given as text
    or as a dict."""
    found = failed = 0
    for c in fx["searches"]:
        method = getattr(pdp, SEARCH[c["kind"]])
        method_json = getattr(pdp, SEARCH[c["kind"]] + "_json")
        line = c["lines"][0]
        for i, want in enumerate(c["answers"]):
            where = f"{c['name']} page {i + 1}"
            got = method_json(line)
            assert got == want, where
            if not isinstance(c["query"], str):
                assert method_json(json.loads(line)) == got, f"{where} (dict)"
                assert method(json.loads(line)) == json.loads(got), f"{where} (dict)"
            answer = json.loads(got)
            found += bool(answer.get("results"))
            failed += answer["type"] == "failure"
            if "next_token" in answer:
                line = search_line(c["query"], answer["next_token"])
            else:
                assert i + 1 == len(c["answers"]), where
            if i + 1 < len(c["lines"]):
                assert line == c["lines"][i + 1], f"{where}: following the module's token"
    # Pages with results and failures both, or the parity proves little.
    assert found and failed, (found, failed)


def test_every_search_answers_byte_identically_page_by_page(fixtures):
    pdp = loaded(fixtures)
    check_searches(pdp, fixtures)
    # A page token of revision 1 on revision 2 is refused as expired.
    paged = next(c for c in fixtures["searches"] if len(c["answers"]) > 1)
    method = getattr(pdp, SEARCH[paged["kind"]])
    continued = search_line(paged["query"], next_token(paged["answers"][0]))
    assert method(continued)["type"] == "success"
    assert pdp.apply_delta(fixtures["bundle2"])["type"] == "success"
    assert method(continued)["errors"][0]["kind"] == "cursor_expired"


def test_every_corpus_token_and_batch_answer_equals_native(fixtures):
    pdp = loaded(fixtures)
    assert pdp.loaded["revision"] == 1
    assert pdp.revision() == 1
    check_all(pdp, fixtures)


def test_load_refusals_raise_with_a_kind(fixtures):
    with pytest.raises(LoadError) as e:
        Pdp.load(fixtures["bundle"])
    assert e.value.kind == "invalid_options"
    with pytest.raises(LoadError) as e:
        Pdp.load(b"garbage", {"dev": True})
    assert e.value.kind == "not_an_archive"
    corrupt = bytearray(fixtures["bundle"])
    mid = len(corrupt) // 2
    corrupt[mid : mid + 64] = bytes(64)
    with pytest.raises(LoadError):
        Pdp.load(bytes(corrupt), {"trust_keys": [fixtures["pub"]]})


def test_updates_and_users(fixtures):
    with loaded(fixtures) as pdp:
        assert pdp.user("alice")["user"]["id"] == "alice"
        assert pdp.user("nobody") == {"type": "success", "user": None}
        assert pdp.apply_delta(b"junk")["type"] == "failure"
        assert pdp.revision() == 1
        ok = pdp.apply_delta(fixtures["bundle2"])
        assert ok["type"] == "success" and ok["revision"] == 2
        assert pdp.apply_delta(fixtures["bundle"])["errors"][0]["kind"] == "rollback"
        assert pdp.revision() == 2


def test_bad_input_is_a_tagged_failure_and_the_module_keeps_answering(fixtures):
    pdp = loaded(fixtures)
    body = {"action": {"type": "Action", "id": "readDocument"}, "resource": {"type": "Document", "id": "design-doc"}}
    for bad in ["", "not json", "[]", "null", "{}", b"\xff\xfe", '{"principal": "alice"}', {"x": 1}]:
        for answer in (
            pdp.is_authorized(bad),
            pdp.batch_is_authorized(bad),
            pdp.is_authorized_with_token("x.y.z", bad, NOW),
            pdp.search_resources(bad),
            pdp.search_subjects(bad),
            pdp.search_actions(bad),
        ):
            assert answer["type"] == "failure", (bad, answer)
            assert answer["errors"][0]["kind"]
    assert pdp.is_authorized_with_token("a", {"token": "b", **body}, NOW)["type"] == "failure"
    huge = b"x" * (100 << 20)
    assert pdp.is_authorized(huge)["errors"][0]["kind"] == "request_too_large"
    assert pdp.batch_is_authorized(huge)["errors"][0]["kind"] == "request_too_large"
    for method in SEARCH.values():
        assert getattr(pdp, method)(huge)["errors"][0]["kind"] == "request_too_large"
    check_all(pdp, fixtures)
    check_searches(pdp, fixtures)
