"""The lowest layer of the application: experiment configs (:mod:`.schema`, read and checked by :mod:`.loading`),
the names they use (:mod:`.registry`: spaces, strategies, data factories) and the errors a user can fix
(:mod:`.errors`). Imports nothing of the layers above (see docs/architecture.md)."""
