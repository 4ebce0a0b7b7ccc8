"""Opens URL (the dashboard) in headless Chromium, runs SCRIPT in the page once it has loaded,
and waits for the download the page then starts. Prints three lines: the downloaded file's
path, the name the page gave it, and the page's capture state; or exits 1 saying why.

Usage: click.py URL SCRIPT DOWNLOAD_DIR SECONDS [CHROMIUM_PREFIX...]

Chromium is driven over the DevTools protocol on --remote-debugging-pipe (commands on fd 3,
answers and events on fd 4, each message JSON ended by a NUL byte), so nothing but the
Python standard library is needed. CHROMIUM_PREFIX (say `ip netns exec NS`) goes in front of
the chromium command.
"""

import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time

url, script, downloads, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
prefix = sys.argv[5:]
deadline = time.monotonic() + seconds

to_chrome_r, to_chrome_w = os.pipe()
from_chrome_r, from_chrome_w = os.pipe()


def fds():
    # Above 9 first, so that putting one at 3 cannot close the other; dup2 makes them
    # inheritable.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome_r, from_chrome_w)]
    os.dup2(high[0], 3)
    os.dup2(high[1], 4)


profile = tempfile.mkdtemp()
chrome = subprocess.Popen(
    prefix
    + ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
       "--disable-background-networking", "--disable-component-update", "--disable-sync",
       "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
    preexec_fn=fds, close_fds=False,
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)
os.close(to_chrome_r)
os.close(from_chrome_w)
pending = b""
next_id = 0


def end(code):
    """Ends Chromium (all its processes: Browser.close when it still listens) and the script."""
    try:
        os.write(to_chrome_w, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
        chrome.wait(timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        chrome.kill()
        chrome.wait()
    shutil.rmtree(profile, ignore_errors=True)
    sys.exit(code)


def fail(why):
    print(why, file=sys.stderr)
    end(1)


waiting_for = "Chromium to start"


def receive():
    """The next message from Chromium."""
    global pending
    while b"\0" not in pending:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([from_chrome_r], [], [], left)[0]:
            fail(f"timed out waiting for {waiting_for}; the page says: {page_state()}")
        chunk = os.read(from_chrome_r, 65536)
        if not chunk:
            fail("chromium went away")
        pending += chunk
    message, pending = pending.split(b"\0", 1)
    return json.loads(message)


events = []
session = None


def page_state():
    """What the page's capture state says, if it can still be asked (for a failure's message)."""
    if session is None:
        return "(no page yet)"
    message = {"id": 999999, "method": "Runtime.evaluate", "sessionId": session,
               "params": {"expression": "document.getElementById('capture-state').textContent",
                          "returnByValue": True}}
    try:
        os.write(to_chrome_w, json.dumps(message).encode() + b"\0")
        while True:
            chunk_ready = select.select([from_chrome_r], [], [], 5)[0]
            if not chunk_ready:
                return "(no answer)"
            for m in os.read(from_chrome_r, 65536).split(b"\0"):
                if b'"id":999999' in m:
                    return json.loads(m)["result"]["result"].get("value", "")
    except (OSError, ValueError, KeyError):
        return "(cannot ask)"


def call(method, params=None, session=None):
    """Sends a command and returns its result; events that come first are kept."""
    global next_id
    next_id += 1
    message = {"id": next_id, "method": method, "params": params or {}}
    if session:
        message["sessionId"] = session
    os.write(to_chrome_w, json.dumps(message).encode() + b"\0")
    while True:
        m = receive()
        if m.get("id") == next_id:
            if "error" in m:
                fail(f"{method}: {m['error']}")
            return m["result"]
        events.append(m)


def wait_for(method):
    """The first event named `method`, kept or to come."""
    global waiting_for
    waiting_for = method
    while True:
        for i, m in enumerate(events):
            if m.get("method") == method:
                return events.pop(i)
        events.append(receive())


call("Browser.setDownloadBehavior", {"behavior": "allowAndName", "downloadPath": downloads, "eventsEnabled": True})
page = next(t for t in call("Target.getTargets")["targetInfos"] if t["type"] == "page")
session = call("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})["sessionId"]
call("Page.enable", session=session)
call("Page.navigate", {"url": url}, session=session)
wait_for("Page.loadEventFired")
call("Runtime.evaluate", {"expression": script}, session=session)
begun = wait_for("Browser.downloadWillBegin")["params"]
while True:
    progress = wait_for("Browser.downloadProgress")["params"]
    if progress["guid"] == begun["guid"] and progress["state"] == "completed":
        break
    if progress["guid"] == begun["guid"] and progress["state"] == "canceled":
        fail("the download was cancelled")
state = call("Runtime.evaluate", {"expression": "document.getElementById('capture-state').textContent",
                                  "returnByValue": True}, session=session)
print(os.path.join(downloads, begun["guid"]))
print(begun["suggestedFilename"])
print(state["result"].get("value", ""))
end(0)
