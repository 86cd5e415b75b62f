"""Properties of the `auth` comparator: tokens by their claims, never by their strings."""

from __future__ import annotations

import copy
import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comparators.auth import enumeration_findings
from harness.diff.base import CompareOptions, Incomparable, get
from harness.model import Kind, Severity
from harness.testing.answers import SECRET, answer, encode, jwt_claims

EXAMPLES = settings(max_examples=120, deadline=None)
DATE = "Mon, 01 Jan 2024 00:00:00 GMT"


def login(claims, *, alg="HS256", secret=SECRET, expires_in=None, **extra):
    """A login answer body for `claims` (the refresh token has its own jti)."""
    refresh = {**claims, "token_type": "refresh", "jti": claims["jti"] + "r"}
    lifetime = claims["exp"] - claims.get("iat", claims["exp"] - 1800)
    return {
        "access_token": encode(claims, secret, alg),
        "refresh_token": encode(refresh, secret, alg),
        "token_type": "bearer",
        "expires_in": lifetime if expires_in is None else expires_in,
        **extra,
    }


def diff(primary, candidate, *, status=(200, 200), headers=({}, {}), **options):
    return get("auth")(
        answer(primary, status[0], headers[0]),
        answer(candidate, status[1], headers[1]),
        CompareOptions(**options),
    )


def paths_of(differences):
    return {d.path for d in differences}


def quotes_a_token(differences, *bodies):
    tokens = [b[k] for b in bodies for k in ("access_token", "refresh_token") if k in b]
    said = json.dumps([d.to_dict() for d in differences], default=str)
    return any(t in said or t.rsplit(".", 1)[-1] in said for t in tokens)


@EXAMPLES
@given(jwt_claims())
def test_reflexive(claims):
    body = login(claims)
    assert diff(body, copy.deepcopy(body)) == []


@EXAMPLES
@given(jwt_claims(with_iat=True), st.integers(-(10**6), 10**6), st.text("abcdef0123", min_size=4))
def test_invariant_to_jti_and_issue_time_with_iat(claims, offset, jti):
    """Minted per token: jti and the absolute iat/exp; the lifetime is what must agree."""
    other = {**claims, "jti": jti, "iat": claims["iat"] + offset, "exp": claims["exp"] + offset}
    assert diff(login(claims), login(other)) == []


@EXAMPLES
@given(jwt_claims(with_iat=False), st.integers(-(10**6), 10**6), st.integers(-4, 4))
def test_invariant_to_issue_time_without_iat_using_date(claims, offset, jitter):
    """No iat (the real tokens): the lifetime is measured from each answer's Date header."""
    from email.utils import formatdate

    other = {**claims, "jti": "other", "exp": claims["exp"] + offset + jitter}
    dates = ({"date": [DATE]}, {"date": [formatdate(1_704_067_200 + offset, usegmt=True)]})
    assert diff(login(claims), login(other), headers=dates) == []


@st.composite
def changed_tokens(draw):
    """Claims, a changed copy, and the path at which the change must be found."""
    claims = draw(jwt_claims())
    other = dict(claims)
    change = draw(st.sampled_from(["sub", "roles", "email", "token_type", "lifetime", "new"]))
    if change == "lifetime":
        other["exp"] = claims["exp"] + draw(st.sampled_from([-900, 60, 1800]))
        path = "access_token.claims.exp"
    elif change == "roles":
        other["roles"] = [*claims["roles"], "superuser"]
        path = "access_token.claims.roles"
    elif change == "new":
        other["tenant"] = "t1"
        path = "access_token.claims.tenant"
    else:
        other[change] = claims[change] + "-x"
        path = f"access_token.claims.{change}"
    return claims, other, path, change


@EXAMPLES
@given(changed_tokens())
def test_every_claim_change_is_found_and_no_token_is_quoted(case):
    claims, other, path, change = case
    primary = login(claims)
    # The refresh token keeps the primary's claims: only the access token changed.
    candidate = {
        **login(other),
        "refresh_token": primary["refresh_token"],
        "expires_in": primary["expires_in"],
    }
    found = diff(primary, candidate, headers=({"date": [DATE]}, {"date": [DATE]}))
    assert paths_of(found) == {path}
    assert not quotes_a_token(found, primary, candidate)
    if change == "lifetime":
        assert found[0].message.startswith("access token lifetime ")


@EXAMPLES
@given(changed_tokens())
def test_symmetric(case):
    claims, other, _, _ = case
    a, b = login(claims), login(other)
    assert paths_of(diff(a, b)) == paths_of(diff(b, a))


@EXAMPLES
@given(jwt_claims(with_iat=True), st.integers(0, 60))
def test_monotonic_in_lifetime_tolerance(claims, drift):
    other = {**claims, "exp": claims["exp"] + drift, "jti": "x"}
    a, b = login(claims), login(other, expires_in=login(claims)["expires_in"] + drift)
    found = [paths_of(diff(a, b, extra={"lifetime_tolerance": t})) for t in (0, 1, 5, 30, 60)]
    for tighter, looser in itertools.pairwise(found):
        assert looser <= tighter
    assert found[-1] == set()


