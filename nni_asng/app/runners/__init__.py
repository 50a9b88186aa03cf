"""The middle layer of the application: a config assembled into a run's parts (:mod:`.assembly`) and the runs
themselves: search and retraining (:mod:`.runs`), tables (:mod:`.tabulate`), with the pieces they share (tasks,
user data, outputs, plots, stopping, the warning filter, reporting as an NNI trial). Imports only
:mod:`nni_asng.app.config` of the application (see docs/architecture.md)."""
