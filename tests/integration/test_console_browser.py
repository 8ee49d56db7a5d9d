"""The web console in a real headless Chromium (Debian's ``chromium``, driven
by Playwright with ``executable_path``; no browser is downloaded): create a
topic, produce from the page, see the record in the message table and in
the live tail, watch a group's lag rise and fall as confluent-kafka produces
and consumes, reset its offsets (dry run, then apply). A screenshot of each
page is written to ``$ODRADEK_SCREENSHOTS`` (default: the test's tmp dir)."""

from __future__ import annotations

import os
import shutil
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import odradek

CHROMIUM = shutil.which("chromium")
pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")]


@pytest.fixture(scope="module")
def broker():
    with odradek.Broker(config={"http.listener": "127.0.0.1:0", "group.initial.rebalance.delay.ms": "0"}) as b:
        yield b


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path):
    where = os.environ.get("ODRADEK_SCREENSHOTS") or str(tmp_path)
    os.makedirs(where, exist_ok=True)

    def shot(page, name):
        path = os.path.join(where, f"console-{name}.png")
        page.screenshot(path=path, full_page=True)
        assert os.path.getsize(path) > 5000
        return path

    return shot


def test_console_in_a_browser(broker, browser, shots):
    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)  # room for a loaded CI machine; each wait ends as soon as it holds
    base = "http://%s:%d" % broker.http_address
    ctx = browser.new_context(viewport={"width": 1366, "height": 768})
    ctx.set_default_timeout(20_000)
    page = ctx.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    # Create a topic from the topic list.
    page.goto(base + "/topics")
    page.click("text=Create a topic")
    page.fill("#create-topic input[name=name]", "browsed")
    page.fill("#create-topic input[name=partitions]", "2")
    page.click("#create-topic button[type=submit]")
    expect(page.locator("#topic-name")).to_have_text("browsed")
    expect(page.locator(".notice")).to_have_text("Created topic browsed")
    expect(page.locator("#partitions tbody tr")).to_have_count(2)

    # A second tab tails the topic live while the first produces from its form.
    tail = ctx.new_page()
    tail.goto(base + "/topics/browsed/messages")
    tail.click("#tail-toggle")
    expect(tail.locator("#tail-status")).to_have_text("live")
    page.goto(base + "/topics/browsed/messages")
    page.fill("#produce input[name=partition]", "1")
    page.fill("#produce input[name=key]", "order-1")
    page.fill("#produce textarea[name=value]", '{"item": "<b>tea</b>", "qty": 2}')
    page.fill("#produce textarea[name=headers]", "source=browser")
    page.click("#produce button[type=submit]")
    expect(page.locator(".notice")).to_have_text("Produced to partition 1 at offset 0")
    row = page.locator("#records tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator("td.key")).to_have_text("order-1")
    expect(row.locator("td.value")).to_contain_text('"item": "<b>tea</b>"')  # shown as text, not markup
    expect(row.locator("td.headers")).to_have_text("source=browser")
    live = tail.locator("#tail tr")
    expect(live).to_have_count(1)
    expect(live.locator("td.key")).to_have_text("order-1")
    shots(tail, "messages")

    # A group's lag rises as records arrive and falls as it consumes them.
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "shoppers",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(["browsed"])
    got = 0
    deadline = time.monotonic() + 20
    while got < 1 and time.monotonic() < deadline:
        m = consumer.poll(0.2)
        got += m is not None and m.error() is None
    consumer.commit(offsets=[TopicPartition("browsed", 0, 0), TopicPartition("browsed", 1, 1)], asynchronous=False)
    page.goto(base + "/groups/shoppers")
    expect(page.locator("#total-lag")).to_have_text("0")
    for i in range(30):
        producer.produce("browsed", key=b"k%d" % i, value=b"v%d" % i, partition=i % 2)
    assert producer.flush(10) == 0
    expect(page.locator("#total-lag")).to_have_text("30")  # refreshed in place, no reload
    expect(page.locator("#group-state")).to_have_text("Stable")
    shots(page, "group")
    while got < 31 and time.monotonic() < deadline + 20:
        m = consumer.poll(0.2)
        got += m is not None and m.error() is None
    consumer.commit(asynchronous=False)
    expect(page.locator("#total-lag")).to_have_text("0")
    expect(page.locator("#lag-history polyline")).to_have_count(1)  # the lag while the page was watched
    consumer.close()
    expect(page.locator("#group-state")).to_have_text("Empty")

    # Reset its offsets: the dry run shows the plan, applying it brings the lag back.
    page.select_option("#reset select[name=to]", "earliest")
    page.click("#reset button[type=submit]")
    expect(page.locator("#plan .new-offset")).to_have_text(["0", "0"])
    expect(page.locator("#total-lag")).to_have_text("0")  # nothing changed yet
    shots(page, "reset-plan")
    page.click("#apply-reset button[type=submit]")
    expect(page.locator(".notice")).to_have_text("Reset 2 partition(s)")
    expect(page.locator("#total-lag")).to_have_text("31")

    for path, name in (("/", "overview"), ("/topics", "topics"), ("/topics/browsed", "topic"),
                       ("/groups", "groups")):
        page.goto(base + path)
        expect(page.locator("h1")).to_be_visible()
        shots(page, name)
    dark = browser.new_context(viewport={"width": 1366, "height": 768}, color_scheme="dark").new_page()
    dark.goto(base + "/topics/browsed/messages?partition=1&offset=0")
    assert dark.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(21, 24, 29)"
    shots(dark, "messages-dark")
    assert errors == []
    ctx.close()
