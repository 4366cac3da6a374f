"""An AWS IAM policy evaluator for the local emulator: what the product relies on, evaluated as
the IAM User Guide says.

    decision = evaluate(Request(action="s3:GetObject", resource="arn:aws:s3:::b/k",
                                principal=Principal.session(role_arn, "alice", account),
                                context={"aws:PrincipalTag/lakehub-user": "alice"}),
                        identity_policies=[...], session_policies=[...], resource_policy={...})
    decision.allowed, decision.reason

What it evaluates (sources: IAM User Guide, "Policy evaluation logic", "Policy evaluation for
requests within a single account", "Session policies", "IAM JSON policy elements: Condition
operators", "Condition operators: multivalued context keys", "IAM policy elements: Variables and
tags", "AWS JSON policy elements: Principal" and "NotPrincipal"):

- An explicit Deny in any policy (identity, session, resource) wins.
- Within one account the union of identity-based and resource-based allows: a resource policy
  that names the principal (user ARN, role ARN, or ``*``) allows on its own; one that names only
  the account delegates to the identity policies. A role trust policy (``resource_required``)
  must allow the caller itself, even within the account.
- Session policies: the result is the intersection of the identity-based permissions (and a
  resource policy naming the user or role ARN) with the session policy; a resource policy that
  names the session ARN itself is not limited by it.
- Action / NotAction (case-insensitive wildcards), Resource / NotResource (``*`` and ``?``
  wildcards), Principal / NotPrincipal (``AWS`` entries; service principals match no caller
  here).
- Conditions: String*, Numeric*, Date*, Bool, BinaryEquals, IpAddress / NotIpAddress, Arn*,
  Null, each with ``...IfExists``, and the ``ForAnyValue:`` / ``ForAllValues:`` set qualifiers.
  Several operators or keys in a Condition are ANDed; several values for one key are ORed (for
  a negated operator: the value matches none of them). A key absent from the request makes a
  positive operator false and a negated one true; IfExists makes absence true; ForAllValues is
  true and ForAnyValue false on an absent key. An operator this evaluator does not know raises
  PolicyError (the emulator then refuses the request: fail closed).
- Policy variables in Resource, NotResource and condition values: ``${aws:username}``,
  ``${aws:PrincipalTag/key}``, ``${aws:SourceIdentity}`` ... (any key of the request context,
  case-insensitive), defaults ``${key, 'default'}``, and the escapes ``${*}``, ``${?}``,
  ``${$}`` (a literal ``*``, ``?``, ``$``). A substituted value is literal (its ``*`` is not a
  wildcard). A Resource entry whose variable cannot be resolved matches nothing, and a condition
  value that cannot be resolved matches no request value.

Not modelled: permissions boundaries, service control and resource control policies, cross-
account requests, and the ARN-to-unique-id rewriting IAM does when a policy is saved.

Why not a library: the one Python evaluator with conditions found
(principalmapper's ``local_policy_simulation``) is AGPL-3.0 (this project is Apache-2.0), has had
no release since January 2022, evaluates only over its own account graph objects, and applies
``ForAnyValue`` to the whole context rather than per value; policyuniverse and cloudsplaining
parse and analyse policies but do not decide requests. This module is small, pure, and its
known-answer tests (tests/local/test_iam_eval.py) come from the IAM User Guide's examples.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Iterable


class PolicyError(ValueError):
    """A policy this evaluator cannot read (unknown operator, malformed element)."""


@dataclass(frozen=True)
class Principal:
    """Who makes the request. ``arn`` is the caller's ARN as IAM reports it (a user ARN, or the
    assumed-role session ARN); ``role_arn`` is the role of a session."""

    arn: str
    account: str
    role_arn: str = ""

    @classmethod
    def user(cls, arn: str) -> "Principal":
        return cls(arn=arn, account=arn.split(":")[4])

    @classmethod
    def session(cls, role_arn: str, session_name: str, account: str | None = None) -> "Principal":
        parts = role_arn.split(":")
        account = account or parts[4]
        partition = parts[1]
        name = role_arn.rsplit("/", 1)[-1]
        return cls(arn=f"arn:{partition}:sts::{account}:assumed-role/{name}/{session_name}", account=account, role_arn=role_arn)

    @property
    def is_session(self) -> bool:
        return bool(self.role_arn)

    def account_names(self) -> set[str]:
        partition = self.arn.split(":")[1] if self.arn.count(":") >= 5 else "aws"
        return {self.account, f"arn:{partition}:iam::{self.account}:root"}


@dataclass
class Request:
    action: str
    resource: str
    principal: Principal | None = None
    # Condition keys (names are case-insensitive); a value is a string or a list of strings.
    context: dict[str, Any] = field(default_factory=dict)

    def ctx(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for k, v in self.context.items():
            if v is None:
                continue
            out[k.lower()] = [str(x) for x in v] if isinstance(v, (list, tuple, set)) else [str(v)]
        return out


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


# ---------------------------------------------------------------------------------------------
# Policy variables and wildcards


_VAR = re.compile(r"\$\{([^}]*)\}")
_DEFAULT = re.compile(r"^\s*([^,\s]+)\s*,\s*'((?:[^']|'')*)'\s*$")


def _resolve(text: str, ctx: dict[str, list[str]]) -> list[tuple[bool, str]] | None:
    """Split a policy string into (literal?, text) pieces with its variables substituted; None if
    a variable has no value (and no default)."""
    pieces: list[tuple[bool, str]] = []
    pos = 0
    for m in _VAR.finditer(text):
        if m.start() > pos:
            pieces.append((False, text[pos : m.start()]))
        inner = m.group(1)
        if inner in ("*", "?", "$"):
            pieces.append((True, inner))
        else:
            default = None
            d = _DEFAULT.match(inner)
            key = inner.strip()
            if d:
                key, default = d.group(1), d.group(2).replace("''", "'")
            values = ctx.get(key.lower())
            if values and len(values) == 1:
                pieces.append((True, values[0]))
            elif default is not None:
                pieces.append((True, default))
            else:
                return None  # absent, or a multivalued key: no substitution
        pos = m.end()
    if pos < len(text):
        pieces.append((False, text[pos:]))
    return pieces


def _pattern(pieces: list[tuple[bool, str]], case_insensitive: bool = False) -> re.Pattern:
    out = []
    for literal, piece in pieces:
        if literal:
            out.append(re.escape(piece))
        else:
            out.append("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in piece))
    return re.compile("^" + "".join(out) + "$", re.DOTALL | (re.IGNORECASE if case_insensitive else 0))


def _plain(pieces: list[tuple[bool, str]]) -> str:
    return "".join(p for _, p in pieces)


def _like(policy_value: str, value: str, ctx, case_insensitive: bool = False) -> bool:
    pieces = _resolve(policy_value, ctx)
    return pieces is not None and _pattern(pieces, case_insensitive).match(value) is not None


def _arn_like(policy_value: str, value: str, ctx) -> bool:
    """ArnEquals/ArnLike: each of the six colon-delimited parts is matched on its own."""
    pieces = _resolve(policy_value, ctx)
    if pieces is None:
        return False
    want = value.split(":", 5)
    # Re-split the resolved policy value into parts, keeping literal/wildcard pieces apart.
    parts: list[list[tuple[bool, str]]] = [[]]
    for literal, piece in pieces:
        if literal:
            parts[-1].append((True, piece))
            continue
        chunks = piece.split(":")
        for i, chunk in enumerate(chunks):
            if i:
                if len(parts) == 6:
                    parts[-1].append((False, ":"))
                else:
                    parts.append([])
            if chunk:
                parts[-1].append((False, chunk))
    if len(parts) != 6 or len(want) != 6:
        return False
    return all(_pattern(p).match(w) is not None for p, w in zip(parts, want))


def _listify(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


# ---------------------------------------------------------------------------------------------
# Conditions


def _num(x: str) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _date(x: str) -> _dt.datetime | None:
    try:
        return _dt.datetime.fromtimestamp(float(x), _dt.timezone.utc)
    except (TypeError, ValueError):
        pass
    try:
        d = _dt.datetime.fromisoformat(str(x).replace("Z", "+00:00"))
    except ValueError:
        return None
    return d if d.tzinfo else d.replace(tzinfo=_dt.timezone.utc)


def _cmp(kind: str, a, b) -> bool:
    if a is None or b is None:
        return False
    return {"Equals": a == b, "LessThan": a < b, "LessThanEquals": a <= b, "GreaterThan": a > b, "GreaterThanEquals": a >= b}[
        kind
    ]


def _ip(value: str, cidr: str) -> bool:
    try:
        return ipaddress.ip_address(value) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


# operator -> (negated?, match(policy_value, request_value, ctx))
def _op(name: str):
    string_ops = {
        "StringEquals": (False, lambda p, v, c: (r := _resolve(p, c)) is not None and _plain(r) == v),
        "StringNotEquals": (True, lambda p, v, c: (r := _resolve(p, c)) is not None and _plain(r) == v),
        "StringEqualsIgnoreCase": (False, lambda p, v, c: (r := _resolve(p, c)) is not None and _plain(r).lower() == v.lower()),
        "StringNotEqualsIgnoreCase": (True, lambda p, v, c: (r := _resolve(p, c)) is not None and _plain(r).lower() == v.lower()),
        "StringLike": (False, _like),
        "StringNotLike": (True, _like),
        "ArnEquals": (False, _arn_like),
        "ArnLike": (False, _arn_like),
        "ArnNotEquals": (True, _arn_like),
        "ArnNotLike": (True, _arn_like),
        "Bool": (False, lambda p, v, c: str(p).lower() == v.lower()),
        "BinaryEquals": (False, lambda p, v, c: str(p) == v),
        "IpAddress": (False, lambda p, v, c: _ip(v, str(p))),
        "NotIpAddress": (True, lambda p, v, c: _ip(v, str(p))),
    }
    if name in string_ops:
        return string_ops[name]
    for family, conv in (("Numeric", _num), ("Date", _date)):
        if name.startswith(family):
            kind = name[len(family) :]
            if kind == "NotEquals":
                return True, lambda p, v, c, conv=conv: _cmp("Equals", conv(v), conv(str(p)))
            if kind in ("Equals", "LessThan", "LessThanEquals", "GreaterThan", "GreaterThanEquals"):
                return False, lambda p, v, c, conv=conv, kind=kind: _cmp(kind, conv(v), conv(str(p)))
    raise PolicyError(f"condition operator {name!r} is not known to the local evaluator")


def _condition_holds(condition: dict, ctx: dict[str, list[str]]) -> bool:
    if not isinstance(condition, dict):
        raise PolicyError("Condition must be an object")
    for full_op, block in condition.items():
        qualifier, _, op = full_op.rpartition(":")
        if qualifier and qualifier not in ("ForAnyValue", "ForAllValues"):
            raise PolicyError(f"condition set qualifier {qualifier!r} is not known")
        if_exists = op.endswith("IfExists")
        if if_exists:
            op = op[: -len("IfExists")]
        for key, policy_values in (block or {}).items():
            values = ctx.get(key.lower()) or []
            if op == "Null":
                want_absent = str(_listify(policy_values)[0]).lower() == "true"
                if (not values) != want_absent:
                    return False
                continue
            negated, match = _op(op)
            if not values:
                if qualifier == "ForAllValues" or if_exists or (negated and not qualifier):
                    continue
                return False
            pvals = [str(p) if not isinstance(p, bool) else str(p).lower() for p in _listify(policy_values)]

            def one(v: str) -> bool:
                hit = any(match(p, v, ctx) for p in pvals)
                return not hit if negated else hit

            if qualifier == "ForAllValues":
                ok = all(one(v) for v in values)
            elif qualifier == "ForAnyValue" or not negated:
                ok = any(one(v) for v in values)
            else:
                ok = all(one(v) for v in values)
            if not ok:
                return False
    return True


# ---------------------------------------------------------------------------------------------
# Statements and policies


def statements(policy: Any) -> list[dict]:
    if policy is None:
        return []
    if not isinstance(policy, dict) or "Statement" not in policy:
        raise PolicyError("a policy is an object with a Statement")
    out = _listify(policy["Statement"])
    for s in out:
        if not isinstance(s, dict) or s.get("Effect") not in ("Allow", "Deny"):
            raise PolicyError(f"statement without Effect Allow or Deny: {s!r}")
    return out


def _action_matches(patterns: Iterable[str], action: str) -> bool:
    return any(p == "*" or _pattern([(False, p)], case_insensitive=True).match(action) for p in patterns)


def _resource_matches(patterns: Iterable[str], resource: str, ctx) -> bool:
    for p in patterns:
        if p == "*":
            return True
        pieces = _resolve(p, ctx)
        if pieces is not None and _pattern(pieces).match(resource):
            return True
    return False


# How a resource policy's Principal names the caller, strongest first.
SESSION, NAMED, ACCOUNT = "session", "named", "account"


def _principal_match(element: Any, principal: Principal | None) -> str | None:
    """SESSION / NAMED / ACCOUNT if the Principal element names the caller, else None."""
    if principal is None:
        return NAMED if element == "*" else None
    if element == "*":
        return NAMED
    if not isinstance(element, dict):
        raise PolicyError(f"Principal must be * or an object: {element!r}")
    names = set(_listify(element.get("AWS")))
    if "*" in names:
        return NAMED
    if principal.is_session and principal.arn in names:
        return SESSION
    if principal.arn in names or (principal.role_arn and principal.role_arn in names):
        return NAMED
    if names & principal.account_names():
        return ACCOUNT
    return None


def _not_principal_applies(element: Any, principal: Principal | None) -> bool:
    """NotPrincipal: the statement applies unless every identity of the caller (its ARN, its
    role's ARN, its account) is listed ("AWS JSON policy elements: NotPrincipal")."""
    if element == "*":
        return False
    if principal is None:
        return True
    names = set(_listify((element or {}).get("AWS"))) if isinstance(element, dict) else set()
    identities = [principal.arn] + ([principal.role_arn] if principal.role_arn else [])
    exempt = all(i in names for i in identities) and bool(names & principal.account_names())
    return not exempt


def statement_applies(s: dict, request: Request, ctx, with_principal: bool) -> str | None:
    """None if the statement does not apply; else the principal match kind (NAMED for identity
    policies)."""
    if "Action" in s:
        if not _action_matches(_listify(s["Action"]), request.action):
            return None
    elif "NotAction" in s:
        if _action_matches(_listify(s["NotAction"]), request.action):
            return None
    else:
        raise PolicyError("statement without Action or NotAction")
    if "Resource" in s:
        if not _resource_matches(_listify(s["Resource"]), request.resource, ctx):
            return None
    elif "NotResource" in s:
        if _resource_matches(_listify(s["NotResource"]), request.resource, ctx):
            return None
    elif not with_principal:
        raise PolicyError("identity policy statement without Resource or NotResource")
    kind: str | None = NAMED
    if with_principal:
        if "Principal" in s:
            kind = _principal_match(s["Principal"], request.principal)
        elif "NotPrincipal" in s:
            kind = NAMED if _not_principal_applies(s["NotPrincipal"], request.principal) else None
        else:
            raise PolicyError("resource policy statement without Principal or NotPrincipal")
        if kind is None:
            return None
    if "Condition" in s and not _condition_holds(s["Condition"], ctx):
        return None
    return kind


def _scan(policies: Iterable[Any], request: Request, ctx, with_principal: bool):
    """(explicit deny found, set of allow kinds)."""
    deny, allows = False, set()
    for policy in policies:
        for s in statements(policy):
            kind = statement_applies(s, request, ctx, with_principal)
            if kind is None:
                continue
            if s["Effect"] == "Deny":
                deny = True
            else:
                allows.add(kind)
    return deny, allows


def evaluate(
    request: Request,
    identity_policies: Iterable[Any] = (),
    session_policies: Iterable[Any] | None = None,
    resource_policy: Any = None,
    resource_required: bool = False,
) -> Decision:
    """Decide a request within one account (see the module docstring).

    ``session_policies`` None: the caller has no session policy (nothing to intersect with); an
    empty list: a session policy that allows nothing. ``resource_required``: the resource policy
    must allow the caller (role trust policies)."""
    ctx = request.ctx()
    id_deny, id_allows = _scan(_listify(identity_policies), request, ctx, with_principal=False)
    if id_deny:
        return Decision(False, "explicit deny in an identity-based policy")
    session_deny, session_allows = (
        (False, {NAMED}) if session_policies is None else _scan(_listify(session_policies), request, ctx, with_principal=False)
    )
    if session_deny:
        return Decision(False, "explicit deny in the session policy")
    res_deny, res_allows = _scan([resource_policy] if resource_policy is not None else [], request, ctx, with_principal=True)
    if res_deny:
        return Decision(False, "explicit deny in the resource-based policy")
    session_ok = bool(session_allows)
    if SESSION in res_allows:
        return Decision(True, "the resource-based policy names the session")
    if NAMED in res_allows:
        if session_ok:
            return Decision(True, "the resource-based policy allows the principal")
        return Decision(False, "the session policy does not allow it (resource-based allow for the role)")
    if resource_required and ACCOUNT not in res_allows:
        return Decision(False, "the resource-based policy (trust policy) does not allow the principal")
    if id_allows and session_ok:
        return Decision(True, "an identity-based policy allows it")
    if id_allows:
        return Decision(False, "the session policy does not allow it")
    return Decision(False, "no policy allows it (implicit deny)")
