"""The pipeline's trial table in NNI's web UI: phase, strategy, seed and search as columns.

NNI 3.0's "Trials detail" table shows five columns (trial number, id, duration, status, default metric) until
the user picks others with "Add/Remove columns"; the trials' parameters are among the columns it can show
(``space/<key>``), and the choice is kept in the browser's ``localStorage`` per experiment (key
``<experiment id>_columns``, an object ``{value: <JSON list of column keys>, time, expire, isSelectall}``).

The pipeline's advisor writes :data:`PAGE` into the experiment's log folder (``NNI_LOG_DIRECTORY``), which NNI's
web server serves under ``<web UI>/logs/``. Opened once, the page stores the pipeline's columns
(:data:`COLUMNS`) for that experiment -- unless the user chose columns already -- and goes on to the trial
table, so every row shows its phase (search/retrain), strategy, seed and search without being expanded (NNI
orders them: the experiment's search space first -- phase, strategy, seed --, then the other parameters). No file
of NNI is changed; the page uses the web UI's own setting. Imports nothing but the standard library (the
advisor must start fast).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ['PAGE', 'COLUMNS', 'trials_page_html', 'write_trials_page', 'trials_url']

#: The page's file name in the experiment's log folder (URL: ``<web UI>/logs/trials.html``).
PAGE = 'trials.html'

#: The trial table's columns: NNI's five, then the pipeline's parameters (``space/<parameter>``).
COLUMNS = ['sequenceId', 'id', 'duration', 'status', 'latestAccuracy', 'space/phase', 'space/strategy',
           'space/seed', 'space/search']

#: How long the browser keeps the columns (the web UI's own "Add/Remove columns" keeps them 30 days).
KEEP_MS = 30 * 24 * 3600 * 1000

_TEMPLATE = '''<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>nni-asng pipeline: trials</title></head>
<body>
<p>Opening the trial table with the pipeline's columns (phase, strategy, seed, search) ...
<a href="../detail">Trials detail</a></p>
<script>
(function () {
  var columns = %(columns)s;
  function open() { window.location.replace('../detail'); }
  fetch('../api/v1/nni/experiment').then(function (response) { return response.json(); }).then(function (profile) {
    var key = profile.id + '_columns';
    if (profile.id && !window.localStorage.getItem(key)) {
      window.localStorage.setItem(key, JSON.stringify({value: JSON.stringify(columns), time: Date.now(),
                                                       expire: %(keep)d, isSelectall: false}));
    }
  }).then(open, open);
})();
</script>
</body>
</html>
'''


def trials_page_html(columns: list[str] = COLUMNS) -> str:
    """The page (see the module docstring)."""
    return _TEMPLATE % {'columns': json.dumps(list(columns)), 'keep': KEEP_MS}


def write_trials_page(log_directory: str | os.PathLike | None = None) -> Path | None:
    """Write :data:`PAGE` into ``log_directory`` (default: ``$NNI_LOG_DIRECTORY``, which NNI gives its advisor);
    None where there is no such folder."""
    folder = log_directory if log_directory is not None else os.environ.get('NNI_LOG_DIRECTORY')
    if not folder or not Path(folder).is_dir():
        return None
    path = Path(folder) / PAGE
    tmp = path.with_name(f'.{PAGE}.tmp')
    tmp.write_text(trials_page_html(), encoding='utf-8')
    os.replace(tmp, path)
    return path


def trials_url(web_ui: str) -> str:
    """The page's URL under the web UI's URL (``http://HOST:PORT/`` or with NNI's URL prefix)."""
    return web_ui.rstrip('/') + '/logs/' + PAGE
