"""DCS adapters: one abstract interface (base.DCS), one module per backend, `connect(dc)` picks it."""
