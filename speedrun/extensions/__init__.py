"""Optional phases and behaviours of a run, each a config dataclass whose ``make`` builds the
run's hooks: SWA, snapshot ensembles, reduce-on-plateau, lookahead, decoupled weight decay.
One file each, config and behaviour together."""
