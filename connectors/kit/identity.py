"""Buyer identity: which CRM person a shop buyer is, from phone, email, name and address.

Shops describe one person in many ways: ``+86 138 1234 5678``, ``8613812345678``, full-width
``１３８１２３４５６７８``, a masked ``138****5678`` (Youzan trades), an e-mail in another case, a typo in the
name, an address written with or without spaces. This module

* normalises each kind of evidence (:func:`phone_key` with ``phonenumbers``, :func:`email_key`,
  :func:`name_key`, :func:`address_key`, all after Unicode NFKC so full-width digits become ASCII);
* scores a buyer against each candidate person found through blocking keys (:class:`Matcher`): agreeing
  phone or e-mail is strong evidence, a masked phone only weak, a different name strong counter-evidence
  (one shared family phone is not one person);
* decides ``match`` (score at least :data:`MATCH_AT` and clearly ahead of the next candidate),
  ``review`` (plausible but not certain, or two candidates too close) or ``new``.

A masked phone can never carry a match by itself: it adds :data:`WEIGHTS` ``masked``, below even the
review threshold; a match needs it together with the same name or the same address. :class:`IdentityResolver` applies the decisions to the
hub: ``buyer_links`` (buyer -> contact, with the rule and score) and ``identity_reviews`` (the queue).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import phonenumbers
from sqlalchemy import Engine, Table, select

from tongbu.config import DEFAULT_TENANT
from tongbu.hub.models import Account, BuyerLink, Contact, IdentityReview

__all__ = [
    "MATCH_AT",
    "REVIEW_AT",
    "Buyer",
    "Decision",
    "IdentityResolver",
    "Matcher",
    "PhoneKey",
    "address_key",
    "email_key",
    "name_key",
    "phone_key",
]

#: a score at or above this (and :data:`MARGIN` ahead of the runner-up) is a match
MATCH_AT = 3.0
#: at or above this (but not a match) a person looks at it
REVIEW_AT = 2.0
MARGIN = 1.0
#: evidence weights (log-odds-like: positive for "same person", negative against)
WEIGHTS: Mapping[str, float] = {
    "phone": 3.0,
    # people keep more than one number (and households share one): a different one is weak evidence
    "phone_differs": -0.5,
    "masked": 1.5,
    "masked_conflict": -0.5,
    "email": 3.0,
    "email_typo": 1.5,
    "email_differs": -0.5,
    "name": 1.5,
    "name_typo": 0.7,
    "name_differs": -2.5,
    "address": 2.0,
    "address_similar": 1.0,
    # home, office, a parent's: another address says little
    "address_differs": 0.0,
}
_MAX_TEXT = 256  # evidence longer than this is cut before any work (untrusted input)
_MASK = re.compile(r"^(?:\+?86)?(1\d{2})\*{2,8}(\d{4})$")
_PHONE_JUNK = re.compile(r"[\s\-().（）·]")
_NAME_JUNK = re.compile(r"[\s·•.\-_,，]")
_ADDR_JUNK = re.compile(r"[\s,，.。、#＃\-()（）]")


def _nfkc(value: Any) -> str:
    if value is None:
        return ""
    return unicodedata.normalize("NFKC", str(value)[:_MAX_TEXT]).strip()


@dataclass(frozen=True)
class PhoneKey:
    """A phone as evidence: the full E.164 number when known, and its masked form (first 3, last 4)."""

    full: str | None
    masked: tuple[str, str] | None


def phone_key(raw: Any, region: str = "CN") -> PhoneKey | None:
    """The phone in ``raw`` (any common Chinese writing, full-width, masked); None if it is none."""
    text = _PHONE_JUNK.sub("", _nfkc(raw))
    if not text:
        return None
    if "*" in text:
        m = _MASK.match(text)
        return PhoneKey(None, (m.group(1), m.group(2))) if m else None
    if text.startswith("00"):
        text = "+" + text[2:]
    elif text.startswith("86") and len(text) == 13 and text[2] == "1":
        text = "+" + text  # 8613812345678: the country code without its plus
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    national = str(number.national_number)
    masked = (national[:3], national[-4:]) if number.country_code == 86 and len(national) == 11 else None
    return PhoneKey(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), masked)


def email_key(raw: Any) -> str | None:
    """The e-mail address, lower-cased; None unless it has the shape ``local@domain.tld``."""
    text = _nfkc(raw).lower()
    local, at, domain = text.partition("@")
    if not at or not local or "." not in domain or "@" in domain or " " in text:
        return None
    return text


def name_key(raw: Any) -> str | None:
    """A person's name without spaces and dots, lower-cased (``王 伟`` = ``王伟``, ``Li Na`` = ``lina``)."""
    text = _NAME_JUNK.sub("", _nfkc(raw)).lower()
    return text or None


