"""Fuzzing workflow ids and command options: never a file outside the store, never a crash.

Random (and adversarially "nearly right") strings go where users type them:

* a workflow id (`/retrieve_results`, `/workflow status|cancel`) -> `validate_workflow_id`, then the
  store's `get` and `read_result`, against a real store holding results;
* `/results` options (`url`, `since`) -> `parse_since`, then the store's `search` and `count`;
  the autocomplete prefix -> `recent_ids`;
* `/autointel` options -> the workflow's `validate` (syntax and SSRF check), with a resolver whose
  answers hypothesis also chooses.

An audit hook (`sys.addaudithook`, see `audit.py`) records every open, listing, rename, removal,
chmod and SQLite connect in the process, from any thread, while an example runs: each one must be
under the store's folder, and a refused id or URL must touch no file at all. The only exceptions
allowed are the refusals (`InvalidWorkflowId`, `InvalidWorkflowOptions`, `ValueError` from
`parse_since`), and `StoreError("no workflow ...")` for a well-formed id nobody issued.

Async code runs on one event loop per module (hypothesis calls the test body once per example; a
module-scoped loop and store are shared by all examples of a test).
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from yarl import URL

from notifier.cogs.results import parse_since
from notifier.config import AutointelSettings, StorageSettings
from notifier.errors import InvalidWorkflowId, StoreError
from notifier.records import WorkflowRecord, WorkflowStatus, validate_workflow_id
from notifier.store import ResultQuery, ResultStore
from notifier.workflows import InvalidWorkflowOptions
from notifier.workflows.autointel import DEPTHS, build_autointel
from notifier.workflows.netguard import forbidden_reason, parse_host_address

from .audit import outside, touched_paths
from .conftest import FUZZ

ALICE, BOB = 101, 202
KNOWN_ID = "0123456789abcdef0123456789abcdef"
RUNNING_ID = "fedcba9876543210fedcba9876543210"
_HEX32 = re.compile(r"[0-9a-f]{32}")


# ---------------------------------------------------------------------------------------------
# One loop and one store for the module


@dataclass
class World:
    loop: asyncio.AbstractEventLoop
    store: ResultStore
    root: Path

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    loop = asyncio.new_event_loop()
    with tempfile.TemporaryDirectory(prefix="fuzz-store-") as folder:
        root = Path(folder) / "data"
        store = loop.run_until_complete(ResultStore.open(StorageSettings(path=root)))
        current = World(loop, store, root)
        current.run(_fill(store))
        # Warm-up: the first call of each path imports lazily; those opens are not data access.
        current.run(_every_lookup(store, KNOWN_ID))
        current.run(_every_lookup(store, "not an id"))
        current.run(store.search(ResultQuery(url_contains="warm-up", since=0.0)))
        try:
            yield current
        finally:
            current.run(store.close())
            loop.close()


async def _fill(store: ResultStore) -> None:
    now = time.time()
    for workflow_id, user, url in [
        (KNOWN_ID, ALICE, "https://example.com/a_b%c"),
        ("00000000000000000000000000000001", ALICE, "https://shop.example/x"),
        ("00000000000000000000000000000002", BOB, "https://bob.example/"),
    ]:
        await store.create(
            WorkflowRecord(
                workflow_id=workflow_id,
                command="autointel",
                user_id=user,
                options={"url": url, "depth": "quick"},
                created_at=now - 60,
            )
        )
        await store.finish(
            workflow_id, status=WorkflowStatus.COMPLETED, result={"title": "t", "summary": url}
        )
    await store.create(
        WorkflowRecord(workflow_id=RUNNING_ID, command="autointel", user_id=BOB, created_at=now)
    )


async def _every_lookup(store: ResultStore, value: Any) -> list[Any]:
    outcomes: list[Any] = []
    for operation in (store.get, store.read_result):
        try:
            outcomes.append(await operation(value))
        except (InvalidWorkflowId, StoreError) as error:
            outcomes.append(error)
    return outcomes


# ---------------------------------------------------------------------------------------------
# Strategies

_TRICKS = [
    "../", "..", "/", "\\", "\x00", "*", "?", "[", "]", "{", "}", "-", " ", "\t", "\n", "\r",
    "%2e%2e%2f", "%00", "~", "$HOME", "/etc/passwd", "C:\\", ".json", ".tmp", "results/",
    "quarantine/", "index.sqlite3", "'", '"', ";", "--", "%", "_", "ａ", "Ａ", "０", "٣",
    "e\u0301", "ß", "İ", "\u212a", "\u200b", "\ufeff", "\u2028", "💥", "\ud800",
]  # fmt: skip
TRICK = st.sampled_from(_TRICKS)
HEXISH = st.text(alphabet="0123456789abcdefABCDEF-", max_size=40)


@st.composite
def nearly_ids(draw: st.DrawFn) -> str:
    """A real id (stored or not) with a few edits: inserted tricks, case, dashes, cuts."""
    base = draw(st.sampled_from([KNOWN_ID, RUNNING_ID, "f" * 32, draw(HEXISH)]))
    chars = list(base)
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(chars)))
        kind = draw(st.sampled_from(["insert", "replace", "delete", "upper"]))
        if kind == "insert":
            chars.insert(at, draw(TRICK))
        elif chars and kind == "replace":
            chars[at % len(chars)] = draw(TRICK)
        elif chars and kind == "delete":
            del chars[at % len(chars)]
        elif kind == "upper":
            chars = [c.upper() for c in chars]
    text = "".join(chars)
    if draw(st.booleans()):  # a pasted uuid: 8-4-4-4-12
        text = "-".join([text[:8], text[8:12], text[12:16], text[16:20], text[20:]])
    return draw(st.sampled_from(["", " ", "\t"])) + text + draw(st.sampled_from(["", " ", "\n"]))


IDS = st.one_of(
    nearly_ids(),
    HEXISH,
    st.text(max_size=80),
    st.lists(TRICK, max_size=8).map("".join),
    st.text(min_size=60, max_size=10_000),
    st.sampled_from([KNOWN_ID, KNOWN_ID.upper(), " " + KNOWN_ID + " "]),
)
NOT_TEXT = st.one_of(st.none(), st.integers(), st.binary(max_size=40), st.floats())


# ---------------------------------------------------------------------------------------------
# Workflow ids


def _check_lookup(world: World, value: object) -> None:
    try:
        clean = validate_workflow_id(value)
    except InvalidWorkflowId as refused:
        assert str(refused)
        clean = None
    with touched_paths() as touched:
        got, document = world.run(_every_lookup(world.store, value))
    assert outside(touched, str(world.root)) == [], touched
    event("refused" if clean is None else "well-formed" if got is None else "found")
    if clean is None:
        assert isinstance(got, InvalidWorkflowId) and isinstance(document, InvalidWorkflowId)
        assert touched == [], f"a refused id touched files: {touched}"
        return
    assert _HEX32.fullmatch(clean)
    assert not isinstance(got, InvalidWorkflowId | StoreError)
    if got is None:
        assert isinstance(document, StoreError) and "no workflow" in str(document)
    else:
        assert isinstance(got, WorkflowRecord) and got.workflow_id == clean
        if got.status is WorkflowStatus.RUNNING:
            assert isinstance(document, StoreError) and "no stored result" in str(document)
        else:
            assert isinstance(document, dict) and document["workflow_id"] == clean
    for kind, path in touched:  # only ever the file named after the validated id
        if kind == "open":
            assert Path(path).name == f"{clean}.json", (kind, path)


@given(value=IDS)
@FUZZ
def test_random_workflow_ids_never_leave_the_store(world: World, value: str) -> None:
    _check_lookup(world, value)


@given(value=st.one_of(NOT_TEXT, IDS))
@FUZZ
def test_validate_workflow_id_accepts_exactly_32_hex_digits(value: object) -> None:
    with touched_paths() as touched:
        try:
            clean = validate_workflow_id(value)
        except InvalidWorkflowId:
            clean = None
    assert touched == []
    if clean is not None:
        assert _HEX32.fullmatch(clean)
        assert isinstance(value, str)
        assert clean == value.strip().lower().replace("-", "")


# ---------------------------------------------------------------------------------------------
# /results options and the autocomplete prefix

SINCE = st.one_of(
    st.text(max_size=20),
    st.from_regex(r"\s*-?[0-9٣０]{0,400}(\.[0-9]{0,3})?\s*[mhdwsy]?\s*", fullmatch=True),
    st.sampled_from(["9" * 400 + "d", "1e5d", "inf d", "nan h", "1.d", ".5h", "0m", "-3d"]),
)
NEEDLES = st.one_of(
    st.text(max_size=40),
    st.lists(TRICK, max_size=6).map("".join),
    st.sampled_from(["%", "_", "\\", '"', '""', "a_b%c", "NEAR(a b)", "*", "example", "\x00abc"]),
)


@given(user=st.sampled_from([ALICE, BOB, 999]), url=st.none() | NEEDLES, since=st.none() | SINCE)
@FUZZ
def test_results_options_never_crash_and_only_show_the_callers_rows(
    world: World, user: int, url: str | None, since: str | None
) -> None:
    try:
        since_ts = parse_since(since) if since else None
    except ValueError as refused:
        assert "since" in str(refused)
        since_ts = None
    if since_ts is not None:
        assert math.isfinite(since_ts) and since_ts >= 0
    query = ResultQuery(user_id=user, url_contains=url or None, since=since_ts, limit=10)
    with touched_paths() as touched:
        records = world.run(world.store.search(query))
        total = world.run(world.store.count(query))
    assert touched == []
    event("rows found" if records else "no rows")
    assert len(records) <= total
    assert all(r.user_id == user for r in records)
    if url:
        assert all(url.lower() in r.url.lower() for r in records)


@given(user=st.sampled_from([ALICE, BOB]), prefix=st.one_of(HEXISH, st.text(max_size=40), IDS))
@FUZZ
def test_the_autocomplete_prefix_never_crashes(world: World, user: int, prefix: str) -> None:
    with touched_paths() as touched:
        records = world.run(world.store.recent_ids(user, prefix, 25))
    assert touched == []
    assert all(r.user_id == user for r in records)
    cleaned = prefix.strip().lower().replace("-", "")
    assert all(r.workflow_id.startswith(cleaned) for r in records)


# ---------------------------------------------------------------------------------------------
# /autointel options

_URL_PIECES = st.sampled_from(
    [
        "http://", "https://", "HTTP://", "file:///etc/passwd", "javascript:", "//", "@", ":",
        "[", "]", "::1", "::ffff:127.0.0.1", "::ffff:7f00:1", "64:ff9b::a00:1", "2002:7f00:1::",
        "fe80::1%25eth0", "%2e", "#", "?", "/", "\\", ".", "0x7f.1", "0177.0.0.1", "127.1",
        "2130706433", "3232235777", "169.254.169.254", "10.0.0.1", "100.64.0.1", "0.0.0.0",
        "93.184.215.14", "8.8.8.8", "public.test", "rebind.test", "localhost", "intranet.test",
        ".test", ":80", ":0", ":65536", "user:pw@", "①", "é", "\x00", " ", "\u200b", "a" * 300,
    ]
)  # fmt: skip
URLISH = st.lists(_URL_PIECES, max_size=10).map("".join)
NAMES = ["public.test", "rebind.test", "localhost", "intranet.test"]


# Mostly public addresses, so that acceptance (not only refusal) is exercised.
PUBLIC = st.one_of(
    st.ip_addresses(network="93.184.0.0/16"),
    st.ip_addresses(network="2606:4700::/32"),
    st.sampled_from([ipaddress.ip_address(a) for a in ("8.8.8.8", "1.1.1.1", "2001:4860::8888")]),
)


def _host_text(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if address.version == 6:
        return f"[{address}]"
    spelling = int(address)
    return str(address) if spelling % 3 else str(spelling)  # sometimes the decimal form


@st.composite
def well_formed_urls(draw: st.DrawFn) -> str:
    """http(s)://host[:port]/path with the host a name, a literal (any spelling) or an address
    hypothesis picks: these get past the syntax check, so the address policy decides."""
    host = draw(
        st.one_of(
            st.sampled_from([*NAMES, "public.test.", "0x7f.1", "127.1", "0177.0.0.1"]),
            st.ip_addresses().map(_host_text),
            PUBLIC.map(_host_text),
        )
    )
    port = draw(st.sampled_from(["", ":80", ":443", ":8080"]))
    path = draw(st.sampled_from(["", "/", "/a?b=c", "/%2e%2e/x", "/#frag"]))
    return f"{draw(st.sampled_from(['http', 'https', 'HTTP']))}://{host}{port}{path}"


@st.composite
def dns(draw: st.DrawFn) -> dict[str, list[str]]:
    """Answers of the fake resolver for this example: some names public, some not."""
    addresses = st.lists(st.one_of(st.ip_addresses(), PUBLIC).map(str), min_size=0, max_size=3)
    return {name: draw(addresses) for name in NAMES if draw(st.booleans())}


def _resolver(answers: dict[str, list[str]]) -> Any:
    async def resolve(host: str) -> list[str]:
        await asyncio.sleep(0)
        found = answers.get(host.rstrip(".").lower())
        if found is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return found

    return resolve


_VALUES = st.one_of(
    well_formed_urls(), URLISH, st.text(max_size=40), st.sampled_from([*DEPTHS, "QUICK", " deep "])
)
OPTIONS = st.one_of(
    st.fixed_dictionaries(
        {"url": st.one_of(well_formed_urls(), _VALUES)},
        optional={"depth": st.one_of(st.sampled_from([*DEPTHS, "QUICK", " deep "]), _VALUES)},
    ),
    st.dictionaries(
        st.one_of(st.sampled_from(["url", "depth"]), st.text(max_size=6)), _VALUES, max_size=3
    ),
)


@given(options=OPTIONS, answers=dns())
@FUZZ
def test_autointel_options_never_crash_touch_no_file_and_pass_only_public_hosts(
    world: World, options: dict[str, str], answers: dict[str, list[str]]
) -> None:
    workflow = build_autointel(AutointelSettings(), resolver=_resolver(answers))
    with touched_paths() as touched:
        try:
            clean = world.run(workflow.validate(options))
        except InvalidWorkflowOptions as refused:
            assert refused.field in {"url", "depth"} | {str(k)[:40] for k in options}
            assert refused.message
            if refused.field in ("url", "depth"):  # what a user typed: shown back as one line
                assert len(refused.message.splitlines()) == 1, refused.message
            clean = None
    assert touched == [], touched
    event("refused" if clean is None else "accepted")
    if clean is None:
        return
    assert set(clean) == {"url", "depth"} and clean["depth"] in DEPTHS
    # The SSRF property: whatever was accepted means only public internet addresses.
    host = URL(clean["url"]).raw_host
    assert host
    literal = parse_host_address(host)
    judged = [literal] if literal is not None else answers[host.rstrip(".").lower()]
    assert judged, "an accepted name must have resolved"
    for address in judged:
        assert forbidden_reason(ipaddress.ip_address(str(address).split("%")[0])) is None
