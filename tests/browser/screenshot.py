"""Take README's screenshot of the demo inbox with a few live messages:

python -m tests.browser.screenshot docs/demo.png
"""

from __future__ import annotations

import json
import sys
import urllib.request

from tests.browser.chromium import chromium_paths, event_ids, start_chromium, status, wait_for
from tests.credentials import API_KEY, JWT_SECRET, token
from tests.servers import RelayProcess

CONVERSATION = [
    ("5511900000303", {"text": "Oi! Meu pedido ainda não chegou", "from": "Ana Souza"}),
    (
        "5511900000303",
        {"text": "Oi Ana! Vou verificar agora.", "from": "agent-1", "direction": "out"},
    ),
    ("447700900123", {"text": "Hi, can I change my delivery address?", "from": "Tom"}),
    ("5511900000303", {"text": "Pedido #4821", "from": "Ana Souza"}),
    ("5511900000303", {"text": "Saiu para entrega às 14h", "from": "agent-1", "direction": "out"}),
    ("5521988887777", {"text": "Bom dia! Vocês abrem sábado?", "from": "Carlos"}),
    (
        "447700900123",
        {"text": "Sure: reply with the new one.", "from": "agent-1", "direction": "out"},
    ),
]


def publish(base: str, chat: str, data: dict) -> None:
    event = {"account": "acme", "type": "message.created", "chat_id": chat, "data": data}
    request = urllib.request.Request(
        f"{base}/api/publish",
        data=json.dumps(event).encode(),
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10).close()


def main(path: str) -> None:
    paths = chromium_paths()
    if paths is None:
        raise SystemExit(
            "needs chromium and chromedriver (apt-get install -y chromium chromium-driver)"
        )
    env = {"RELAY_DEMO": "1", "RELAY_JWT_SECRET": JWT_SECRET, "RELAY_API_KEYS": API_KEY}
    relay = RelayProcess(env).start()
    browser = start_chromium(*paths)
    try:
        metrics = {"width": 1100, "height": 760, "deviceScaleFactor": 1, "mobile": False}
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        browser.get(f"{relay.url}/demo?token={token()}")
        wait_for(browser, lambda d: status(d) == "live", "status live")
        for chat, data in CONVERSATION:
            publish(relay.url, chat, data)
        wait_for(browser, lambda d: len(event_ids(d)) == len(CONVERSATION), "the messages")
        browser.save_screenshot(path)
    finally:
        browser.quit()
        relay.stop()
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/demo.png")
