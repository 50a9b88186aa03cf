"""The top layer below the CLI: NNI experiments (web UI, REST API, nnictl) that run nni-asng's searches and
retraining as trials. :mod:`.launch` (``nni-asng launch``), :mod:`.pipeline` and its :mod:`.advisor`, the plan
of the sweep (:mod:`.sweep`), one trial of it (:mod:`.trial`), NNI's experiment manager (:mod:`.manager`) and
``nni-asng register`` (:mod:`.register`). Imports the layers below, never the CLI (see docs/architecture.md)."""
