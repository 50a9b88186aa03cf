"""Drive the NNI web UI in Debian's headless Chromium through the DevTools protocol.

No extra package: Chromium speaks the protocol over a WebSocket, and ``websockets`` comes with NNI.
:func:`trials_page` loads the "Trials detail" page, expands trials' rows (their parameters), opens a
trial's "Intermediate results" dialog, returns the rendered text and writes a screenshot. Run as a
script to take the screenshot of a running experiment::

    python tests/webui_browser.py http://127.0.0.1:8080 TRIAL_ID out.png
"""
from __future__ import annotations

import base64
import itertools
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path

CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync',
         '--remote-allow-origins=*', '--hide-scrollbars']


class Browser:
    """One headless Chromium with a fresh profile, and a DevTools session on its page."""

    def __init__(self, width: int = 1400, height: int = 1000):
        from websockets.sync.client import connect
        self.profile = tempfile.mkdtemp(prefix='chromium-profile-')
        self.process = subprocess.Popen([CHROMIUM, *FLAGS, f'--user-data-dir={self.profile}',
                                         f'--window-size={width},{height}', '--remote-debugging-port=0',
                                         'about:blank'], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        text=True)
        try:
            port = self._devtools_port()
            page = next(t for t in self._targets(port) if t.get('type') == 'page')
            with warnings.catch_warnings():           # websockets 14+ prefers `with connect(...)`
                warnings.simplefilter('ignore', DeprecationWarning)
                self.ws = connect(page['webSocketDebuggerUrl'], max_size=64 * 1024 * 1024, open_timeout=30)
            self.ids = itertools.count(1)
            self.call('Page.enable')
            self.call('Emulation.setDeviceMetricsOverride', width=width, height=height, deviceScaleFactor=1,
                      mobile=False)
        except BaseException:
            self.close()
            raise

    def _devtools_port(self, timeout: float = 60) -> int:
        deadline = time.time() + timeout
        while time.time() < deadline:
            line = self.process.stderr.readline()
            match = re.search(r'DevTools listening on ws://[^:]+:(\d+)/', line or '')
            if match:
                return int(match.group(1))
            if not line and self.process.poll() is not None:
                break
        raise RuntimeError('Chromium did not open its DevTools port')

    @staticmethod
    def _targets(port: int) -> list[dict]:
        for _ in range(50):
            try:
                with urllib.request.urlopen(f'http://127.0.0.1:{port}/json/list', timeout=5) as response:
                    return json.loads(response.read())
            except OSError:
                time.sleep(0.2)
        raise RuntimeError('Chromium DevTools did not list its pages')

    def call(self, method: str, **params):
        message_id = next(self.ids)
        self.ws.send(json.dumps({'id': message_id, 'method': method, 'params': params}))
        while True:
            reply = json.loads(self.ws.recv(timeout=60))
            if reply.get('id') == message_id:
                if 'error' in reply:
                    raise RuntimeError(f'{method}: {reply["error"]}')
                return reply.get('result', {})

    def evaluate(self, expression: str):
        result = self.call('Runtime.evaluate', expression=expression, returnByValue=True, awaitPromise=True)
        return result.get('result', {}).get('value')

    def wait_for(self, expression: str, timeout: float = 60, interval: float = 0.5):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                value = self.evaluate(expression)
            except RuntimeError:                  # e.g. the page navigated away while it was evaluated
                value = None
            if value:
                return value
            time.sleep(interval)
        raise TimeoutError(f'the page never satisfied: {expression}')

    def text(self) -> str:
        return self.evaluate('document.body ? document.body.innerText : ""') or ''

    def screenshot(self, path: str | Path) -> Path:
        data = self.call('Page.captureScreenshot', format='png')['data']
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        ws = getattr(self, 'ws', None)
        if ws is not None:
            ws.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(20)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> 'Browser':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _row(trial_id: str) -> str:
    return (f'[...document.querySelectorAll(\'[data-automationid="DetailsRow"]\')]'
            f'.find(r => r.innerText.includes({json.dumps(trial_id)}))')


