"""`validate` of the autointel workflow: every bad option becomes InvalidWorkflowOptions naming it.

No network: names go through an injected resolver (`refusing_resolver` knows no name at all).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifier.config import AutointelSettings
from notifier.errors import NotifierError
from notifier.workflows import InvalidWorkflowOptions, WorkflowFailed, WorkflowSpec
from notifier.workflows.autointel import DEFAULT_DEPTH, DEPTHS, NAME, build_autointel

from .conftest import fake_resolver, refusing_resolver


def make_spec(*, allow_private: bool = False) -> WorkflowSpec:
    return build_autointel(
        AutointelSettings(allow_private_networks=allow_private), resolver=fake_resolver
    )


async def invalid(
    options: dict[str, str], *, allow_private: bool = False
) -> InvalidWorkflowOptions:
    with pytest.raises(InvalidWorkflowOptions) as caught:
        await make_spec(allow_private=allow_private).validate(options)
    return caught.value


def test_the_spec_describes_itself() -> None:
    workflow = make_spec()
    assert workflow.name == NAME == "autointel"
    assert workflow.description
    assert issubclass(InvalidWorkflowOptions, NotifierError)
    assert issubclass(WorkflowFailed, NotifierError)


def test_resolver_and_guard_are_exclusive() -> None:
    from notifier.workflows.netguard import NetGuard

    with pytest.raises(TypeError):
        build_autointel(AutointelSettings(), resolver=fake_resolver, guard=NetGuard())


@pytest.mark.parametrize("depth", DEPTHS)
async def test_each_depth_is_accepted(depth: str) -> None:
    options = await make_spec().validate({"url": "http://public.test/", "depth": depth})
    assert options == {"url": "http://public.test/", "depth": depth}


async def test_depth_is_normalised_and_defaults() -> None:
    workflow = make_spec()
    assert (await workflow.validate({"url": "http://public.test/", "depth": " Deep "}))[
        "depth"
    ] == "deep"
    assert (await workflow.validate({"url": "http://public.test/"}))["depth"] == DEFAULT_DEPTH


async def test_url_is_normalised() -> None:
    options = await make_spec().validate({"url": "  HTTP://Public.TEST/a#frag ", "depth": "quick"})
    assert options["url"] == "http://public.test/a"


@pytest.mark.parametrize("depth", ["bottomless", "", "quick!", "QUICKER", "1", "deep deep"])
async def test_bad_depth_names_depth(depth: str) -> None:
    error = await invalid({"url": "http://public.test/", "depth": depth})
    assert error.field == "depth"
    assert "quick, standard, deep, comprehensive" in error.message


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("file:///etc/passwd", "only http:// and https://"),
        ("ftp://public.test/", "only http:// and https://"),
        ("javascript:alert(1)", "only http:// and https://"),
        ("http://user:pass@public.test/", "user name or password"),
        ("http://" + "a" * 2050 + ".test/", "limit is 2048"),
        ("http:///nohost", "has no host"),
        ("public.test", "http:// or https://"),
        ("", "empty"),
        ("http://127.0.0.1/", "loopback"),
        ("http://0x7f.1/", "loopback"),
        ("http://2130706433/", "loopback"),
        ("http://0177.0.0.1/", "loopback"),
        ("http://127.1/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "IPv4-mapped"),
        ("http://169.254.169.254/", "link-local"),
        ("http://10.0.0.1/", "private"),
        ("http://intranet.test/", "10.0.0.5"),
        ("http://dual.test/", "10.0.0.5"),
        ("http://localhost/", "loopback"),
        ("http://nowhere.test/", "could not be found"),
    ],
)
async def test_bad_url_names_url(url: str, fragment: str) -> None:
    error = await invalid({"url": url, "depth": "quick"})
    assert error.field == "url"
    assert fragment in error.message
    assert str(error).startswith("url: ")


async def test_private_addresses_pass_when_allowed() -> None:
    options = await make_spec(allow_private=True).validate(
        {"url": "http://10.0.0.1/", "depth": "quick"}
    )
    assert options["url"] == "http://10.0.0.1/"
    error = await invalid({"url": "file:///etc/passwd"}, allow_private=True)
    assert error.field == "url"


async def test_missing_url_and_unknown_options() -> None:
    assert (await invalid({"depth": "quick"})).field == "url"
    error = await invalid({"url": "http://public.test/", "depth": "quick", "colour": "blue"})
    assert error.field == "colour"


# ---------------------------------------------------------------------------------------------
# Fuzzing: random options never crash validate


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


_PIECES = st.sampled_from(
    [
        "http://", "https://", "HTTP://", "file:", "javascript:", "ftp://", "//", "http:", "@",
        ":", "::", "[", "]", "%25", "%", "#", "?", "/", "\\", ".", "..", "0x", "0", "07", "127",
        "1", "255", "256", "4294967296", "2130706433", "0177", "localhost", "example", ".com",
        "xn--", "ff02", "fe80", "::ffff:", "64:ff9b::", "2002:", ":80", ":0", ":99999", "user:pw",
        "①", "ＬＯＣＡＬＨＯＳＴ", "é", "\x00", " ", "\t", "\u200b", "a" * 300,
    ]
)  # fmt: skip
_URLISH = st.lists(_PIECES, max_size=12).map("".join)
_TEXT = st.one_of(_URLISH, st.text(max_size=60))
_OPTIONS = st.dictionaries(
    st.one_of(st.sampled_from(["url", "depth"]), st.text(max_size=8)),
    _TEXT,
    max_size=3,
)


@given(options=_OPTIONS)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_options_never_crash_validate(
    loop: asyncio.AbstractEventLoop, options: dict[str, str]
) -> None:
    workflow = build_autointel(AutointelSettings(), resolver=refusing_resolver)
    try:
        normalised = loop.run_until_complete(workflow.validate(options))
    except InvalidWorkflowOptions as error:
        assert error.field in {"url", "depth"} | {key[:40] for key in options}
        assert error.message
        return
    # Success is only possible for a public literal address (no name resolves here).
    assert set(normalised) == {"url", "depth"}
    assert normalised["depth"] in DEPTHS
    assert normalised["url"].startswith(("http://", "https://"))
