"""The console in a real headless Chromium (Debian's `chromium`, driven by
Playwright's Python API; nothing is downloaded) against a real router in front
of emulators: what a person at the page sees, as requests flow, as a container
dies and comes back, with and without keys, when the router restarts."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.console.support import DEMO_CATALOG, FAST, LLAMA, Load, chat, keyed_fleet, metrics, start_router, total
from tests.harness import REPO, free_port, router_fleet

async_api = pytest.importorskip("playwright.async_api", reason="pip package playwright (the test extra) is not installed")
expect = async_api.expect

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CONTAINERS = ("llama-a", "llama-b", "qwen", "embed")
MODELS = ("llama3.2:3b", "qwen2.5:7b", "nomic-embed-text:latest")
EVENTUALLY = 15_000  # ms: for what has no deadline of its own
P = "ollama_router_"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (./scripts/test installs it when run as root)")
    async with async_api.async_playwright() as playwright:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium will not sandbox itself as root
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        yield launched
        await launched.close()


@dataclass
class Console:
    """One browser tab on the console, and what its console said."""

    page: Any
    problems: list[str] = field(default_factory=list)

    def card(self, name: str) -> Any:
        return self.page.locator(f'article[data-container="{name}"]')

    def row(self, tag: str) -> Any:
        return self.page.locator(f'#models tr[data-model="{tag}"]')

    async def number(self, locator: Any) -> float:
        text = await locator.inner_text()
        return float(text.replace(",", "")) if re.fullmatch(r"[\d.,]+", text) else 0.0


@pytest_asyncio.fixture(loop_scope="module")
async def open_console(browser: Any) -> AsyncIterator[Any]:
    contexts = []

    async def open_(url: str, width: int = 1280, height: int = 800) -> Console:
        context = await browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = await context.new_page()
        console = Console(page)
        page.on("console", lambda message: console.problems.append(message.text) if message.type in ("error", "warning") else None)
        page.on("pageerror", lambda error: console.problems.append(f"uncaught: {error}"))
        await page.goto(url + "/ui/")
        return console

    yield open_
    for context in contexts:
        await context.close()


async def test_the_page_shows_the_demo_fleet_and_its_numbers_move_and_match(open_console: Any, tmp_path: Path) -> None:
    async with router_fleet(DEMO_CATALOG, settings=FAST, emulator={"tokens_per_second": 60.0}) as fleet:
        await fleet.wait_warm()
        console = await open_console(fleet.url)
        page = console.page
        await expect(page.locator("#link-text")).to_have_text("live", timeout=EVENTUALLY)
        await expect(page.locator("article.card")).to_have_count(len(CONTAINERS))
        for name in CONTAINERS:
            card = console.card(name)
            await expect(card.locator(".pill")).to_have_text("up")
            await expect(card.locator(".gpus")).to_have_text(re.compile(r"GPU \d"))
            await expect(card.locator(".meta")).to_contain_text("Ollama 0.")
            await expect(card.locator(".held td").first).not_to_have_text("no model loaded", timeout=EVENTUALLY)
        await expect(console.card("qwen").locator(".held")).to_contain_text(re.compile(r"qwen2\.5:7b.*GiB.*\d+h \d+m", re.S))
        await expect(page.locator("#models tbody tr")).to_have_count(len(MODELS))
        await expect(console.row(LLAMA).locator('[data-cell="containers"]')).to_contain_text("llama-a")
        await expect(console.row(LLAMA).locator('[data-cell="fallback"]')).to_have_text("qwen2.5:7b")
        await expect(console.row(LLAMA).locator('[data-cell="context"]')).to_have_text("128K")
        await expect(console.row(LLAMA).locator('[data-cell="model"]')).to_contain_text("gpt-4o-mini")
        await expect(page.locator("#events li").first).to_be_visible()  # the start-up transitions

        # requests flow: the numbers move
        load = Load(fleet, [LLAMA, "qwen2.5:7b"], concurrency=3)
        try:
            await expect(console.row(LLAMA).locator('[data-cell="rps"]')).not_to_have_text("0", timeout=EVENTUALLY)
            await expect(console.card("qwen").locator(".bar .value").first).not_to_have_text("0/4", timeout=EVENTUALLY)
            await expect(page.locator('[data-total="tokens_per_s"]')).not_to_have_text("0", timeout=EVENTUALLY)
            await expect(console.card("llama-a").locator('[data-stat="ttft"]')).to_have_text(re.compile(r"\d+ / \d+ ms|s$"), timeout=EVENTUALLY)
            # both llama containers busy for a while: qwen serves llama's requests as its fallback; one stream breaks
            for name in ("llama-a", "llama-b"):
                await fleet.backends[name].add_fault("busy", count=-1, model=LLAMA)
            await expect(page.locator('#events li[data-kind="fallback_served"]').first).to_contain_text(
                "llama3.2:3b served by qwen2.5:7b on qwen", timeout=EVENTUALLY)
            for name in ("llama-a", "llama-b"):
                await fleet.backends[name].clear_faults()
            await fleet.backends["qwen"].add_fault("cut", count=1, model="qwen2.5:7b", after_tokens=3)
            await expect(page.locator('#events li[data-kind="stream_broken"]')).to_have_count(1, timeout=EVENTUALLY)
            await expect(page.locator('[data-total="errors"]')).to_have_text("1", timeout=EVENTUALLY)
            await expect(page.locator('[data-total="fallbacks"]')).not_to_have_text("0", timeout=EVENTUALLY)
            await page.wait_for_timeout(2000)  # the sparklines fill a little: the picture under load
            await page.screenshot(path=tmp_path / "console.png", full_page=True)
            (Path(REPO) / "bench-results").mkdir(exist_ok=True)
            await page.screenshot(path=Path(REPO) / "bench-results" / "console.png", full_page=True)
        finally:
            await load.stop()

        # quiet again: what the page shows is what /router/status and /metrics say
        status = await fleet.status()
        samples = await metrics(fleet)
        for c in status["containers"]:
            card = console.card(c["name"])
            await expect(card.locator(".meta")).to_contain_text(f"served {c['served']:,}", timeout=EVENTUALLY)
            await expect(card.locator(".bar .value").first).to_have_text(f"{c['in_flight']}/{c['limit']}")
        fallbacks = int(total(samples, P + "fallbacks_total"))
        await expect(page.locator('[data-total="fallbacks"]')).to_have_text(f"{fallbacks:,}", timeout=EVENTUALLY)
        await expect(console.row(LLAMA).locator('[data-cell="fallbacks"]')).to_have_text(f"{fallbacks:,}")
        for tag in (LLAMA, "qwen2.5:7b"):
            answered = int(total(samples, P + "requests_total", model=tag))
            await expect(console.row(tag).locator('[data-cell="rps"]')).to_have_attribute(
                "title", f"{answered} requests in the last 60 s", timeout=EVENTUALLY)
        assert console.problems == []


async def test_a_killed_container_shows_down_within_two_health_intervals_then_up(open_console: Any) -> None:
    interval = 1.0
    settings = {**FAST, "health_interval": interval}
    async with router_fleet(DEMO_CATALOG, settings=settings, subprocess_containers={"llama-b"}) as fleet:
        console = await open_console(fleet.url)
        card = console.card("llama-b")
        await expect(card.locator(".pill")).to_have_text("up", timeout=EVENTUALLY)
        fleet.backends["llama-b"].kill()  # SIGKILL
        await expect(card.locator(".pill")).to_have_text("down", timeout=2 * interval * 1000)
        await expect(card.locator(".pill")).to_have_attribute("aria-label", "state: down")  # not colour alone
        await expect(card.locator(".detail")).to_contain_text("down since")
        await expect(console.page.locator('#events li[data-kind="container_down"]').first).to_contain_text("llama-b is down")
        assert await chat(fleet, "gpt-4o-mini") == 200  # its sibling serves

        await fleet.backends["llama-b"].restart()
        await expect(card.locator(".pill")).to_have_text("up", timeout=2 * interval * 1000)
        newest = console.page.locator("#events li").first
        await expect(console.page.locator('#events li[data-kind="container_up"]').first).to_contain_text("llama-b is up (was down)")
        assert await newest.get_attribute("data-kind") in ("container_up", "keepwarm_reload")
        assert console.problems == []


async def test_keys_the_prompt_a_wrong_key_a_team_key_and_an_admin_key(open_console: Any, tmp_path: Path) -> None:
    async with keyed_fleet(tmp_path, DEMO_CATALOG) as keyed:
        console = await open_console(keyed.fleet.url)
        page = console.page
        dialog = page.locator("#key-dialog")
        await expect(dialog).to_be_visible(timeout=EVENTUALLY)  # no key: the prompt
        await expect(dialog).to_contain_text("needs an API key")
        await expect(page.locator("#key-input")).to_be_focused()

        await page.keyboard.type("olr-this-is-not-a-key")
        await page.keyboard.press("Enter")
        await expect(page.locator("#key-error")).to_contain_text("refused this key: invalid API key", timeout=EVENTUALLY)
        await expect(dialog).to_be_visible()

        await page.keyboard.type(keyed.keys["team"])
        await page.keyboard.press("Enter")
        await expect(dialog).to_be_hidden()
        await expect(page.locator("#link-text")).to_have_text("live", timeout=EVENTUALLY)
        await expect(page.locator("#viewer-text")).to_have_text("key team (its own models only)")
        await expect(page.locator("article.card")).to_have_count(2)
        await expect(console.card("llama-a")).to_be_visible()
        await expect(console.card("llama-b")).to_be_visible()
        await expect(page.locator("#models tbody tr")).to_have_count(1)
        await expect(console.row(LLAMA)).to_be_visible()
        text = await page.locator("body").inner_text()
        assert not re.search(r"qwen|embed|nomic|\bops\b|127\.0\.0\.1", text), text

        await page.reload()  # the key is kept for this tab
        await expect(page.locator("#viewer-text")).to_have_text("key team (its own models only)", timeout=EVENTUALLY)
        await page.locator("#change-key").click()
        await expect(dialog).to_be_visible()
        await page.locator("#key-input").fill(keyed.keys["ops"])
        await page.locator("#key-input").press("Enter")
        await expect(page.locator("#viewer-text")).to_have_text("key ops (admin)", timeout=EVENTUALLY)
        await expect(page.locator("article.card")).to_have_count(len(CONTAINERS))
        await expect(page.locator("#models tbody tr")).to_have_count(len(MODELS))


async def test_the_page_reconnects_by_itself_when_the_router_restarts(open_console: Any) -> None:
    async with router_fleet(DEMO_CATALOG, settings=FAST) as fleet:
        port = free_port()
        router = await start_router(fleet.catalog, port)
        try:
            console = await open_console(router.url)
            link = console.page.locator("#link-text")
            await expect(link).to_have_text("live", timeout=EVENTUALLY)
            await router.close()
            await expect(link).to_contain_text("retrying", timeout=EVENTUALLY)
            await expect(console.card("llama-a")).to_be_visible()  # the last state stays on screen meanwhile
            await expect(console.page.locator('#events li[data-kind="container_up"]')).to_have_count(len(CONTAINERS))
            router = await start_router(fleet.catalog, port)
            await expect(link).to_have_text("live", timeout=EVENTUALLY)
            # the new router's own start-up events join the old ones (its ids are its own: nothing is skipped)
            ups = console.page.locator('#events li[data-kind="container_up"]')
            await expect(ups).to_have_count(2 * len(CONTAINERS), timeout=EVENTUALLY)
        finally:
            await router.close()


async def test_keyboard_and_a_phone_s_width(open_console: Any) -> None:
    async with router_fleet(DEMO_CATALOG, settings=FAST) as fleet:
        console = await open_console(fleet.url, width=390, height=844)
        page = console.page
        await expect(page.locator("article.card")).to_have_count(len(CONTAINERS), timeout=EVENTUALLY)
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than a phone"
        # Tab goes to the skip link, every container card, the models table, the filter and the event list, in order
        reached = []
        for _ in range(8):
            await page.keyboard.press("Tab")
            reached.append(await page.evaluate(
                "(e => e.dataset.container || e.id || e.className)(document.activeElement)"))
        assert reached == ["skip", *CONTAINERS, "scroll", "event-filter", "events"]
        await page.locator("#event-filter").fill("llama-b")
        await expect(page.locator("#events li:not([hidden])")).to_have_count(1)
        assert console.problems == []