def address_key(raw: Any) -> str | None:
    """An address without spaces and punctuation, lower-cased, ``號`` as ``号``."""
    text = _ADDR_JUNK.sub("", _nfkc(raw)).lower().replace("號", "号")
    return text if len(text) >= 4 else None


def _distance(a: str, b: str, cap: int = 3) -> int:
    """Levenshtein distance of two short strings, stopping early past ``cap``."""
    if a == b:
        return 0
    if abs(len(a) - len(b)) > cap:
        return cap + 1
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        if min(cur) > cap:
            return cap + 1
        prev = cur
    return prev[-1]


def _bigrams(text: str) -> set[str]:
    return {text[i : i + 2] for i in range(len(text) - 1)} or {text}


def _dice(a: str, b: str) -> float:
    x, y = _bigrams(a), _bigrams(b)
    return 2 * len(x & y) / (len(x) + len(y))


@dataclass(frozen=True)
class Buyer:
    """One description of a person, as a shop (or the CRM) gives it."""

    key: str
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    address: str | None = None
    company: str | None = None


@dataclass
class _Person:
    """What is known of one person (one cluster of buyers)."""

    ref: str
    names: set[str] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)
    masked: set[tuple[str, str]] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)
    addresses: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class _Evidence:
    name: str | None
    phone: PhoneKey | None
    email: str | None
    address: str | None

    @classmethod
    def of(cls, buyer: Buyer) -> _Evidence:
        return cls(
            name_key(buyer.name), phone_key(buyer.phone), email_key(buyer.email), address_key(buyer.address)
        )


@dataclass(frozen=True)
class Decision:
    """What the matcher decided for one buyer.

    ``kind`` is ``match`` (``ref`` is the person), ``review`` (``candidates`` lists who it might be) or
    ``new``; ``rule`` names the strongest evidence and ``score`` the total.
    """

    kind: Literal["match", "review", "new"]
    ref: str | None
    rule: str
    score: float
    reasons: tuple[str, ...] = ()
    candidates: tuple[tuple[str, float, tuple[str, ...]], ...] = ()


_RULE_ORDER = ("phone", "email", "email_typo", "address", "name", "name_typo", "masked")


class Matcher:
    """Known persons, indexed by blocking keys; :meth:`decide` scores a buyer against the candidates."""

    def __init__(self) -> None:
        self.persons: dict[str, _Person] = {}
        self._index: dict[tuple[str, Any], set[str]] = defaultdict(set)

    # -- knowledge -------------------------------------------------------------------------------------
    def add(self, ref: str, buyer: Buyer) -> None:
        """Record ``buyer`` as (another description of) person ``ref``."""
        ev = _Evidence.of(buyer)
        person = self.persons.setdefault(ref, _Person(ref))
        for block in self._blocks(ev):
            self._index[block].add(ref)
        if ev.name:
            person.names.add(ev.name)
        if ev.phone and ev.phone.full:
            person.phones.add(ev.phone.full)
        if ev.phone and ev.phone.masked:
            person.masked.add(ev.phone.masked)
        if ev.email:
            person.emails.add(ev.email)
        if ev.address:
            person.addresses.add(ev.address)

    @staticmethod
    def _blocks(ev: _Evidence) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        if ev.phone and ev.phone.full:
            out.append(("phone", ev.phone.full))
        if ev.phone and ev.phone.masked:
            out.append(("masked", ev.phone.masked))
        if ev.email:
            local, _, domain = ev.email.partition("@")
            out += [("email", ev.email), ("local", local), ("domain3", (domain, local[:3]))]
        if ev.name:
            out.append(("name", ev.name))
        if ev.address:
            out.append(("address", ev.address))
        return out

    # -- scoring ---------------------------------------------------------------------------------------
    def score(self, buyer: Buyer, ref: str) -> tuple[float, tuple[str, ...]]:
        """The evidence that ``buyer`` is person ``ref``: total weight and the reasons."""
        return self._score(_Evidence.of(buyer), self.persons[ref])

    @staticmethod
    def _score(ev: _Evidence, p: _Person) -> tuple[float, tuple[str, ...]]:
        reasons: list[str] = []
        if ev.phone is not None:
            if ev.phone.full:
                if ev.phone.full in p.phones:
                    reasons.append("phone")
                elif p.phones:
                    reasons.append("phone_differs")
                elif p.masked and ev.phone.masked:
                    reasons.append("masked" if ev.phone.masked in p.masked else "masked_conflict")
            elif ev.phone.masked and (p.masked or p.phones):
                # A masked number agrees with the person's numbers or it rules them out; never more.
                reasons.append("masked" if ev.phone.masked in p.masked else "masked_conflict")
        if ev.email and p.emails:
            if ev.email in p.emails:
                reasons.append("email")
            elif any(_email_typo(ev.email, e) for e in p.emails):
                reasons.append("email_typo")
            else:
                reasons.append("email_differs")
        if ev.name and p.names:
            best, closest = min((_distance(ev.name, n), n) for n in p.names)
            if best == 0:
                reasons.append("name")
            elif best == 1 and (len(ev.name) >= 3 or _surname_slip(ev.name, closest)):
                # One slip in a three-character name, or in the surname of a two-character one. Two
                # characters with another given name are another person: households share surnames.
                reasons.append("name_typo")
            else:
                reasons.append("name_differs")
        if ev.address and p.addresses:
            best_sim = max(_dice(ev.address, a) for a in p.addresses)
            reasons.append(
                "address" if best_sim >= 0.9 else "address_similar" if best_sim >= 0.7 else "address_differs"
            )
        return sum(WEIGHTS[r] for r in reasons), tuple(reasons)

    def decide(self, buyer: Buyer) -> Decision:
        """Match, review or new for ``buyer`` against the known persons."""
        ev = _Evidence.of(buyer)
        refs: set[str] = set()
        for block in self._blocks(ev):
            refs |= self._index.get(block, set())
        scored = sorted(
            ((ref, *self._score(ev, self.persons[ref])) for ref in refs), key=lambda t: (-t[1], t[0])
        )
        if not scored or scored[0][1] < REVIEW_AT:
            return Decision("new", None, "new", scored[0][1] if scored else 0.0)
        top_ref, top, reasons = scored[0]
        runner_up = scored[1][1] if len(scored) > 1 else float("-inf")
        rule = next((r for r in _RULE_ORDER if r in reasons), "score")
        candidates = tuple((r, s, why) for r, s, why in scored[:5] if s >= REVIEW_AT)
        if top >= MATCH_AT and top - runner_up >= MARGIN:
            return Decision("match", top_ref, rule, top, reasons, candidates)
        return Decision("review", None, rule, top, reasons, candidates)


