"""The lake: Delta tables under one root (local folder or object store) — their definitions
(:mod:`.tables`), access (:mod:`.store`), history (:mod:`.history`: change feeds, commits) and
maintenance (:mod:`.maintenance`)."""
