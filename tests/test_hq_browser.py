"""`tenpo hq --serve` in a real headless Chromium (Debian's chromium package), driven through its
DevTools protocol with aiohttp's websocket client: the page renders the stores table and a key
pressed in the browser reaches the monitor.

The page draws the terminal on a canvas, so the text is read where it enters the page: a script
installed before the page loads keeps a copy of what the monitor sends over the page's websocket
(what xterm.js is given to draw). A screenshot checks that the canvas is painted.
"""

from __future__ import annotations

import asyncio
import base64
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tenpo.cloud.db import Central
from tenpo.cloud.hq import sim
from tenpo.sandbox import Process, free_port, wait_for_port
from tests.support.operators import PASSWORD, make_operator

CHROMIUM = shutil.which("chromium") or "chromium"
KEEP_TERMINAL_OUTPUT = """
window.__tenpo = "";
const decoder = new TextDecoder();
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", (event) => {
      if (typeof event.data !== "string") window.__tenpo += decoder.decode(event.data, {stream: true});
    });
  }
};
"""
# The screenshot decoded by the browser itself: how many distinct colours it holds.
COUNT_COLOURS = """
new Promise((resolve) => {
  const image = new Image();
  image.onload = () => {
    const canvas = document.createElement("canvas");
    canvas.width = image.width; canvas.height = image.height;
    const context = canvas.getContext("2d");
    context.drawImage(image, 0, 0);
    const pixels = context.getImageData(0, 0, image.width, image.height).data;
    const seen = new Set();
    for (let i = 0; i < pixels.length; i += 4) seen.add((pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2]);
    resolve(seen.size);
  };
  image.src = "data:image/png;base64,DATA";
})
"""
ANSI = re.compile(r"\x1b\][^\x07]*\x07|\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78]")


class DevTools:
    """Just enough of the Chrome DevTools protocol: numbered commands, replies matched by id."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.next_id = 0

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.socket.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            message = await self.socket.receive_json(timeout=30)
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result["result"].get("value")

    async def enter(self) -> None:
        for kind in ("keyDown", "keyUp"):
            extra = {"text": "\r"} if kind == "keyDown" else {}
            await self.send("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter", windowsVirtualKeyCode=13,
                            **extra)  # fmt: skip

    async def key(self, char: str) -> None:
        code = ord(char.upper())
        for kind in ("keyDown", "keyUp"):
            extra = {"text": char} if kind == "keyDown" else {}
            await self.send("Input.dispatchKeyEvent", type=kind, key=char, code=f"Key{char.upper()}",
                            windowsVirtualKeyCode=code, **extra)  # fmt: skip


async def until(predicate: Any, what: str, timeout: float = 30.0) -> Any:
    """Await a condition the page reaches on its own (``timeout`` only stops a broken test)."""
    started = time.monotonic()
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[DevTools]:
    profile = tmp_path / "chromium"
    port = free_port()
    chromium = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
         f"--user-data-dir={profile}", f"--remote-debugging-port={port}", "--window-size=1200,800", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, timeout=60)
        async with aiohttp.ClientSession() as session:
            async def page_target() -> Any:
                async with session.get(f"http://127.0.0.1:{port}/json/list") as reply:
                    return next((t for t in await reply.json() if t.get("type") == "page"), None)

            target = await until(page_target, "chromium's page")
            async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as socket:
                yield DevTools(socket)
    finally:
        chromium.kill()
        chromium.wait()


def terminal_text(raw: str) -> str:
    return ANSI.sub("", raw)


async def test_the_served_monitor_renders_the_stores_table_and_answers_a_key(tmp_path: Path, browser: DevTools) -> None:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    db = Central(url)
    sim.seed_stores(db, 5)
    db.close()
    make_operator(url, "watcher", "viewer")  # each browser session signs in first (issue 14)
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    # Plain HTTP only on loopback (beyond it --serve needs --https-cert/--https-key: tests/test_operators.py).
    server = Process(["hq", "--serve", "--db", url, "--broker", "none", "--host", "127.0.0.1", "--port", str(port),
                      "--public-url", public], tmp_path / "serve.log").start()  # fmt: skip
    try:
        wait_for_port(port, timeout=60)
        async with aiohttp.ClientSession() as session, session.get(public) as reply:
            page = await reply.text()
        assert f"ws://127.0.0.1:{port}/ws" in page and "0.0.0.0" not in page, "the page points at the public URL"

        await browser.send("Page.enable")
        await browser.send("Page.addScriptToEvaluateOnNewDocument", source=KEEP_TERMINAL_OUTPUT)
        await browser.send("Page.navigate", url=public)

        async def shown(*words: str) -> str | None:
            text = terminal_text(await browser.evaluate("window.__tenpo || ''") or "")
            return text if all(w in text for w in words) else None

        async def grown(length: int) -> bool:
            return bool(await browser.evaluate("(window.__tenpo || '').length") > length)

        signin = await until(lambda: shown("sign in", "password"), "the sign-in screen first")
        assert "S001" not in signin and "Backlog" not in signin, "nothing of HQ before the sign-in"
        await browser.evaluate("document.querySelector('.xterm-helper-textarea').focus()")
        for field, echo in (("watcher", "watcher"), (PASSWORD, "•" * len(PASSWORD))):  # a viewer: no TOTP code
            await browser.send("Input.insertText", text=field)
            await until(lambda echo=echo: shown(echo), f"{echo[:8]} typed")
            painted = await browser.evaluate("(window.__tenpo || '').length")
            await browser.enter()  # the name's Enter moves the focus to the password: await its repaint
            await until(lambda painted=painted: grown(painted), "the app to take the Enter")
        text = await until(lambda: shown("Backlog", "S001", "S005"), "the stores table in the browser")
        assert "⭘" not in text and "≡" in text, "no header icon a browser font lacks"
        # After the sign-in the stores table has the focus, as in a terminal: its own Enter hides "Store detail".
        await until(lambda: shown("Dead letters", "Charts", "Screenshot"), "the footer's key hints")

        await browser.evaluate("document.querySelector('.xterm-helper-textarea').focus()")
        await browser.key("d")
        await until(lambda: shown("r retry", "Open/all"), "the dead letters view and its key hints after pressing d")

        shot = await browser.send("Page.captureScreenshot", format="png")
        png = base64.b64decode(shot["data"])
        (tmp_path / "browser.png").write_bytes(png)
        colours = await browser.evaluate(COUNT_COLOURS.replace("DATA", shot["data"]))
        assert colours > 4, "the terminal canvas is painted (text, header, footer in their colours)"
    finally:
        server.kill()