def _surname_slip(a: str, b: str) -> bool:
    """Two names of equal length that differ only in their first character."""
    return len(a) == len(b) and a[1:] == b[1:] and a[0] != b[0]


def _email_typo(a: str, b: str) -> bool:
    """One slip in the local part or the domain, not both."""
    la, _, da = a.partition("@")
    lb, _, db = b.partition("@")
    return (da == db and _distance(la, lb, 1) == 1) or (la == lb and _distance(da, db, 1) == 1)


def company_key(raw: Any) -> str | None:
    """A company name for matching: NFKC, no spaces or brackets, ``(`` = ``（``."""
    text = re.sub(r"[\s()（）]", "", _nfkc(raw)).lower()
    return text or None


class IdentityResolver:
    """Resolves a shop's buyers (hub contacts of ``source_system``) to CRM persons, in the hub.

    Every contact of another system, and every buyer already linked to itself, is a known person; each
    unlinked buyer is decided in id order (so a later buyer can match an earlier new one): a match or a
    new person becomes a ``buyer_links`` row, a doubtful one an open ``identity_reviews`` row. A buyer's
    company is matched to an account by its normalised name (``account_id`` on the link).
    """

    def __init__(self, engine: Engine, *, tenant: str = DEFAULT_TENANT) -> None:
        self.engine, self.tenant = engine, tenant

    def resolve(self, source_system: str, *, decided_by: str = "matcher") -> dict[str, int]:
        """Decide every buyer of ``source_system`` without a link or an open review; returns counts."""
        contacts = _table(Contact)
        links = _table(BuyerLink)
        reviews = _table(IdentityReview)
        accounts = _table(Account)
        counts = {"match": 0, "new": 0, "review": 0}
        with self.engine.begin() as conn:
            linked = {
                (r.source_system, r.source_id): r.contact_id
                for r in conn.execute(select(links).where(links.c.tenant_id == self.tenant))
            }
            queued = {
                (r.source_system, r.source_id)
                for r in conn.execute(
                    select(reviews.c.source_system, reviews.c.source_id).where(
                        reviews.c.tenant_id == self.tenant
                    )
                )
            }
            account_ids = {
                company_key(r.name): r.id
                for r in conn.execute(
                    select(accounts.c.id, accounts.c.name).where(
                        accounts.c.tenant_id == self.tenant, accounts.c.deleted_at.is_(None)
                    )
                )
                if r.name
            }
            rows = list(
                conn.execute(
                    select(contacts)
                    .where(contacts.c.tenant_id == self.tenant, contacts.c.deleted_at.is_(None))
                    .order_by(contacts.c.id)
                )
            )
            matcher = Matcher()
            pending = []
            for row in rows:
                buyer = _buyer_of(row)
                key = (row.source_system, row.source_id)
                if row.source_system != source_system:
                    matcher.add(str(row.id), buyer)
                elif key in linked:
                    matcher.add(str(linked[key]), buyer)
                elif key not in queued:
                    pending.append((row, buyer))
            now = dt.datetime.now(dt.UTC)
            for row, buyer in pending:
                decision = matcher.decide(buyer)
                counts[decision.kind] += 1
                if decision.kind == "review":
                    conn.execute(
                        reviews.insert().values(
                            tenant_id=self.tenant,
                            source_system=row.source_system,
                            source_id=row.source_id,
                            reason=f"{decision.rule}: score {decision.score:.1f} "
                            f"({', '.join(decision.reasons)})"[:255],
                            candidates=[
                                {"contact_id": int(ref), "score": round(s, 2), "reasons": list(why)}
                                for ref, s, why in decision.candidates
                            ],
                            status="open",
                            created_at=now,
                        )
                    )
                    continue
                contact_id = int(decision.ref) if decision.kind == "match" and decision.ref else int(row.id)
                company = (row.extra or {}).get("company") if isinstance(row.extra, dict) else None
                conn.execute(
                    links.insert().values(
                        tenant_id=self.tenant,
                        source_system=row.source_system,
                        source_id=row.source_id,
                        contact_id=contact_id,
                        account_id=account_ids.get(company_key(company)) if company else None,
                        rule=decision.rule,
                        score=round(min(decision.score, 99.0), 3),
                        decided_by=decided_by,
                        at=now,
                    )
                )
                matcher.add(str(contact_id), buyer)
        return counts

    def open_reviews(self, source_system: str | None = None) -> list[dict[str, Any]]:
        """The review queue (oldest first)."""
        reviews = _table(IdentityReview)
        query = select(reviews).where(reviews.c.tenant_id == self.tenant, reviews.c.status == "open")
        if source_system:
            query = query.where(reviews.c.source_system == source_system)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query.order_by(reviews.c.id))]

    def decide_review(self, review_id: int, contact_id: int | None, *, reviewer: str) -> None:
        """Close a review: the buyer is ``contact_id`` (None: a new person, its own contact)."""
        reviews, links, contacts = _table(IdentityReview), _table(BuyerLink), _table(Contact)
        now = dt.datetime.now(dt.UTC)
        with self.engine.begin() as conn:
            review = conn.execute(
                select(reviews).where(reviews.c.id == review_id, reviews.c.tenant_id == self.tenant)
            ).one_or_none()
            if review is None or review.status != "open":
                raise LookupError(f"no open identity review {review_id}")
            own = conn.execute(
                select(contacts.c.id).where(
                    contacts.c.tenant_id == self.tenant,
                    contacts.c.source_system == review.source_system,
                    contacts.c.source_id == review.source_id,
                )
            ).scalar_one()
            conn.execute(
                links.insert().values(
                    tenant_id=self.tenant,
                    source_system=review.source_system,
                    source_id=review.source_id,
                    contact_id=contact_id or own,
                    rule="review" if contact_id else "new",
                    score=0,
                    decided_by=reviewer[:64],
                    at=now,
                )
            )
            conn.execute(
                reviews.update()
                .where(reviews.c.id == review_id)
                .values(
                    status="matched" if contact_id else "new", decided_contact_id=contact_id, decided_at=now
                )
            )


def _table(model: Any) -> Table:
    return cast(Table, model.__table__)


def _buyer_of(row: Any) -> Buyer:
    return Buyer(
        key=f"{row.source_system}:{row.source_id}",
        name=row.name,
        phone=row.mobile or row.phone,
        email=row.email,
        address=row.address,
    )


def decide_all(buyers: Iterable[Buyer], known: Sequence[tuple[str, Buyer]] = ()) -> list[Decision]:
    """Decide ``buyers`` in order against ``known`` persons and each other (a new buyer becomes a person
    under its own key, a matched one adds to its person): the offline form of :class:`IdentityResolver`."""
    matcher = Matcher()
    for ref, buyer in known:
        matcher.add(ref, buyer)
    out = []
    for buyer in buyers:
        decision = matcher.decide(buyer)
        out.append(decision)
        if decision.kind == "match" and decision.ref:
            matcher.add(decision.ref, buyer)
        elif decision.kind == "new":
            matcher.add(buyer.key, buyer)
    return out