def trials_page(url: str, trial_ids: list[str], expand: list[str] = (), chart: str | None = None,
                screenshot: str | Path | None = None, timeout: float = 120, page: str = 'detail',
                overview: bool = False, width: int = 1400) -> dict:
    """Load the experiment's real "Trials detail" page (``<url>/detail``, or ``<url>/<page>`` that leads there,
    such as the pipeline's ``logs/trials.html``) in a fresh browser profile and read what it renders.

    Waits until every id of ``trial_ids`` is in the rendered table and reads each of their rows as shown;
    expands the rows of ``expand`` (the trial's parameters appear); opens the "Intermediate results" dialog of
    ``chart`` (the trial's curve); writes ``screenshot``; with ``overview``, then opens the overview page.
    Returns ``table`` (the page's text), ``columns`` (the table's column titles), ``collapsed`` ({id: text of
    its row, not expanded}), ``rows`` ({id: text of the expanded row}), ``dialog`` (the dialog's text) and
    ``overview`` (that page's text). ``width``: the window's, in pixels (height 1000).
    """
    url = url.rstrip('/')
    out: dict = {'rows': {}}
    with Browser(width=width) as browser:
        browser.call('Page.navigate', url=f'{url}/{page.lstrip("/")}')
        ready = ' && '.join(f'document.body.innerText.includes({json.dumps(t)})' for t in trial_ids) or 'true'
        browser.wait_for(f'document.body && location.pathname.endsWith("/detail") && {ready}', timeout)
        out['table'] = browser.text()
        out['columns'] = browser.evaluate('[...document.querySelectorAll(\'[role="columnheader"]\')]'
                                          '.map(h => h.innerText.trim()).filter(t => t)')
        out['collapsed'] = {t: browser.evaluate(f'{_row(t)}?.innerText || ""') for t in trial_ids}
        for trial_id in expand:
            browser.evaluate(f'{_row(trial_id)}.querySelector(\'[data-automation-key="_expand"] i\').click()')
            panel = (f'(() => {{ const c = {_row(trial_id)}?.closest(".ms-List-cell"); '
                     f'return c && c.innerText.includes("phase") ? c.innerText : ""; }})()')
            out['rows'][trial_id] = browser.wait_for(panel, timeout)
        if chart is not None:
            browser.evaluate(f'{_row(chart)}.querySelector(\'[data-automation-key="_operation"] button\').click()')
            out['dialog'] = browser.wait_for('(() => { const d = document.querySelector(\'[role="dialog"]\'); '
                                             'return d && d.innerText.includes("Intermediate") ? d.innerText : ""; })()',
                                             timeout)
            time.sleep(2.0)                       # the chart animates in
        if screenshot is not None:
            browser.screenshot(screenshot)
        if overview:
            browser.call('Page.navigate', url=f'{url}/oview')
            out['overview'] = browser.wait_for('(() => { const t = document.body ? document.body.innerText : ""; '
                                               'return /\\d\\.\\d{6}\\s*Best metric/.test(t) ? t : ""; })()',
                                               timeout)
    return out


if __name__ == '__main__':
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('url')
    parser.add_argument('trial', help='the trial whose parameters and intermediate results are shown')
    parser.add_argument('png')
    parser.add_argument('--page', default='detail', help='the page to open: detail, or the pipeline\'s '
                        'logs/trials.html (phase, strategy, seed and search as columns)')
    parser.add_argument('--width', type=int, default=1400)
    args = parser.parse_args()
    texts = trials_page(args.url, [args.trial], expand=[args.trial], chart=args.trial, screenshot=args.png,
                        page=args.page, width=args.width)
    print(texts['rows'][args.trial])
    print(texts['dialog'])
    sys.exit(0)