@EXAMPLES
@given(jwt_claims(), st.sampled_from(["HS512", "HS384"]))
def test_algorithm_change_is_critical(claims, alg):
    found = diff(login(claims), login(claims, alg=alg))
    assert {d.path for d in found} == {"access_token.header.alg", "refresh_token.header.alg"}
    assert all(d.severity is Severity.CRITICAL for d in found)
    assert found[0].message == f"access token signed with HS256 vs {alg}"


def test_alg_none_and_typ_are_critical():
    claims = {"sub": "alice", "roles": ["user"], "exp": 1_704_069_000, "jti": "a"}
    import base64

    def unsigned(c):
        part = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
        return f"{part({'alg': 'none'})}.{part(c)}."

    found = diff({"access_token": encode(claims)}, {"access_token": unsigned(claims)})
    assert ("access_token.header.alg", Severity.CRITICAL) in {(d.path, d.severity) for d in found}
    assert ("access_token.header.typ", Severity.CRITICAL) in {(d.path, d.severity) for d in found}


def test_lost_exp_is_critical_and_lifetime_reads_well():
    claims = {"sub": "alice", "roles": ["user"], "exp": 1_704_069_000, "jti": "a"}
    no_exp = {k: v for k, v in claims.items() if k != "exp"}
    (found,) = diff({"access_token": encode(claims)}, {"access_token": encode(no_exp)})
    assert found.severity is Severity.CRITICAL and found.kind is Kind.MISSING
    shorter = {**claims, "exp": claims["exp"] - 900}
    dates = ({"date": [DATE]}, {"date": [DATE]})
    (life,) = diff(
        {"access_token": encode(claims)}, {"access_token": encode(shorter)}, headers=dates
    )
    assert life.message.startswith("access token lifetime 1800 s vs 900 s")


def test_signature_verification_with_configured_keys():
    claims = {"sub": "alice", "roles": ["user"], "exp": 1_704_069_000, "jti": "a"}
    good = {"access_token": encode(claims)}
    forged = {"access_token": encode(claims, secret="x" * 64)}
    keys = {"keys": {"secret": SECRET, "alg": "HS256"}}
    assert diff(good, good, extra=keys) == []
    (found,) = diff(good, forged, extra=keys)
    assert found.path == "access_token.signature" and found.severity is Severity.CRITICAL
    assert forged["access_token"] not in found.message


def test_keys_without_a_secret_make_the_answers_incomparable_with_the_reason():
    good = {"access_token": encode({"sub": "alice", "exp": 1_704_069_000, "jti": "a"})}
    one_side = {"primary": {"secret": SECRET}, "candidate": {}}
    for keys in ({"alg": "HS256"}, {"secret": 42}, one_side):
        with pytest.raises(Incomparable, match=r"extra\.keys: no 'secret' or 'key'"):
            diff(good, good, extra={"keys": keys})


def test_cookie_attributes_and_values():
    claims = {"sub": "alice", "roles": ["user"], "exp": 1_704_069_000, "jti": "a"}
    token = encode(claims)
    other = encode({**claims, "jti": "b"})
    p = {
        "set-cookie": [f"refresh={token}; HttpOnly; Secure; Path=/; SameSite=Strict; Max-Age=3600"]
    }
    c = {"set-cookie": [f"refresh={other}; Secure; Path=/; SameSite=strict; Max-Age=3602"]}
    found = diff({"ok": True}, {"ok": True}, headers=(p, c))
    assert [(d.path, d.severity) for d in found] == [
        ("@headers.set-cookie.refresh.httponly", Severity.CRITICAL)
    ]
    assert not quotes_a_token(found, {"access_token": token}, {"access_token": other})


def test_error_answers_compared_exactly_and_enumeration():
    wrong = answer({"detail": "Incorrect username or password"}, 401)
    unknown = answer({"detail": "User not found"}, 401)
    found = get("auth")(wrong, unknown, CompareOptions())
    assert paths_of(found) == {"detail"}
    same = enumeration_findings((wrong, wrong), (wrong, wrong))
    assert same == []
    (leak,) = enumeration_findings((wrong, unknown), (wrong, wrong))
    assert leak.severity is Severity.CRITICAL and "candidate tells an unknown user" in leak.message
    (both,) = enumeration_findings(
        {"primary": unknown, "candidate": unknown}, {"primary": wrong, "candidate": wrong}
    )
    assert both.severity is Severity.WARNING


def test_api_key_secrets_and_ids_are_not_compared():
    p = {
        "keys": [
            {
                "id": "k1",
                "key": "SECRET-ONE",
                "description": "bot",
                "exchange": "binance",
                "permissions": ["trade"],
                "created_at": "2024-01-01T00:00:00Z",
            }
        ],
        "total": 1,
    }
    c = copy.deepcopy(p)
    c["keys"][0].update(id="k2", key="SECRET-TWO", created_at="2024-02-01T00:00:00Z")
    assert diff(p, c) == []
    c["keys"][0]["permissions"] = ["read"]
    found = diff(p, c)
    assert paths_of(found) == {"keys[0].permissions[0]"}
    assert "SECRET" not in json.dumps([d.to_dict() for d in found])
